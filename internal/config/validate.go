package config

import (
	"errors"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Checker is what a role's Document.Check reports through: it knows which keys the document has
// and on which line, and skips fields that already have a structural problem, so one mistake gives
// one message. Its methods are the checks several roles share.
type Checker struct{ p *parser }

// Errorf reports an error at the field path (dotted, runner.create.group_id), on the line of that
// key or of its nearest enclosing key present in the document.
func (c *Checker) Errorf(path, format string, args ...any) {
	if !c.p.isBad(path) {
		c.p.errf(path, c.p.line(path), format, args...)
	}
}

// Warnf reports a warning at path, like Errorf.
func (c *Checker) Warnf(path, format string, args ...any) {
	if !c.p.isBad(path) {
		c.p.warnf(path, c.p.line(path), format, args...)
	}
}

// Present reports whether path is in the document with a non-null value: numbers are defaulted
// only when absent, so an explicit 0 is reported instead of silently replaced.
func (c *Checker) Present(path string) bool { return c.p.present[path] }

// DefaultString sets *s to def when it is empty.
func DefaultString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

var relativeURLPath = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+/?$`)

// HTTPSURL checks a GitLab URL at field: https, a host, an optional port, and no path other than
// a relative URL prefix (/gitlab). With httpWarns, http is a warning (the private address, where
// the runner token travels); otherwise it is an error.
func (c *Checker) HTTPSURL(field, raw string, httpWarns bool) {
	example := "https://gitlab.example.com"
	if !strings.Contains(raw, "://") && raw != "" && !strings.ContainsAny(raw, " \t") {
		example = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || !strings.Contains(raw, "://") {
		why := ""
		var ue *url.Error
		if errors.As(err, &ue) {
			why = " (" + ue.Err.Error() + ")"
		}
		c.Errorf(field, "%q is not a URL%s; write the scheme and the host, e.g. %s", raw, why, example)
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !httpWarns {
			c.Errorf(field, "must use https, got %q", raw)
			return
		}
		c.Warnf(field, "uses http: the runner authentication token travels in clear between the front and GitLab; use https (with gitlab.ca_file for a private CA)")
	default:
		c.Errorf(field, "must be an https URL, got scheme %q in %q", u.Scheme, raw)
		return
	}
	if u.User != nil {
		c.Errorf(field, "must not contain a user name or password; credentials never go in the configuration")
	}
	if u.Hostname() == "" {
		c.Errorf(field, "has no host: %q; write it as %s", raw, example)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			c.Errorf(field, "port %q is not in 1..65535", port)
		}
	}
	if u.Path != "" && u.Path != "/" && !relativeURLPath.MatchString(u.Path) {
		c.Errorf(field, "path %q is not a relative URL prefix such as /gitlab", u.Path)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "?") || strings.HasSuffix(raw, "#") {
		c.Errorf(field, "must not have a query or fragment, got %q", raw)
	}
}

var parameterNameRE = regexp.MustCompile(`^/[a-zA-Z0-9_.\-/]+$`)

// ParameterName checks an SSM parameter name at field (SSM PutParameter: letters, digits,
// _ . - and /, at most 1011 characters for a fully qualified name, at most 15 levels, no aws/ssm
// prefix).
func (c *Checker) ParameterName(field, name string) {
	switch {
	case !parameterNameRE.MatchString(name):
		// The value is not echoed: a field meant to name a secret often holds the secret itself.
		c.Errorf(field, "is not an SSM parameter name (the value is not shown: it may be a secret); write the name of the parameter that holds the value, a full path such as /glbootstrap/runner-token (letters, digits, _ . - and /)")
	case strings.HasSuffix(name, "/"):
		c.Errorf(field, "%q must not end with /", name)
	case strings.Contains(name, "//"):
		c.Errorf(field, "%q must not contain //", name)
	case len(name) > 1011:
		c.Errorf(field, "is %d characters long; SSM allows at most 1011", len(name))
	case strings.Count(name, "/") > 15:
		c.Errorf(field, "has %d levels; SSM allows at most 15", strings.Count(name, "/"))
	default:
		first := strings.ToLower(strings.SplitN(name[1:], "/", 2)[0])
		if strings.HasPrefix(first, "aws") || strings.HasPrefix(first, "ssm") {
			c.Errorf(field, "%q starts with %q, which SSM reserves", name, first[:3])
		}
	}
}

// StateDir is glbootstrap's own state directory (runner.json, gitlab.json, driver.json, ...):
// no managed directory or program may be in it.
const StateDir = "/var/lib/glbootstrap"

// osTrees are the trees that belong to the OS or to glbootstrap itself, at any depth: a managed
// directory (chowned to the runner's user, chmod'ed) inside one would hand part of the system to
// that user, or break it.
var osTrees = []struct{ dir, whose string }{
	{"/etc", "the OS's settings"}, {"/usr", "the OS's programs"}, {"/boot", "the boot loader and kernels"},
	{"/proc", "the kernel"}, {"/sys", "the kernel"}, {"/dev", "the kernel's devices"},
	{StateDir, "glbootstrap's own state"},
}

// inTree returns the tree of osTrees p is in (or is), "" when none.
func inTree(p string) (dir, whose string) {
	for _, t := range osTrees {
		if p == t.dir || strings.HasPrefix(p, t.dir+"/") {
			return t.dir, t.whose
		}
	}
	return "", ""
}

// ManagedDir checks a directory glbootstrap creates, chowns and chmods: absolute, clean, not a
// system directory (SystemPath), and not anywhere under /etc, /usr, /boot, /proc, /sys, /dev or
// glbootstrap's own StateDir.
func (c *Checker) ManagedDir(field, dir string) {
	switch tree, whose := inTree(dir); {
	case !path.IsAbs(dir):
		c.Errorf(field, "must be an absolute path, got %q", dir)
	case path.Clean(dir) != dir:
		c.Errorf(field, "must be a clean path; write %q instead of %q", path.Clean(dir), dir)
	case SystemPath(dir):
		// glbootstrap chowns and chmods these directories and replaces the driver file: pointed
		// at /, /etc or /usr/bin by mistake it would break the host.
		c.Errorf(field, "%q is a system directory or lies directly in one; use a directory of its own such as /opt/gitlab-runner/...", dir)
	case tree != "":
		c.Errorf(field, "%q is under %s, %s; use a directory of its own such as /opt/gitlab-runner/...", dir, tree, whose)
	}
}

// ProgramPath checks where a managed program goes: absolute, clean, not a system directory, and
// not in the OS's own program or settings directories (/usr/local/bin is fine). def is the
// field's default, named in the messages.
func (c *Checker) ProgramPath(field, p, def string) {
	parent := path.Dir(p)
	switch {
	case !path.IsAbs(p):
		c.Errorf(field, "must be an absolute path, got %q", p)
	case path.Clean(p) != p:
		c.Errorf(field, "must be a clean path; write %q instead of %q", path.Clean(p), p)
	case systemDirs[p]:
		c.Errorf(field, "%q is a system directory, not a file name; the default is %s", p, def)
	case parent == "/usr/local/bin" || parent == "/usr/local/sbin":
	case SystemPath(p):
		c.Errorf(field, "%q is in a directory of the OS's own programs or settings; use %s or /usr/local/bin/%s", p, def, path.Base(def))
	default:
		if tree, whose := inTree(p); tree != "" {
			c.Errorf(field, "%q is under %s, %s; use %s or /usr/local/bin/%s", p, tree, whose, def, path.Base(def))
		}
	}
}

// systemDirs are directories glbootstrap must never own, nor put a managed file or directory
// directly into: the FHS top level and the directories of the OS's own programs and settings.
var systemDirs = map[string]bool{
	"/": true, "/bin": true, "/boot": true, "/dev": true, "/etc": true, "/home": true, "/lib": true,
	"/lib32": true, "/lib64": true, "/libx32": true, "/media": true, "/mnt": true, "/opt": true,
	"/proc": true, "/root": true, "/run": true, "/sbin": true, "/srv": true, "/sys": true, "/tmp": true,
	"/usr": true, "/var": true, "/usr/bin": true, "/usr/sbin": true, "/usr/lib": true, "/usr/lib64": true,
	"/usr/local": true, "/usr/share": true, "/usr/include": true, "/var/lib": true, "/var/log": true,
	"/var/opt": true, "/var/tmp": true, "/var/cache": true, "/etc/ssh": true, "/etc/systemd": true,
	"/usr/local/bin": true, "/usr/local/sbin": true,
}

// SystemPath reports whether p is a system directory, or a file or directory directly in one of
// the OS's program or settings directories (/etc/passwd, /usr/bin/x). Directly under /opt, /srv
// and /var/lib is fine: that is where applications live.
func SystemPath(p string) bool {
	if systemDirs[p] {
		return true
	}
	parent := path.Dir(p)
	switch parent {
	case "/opt", "/srv", "/var/lib", "/var/opt", "/var/cache", "/home", "/mnt", "/media", "/usr/local", "/tmp", "/var/tmp":
		return false
	}
	return systemDirs[parent]
}

var (
	regionRE   = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$`)
	userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
	bucketRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`)
)

// ValidRegion reports whether r looks like an AWS region (us-east-2, us-gov-west-1).
func ValidRegion(r string) bool { return regionRE.MatchString(r) }

// ValidUserName is a POSIX-ish user name of at most 32 characters.
func ValidUserName(u string) bool { return len(u) <= 32 && userNameRE.MatchString(u) }

// ValidBucket is an S3 bucket name: 3..63 lower-case letters, digits, dots and hyphens,
// starting and ending with a letter or digit.
func ValidBucket(b string) bool { return len(b) >= 3 && len(b) <= 63 && bucketRE.MatchString(b) }

// CheckPrivateURL checks a private URL that came from outside the document
// (the SSM parameter named by gitlab.private_url_parameter, which the GitLab
// host publishes) by the rules of gitlab.private_url. It returns "" when the
// URL is usable, else what is wrong; warnings are not reported.
func CheckPrivateURL(raw string) string {
	p := &parser{lines: map[string]int{}, present: map[string]bool{}, bad: map[string]bool{}}
	(&Checker{p}).HTTPSURL("private_url", raw, true)
	var msgs []string
	for _, pr := range p.problems.Errors() {
		msgs = append(msgs, pr.Message)
	}
	return strings.Join(msgs, "; ")
}

// PathList is a list of field paths with the values at them, for checks across sections.
type PathList []struct{ Field, Path string }

// Distinct refuses two managed places that are the same path: one directory cannot be 0700 task
// metadata and 0750 builds at once, and a program cannot be a directory.
func (c *Checker) Distinct(places PathList) {
	for i, a := range places {
		for _, b := range places[:i] {
			if a.Path != "" && a.Path == b.Path {
				c.Errorf(a.Field, "is the same path as %s (%s); each needs its own", b.Field, a.Path)
			}
		}
	}
}

// OneOf reports an error at field when v is not one of allowed (must be one of a, b, got "c").
func (c *Checker) OneOf(field, v string, allowed []string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.Errorf(field, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
}
