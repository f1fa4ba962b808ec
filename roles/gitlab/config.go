package gitlab

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/config"
)

// Config is the GitLab host's configuration document (schema version 1): the gitlab section with
// the Omnibus host's keys, and the optional backup section, which only this role reads.
type Config struct {
	config.Base `yaml:",inline"`
	// GitLab says where GitLab is and how the Omnibus host is configured. Required.
	GitLab GitLab `yaml:"gitlab"`
	// Backup schedules daily GitLab backups to S3; optional, nil when absent.
	Backup *config.Backup `yaml:"backup"`
}

// GitLab is the gitlab section as the GitLab host reads it: the keys every role reads
// (url, private_url, ready_timeout) and the Omnibus host's own.
type GitLab struct {
	config.GitLab `yaml:",inline"`

	// Edition is the Omnibus package edition, ee (default) or ce: gitlab-ee or gitlab-ce.
	Edition string `yaml:"edition"`
	// Version is the Omnibus package version the AMI bake installs, e.g. 18.5.1 (without the
	// -ee.0 package suffix). Optional; when set, apply warns when the installed package differs
	// (a restore needs the same version and edition).
	Version string `yaml:"version"`
	// SSHPort is the port users see for git over SSH (the NLB's SSH listener), which becomes
	// gitlab_rails['gitlab_shell_ssh_port']; 1..65535, default 22. sshd itself is not moved.
	SSHPort int `yaml:"ssh_port"`
	// NLB describes the network load balancer in front of GitLab.
	NLB NLB `yaml:"nlb"`
	// InitialRootPasswordParameter names an SSM SecureString holding the root password GitLab is
	// seeded with on its first configuration. Optional: without it Omnibus generates one and
	// keeps it in /etc/gitlab/initial_root_password for 24 hours.
	InitialRootPasswordParameter string `yaml:"initial_root_password_parameter"`
	// PublishPrivateURLParameter names the SSM parameter (String) the GitLab host writes its
	// private URL to, for the runner role's gitlab.private_url_parameter. Optional: nothing is
	// published when it is empty.
	PublishPrivateURLParameter string `yaml:"publish_private_url_parameter"`
	// LetsEncrypt is letsencrypt['enable'], always written: Omnibus turns Let's Encrypt on by
	// itself when nginx serves HTTPS and no certificate files exist (omnibus-gitlab 18.5.1+ee.0 and
	// 19.2.0+ee.0 files/gitlab-cookbooks/letsencrypt/libraries/lets_encrypt.rb,
	// should_auto_enable?), and behind an NLB without a port-80 listener reconfigure then fails
	// with an ACME error. Default false; true needs nlb.tls_termination false and HTTP on port 80
	// reachable from Let's Encrypt.
	LetsEncrypt bool `yaml:"letsencrypt"`
	// TLS names where nginx's certificate and key come from when nginx serves HTTPS itself
	// (nlb.tls_termination false).
	TLS TLS `yaml:"tls"`
	// Settings are extra gitlab.rb settings: a mapping from a gitlab.rb root (gitlab_rails,
	// nginx, letsencrypt, ... or a setting such as registry_external_url) to its keys and typed
	// values (string, integer, float, bool, list, mapping). See settings.go for the rules.
	Settings Settings `yaml:"settings"`
}

// NLB is how the network load balancer in front of GitLab forwards HTTPS.
type NLB struct {
	// TLSTermination is true when the NLB terminates TLS (a TLS listener) and forwards plain
	// HTTP: nginx then listens on 80 without https. False (default): TCP passthrough, nginx
	// serves https on 443 with its own certificate.
	TLSTermination bool `yaml:"tls_termination"`
	// ProxyProtocol is true when the HTTPS target group sends the PROXY protocol header: nginx
	// then requires it on every connection and trusts the VPC CIDR for the client address.
	ProxyProtocol bool `yaml:"proxy_protocol"`
}

// TLS is the gitlab.tls section: the certificate nginx serves with TCP passthrough, written to
// /etc/gitlab/ssl/<external_url host>.crt (0644) and .key (0600), the paths Omnibus uses by
// default (gitlab_rails.rb parse_external_url, 18.5.1+ee.0 and 19.2.0+ee.0). Both or neither.
type TLS struct {
	// CertificateParameter names an SSM parameter (SecureString or String) holding the PEM
	// certificate chain, server certificate first, or an S3 object written s3://bucket/key
	// (at most 1 MiB, read with the instance profile).
	CertificateParameter string `yaml:"certificate_parameter"`
	// KeyParameter names an SSM SecureString holding the PEM private key of that certificate, or
	// an S3 object s3://bucket/key (keep it SSE-KMS encrypted and readable by this instance only).
	KeyParameter string `yaml:"key_parameter"`
}

// Omnibus package editions (gitlab.edition): the package is gitlab-<edition>.
const (
	EditionEE = "ee"
	EditionCE = "ce"
	// DefaultEdition is ee: GitLab recommends the EE package even without a license (it runs as
	// the free tier and can be upgraded in place).
	DefaultEdition = EditionEE
	// DefaultGitLabSSHPort is gitlab.ssh_port's default, the NLB's usual SSH listener.
	DefaultGitLabSSHPort = 22
)

var (
	gitlabVersionRE     = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	gitlabPackageVersRE = regexp.MustCompile(`^([0-9]+\.[0-9]+\.[0-9]+)-(ee|ce)\.[0-9]+$`)
)

// Check fills the defaults and checks the values of the GitLab host's document.
func (cfg *Config) Check(c *config.Checker) {
	gitlabHostDefaults(c, &cfg.GitLab)
	config.CheckGitLab(c, &cfg.GitLab.GitLab)
	validateGitLab(c, &cfg.GitLab)
	if cfg.Backup != nil {
		backupDefaults(c, cfg.Backup)
		validateBackup(c, cfg.Backup)
	}
}

// gitlabHostDefaults fills the Omnibus host's keys of the gitlab section. ssh_port is defaulted
// only when absent, so an explicit 0 is reported rather than replaced.
func gitlabHostDefaults(c *config.Checker, g *GitLab) {
	config.DefaultString(&g.Edition, DefaultEdition)
	if !c.Present("gitlab.ssh_port") {
		g.SSHPort = DefaultGitLabSSHPort
	}
}

// validateGitLab checks the Omnibus host's keys of the gitlab section.
func validateGitLab(c *config.Checker, g *GitLab) {
	switch g.Edition {
	case EditionEE, EditionCE, "":
	default:
		c.Errorf("gitlab.edition", "unknown edition %q: must be ee (the gitlab-ee package, the default) or ce (gitlab-ce)", g.Edition)
	}
	switch {
	case g.Version == "":
	case gitlabPackageVersRE.MatchString(g.Version):
		c.Errorf("gitlab.version", "write the GitLab version %q without the package suffix, got %q", gitlabPackageVersRE.FindStringSubmatch(g.Version)[1], g.Version)
	case !gitlabVersionRE.MatchString(g.Version):
		c.Errorf("gitlab.version", "%q is not a GitLab version: pin an exact release MAJOR.MINOR.PATCH such as \"18.5.1\" (no leading v, not \"latest\" or \"18.5\")", g.Version)
	}
	if c.Present("gitlab.ssh_port") && (g.SSHPort < 1 || g.SSHPort > 65535) {
		c.Errorf("gitlab.ssh_port", "must be in 1..65535 (the port of the NLB's SSH listener), got %d", g.SSHPort)
	}
	if g.InitialRootPasswordParameter != "" {
		c.ParameterName("gitlab.initial_root_password_parameter", g.InitialRootPasswordParameter)
	}
	if g.PublishPrivateURLParameter != "" {
		c.ParameterName("gitlab.publish_private_url_parameter", g.PublishPrivateURLParameter)
	}
	validateTLS(c, g)
	validateSettings(c, g)
	if g.NLB.ProxyProtocol && g.PrivateURL == "" && g.PublishPrivateURLParameter != "" {
		c.Warnf("gitlab.nlb.proxy_protocol", "with the PROXY protocol nginx refuses connections that do not send its header, so runners cannot use https://<private-ip> directly: set gitlab.private_url to the NLB's internal address")
	}
}

// validateTLS checks gitlab.letsencrypt and gitlab.tls against the NLB's TLS mode.
func validateTLS(c *config.Checker, g *GitLab) {
	t := g.TLS
	for _, f := range [][2]string{{"gitlab.tls.certificate_parameter", t.CertificateParameter}, {"gitlab.tls.key_parameter", t.KeyParameter}} {
		field, src := f[0], f[1]
		bucket, key, isS3 := s3Source(src)
		switch {
		case src == "":
		case !isS3:
			c.ParameterName(field, src)
		case !config.ValidBucket(bucket) || key == "" || strings.HasSuffix(key, "/"):
			c.Errorf(field, "%q is not an S3 object: write s3://BUCKET/KEY, e.g. s3://example-certs/gitlab/gitlab.example.com.crt", src)
		}
	}
	switch {
	case t.CertificateParameter != "" && t.KeyParameter == "":
		c.Errorf("gitlab.tls.key_parameter", "is required with gitlab.tls.certificate_parameter: the SSM SecureString holding the certificate's private key (PEM)")
	case t.KeyParameter != "" && t.CertificateParameter == "":
		c.Errorf("gitlab.tls.certificate_parameter", "is required with gitlab.tls.key_parameter: the SSM parameter holding the certificate chain (PEM)")
	}
	hasTLS := t.CertificateParameter != "" || t.KeyParameter != ""
	if g.NLB.TLSTermination {
		if hasTLS {
			c.Errorf("gitlab.tls", "is unused: with gitlab.nlb.tls_termination true the NLB holds the certificate and nginx serves plain HTTP; remove gitlab.tls, or set tls_termination false to have nginx serve it")
		}
		if g.LetsEncrypt {
			c.Errorf("gitlab.letsencrypt", "needs nginx to serve HTTPS itself: set gitlab.nlb.tls_termination false, or gitlab.letsencrypt false (the NLB's certificate is used)")
		}
		return
	}
	if hasTLS {
		for _, path := range []string{"nginx", "gitlab_rails.nginx"} {
			for _, k := range []string{"ssl_certificate", "ssl_certificate_key"} {
				if _, set := settingAt(g.Settings, path+"."+k); set {
					c.Errorf("gitlab.settings."+path+"."+k, "moves nginx's certificate away from the files gitlab.tls writes (/etc/gitlab/ssl/<host>.crt and .key): remove it, or remove gitlab.tls and put the files there yourself")
				}
			}
		}
	}
	if g.LetsEncrypt && hasTLS {
		c.Errorf("gitlab.letsencrypt", "and gitlab.tls both provide nginx's certificate: keep one (Let's Encrypt would overwrite the files gitlab.tls writes)")
	}
}

// validateSettings warns about gitlab.settings that Omnibus accepts but that are likely mistakes:
// monitoring_whitelist opened to every address, and keys Omnibus's gitlab.rb.template does not
// know for the pinned version (knownKeys).
func validateSettings(c *config.Checker, g *GitLab) {
	s := g.Settings
	if rails, ok := s.Get("gitlab_rails").(map[string]any); ok {
		if wl, ok := rails["monitoring_whitelist"].([]any); ok {
			for _, e := range wl {
				if e == "0.0.0.0/0" || e == "::/0" {
					c.Warnf("gitlab.settings.gitlab_rails.monitoring_whitelist", "%s lets every address read /-/readiness, /-/liveness and /-/metrics (internal details): the VPC CIDR is already allowed, list only the networks that monitor GitLab", e)
				}
			}
		}
		if n, ok := rails["nginx"].(map[string]any); ok {
			for _, k := range sortedKeys(n) {
				if instead := managedNginxClient[k]; instead != "" {
					c.Errorf("gitlab.settings.gitlab_rails.nginx."+k, "gitlab_rails['nginx']['%s'] is set by glbootstrap; use %s instead", k, instead)
				}
			}
		}
	}
	row := omnibusFor(g.Version)
	// The nginx client settings are rendered where the installed Omnibus reads them
	// (settingsStatements), whichever of the two forms they are written in; both at once is
	// ambiguous.
	if n, ok := s.Get("nginx").(map[string]any); ok {
		if rn, ok := settingAt(s, "gitlab_rails.nginx"); ok {
			rnm, _ := rn.(map[string]any)
			for _, k := range sortedKeys(n) {
				if _, both := rnm[k]; both && slices.Contains(nginxClientKeys, k) {
					c.Errorf("gitlab.settings.gitlab_rails.nginx."+k, "is also set as gitlab.settings.nginx.%s: keep one (glbootstrap writes it where the installed Omnibus reads it, nginx[...] before 19.2, gitlab_rails['nginx'][...] from 19.2 on)", k)
				}
			}
		}
	}
	for _, root := range s.Roots() {
		m, ok := s.Get(root).(map[string]any)
		if !ok {
			continue
		}
		for _, k := range sortedKeys(m) {
			if known, ok := row.known(root, k); !ok {
				c.Warnf("gitlab.settings."+root+"."+k, "%s['%s'] is not in Omnibus %s's gitlab.rb.template%s: check the spelling (an unknown key is ignored or stops reconfigure)", root, k, row.label(g.Version), suggestKey(k, known))
			}
		}
	}
}

var (
	kmsKeyRE = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]+|arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+))$`)
	prefixRE = regexp.MustCompile(`^[A-Za-z0-9!_.*'()/-]*$`)
)

// defaultsBackup fills the backup section's defaults.
func backupDefaults(c *config.Checker, b *config.Backup) {
	if b == nil {
		return
	}
	config.DefaultString(&b.Schedule, config.DefaultBackupSchedule)
	if !c.Present("backup.keep_local") {
		b.KeepLocal = config.Days(config.DefaultBackupKeep)
	}
	if !c.Present("backup.chunk_size") {
		b.ChunkSize = config.DefaultBackupChunk
	}
}

// backup checks the backup section's values.
func validateBackup(c *config.Checker, b *config.Backup) {
	if b == nil {
		return
	}
	switch {
	case b.Bucket == "":
		c.Errorf("backup.bucket", "is required: the S3 bucket the backups go to")
	case !config.ValidBucket(b.Bucket) || strings.Contains(b.Bucket, "..") || net.ParseIP(b.Bucket) != nil:
		c.Errorf("backup.bucket", "%q is not a valid S3 bucket name (3-63 lower-case letters, digits, dots and hyphens)", b.Bucket)
	}
	if b.Region != "" && !config.ValidRegion(b.Region) {
		c.Errorf("backup.region", "%q is not an AWS region such as us-east-2", b.Region)
	}
	if pre := b.PrefixOrDefault(); pre != "" {
		switch {
		case strings.HasPrefix(pre, "/"):
			c.Errorf("backup.prefix", "must not start with /: S3 keys are relative to the bucket, e.g. gitlab/")
		case !strings.HasSuffix(pre, "/"):
			c.Errorf("backup.prefix", "must end with /, e.g. %q", pre+"/")
		case slices.Contains(strings.Split(strings.TrimSuffix(pre, "/"), "/"), "..") || slices.Contains(strings.Split(strings.TrimSuffix(pre, "/"), "/"), "."):
			c.Errorf("backup.prefix", "must not contain . or .. segments: it becomes gitlab-backup's DIRECTORY and part of every key")
		case !prefixRE.MatchString(pre) || strings.Contains(pre, "//"):
			c.Errorf("backup.prefix", "%q has characters that are unsafe in S3 keys; use letters, digits and - _ . /", pre)
		}
	}
	if msg := calendarShape(b.Schedule); msg != "" {
		c.Errorf("backup.schedule", "%s", msg)
	}
	if b.KeepLocal < 0 {
		c.Errorf("backup.keep_local", "must not be negative")
	}
	if b.KMSKeyID != "" && !kmsKeyRE.MatchString(b.KMSKeyID) {
		c.Errorf("backup.kms_key_id", "%q is not a KMS key id, alias/NAME or key ARN", b.KMSKeyID)
	}
	switch {
	case b.ChunkSize < config.MinChunkSize:
		c.Errorf("backup.chunk_size", "%d bytes is below S3's minimum part size of 5 MiB; use e.g. 128MiB", b.ChunkSize)
	case b.ChunkSize > config.MaxChunkSize:
		c.Errorf("backup.chunk_size", "%d bytes is above S3's maximum part size of 5 GiB", b.ChunkSize)
	}
	validateBackupSecrets(c, b)
}

// calendarShape checks what can be checked of a systemd OnCalendar expression without running a
// program (config.Parse has no side effects): it is set and is one line that cannot end the
// OnCalendar= line early. The backup-timer phase checks the expression itself with
// systemd-analyze before it writes the timer.
func calendarShape(spec string) string {
	if spec == "" {
		return "is empty; write a systemd OnCalendar expression such as \"*-*-* 02:00:00\""
	}
	if strings.ContainsAny(spec, "\n\r;\\") {
		return fmt.Sprintf("%q is not a systemd OnCalendar expression (no newlines, ; or \\)", spec)
	}
	return ""
}
