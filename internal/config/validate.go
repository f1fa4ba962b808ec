package config

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// applyDefaults fills what the document leaves out. Numbers are defaulted only when their key is
// absent (or null), so an explicit 0 is still caught by the value rules instead of silently
// replaced; strings are defaulted when empty.
func applyDefaults(c *Config, p *parser) {
	if !p.present["gitlab.ready_timeout"] && c.GitLab.ReadyTimeout == 0 {
		c.GitLab.ReadyTimeout = Duration(DefaultReadyTimeout)
	}
	if r := c.Runner; r != nil {
		defaultString(&r.User, DefaultRunnerUser)
		if !p.present["runner.check_interval"] {
			r.CheckInterval = DefaultCheckInterval
		}
		if !p.present["runner.request_concurrency"] {
			r.RequestConcurrency = DefaultRequestConcurrency
		}
		defaultString(&r.BuildsDir, DefaultBuildsDir)
		defaultString(&r.CacheDir, DefaultCacheDir)
		if r.Create != nil {
			defaultString(&r.Create.RunnerType, DefaultRunnerType)
		}
	}
	if f := c.Fargate; f != nil {
		defaultString(&f.Driver.Path, DefaultDriverPath)
		defaultString(&f.MetadataDir, DefaultMetadataDir)
		defaultString(&f.SSH.Username, DefaultSSHUsername)
		if !p.present["fargate.ssh.port"] {
			f.SSH.Port = DefaultSSHPort
		}
		defaultString(&f.LogLevel, DefaultLogLevel)
		defaultString(&f.LogFormat, DefaultLogFormat)
		f.Driver.SHA256 = strings.ToLower(f.Driver.SHA256)
	}
}

func defaultString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// checker runs the value rules; it skips fields that already have a structural problem.
type checker struct{ p *parser }

func (c checker) errf(path, format string, args ...any) {
	if !c.p.isBad(path) {
		c.p.errf(path, c.p.line(path), format, args...)
	}
}

func (c checker) warnf(path, format string, args ...any) {
	if !c.p.isBad(path) {
		c.p.warnf(path, c.p.line(path), format, args...)
	}
}

func validate(cfg *Config, role string, p *parser) {
	c := checker{p}
	switch {
	case !p.present["version"]:
		c.errf("version", "is required; write version: %d", SchemaVersion)
	case cfg.Version != SchemaVersion:
		c.errf("version", "unsupported schema version %d; this glbootstrap reads version %d", cfg.Version, SchemaVersion)
	}

	if role == RoleGitLab {
		gitlabHostDefaults(&cfg.GitLab, p)
	}
	c.gitlab(&cfg.GitLab, role)

	roleFit(c, cfg, role)
	defer c.distinctPaths(cfg.Runner, cfg.Fargate)
	if role == RoleRunner {
		if cfg.Runner == nil {
			c.errf("runner", "the runner section is required for role runner (see examples/runner.yaml)")
		}
		if cfg.Fargate == nil {
			c.errf("fargate", "the fargate section is required for role runner (see examples/runner.yaml)")
		}
	}
	if cfg.Runner != nil {
		c.runner(cfg.Runner)
	}
	if cfg.Fargate != nil {
		c.fargate(cfg.Fargate)
	}
	if cfg.Coordinator != nil {
		coordinatorDefaults(cfg.Coordinator)
		c.coordinator(cfg.Coordinator)
	}
	if cfg.Backup != nil {
		if role == RoleRunner {
			c.warnf("backup", "the backup section is for role gitlab; the runner role ignores it")
		}
		defaultsBackup(cfg.Backup, p)
		c.backup(cfg.Backup)
	}
}

func (c checker) gitlab(g *GitLab, role string) {
	if g.URL == "" {
		c.errf("gitlab.url", "is required: GitLab's external URL, e.g. https://gitlab.example.com")
	} else {
		c.httpsURL("gitlab.url", g.URL, false)
	}

	switch {
	case g.PrivateURL != "" && g.PrivateURLParameter != "":
		c.errf("gitlab", "private_url and private_url_parameter are both set; set exactly one")
	case role == RoleRunner && g.PrivateURL == "" && g.PrivateURLParameter == "":
		c.errf("gitlab", "one of private_url or private_url_parameter is required for role runner: the address the runner front reaches GitLab at over the private network, e.g. https://10.0.1.10")
	}
	if g.PrivateURL != "" {
		c.httpsURL("gitlab.private_url", g.PrivateURL, true)
	}
	if g.PrivateURLParameter != "" {
		c.parameterName("gitlab.private_url_parameter", g.PrivateURLParameter)
	}
	if g.CAFile != "" && !path.IsAbs(g.CAFile) {
		c.errf("gitlab.ca_file", "must be an absolute path, got %q", g.CAFile)
	}
	if g.ReadyTimeout <= 0 {
		c.errf("gitlab.ready_timeout", "must be a positive duration such as \"10m\", got %q", time.Duration(g.ReadyTimeout).String())
	}
	c.gitlabHost(g, role)
}

var relativeURLPath = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+/?$`)

// httpsURL checks a GitLab URL: https, a host, an optional port, and no path other than a relative
// URL prefix (/gitlab). With httpWarns, http is a warning (the private address, where the runner
// token travels); otherwise it is an error.
func (c checker) httpsURL(field, raw string, httpWarns bool) {
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
		c.errf(field, "%q is not a URL%s; write the scheme and the host, e.g. %s", raw, why, example)
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !httpWarns {
			c.errf(field, "must use https, got %q", raw)
			return
		}
		c.warnf(field, "uses http: the runner authentication token travels in clear between the front and GitLab; use https (with gitlab.ca_file for a private CA)")
	default:
		c.errf(field, "must be an https URL, got scheme %q in %q", u.Scheme, raw)
		return
	}
	if u.User != nil {
		c.errf(field, "must not contain a user name or password; credentials never go in the configuration")
	}
	if u.Hostname() == "" {
		c.errf(field, "has no host: %q; write it as %s", raw, example)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			c.errf(field, "port %q is not in 1..65535", port)
		}
	}
	if u.Path != "" && u.Path != "/" && !relativeURLPath.MatchString(u.Path) {
		c.errf(field, "path %q is not a relative URL prefix such as /gitlab", u.Path)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "?") || strings.HasSuffix(raw, "#") {
		c.errf(field, "must not have a query or fragment, got %q", raw)
	}
}

var parameterNameRE = regexp.MustCompile(`^/[a-zA-Z0-9_.\-/]+$`)

// parameterName checks an SSM parameter name (SSM PutParameter: letters, digits, _ . - and /,
// at most 1011 characters for a fully qualified name, at most 15 levels, no aws/ssm prefix).
func (c checker) parameterName(field, name string) {
	switch {
	case !parameterNameRE.MatchString(name):
		// The value is not echoed: a field meant to name a secret often holds the secret itself.
		c.errf(field, "is not an SSM parameter name (the value is not shown: it may be a secret); write the name of the parameter that holds the value, a full path such as /glbootstrap/runner-token (letters, digits, _ . - and /)")
	case strings.HasSuffix(name, "/"):
		c.errf(field, "%q must not end with /", name)
	case strings.Contains(name, "//"):
		c.errf(field, "%q must not contain //", name)
	case len(name) > 1011:
		c.errf(field, "is %d characters long; SSM allows at most 1011", len(name))
	case strings.Count(name, "/") > 15:
		c.errf(field, "has %d levels; SSM allows at most 15", strings.Count(name, "/"))
	default:
		first := strings.ToLower(strings.SplitN(name[1:], "/", 2)[0])
		if strings.HasPrefix(first, "aws") || strings.HasPrefix(first, "ssm") {
			c.errf(field, "%q starts with %q, which SSM reserves", name, first[:3])
		}
	}
}

func (c checker) absDir(field, dir string) {
	switch {
	case !path.IsAbs(dir):
		c.errf(field, "must be an absolute path, got %q", dir)
	case path.Clean(dir) != dir:
		c.errf(field, "must be a clean path; write %q instead of %q", path.Clean(dir), dir)
	case systemPath(dir):
		// glbootstrap chowns and chmods these directories and replaces the driver file: pointed
		// at /, /etc or /usr/bin by mistake it would break the host.
		c.errf(field, "%q is a system directory or lies directly in one; use a directory of its own such as /opt/gitlab-runner/...", dir)
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

// systemPath reports whether p is a system directory, or a file or directory directly in one of
// the OS's program or settings directories (/etc/passwd, /usr/bin/x). Directly under /opt, /srv
// and /var/lib is fine: that is where applications live.
func systemPath(p string) bool {
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

var userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)

func (c checker) runner(r *Runner) {
	if strings.IndexFunc(r.Name, func(ch rune) bool { return unicode.IsControl(ch) || unicode.Is(unicode.Cf, ch) }) >= 0 {
		c.errf("runner.name", "contains control or invisible characters (newline, escape, bidi override, zero-width); use plain text")
	} else if len(r.Name) > 255 {
		c.errf("runner.name", "is %d bytes long; keep it under 255 (it is the runner's description in GitLab)", len(r.Name))
	}
	if !validUserName(r.User) {
		c.errf("runner.user", "%q is not a valid user name (lower-case letters, digits, _ and -, at most 32)", r.User)
	}

	switch {
	case !c.p.present["runner.concurrent"]:
		c.errf("runner.concurrent", "is required: how many jobs (Fargate tasks) run at once, > 0; the reference setup uses 200")
	case r.Concurrent <= 0:
		c.errf("runner.concurrent", "must be > 0 (gitlab-runner rejects %d), got %d", r.Concurrent, r.Concurrent)
	}
	if r.CheckInterval < 1 {
		c.errf("runner.check_interval", "must be >= 1 (seconds), got %d", r.CheckInterval)
	}
	switch {
	case r.Limit < 0:
		c.errf("runner.limit", "must be >= 0 (0 = unlimited), got %d", r.Limit)
	case r.Concurrent > 0 && r.Limit > r.Concurrent:
		c.warnf("runner.limit", "%d is more than runner.concurrent (%d) and can never be reached", r.Limit, r.Concurrent)
	}
	switch {
	case r.RequestConcurrency < 1 || r.RequestConcurrency > MaxRequestConcurrency:
		c.errf("runner.request_concurrency", "must be in 1..%d, got %d", MaxRequestConcurrency, r.RequestConcurrency)
	case r.Limit > 0 && r.RequestConcurrency > r.Limit:
		c.warnf("runner.request_concurrency", "%d is more than runner.limit (%d): requests beyond the limit cannot get a job", r.RequestConcurrency, r.Limit)
	}
	c.absDir("runner.builds_dir", r.BuildsDir)
	c.absDir("runner.cache_dir", r.CacheDir)

	var set []string
	if r.TokenParameter != "" {
		set = append(set, "token_parameter")
		c.parameterName("runner.token_parameter", r.TokenParameter)
	}
	if r.Create != nil {
		set = append(set, "create")
		c.create(r.Create)
	}
	if r.RegistrationTokenParameter != "" {
		set = append(set, "registration_token_parameter")
		c.parameterName("runner.registration_token_parameter", r.RegistrationTokenParameter)
		c.warnf("runner.registration_token_parameter", "registration tokens are deprecated and disabled by default since GitLab 17.0 (HTTP 410 when disabled); prefer runner.create or runner.token_parameter")
	}
	switch len(set) {
	case 0:
		c.errf("runner", "set exactly one of token_parameter (an existing glrt- runner authentication token), create (glbootstrap creates the runner) or registration_token_parameter (legacy); none is set")
	case 1:
	default:
		c.errf("runner", "set exactly one of token_parameter, create or registration_token_parameter; %s are set", strings.Join(set, " and "))
	}

	for i, tag := range r.Tags {
		tp := fmt.Sprintf("runner.tags[%d]", i)
		switch {
		case strings.TrimSpace(tag) == "":
			c.errf(tp, "is empty")
		case strings.Contains(tag, ","):
			c.errf(tp, "%q contains a comma; write each tag as its own list item", tag)
		case slices.Index(r.Tags, tag) < i:
			c.warnf(tp, "%q is listed twice", tag)
		}
	}
	if r.TokenParameter != "" && len(set) == 1 {
		const ignored = "is ignored with a glrt- runner authentication token (runner.token_parameter): tags, run-untagged and locked are set on the runner in GitLab (Admin area > CI/CD > Runners > Edit)"
		if len(r.Tags) > 0 {
			c.warnf("runner.tags", ignored)
		}
		if r.RunUntagged {
			c.warnf("runner.run_untagged", ignored)
		}
		if r.Locked {
			c.warnf("runner.locked", ignored)
		}
	}
	if r.TokenParameter == "" && len(set) == 1 && len(r.Tags) == 0 && !r.RunUntagged {
		// Ci::Runner validation: "Tags list can not be empty when runner is not allowed to pick
		// untagged jobs".
		c.errf("runner.tags", "is empty and run_untagged is false: GitLab refuses a runner that can pick no job; add tags or set run_untagged: true")
	}
}

func (c checker) create(cr *Create) {
	if cr.AccessTokenParameter == "" {
		c.errf("runner.create.access_token_parameter", "is required: the SSM SecureString parameter holding a token with the create_runner scope")
	} else {
		c.parameterName("runner.create.access_token_parameter", cr.AccessTokenParameter)
	}
	if cr.GroupID < 0 {
		c.errf("runner.create.group_id", "must be > 0, got %d", cr.GroupID)
	}
	if cr.ProjectID < 0 {
		c.errf("runner.create.project_id", "must be > 0, got %d", cr.ProjectID)
	}
	switch cr.RunnerType {
	case RunnerTypeInstance:
		if cr.GroupID != 0 {
			c.errf("runner.create.group_id", "is only for runner_type group_type; an instance_type runner takes no group_id")
		}
		if cr.ProjectID != 0 {
			c.errf("runner.create.project_id", "is only for runner_type project_type; an instance_type runner takes no project_id")
		}
	case RunnerTypeGroup:
		if cr.GroupID == 0 {
			c.errf("runner.create.group_id", "is required (> 0) with runner_type group_type")
		}
		if cr.ProjectID != 0 {
			c.errf("runner.create.project_id", "is only for runner_type project_type, not group_type")
		}
	case RunnerTypeProject:
		if cr.ProjectID == 0 {
			c.errf("runner.create.project_id", "is required (> 0) with runner_type project_type")
		}
		if cr.GroupID != 0 {
			c.errf("runner.create.group_id", "is only for runner_type group_type, not project_type")
		}
	default:
		c.errf("runner.create.runner_type", "must be one of instance_type, group_type or project_type, got %q", cr.RunnerType)
	}
}

var (
	clusterRE         = regexp.MustCompile(`^([A-Za-z0-9_-]+|arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/[A-Za-z0-9_-]+)$`)
	regionRE          = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$`)
	subnetRE          = regexp.MustCompile(`^subnet-([0-9a-f]{8}|[0-9a-f]{17})$`)
	securityGroupRE   = regexp.MustCompile(`^sg-([0-9a-f]{8}|[0-9a-f]{17})$`)
	taskFamilyRE      = regexp.MustCompile(`^[A-Za-z0-9_-]+(:[1-9][0-9]*)?$`)
	taskARNRE         = regexp.MustCompile(`^arn:aws[a-z-]*:ecs:[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+:[0-9]{12}:task-definition/[A-Za-z0-9_-]+:[1-9][0-9]*$`)
	platformVersionRE = regexp.MustCompile(`^(LATEST|[0-9]+\.[0-9]+\.[0-9]+)$`)
	driverVersionRE   = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)
	sha256RE          = regexp.MustCompile(`^[0-9a-f]{64}$`)
	logLevels         = []string{"debug", "info", "warn", "error", "fatal", "panic"}
	logFormats        = []string{"text", "json"}
)

func (c checker) fargate(f *Fargate) {
	c.driver(&f.Driver)

	switch {
	case f.Cluster == "":
		c.errf("fargate.cluster", "is required: the ECS cluster's name or ARN")
	case !clusterRE.MatchString(f.Cluster) || len(afterLast(f.Cluster, "/")) > 255:
		c.errf("fargate.cluster", "%q is not an ECS cluster name (letters, digits, _ and -, up to 255) or cluster ARN", f.Cluster)
	}
	if f.Region != "" && !regionRE.MatchString(f.Region) {
		c.errf("fargate.region", "%q is not an AWS region such as us-east-2", f.Region)
	}
	if f.Subnet != "" && !subnetRE.MatchString(f.Subnet) {
		c.errf("fargate.subnet", "%q is not a subnet id (subnet- and 8 or 17 lower-case hex digits)", f.Subnet)
	}
	switch {
	case f.SecurityGroup == "":
		c.errf("fargate.security_group", "is required: the tasks' security group, sg-xxxxxxxxxxxxxxxxx")
	case !securityGroupRE.MatchString(f.SecurityGroup):
		c.errf("fargate.security_group", "%q is not a security group id (sg- and 8 or 17 lower-case hex digits)", f.SecurityGroup)
	}
	switch {
	case f.TaskDefinition == "":
		c.errf("fargate.task_definition", "is required: the coordinator's task definition as family, family:revision or ARN")
	case strings.HasPrefix(f.TaskDefinition, "arn:"):
		if !taskARNRE.MatchString(f.TaskDefinition) || len(familyOf(f.TaskDefinition)) > 255 {
			c.errf("fargate.task_definition", "%q is not a task-definition ARN (arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>)", f.TaskDefinition)
		}
	case !taskFamilyRE.MatchString(f.TaskDefinition) || len(familyOf(f.TaskDefinition)) > 255:
		c.errf("fargate.task_definition", "%q is not a task definition family (letters, digits, _ and -, up to 255) with an optional :revision", f.TaskDefinition)
	}
	if f.PlatformVersion != "" && !platformVersionRE.MatchString(f.PlatformVersion) {
		c.errf("fargate.platform_version", "%q is not a Fargate platform version such as LATEST or 1.4.0", f.PlatformVersion)
	}
	c.absDir("fargate.metadata_dir", f.MetadataDir)
	if !validUserName(f.SSH.Username) {
		c.errf("fargate.ssh.username", "%q is not a valid user name (lower-case letters, digits, _ and -, at most 32)", f.SSH.Username)
	}
	if f.SSH.Port < 1 || f.SSH.Port > 65535 {
		c.errf("fargate.ssh.port", "must be in 1..65535, got %d", f.SSH.Port)
	}
	if !slices.Contains(logLevels, f.LogLevel) {
		c.errf("fargate.log_level", "must be one of %s, got %q", strings.Join(logLevels, ", "), f.LogLevel)
	}
	if !slices.Contains(logFormats, f.LogFormat) {
		c.errf("fargate.log_format", "must be one of %s, got %q", strings.Join(logFormats, ", "), f.LogFormat)
	}
}

func (c checker) driver(d *Driver) {
	switch {
	case d.Version == "":
		c.errf("fargate.driver.version", "is required: a release tag such as v0.5.1")
	case d.Version == "latest":
		c.errf("fargate.driver.version", "must be a pinned release tag such as v0.5.1, not latest: GitLab publishes no checksum, so the binary is verified against fargate.driver.sha256")
	case !driverVersionRE.MatchString(d.Version):
		c.errf("fargate.driver.version", "%q is not a release tag such as v0.5.1", d.Version)
	}
	if d.SHA256 == strings.Repeat("0", 64) {
		c.warnf("fargate.driver.sha256", "is the example's placeholder (64 zeros): put the SHA-256 of the driver release here, or the fargate-driver phase fails")
	}
	switch {
	case d.SHA256 == "":
		c.errf("fargate.driver.sha256", "is required: the SHA-256 of the driver binary (sha256sum fargate-linux-amd64), since GitLab publishes none")
	case len(d.SHA256) != 64:
		c.errf("fargate.driver.sha256", "must be 64 hex digits, got %d characters", len(d.SHA256))
	case !sha256RE.MatchString(d.SHA256):
		c.errf("fargate.driver.sha256", "must be 64 hex digits, got characters other than 0-9 and a-f")
	}
	if d.URL != "" {
		c.driverURL(d.URL)
	}
	c.programPath("fargate.driver.path", d.Path)
}

// programPath checks where a managed program goes: absolute, clean, not a system directory, and
// not in the OS's own program or settings directories (/usr/local/bin is fine).
func (c checker) programPath(field, p string) {
	parent := path.Dir(p)
	switch {
	case !path.IsAbs(p):
		c.errf(field, "must be an absolute path, got %q", p)
	case path.Clean(p) != p:
		c.errf(field, "must be a clean path; write %q instead of %q", path.Clean(p), p)
	case systemDirs[p]:
		c.errf(field, "%q is a system directory, not a file name; the default is %s", p, DefaultDriverPath)
	case parent == "/usr/local/bin" || parent == "/usr/local/sbin":
	case systemPath(p) || strings.HasPrefix(p, "/etc/") || strings.HasPrefix(p, "/proc/") || strings.HasPrefix(p, "/sys/") || strings.HasPrefix(p, "/dev/"):
		c.errf(field, "%q is in a directory of the OS's own programs or settings; use %s or /usr/local/bin/fargate", p, DefaultDriverPath)
	}
}

// distinctPaths refuses two managed places that are the same: one directory cannot be 0700
// task metadata and 0750 builds at once, and the driver cannot be a directory.
func (c checker) distinctPaths(r *Runner, f *Fargate) {
	if r == nil || f == nil {
		return
	}
	places := []struct{ field, path string }{
		{"fargate.metadata_dir", f.MetadataDir}, {"runner.builds_dir", r.BuildsDir},
		{"runner.cache_dir", r.CacheDir}, {"fargate.driver.path", f.Driver.Path},
	}
	for i, a := range places {
		for _, b := range places[:i] {
			if a.path != "" && a.path == b.path {
				c.errf(a.field, "is the same path as %s (%s); each needs its own", b.field, a.path)
			}
		}
	}
}

func (c checker) driverURL(raw string) {
	const field = "fargate.driver.url"
	u, err := url.Parse(raw)
	if err != nil || !strings.Contains(raw, "://") {
		c.errf(field, "%q is not a URL; use https://host/path, s3://bucket/key or file:///absolute/path", raw)
		return
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			c.errf(field, "has no host: %q", raw)
		}
		if u.User != nil {
			c.errf(field, "must not contain a user name or password; credentials never go in the configuration")
		}
	case "s3":
		if u.Host == "" || strings.Trim(u.Path, "/") == "" {
			c.errf(field, "%q needs a bucket and a key: s3://bucket/key", raw)
		}
	case "file":
		if u.Host != "" || !path.IsAbs(u.Path) {
			c.errf(field, "%q needs an absolute path: file:///absolute/path", raw)
		}
	case "http":
		c.errf(field, "must not use http: the driver is an executable and would be downloaded in clear; use https, s3:// or file://")
	default:
		c.errf(field, "scheme %q is not supported; use https://, s3://bucket/key or file:///absolute/path", u.Scheme)
	}
}

// CheckPrivateURL checks a private URL that came from outside the document
// (the SSM parameter named by gitlab.private_url_parameter, which the GitLab
// host publishes) by the rules of gitlab.private_url. It returns "" when the
// URL is usable, else what is wrong; warnings are not reported.
func CheckPrivateURL(raw string) string {
	p := &parser{lines: map[string]int{}, present: map[string]bool{}, bad: map[string]bool{}}
	checker{p}.httpsURL("private_url", raw, true)
	var msgs []string
	for _, pr := range p.problems.Errors() {
		msgs = append(msgs, pr.Message)
	}
	return strings.Join(msgs, "; ")
}

// Counted repetitions such as {1,255} compile into one regexp state per
// repetition (hundreds of KiB at program start); lengths are checked in Go
// instead.

// afterLast returns s after the last sep (all of s without one).
func afterLast(s, sep string) string { return s[strings.LastIndex(s, sep)+1:] }

// familyOf returns a task definition's family: the ARN's resource name or
// the family:revision form without the revision.
func familyOf(td string) string {
	family, _, _ := strings.Cut(afterLast(td, "/"), ":")
	return family
}

// validUserName is a POSIX-ish user name of at most 32 characters.
func validUserName(u string) bool { return len(u) <= 32 && userNameRE.MatchString(u) }

// validBucket is an S3 bucket name: 3..63 lower-case letters, digits, dots and hyphens,
// starting and ending with a letter or digit.
func validBucket(b string) bool { return len(b) >= 3 && len(b) <= 63 && bucketRE.MatchString(b) }

// roleFit catches a configuration given to the wrong role: a runner front's
// configuration applied with --role gitlab would lock down sshd and write a
// gitlab.rb, so the sections of the other role are errors there; keys the
// role does not read are warnings.
func roleFit(c checker, cfg *Config, role string) {
	switch role {
	case RoleGitLab:
		for _, sec := range []string{"runner", "fargate", "coordinator"} {
			if c.p.present[sec] {
				c.errf(sec, "the %s section belongs to role runner: is this the runner front's configuration? Give the GitLab host's configuration to --role gitlab", sec)
			}
		}
		for _, k := range []string{"gitlab.private_url_parameter", "gitlab.ca_file"} {
			if c.p.present[k] {
				c.warnf(k, "is read by role runner only; role gitlab ignores it")
			}
		}
	case RoleRunner:
		for _, k := range []string{"gitlab.edition", "gitlab.version", "gitlab.ssh_port", "gitlab.nlb", "gitlab.initial_root_password_parameter", "gitlab.publish_private_url_parameter", "gitlab.settings"} {
			if c.p.present[k] {
				c.warnf(k, "is read by role gitlab (the Omnibus host) only; role runner ignores it: is this the GitLab host's configuration?")
			}
		}
	}
}
