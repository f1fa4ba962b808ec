// Package config is glbootstrap's configuration reader: the YAML document (schema version 1), a
// structural walk that knows every role's keys, and a validator that reports every problem at
// once, each with its field path and line (`runner.concurrent (line 12): must be > 0`).
//
// The reader knows no role. Each role package owns its sections (their types, defaults and value
// rules) and describes its document with a Schema; Parse takes the schemas of every role of the
// build, reads the document of one of them, and uses the others to tell a section of another role
// ("the runner section belongs to role runner: ...") from a typo ("did you mean ...?").
//
// What every document shares lives here: the schema version (Base), the part of the gitlab section
// every role reads (GitLab), value types (Duration, Days, Size, the backup section's Backup, which
// internal/backup reads too) and the checks roles build their rules from (Checker).
//
// A configuration never holds a secret. Fields ending in _parameter name an SSM parameter (a
// SecureString for tokens) that the roles read at apply time; a value that looks like a GitLab token
// anywhere in the document is an error.
//
// Parse decodes and validates and has no side effect (it runs no program and reads no file); Read
// fetches the raw document from a file, stdin, SSM or S3.
package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// SchemaVersion is the only value of Base.Version this package reads.
const SchemaVersion = 1

// DefaultReadyTimeout is gitlab.ready_timeout's default.
const DefaultReadyTimeout = 10 * time.Minute

// Schema is what a role tells Parse about its configuration document.
type Schema struct {
	// Role is the role's name on the command line (--role runner).
	Role string
	// Title names the host the role makes, for messages: "the runner front", "the GitLab host".
	Title string
	// New returns an empty document of the role (a pointer to a struct embedding Base), into which
	// Parse decodes. Its yaml tags are the keys the role reads; the top-level fields other than
	// version and gitlab are the role's own sections.
	New func() Document
}

// Document is one role's configuration document: a pointer to a struct that embeds Base with
// `yaml:",inline"` and has one field per top-level key the role reads, e.g.
//
//	type Config struct {
//		config.Base `yaml:",inline"`
//		GitLab      config.GitLab `yaml:"gitlab"`
//		Runner      *Runner       `yaml:"runner"`
//	}
//
// Parse walks it by its yaml tags (unknown keys, kinds, duplicates), decodes into it, checks the
// version, and then calls Check for the role's defaults and value rules.
type Document interface {
	base() *Base
	// Check fills the role's defaults and reports every value problem through c. It runs on
	// every document that decoded, even one with structural errors elsewhere, so one run reports
	// everything; it must not assume required sections are present.
	Check(c *Checker)
}

// Base is what every document has. Embed it with `yaml:",inline"`.
type Base struct {
	// Version is the schema version; required, must be 1.
	Version int `yaml:"version"`
	// Instance gives facts EC2 instance metadata would otherwise give; optional.
	Instance Instance `yaml:"instance"`
	// Packages says where GitLab's packages come from; optional.
	Packages Packages `yaml:"packages"`
}

// Packages is where internal/pkg installs gitlab-runner and GitLab Omnibus from.
type Packages struct {
	// Mirror is a base URL that replaces https://packages.gitlab.com (a mirror inside a VPC without
	// a NAT gateway), laid out as packages.gitlab.com is: MIRROR/runner/gitlab-runner/debian/...,
	// MIRROR/gpgkey/gpg.key. The signing keys are still checked against the fingerprints pinned
	// in internal/pkg, unless MirrorKeyFingerprint names the mirror's own key. Default:
	// packages.gitlab.com. A user name or password in it is refused (the configuration is not secret).
	Mirror string `yaml:"mirror"`
	// MirrorKeyFingerprint is the OpenPGP fingerprint (40 hex digits, v4; spaces allowed) of
	// the key a private mirror (aptly, Nexus, Artifactory) re-signs the repository metadata
	// (apt Release/InRelease, dnf repomd.xml) with. It replaces GitLab's pinned repository key
	// for that mirror: the mirror must serve this public key at MIRROR/gpgkey/gpg.key, and
	// apt/dnf trust the repository only when that key signed it. The package signatures rpm
	// checks stay GitLab's. Only valid with mirror. Default: GitLab's key is required.
	MirrorKeyFingerprint string `yaml:"mirror_key_fingerprint"`
}

// fingerprintRE is an OpenPGP v4 fingerprint: 40 hex digits once spaces are removed.
var fingerprintRE = regexp.MustCompile(`^[0-9A-Fa-f]{40}$`)

func checkPackages(c *Checker, p *Packages) {
	if p.MirrorKeyFingerprint != "" {
		switch {
		case p.Mirror == "":
			c.Errorf("packages.mirror_key_fingerprint", "is only valid with packages.mirror: GitLab's own repository is always checked against GitLab's pinned key; set packages.mirror or remove this key")
		case !fingerprintRE.MatchString(strings.Join(strings.Fields(p.MirrorKeyFingerprint), "")):
			c.Errorf("packages.mirror_key_fingerprint", "%q is not an OpenPGP fingerprint: want the 40 hex digits gpg --fingerprint prints for the mirror's signing key", p.MirrorKeyFingerprint)
		}
	}
	if p.Mirror == "" {
		return
	}
	u, err := url.Parse(p.Mirror)
	switch {
	case err == nil && u.User != nil:
		// Never echo the password: the problem goes to the console and the user-data log.
		c.Errorf("packages.mirror", "has a user name or password in it (%s): the configuration is not secret "+
			"(it is embedded in user-data and written to the package manager's world-readable repository file) and glbootstrap takes no mirror credentials: "+
			"let the mirror admit the VPC without them (its security group, or a VPC endpoint policy)", u.Redacted())
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		c.Errorf("packages.mirror", "%q is not a base URL such as https://packages.example.internal (http or https, no query)", p.Mirror)
	}
}

// Instance is what EC2 instance metadata (IMDSv2) says about this instance, written in the
// configuration to run off EC2 (tests, --root on a workstation) or to override metadata. A fact
// given here is never read from metadata, and metadata is read only when a role needs a fact
// that no key gives (region and subnet have their own keys: fargate.region, fargate.subnet,
// backup.region). Every key is optional.
type Instance struct {
	// ID is instance-id (i-0123456789abcdef0): the runner front's default name and the instance
	// its .runner_system_id was made on.
	ID string `yaml:"id"`
	// PrivateIPv4 is local-ipv4, the primary interface's private address: the runner front's
	// address the tasks' security group must admit, the GitLab host's default private URL.
	PrivateIPv4 string `yaml:"private_ipv4"`
	// SecurityGroups are the primary interface's security groups (sg-…): the runner front's, whose
	// egress the preflight checks.
	SecurityGroups []string `yaml:"security_groups"`
	// VPCCIDR is the VPC's primary IPv4 CIDR (vpc-ipv4-cidr-block), which the GitLab host adds to
	// monitoring_whitelist.
	VPCCIDR string `yaml:"vpc_cidr"`
}

var (
	instanceIDRE    = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
	securityGroupRE = regexp.MustCompile(`^sg-([0-9a-f]{8}|[0-9a-f]{17})$`)
)

// ValidSecurityGroup reports whether id is a security group id: sg- and 8 or 17 lower-case hex
// digits.
func ValidSecurityGroup(id string) bool { return securityGroupRE.MatchString(id) }

func checkInstance(c *Checker, in *Instance) {
	if in.ID != "" && !instanceIDRE.MatchString(in.ID) {
		c.Errorf("instance.id", "%q is not an instance id (i- and 8 or 17 lower-case hex digits)", in.ID)
	}
	if in.PrivateIPv4 != "" {
		if a, err := netip.ParseAddr(in.PrivateIPv4); err != nil || !a.Is4() {
			c.Errorf("instance.private_ipv4", "%q is not an IPv4 address such as 10.0.1.20", in.PrivateIPv4)
		}
	}
	for i, sg := range in.SecurityGroups {
		if !ValidSecurityGroup(sg) {
			c.Errorf(fmt.Sprintf("instance.security_groups[%d]", i), "%q is not a security group id (sg- and 8 or 17 lower-case hex digits)", sg)
		}
	}
	if in.VPCCIDR != "" {
		switch pfx, err := netip.ParsePrefix(in.VPCCIDR); {
		case err != nil || !pfx.Addr().Is4():
			c.Errorf("instance.vpc_cidr", "%q is not an IPv4 CIDR such as 10.0.0.0/16", in.VPCCIDR)
		case pfx.Masked() != pfx:
			c.Errorf("instance.vpc_cidr", "%q has host bits set; write %s", in.VPCCIDR, pfx.Masked())
		}
	}
}

func (b *Base) base() *Base { return b }

// GitLab is the part of the gitlab section every role reads: where GitLab is. A role that reads
// more of the section (the runner's private_url_parameter and ca_file, the GitLab host's Omnibus
// settings) embeds it with `yaml:",inline"` in a section type of its own, so `cfg.GitLab.URL` reads
// the same in every role and each key of the section belongs to the roles that read it. A key
// only another role reads is a warning ("is read by role gitlab ... only").
type GitLab struct {
	// URL is GitLab's external URL (external_url in gitlab.rb): absolute, https, with a host and
	// either no path or a relative-URL prefix such as /gitlab. Required.
	URL string `yaml:"url"`
	// PrivateURL is GitLab's address on the private network, https://host[:port] (optionally with
	// the same relative-URL prefix as URL): the runner front registers with it and it becomes url
	// and clone_url in config.toml; the GitLab host publishes it. http is accepted with a warning.
	PrivateURL string `yaml:"private_url"`
	// ReadyTimeout is how long to wait for GET /-/readiness before giving up. A Go duration string
	// ("90s", "10m"); default 10m; must be > 0 when set.
	ReadyTimeout Duration `yaml:"ready_timeout"`
}

// CheckGitLab fills the shared gitlab keys' defaults and checks them; each role's Check calls it
// for its gitlab section.
func CheckGitLab(c *Checker, g *GitLab) {
	if !c.Present("gitlab.ready_timeout") && g.ReadyTimeout == 0 {
		g.ReadyTimeout = Duration(DefaultReadyTimeout)
	}
	if g.URL == "" {
		c.Errorf("gitlab.url", "is required: GitLab's external URL, e.g. https://gitlab.example.com")
	} else {
		c.HTTPSURL("gitlab.url", g.URL, false)
	}
	if g.PrivateURL != "" {
		c.HTTPSURL("gitlab.private_url", g.PrivateURL, true)
	}
	if g.ReadyTimeout <= 0 {
		c.Errorf("gitlab.ready_timeout", "must be a positive duration such as \"10m\", got %q", time.Duration(g.ReadyTimeout).String())
	}
}

// Duration is a time.Duration written in YAML as a Go duration string ("90s", "10m").
type Duration time.Duration

// UnmarshalYAML accepts a scalar Go duration string. A bad value is reported as a *yaml.TypeError so
// the decoder keeps going and the validator can report the other problems too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, durationHint(DescribeNode(n)))}}
	}
	if n.ShortTag() == "!!null" {
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		got := fmt.Sprintf("%q", n.Value)
		if _, err := strconv.ParseUint(n.Value, 10, 64); err == nil {
			got += fmt.Sprintf(" (a unit is required: %q for seconds)", n.Value+"s")
		}
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, durationHint(got))}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back as a string, so a Config round-trips.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String is the time.Duration form ("10m0s").
func (d Duration) String() string { return time.Duration(d).String() }

func durationHint(got string) string {
	return "must be a duration such as \"90s\" or \"10m\", got " + got
}
