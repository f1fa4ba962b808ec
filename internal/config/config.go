// Package config is glbootstrap's configuration: the YAML schema (version 1), its defaults, and a
// validator that reports every problem at once, each with its field path and line
// (`runner.concurrent (line 12): must be > 0`).
//
// A configuration never holds a secret. Fields ending in _parameter name an SSM parameter (a
// SecureString for tokens) that the roles read at apply time; a value that looks like a GitLab token
// anywhere in the document is an error.
//
// Parse decodes and validates; Read fetches the raw document from a file, stdin, SSM or S3.
package config

import (
	"fmt"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// SchemaVersion is the only value of Config.Version this package reads.
const SchemaVersion = 1

// Defaults. The directories follow the reference setup (FACTS.md: metadata, builds and cache under
// /opt/gitlab-runner, owned by the runner's user).
const (
	DefaultReadyTimeout       = 10 * time.Minute
	DefaultRunnerUser         = "gitlab-runner"
	DefaultCheckInterval      = 3 // seconds; gitlab-runner's own default
	DefaultRequestConcurrency = 1 // gitlab-runner's own default
	DefaultBuildsDir          = "/opt/gitlab-runner/builds"
	DefaultCacheDir           = "/opt/gitlab-runner/cache"
	DefaultRunnerType         = RunnerTypeInstance
	DefaultMetadataDir        = "/opt/gitlab-runner/metadata"
	DefaultDriverPath         = "/opt/gitlab-runner/fargate"
	DefaultSSHUsername        = "root"
	DefaultSSHPort            = 22
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "text"

	// MaxRequestConcurrency is glbootstrap's own upper bound for runner.request_concurrency, not
	// GitLab's: every request is a long-poll held open against GitLab, and a front that needs more
	// than this is better split into several runners.
	MaxRequestConcurrency = 100

	// DriverDownloadBase is where GitLab publishes the Fargate custom executor driver:
	// <base>/<version>/fargate-linux-<arch>. No checksum file is published next to it, which is why
	// fargate.driver pins both a version and a SHA-256.
	DriverDownloadBase = "https://gitlab-runner-custom-fargate-downloads.s3.amazonaws.com"
)

// Runner types accepted by POST /api/v4/user/runners (GitLab REST API, "Create a runner").
const (
	RunnerTypeInstance = "instance_type"
	RunnerTypeGroup    = "group_type"
	RunnerTypeProject  = "project_type"
)

// Roles accepted by Parse.
const (
	RoleRunner = "runner" // the runner front: needs the gitlab, runner and fargate sections
	RoleGitLab = "gitlab" // the Omnibus host: needs the gitlab section
)

// Config is one configuration document, schema version 1.
type Config struct {
	// Version is the schema version; required, must be 1.
	Version int `yaml:"version"`
	// GitLab says where GitLab is. Required for every role.
	GitLab GitLab `yaml:"gitlab"`
	// Runner configures the runner front; required for role runner, nil when absent.
	Runner *Runner `yaml:"runner"`
	// Fargate configures the Fargate custom executor driver (fargate.toml); required for role
	// runner, nil when absent.
	Fargate *Fargate `yaml:"fargate"`
	// Coordinator keeps the coordinator image in ECR (runner phase coordinator-image); optional,
	// nil when absent: the phase then changes nothing.
	Coordinator *Coordinator `yaml:"coordinator"`
	// Backup schedules daily GitLab backups to S3 (role gitlab); optional, nil when absent.
	Backup *Backup `yaml:"backup"`
}

// GitLab says where GitLab is, as users see it and as the runner front reaches it.
type GitLab struct {
	// URL is GitLab's external URL (external_url in gitlab.rb): absolute, https, with a host and
	// either no path or a relative-URL prefix such as /gitlab. Required.
	URL string `yaml:"url"`
	// PrivateURL is how the front reaches GitLab over the private network, https://host[:port]
	// (optionally with the same relative-URL prefix as URL). The runner registers with it and it
	// becomes url and clone_url in config.toml. http is accepted with a warning.
	// For role runner exactly one of PrivateURL and PrivateURLParameter is set.
	PrivateURL string `yaml:"private_url"`
	// PrivateURLParameter names an SSM parameter (String or SecureString) holding PrivateURL, for
	// setups where the GitLab stack publishes its private address. Shape /path/name.
	PrivateURLParameter string `yaml:"private_url_parameter"`
	// CAFile is the absolute path of a PEM bundle that signs GitLab's certificate, for a private CA.
	// Optional; it becomes tls-ca-file in config.toml.
	CAFile string `yaml:"ca_file"`
	// ReadyTimeout is how long to wait for GET /-/readiness before giving up. A Go duration string
	// ("90s", "10m"); default 10m; must be > 0 when set.
	ReadyTimeout Duration `yaml:"ready_timeout"`

	// The fields below configure the GitLab Omnibus host (role gitlab); role runner ignores them.

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

// Runner configures gitlab-runner on the front (config.toml) and the runner as GitLab knows it.
type Runner struct {
	// Name is the [[runners]] name and the runner description in GitLab. Default "": the runner
	// role fills in fargate-<instance-id>.
	Name string `yaml:"name"`
	// User is the OS user gitlab-runner runs as and owns the runner directories; default
	// gitlab-runner.
	User string `yaml:"user"`
	// Concurrent is config.toml's global concurrent: how many jobs (Fargate tasks) run at once.
	// Required, > 0 (gitlab-runner rejects 0). Too low and one project's jobs block every other
	// project's; the reference setup uses 200.
	Concurrent int `yaml:"concurrent"`
	// CheckInterval is how often, in seconds, gitlab-runner asks GitLab for jobs; default 3, >= 1.
	CheckInterval int `yaml:"check_interval"`
	// Limit is the [[runners]] limit: how many jobs this runner runs at once; 0 (default) means
	// unlimited, so concurrent applies. Must be >= 0; above concurrent it can never be reached
	// (warning).
	Limit int `yaml:"limit"`
	// RequestConcurrency is how many job requests run at once; default 1, 1..MaxRequestConcurrency.
	// Raise it when limit > 1, or jobs queue behind one another. Above a non-zero limit it is a
	// warning.
	RequestConcurrency int `yaml:"request_concurrency"`
	// BuildsDir is the absolute, clean builds_dir; default /opt/gitlab-runner/builds.
	BuildsDir string `yaml:"builds_dir"`
	// CacheDir is the absolute, clean cache_dir; default /opt/gitlab-runner/cache.
	CacheDir string `yaml:"cache_dir"`

	// How the runner gets its runner authentication token: exactly one of the next three.

	// TokenParameter names an SSM SecureString holding a runner authentication token (glrt-…)
	// created in GitLab's UI. Tags, run-untagged and locked are then set in GitLab, not here.
	TokenParameter string `yaml:"token_parameter"`
	// Create makes glbootstrap create this instance's runner with POST /api/v4/user/runners.
	Create *Create `yaml:"create"`
	// RegistrationTokenParameter names an SSM SecureString holding a legacy registration token.
	// Deprecated by GitLab: disabled by default since GitLab 17.0 (HTTP 410 when disabled).
	RegistrationTokenParameter string `yaml:"registration_token_parameter"`

	// Server-side runner settings, sent when glbootstrap creates or registers the runner.

	// Tags is the runner's tag list; each tag non-empty and without commas.
	Tags []string `yaml:"tags"`
	// RunUntagged lets the runner pick jobs without tags. GitLab rejects a runner with no tags that
	// may not run untagged jobs. Default false.
	RunUntagged bool `yaml:"run_untagged"`
	// Locked locks the runner to its current projects (project runners). Default false.
	Locked bool `yaml:"locked"`
}

// Create says how glbootstrap creates the runner with POST /api/v4/user/runners.
type Create struct {
	// AccessTokenParameter names an SSM SecureString holding a token with the create_runner scope.
	// Required.
	AccessTokenParameter string `yaml:"access_token_parameter"`
	// RunnerType is instance_type (default), group_type (with GroupID) or project_type (with
	// ProjectID).
	RunnerType string `yaml:"runner_type"`
	// GroupID is the group's numeric id; > 0 with group_type, unset otherwise.
	GroupID int64 `yaml:"group_id"`
	// ProjectID is the project's numeric id; > 0 with project_type, unset otherwise.
	ProjectID int64 `yaml:"project_id"`
}

// Fargate configures GitLab's Fargate custom executor driver; most fields become fargate.toml keys.
type Fargate struct {
	// Driver pins the driver binary.
	Driver Driver `yaml:"driver"`
	// Cluster is the ECS cluster name or ARN ([Fargate] Cluster). Required. The driver sets no launch
	// type, so the cluster needs a FARGATE default capacity provider strategy.
	Cluster string `yaml:"cluster"`
	// Region is the AWS region ([Fargate] Region), e.g. us-east-2; default: the instance's region.
	Region string `yaml:"region"`
	// Subnet is the one subnet tasks start in ([Fargate] Subnet), subnet-xxxxxxxx or
	// subnet-xxxxxxxxxxxxxxxxx; default: the instance's subnet.
	Subnet string `yaml:"subnet"`
	// SecurityGroup is the one security group of the tasks ([Fargate] SecurityGroup), sg-xxxxxxxx or
	// sg-xxxxxxxxxxxxxxxxx. Required; it must let the front reach the tasks' SSH port.
	SecurityGroup string `yaml:"security_group"`
	// TaskDefinition is the coordinator's task definition ([Fargate] TaskDefinition): family (latest
	// active revision), family:revision, or a task-definition ARN. Required. Its container named
	// ci-coordinator must expose the SSH port.
	TaskDefinition string `yaml:"task_definition"`
	// EnablePublicIP gives tasks a public IP ([Fargate] EnablePublicIP); default false (private
	// tasks, egress through a NAT gateway).
	EnablePublicIP bool `yaml:"enable_public_ip"`
	// PlatformVersion is the Fargate platform version ([Fargate] PlatformVersion), LATEST or x.y.z;
	// optional.
	PlatformVersion string `yaml:"platform_version"`
	// MetadataDir is [TaskMetadata] Directory, absolute and clean; default
	// /opt/gitlab-runner/metadata.
	MetadataDir string `yaml:"metadata_dir"`
	// SSH is how the driver reaches the coordinator container.
	SSH SSH `yaml:"ssh"`
	// LogLevel is the driver's LogLevel: debug|info|warn|error|fatal|panic; default info.
	LogLevel string `yaml:"log_level"`
	// LogFormat is the driver's LogFormat: text|json; default text.
	LogFormat string `yaml:"log_format"`
}

// Driver pins the Fargate driver binary. GitLab publishes no checksum, so both the version and the
// SHA-256 are required.
type Driver struct {
	// Version is a release tag such as v0.5.1. Required; "latest" is refused.
	Version string `yaml:"version"`
	// SHA256 is the binary's SHA-256, 64 hex digits. Required; upper case is accepted and
	// normalized to lower case.
	SHA256 string `yaml:"sha256"`
	// URL overrides where the binary comes from: https://…, s3://bucket/key or file:///abs/path.
	// Optional; default GitLab's bucket (see DownloadURL).
	URL string `yaml:"url"`
	// Path is where the binary is installed, absolute and clean; default /opt/gitlab-runner/fargate.
	Path string `yaml:"path"`
}

// DownloadURL returns where to fetch the driver for goarch (amd64, arm64): URL when set, else
// DriverDownloadBase/<version>/fargate-linux-<goarch>.
func (d Driver) DownloadURL(goarch string) string {
	if d.URL != "" {
		return d.URL
	}
	return fmt.Sprintf("%s/%s/fargate-linux-%s", DriverDownloadBase, d.Version, goarch)
}

// SSH is the [SSH] section of fargate.toml.
type SSH struct {
	// Username is the user the driver logs in as in the coordinator container; default root.
	Username string `yaml:"username"`
	// Port is the coordinator's SSH port, 1..65535; default 22.
	Port int `yaml:"port"`
}

// Duration is a time.Duration written in YAML as a Go duration string ("90s", "10m").
type Duration time.Duration

// UnmarshalYAML accepts a scalar Go duration string. A bad value is reported as a *yaml.TypeError so
// the decoder keeps going and the validator can report the other problems too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, durationHint(describeNode(n)))}}
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
