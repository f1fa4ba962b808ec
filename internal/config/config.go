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
	"strconv"
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
