package runner

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/glbootstrap/glbootstrap/internal/config"
)

// Defaults. The directories follow the reference setup (metadata, builds and cache under
// /opt/gitlab-runner, owned by the runner's user; GitLab's "Autoscaling GitLab CI on AWS Fargate"
// guide, https://docs.gitlab.com/runner/configuration/runner_autoscale_aws_fargate/).
const (
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

// runnerVersionRE is a gitlab-runner release (17.9.3) or package version (17.9.3-1).
var runnerVersionRE = regexp.MustCompile(`^\d+\.\d+\.\d+(-\d+)?$`)

// Config is the runner front's configuration document (schema version 1): the gitlab section's
// keys the front reads, and the runner, fargate and coordinator sections, which only this role
// reads.
type Config struct {
	config.Base `yaml:",inline"`
	// GitLab says where GitLab is and how the front reaches it. Required.
	GitLab GitLabSection `yaml:"gitlab"`
	// Runner configures gitlab-runner and the runner as GitLab knows it. Required.
	Runner *Runner `yaml:"runner"`
	// Fargate configures the Fargate custom executor driver (fargate.toml). Required.
	Fargate *Fargate `yaml:"fargate"`
	// Coordinator keeps the coordinator image in ECR (phase coordinator-image); optional, nil
	// when absent: the phase then changes nothing.
	Coordinator *Coordinator `yaml:"coordinator"`
}

// GitLabSection is the gitlab section as the runner front reads it: the keys every role reads,
// and how the front reaches GitLab's private address.
type GitLabSection struct {
	config.GitLab `yaml:",inline"`
	// PrivateURLParameter names an SSM parameter (String or SecureString) holding the private URL,
	// for setups where the GitLab host publishes its private address. Shape /path/name. Exactly
	// one of private_url and private_url_parameter is set.
	PrivateURLParameter string `yaml:"private_url_parameter"`
	// CAFile is the absolute path of a PEM bundle that signs GitLab's certificate, for a private CA.
	// Optional; it becomes tls-ca-file in config.toml.
	CAFile string `yaml:"ca_file"`
}

// Runner configures gitlab-runner on the front (config.toml) and the runner as GitLab knows it.
type Runner struct {
	// Name is the [[runners]] name and the runner description in GitLab. Default "": the runner
	// role fills in fargate-<instance-id>.
	Name string `yaml:"name"`
	// User is the OS user gitlab-runner runs as and owns the runner directories; default
	// gitlab-runner.
	User string `yaml:"user"`
	// Version pins the gitlab-runner package, e.g. 17.9.3 (package 17.9.3-1): the packages phase
	// installs it from GitLab's repository (or packages.mirror) and holds it. Empty: the image
	// must already have gitlab-runner (the service phase checks), and nothing is installed.
	Version string `yaml:"version"`
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

	// Cache is the jobs' distributed cache in S3; optional, nil when absent (jobs then keep
	// their cache: only in the task, which is gone after the job, so every job starts cold).
	Cache *Cache `yaml:"cache"`
}

// Cache is the runner's distributed cache in an S3 bucket: config.toml's [runners.cache] with
// Type "s3" and [runners.cache.s3] AuthenticationType "iam" (gitlab-runner 17.9.3,
// common/config.go CacheConfig and CacheS3Config). The runner manager on the front presigns a
// GET and a PUT URL per job and cache key with the front's instance profile (its S3 client,
// cache/s3v2, takes the AWS SDK's default credentials: IMDS on EC2), and the job's task fetches
// and uploads the archive with those URLs, so the task needs no AWS credentials but must reach
// S3 (NAT gateway or S3 gateway endpoint). The front's role needs s3:GetObject and s3:PutObject
// on arn:aws:s3:::BUCKET/PATH/*. Objects are PATH/runner/<runner token prefix>/project/<id>/<key>,
// or PATH/project/<id>/<key> when Shared.
type Cache struct {
	// Bucket is the S3 bucket name (BucketName). Required.
	Bucket string `yaml:"bucket"`
	// Region is the bucket's region (BucketLocation), e.g. us-east-2; default the tasks' region
	// (fargate.region, else the instance's). The URLs are signed for this region: a wrong one
	// makes every cache download and upload fail.
	Region string `yaml:"region"`
	// Path is the key prefix of the cache objects (Path), e.g. gitlab-runner/cache: relative,
	// "/"-separated, no "." or ".." segment. Default none (the bucket's top).
	Path string `yaml:"path"`
	// Shared lets every runner use the same objects (Shared): without it each runner (each front,
	// whose runner glbootstrap creates per instance) has its own, and a replaced front starts
	// with an empty cache. Default false, as gitlab-runner's.
	Shared bool `yaml:"shared"`
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

// DefaultCoordinatorTimeout bounds one coordinator image build (upload, queue, build, push).
const DefaultCoordinatorTimeout = 60 * time.Minute

// Coordinator says where the coordinator image (the one every Fargate job runs in) is kept and
// how it is built: `glbootstrap image push` and the runner phase coordinator-image build
// templates/coordinator with CodeBuild and push it as a context-hash tag and latest.
type Coordinator struct {
	// Repository is the ECR repository URI, ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME, without a
	// tag. Required. The task definition's ci-coordinator container runs REPOSITORY:latest.
	Repository string `yaml:"repository"`
	// CodeBuildProject is the CodeBuild project that builds it (privileged mode, a role that may
	// push to Repository and read Bucket). Required.
	CodeBuildProject string `yaml:"codebuild_project"`
	// Bucket is the S3 bucket the build context is uploaded to. Required.
	Bucket string `yaml:"bucket"`
	// KeyPrefix is the key prefix of uploaded contexts; default glbootstrap/codebuild.
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds one build; default 60m.
	Timeout config.Duration `yaml:"timeout"`
}

// Check fills the defaults and checks the values of the runner front's document.
func (cfg *Config) Check(c *config.Checker) {
	g := &cfg.GitLab
	config.CheckGitLab(c, &g.GitLab)
	switch {
	case g.PrivateURL != "" && g.PrivateURLParameter != "":
		c.Errorf("gitlab", "private_url and private_url_parameter are both set; set exactly one")
	case g.PrivateURL == "" && g.PrivateURLParameter == "":
		c.Errorf("gitlab", "one of private_url or private_url_parameter is required for role runner: the address the runner front reaches GitLab at over the private network, e.g. https://10.0.1.10")
	}
	if g.PrivateURLParameter != "" {
		c.ParameterName("gitlab.private_url_parameter", g.PrivateURLParameter)
	}
	if g.CAFile != "" && !path.IsAbs(g.CAFile) {
		c.Errorf("gitlab.ca_file", "must be an absolute path, got %q", g.CAFile)
	}

	if cfg.Runner == nil {
		c.Errorf("runner", "the runner section is required for role runner (see examples/runner.yaml)")
	} else {
		runnerDefaults(c, cfg.Runner)
		validateRunner(c, cfg.Runner)
	}
	if cfg.Fargate == nil {
		c.Errorf("fargate", "the fargate section is required for role runner (see examples/runner.yaml)")
	} else {
		fargateDefaults(c, cfg.Fargate)
		validateFargate(c, cfg.Fargate)
	}
	if cfg.Coordinator != nil {
		coordinatorDefaults(cfg.Coordinator)
		validateCoordinator(c, cfg.Coordinator)
	}
	if cfg.Runner != nil && cfg.Fargate != nil {
		// The runner's user owns these directories: one that holds the driver (or a directory
		// above it) would let that user replace the program every job runs.
		drv := cfg.Fargate.Driver.Path
		for _, d := range []struct{ field, dir, def string }{
			{"runner.builds_dir", cfg.Runner.BuildsDir, DefaultBuildsDir},
			{"runner.cache_dir", cfg.Runner.CacheDir, DefaultCacheDir},
			{"fargate.metadata_dir", cfg.Fargate.MetadataDir, DefaultMetadataDir},
		} {
			switch {
			case d.dir == "" || drv == "":
			case strings.HasPrefix(drv, strings.TrimSuffix(d.dir, "/")+"/"):
				c.Errorf(d.field, "%q holds the Fargate driver (fargate.driver.path %s): the runner's user would own it and could replace the driver; use a directory of its own such as %s", d.dir, drv, d.def)
			case strings.HasPrefix(d.dir, strings.TrimSuffix(drv, "/")+"/"):
				// The driver is a file: the directory would turn its path into a directory (no
				// driver can be installed) or fail on the installed driver.
				c.Errorf(d.field, "%q is inside fargate.driver.path %s, which is the driver's own file, not a directory; use a directory of its own such as %s", d.dir, drv, d.def)
			}
		}
		c.Distinct(config.PathList{
			{Field: "fargate.metadata_dir", Path: cfg.Fargate.MetadataDir}, {Field: "runner.builds_dir", Path: cfg.Runner.BuildsDir},
			{Field: "runner.cache_dir", Path: cfg.Runner.CacheDir}, {Field: "fargate.driver.path", Path: cfg.Fargate.Driver.Path},
		})
	}
}

// runnerDefaults fills what the runner section leaves out. Numbers are defaulted only when their
// key is absent (or null), so an explicit 0 is still caught by the value rules instead of silently
// replaced; strings are defaulted when empty.
func runnerDefaults(c *config.Checker, r *Runner) {
	config.DefaultString(&r.User, DefaultRunnerUser)
	if r.Version != "" && !runnerVersionRE.MatchString(r.Version) {
		c.Errorf("runner.version", "%q is not a gitlab-runner release: pin an exact one such as 17.9.3 (or its package version 17.9.3-1; no leading v, not \"latest\" or \"17.9\")", r.Version)
	}
	if !c.Present("runner.check_interval") {
		r.CheckInterval = DefaultCheckInterval
	}
	if !c.Present("runner.request_concurrency") {
		r.RequestConcurrency = DefaultRequestConcurrency
	}
	config.DefaultString(&r.BuildsDir, DefaultBuildsDir)
	config.DefaultString(&r.CacheDir, DefaultCacheDir)
	if r.Create != nil {
		config.DefaultString(&r.Create.RunnerType, DefaultRunnerType)
	}
}

func fargateDefaults(c *config.Checker, f *Fargate) {
	config.DefaultString(&f.Driver.Path, DefaultDriverPath)
	config.DefaultString(&f.MetadataDir, DefaultMetadataDir)
	config.DefaultString(&f.SSH.Username, DefaultSSHUsername)
	if !c.Present("fargate.ssh.port") {
		f.SSH.Port = DefaultSSHPort
	}
	config.DefaultString(&f.LogLevel, DefaultLogLevel)
	config.DefaultString(&f.LogFormat, DefaultLogFormat)
	f.Driver.SHA256 = strings.ToLower(f.Driver.SHA256)
}

func validateRunner(c *config.Checker, r *Runner) {
	if strings.IndexFunc(r.Name, func(ch rune) bool { return unicode.IsControl(ch) || unicode.Is(unicode.Cf, ch) }) >= 0 {
		c.Errorf("runner.name", "contains control or invisible characters (newline, escape, bidi override, zero-width); use plain text")
	} else if len(r.Name) > 255 {
		c.Errorf("runner.name", "is %d bytes long; keep it under 255 (it is the runner's description in GitLab)", len(r.Name))
	}
	if !config.ValidUserName(r.User) {
		c.Errorf("runner.user", "%q is not a valid user name (lower-case letters, digits, _ and -, at most 32)", r.User)
	}

	switch {
	case !c.Present("runner.concurrent"):
		c.Errorf("runner.concurrent", "is required: how many jobs (Fargate tasks) run at once, > 0; the reference setup uses 200")
	case r.Concurrent <= 0:
		c.Errorf("runner.concurrent", "must be > 0 (gitlab-runner rejects %d), got %d", r.Concurrent, r.Concurrent)
	}
	if r.CheckInterval < 1 {
		c.Errorf("runner.check_interval", "must be >= 1 (seconds), got %d", r.CheckInterval)
	}
	switch {
	case r.Limit < 0:
		c.Errorf("runner.limit", "must be >= 0 (0 = unlimited), got %d", r.Limit)
	case r.Concurrent > 0 && r.Limit > r.Concurrent:
		c.Warnf("runner.limit", "%d is more than runner.concurrent (%d) and can never be reached", r.Limit, r.Concurrent)
	}
	switch {
	case r.RequestConcurrency < 1 || r.RequestConcurrency > MaxRequestConcurrency:
		c.Errorf("runner.request_concurrency", "must be in 1..%d, got %d", MaxRequestConcurrency, r.RequestConcurrency)
	case r.Limit > 0 && r.RequestConcurrency > r.Limit:
		c.Warnf("runner.request_concurrency", "%d is more than runner.limit (%d): requests beyond the limit cannot get a job", r.RequestConcurrency, r.Limit)
	}
	c.ManagedDir("runner.builds_dir", r.BuildsDir)
	c.ManagedDir("runner.cache_dir", r.CacheDir)
	if r.Cache != nil {
		validateCache(c, r.Cache)
	}

	var set []string
	if r.TokenParameter != "" {
		set = append(set, "token_parameter")
		c.ParameterName("runner.token_parameter", r.TokenParameter)
	}
	if r.Create != nil {
		set = append(set, "create")
		validateCreate(c, r.Create)
	}
	if r.RegistrationTokenParameter != "" {
		set = append(set, "registration_token_parameter")
		c.ParameterName("runner.registration_token_parameter", r.RegistrationTokenParameter)
		c.Warnf("runner.registration_token_parameter", "registration tokens are deprecated and disabled by default since GitLab 17.0 (HTTP 410 when disabled); prefer runner.create or runner.token_parameter")
	}
	switch len(set) {
	case 0:
		c.Errorf("runner", "set exactly one of token_parameter (an existing glrt- runner authentication token), create (glbootstrap creates the runner) or registration_token_parameter (legacy); none is set")
	case 1:
	default:
		c.Errorf("runner", "set exactly one of token_parameter, create or registration_token_parameter; %s are set", strings.Join(set, " and "))
	}

	for i, tag := range r.Tags {
		tp := fmt.Sprintf("runner.tags[%d]", i)
		switch {
		case strings.TrimSpace(tag) == "":
			c.Errorf(tp, "is empty")
		case strings.Contains(tag, ","):
			c.Errorf(tp, "%q contains a comma; write each tag as its own list item", tag)
		case slices.Index(r.Tags, tag) < i:
			c.Warnf(tp, "%q is listed twice", tag)
		}
	}
	if r.TokenParameter != "" && len(set) == 1 {
		const ignored = "is ignored with a glrt- runner authentication token (runner.token_parameter): tags, run-untagged and locked are set on the runner in GitLab (Admin area > CI/CD > Runners > Edit)"
		if len(r.Tags) > 0 {
			c.Warnf("runner.tags", ignored)
		}
		if r.RunUntagged {
			c.Warnf("runner.run_untagged", ignored)
		}
		if r.Locked {
			c.Warnf("runner.locked", ignored)
		}
	}
	if r.TokenParameter == "" && len(set) == 1 && len(r.Tags) == 0 && !r.RunUntagged {
		// Ci::Runner validation: "Tags list can not be empty when runner is not allowed to pick
		// untagged jobs".
		c.Errorf("runner.tags", "is empty and run_untagged is false: GitLab refuses a runner that can pick no job; add tags or set run_untagged: true")
	}
}

// cachePathRE is a relative "/"-separated S3 key prefix of printable ASCII without spaces.
var cachePathRE = regexp.MustCompile(`^[!-~]+$`)

func validateCache(c *config.Checker, cc *Cache) {
	switch {
	case cc.Bucket == "":
		c.Errorf("runner.cache.bucket", "is required: the S3 bucket that holds the jobs' cache, e.g. my-ci-cache")
	case strings.HasPrefix(cc.Bucket, "s3://") || strings.Contains(cc.Bucket, "/"):
		c.Errorf("runner.cache.bucket", "%q must be the bucket's name only, without s3:// or a key; put a key prefix in runner.cache.path", cc.Bucket)
	case !config.ValidBucket(cc.Bucket):
		c.Errorf("runner.cache.bucket", "%q is not an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)", cc.Bucket)
	}
	if cc.Region != "" && !config.ValidRegion(cc.Region) {
		c.Errorf("runner.cache.region", "%q is not an AWS region such as us-east-2 (the bucket's region)", cc.Region)
	}
	if cc.Path != "" {
		segs := strings.Split(strings.Trim(cc.Path, "/"), "/")
		switch {
		case !cachePathRE.MatchString(cc.Path):
			c.Errorf("runner.cache.path", "%q has spaces or characters other than printable ASCII; use a key prefix such as gitlab-runner/cache", cc.Path)
		case strings.HasPrefix(cc.Path, "/"):
			c.Errorf("runner.cache.path", "%q starts with /: S3 keys are relative; write %q", cc.Path, strings.TrimLeft(cc.Path, "/"))
		case slices.Contains(segs, "..") || slices.Contains(segs, ".") || slices.Contains(segs, ""):
			c.Errorf("runner.cache.path", "%q has an empty, \".\" or \"..\" segment; use a plain key prefix such as gitlab-runner/cache", cc.Path)
		case len(cc.Path) > 512:
			c.Errorf("runner.cache.path", "is %d bytes long; keep the key prefix under 512 (S3 keys are at most 1024 bytes, and the project id and cache key follow it)", len(cc.Path))
		}
	}
}

func validateCreate(c *config.Checker, cr *Create) {
	if cr.AccessTokenParameter == "" {
		c.Errorf("runner.create.access_token_parameter", "is required: the SSM SecureString parameter holding a token with the create_runner scope")
	} else {
		c.ParameterName("runner.create.access_token_parameter", cr.AccessTokenParameter)
	}
	if cr.GroupID < 0 {
		c.Errorf("runner.create.group_id", "must be > 0, got %d", cr.GroupID)
	}
	if cr.ProjectID < 0 {
		c.Errorf("runner.create.project_id", "must be > 0, got %d", cr.ProjectID)
	}
	switch cr.RunnerType {
	case RunnerTypeInstance:
		if cr.GroupID != 0 {
			c.Errorf("runner.create.group_id", "is only for runner_type group_type; an instance_type runner takes no group_id")
		}
		if cr.ProjectID != 0 {
			c.Errorf("runner.create.project_id", "is only for runner_type project_type; an instance_type runner takes no project_id")
		}
	case RunnerTypeGroup:
		if cr.GroupID == 0 {
			c.Errorf("runner.create.group_id", "is required (> 0) with runner_type group_type")
		}
		if cr.ProjectID != 0 {
			c.Errorf("runner.create.project_id", "is only for runner_type project_type, not group_type")
		}
	case RunnerTypeProject:
		if cr.ProjectID == 0 {
			c.Errorf("runner.create.project_id", "is required (> 0) with runner_type project_type")
		}
		if cr.GroupID != 0 {
			c.Errorf("runner.create.group_id", "is only for runner_type group_type, not project_type")
		}
	default:
		c.Errorf("runner.create.runner_type", "must be one of instance_type, group_type or project_type, got %q", cr.RunnerType)
	}
}

var (
	clusterRE         = regexp.MustCompile(`^([A-Za-z0-9_-]+|arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/[A-Za-z0-9_-]+)$`)
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

func validateFargate(c *config.Checker, f *Fargate) {
	validateDriver(c, &f.Driver)

	switch {
	case f.Cluster == "":
		c.Errorf("fargate.cluster", "is required: the ECS cluster's name or ARN")
	case !clusterRE.MatchString(f.Cluster) || len(afterLast(f.Cluster, "/")) > 255:
		c.Errorf("fargate.cluster", "%q is not an ECS cluster name (letters, digits, _ and -, up to 255) or cluster ARN", f.Cluster)
	}
	if f.Region != "" && !config.ValidRegion(f.Region) {
		c.Errorf("fargate.region", "%q is not an AWS region such as us-east-2", f.Region)
	}
	if f.Subnet != "" && !subnetRE.MatchString(f.Subnet) {
		c.Errorf("fargate.subnet", "%q is not a subnet id (subnet- and 8 or 17 lower-case hex digits)", f.Subnet)
	}
	switch {
	case f.SecurityGroup == "":
		c.Errorf("fargate.security_group", "is required: the tasks' security group, sg-xxxxxxxxxxxxxxxxx")
	case !securityGroupRE.MatchString(f.SecurityGroup):
		c.Errorf("fargate.security_group", "%q is not a security group id (sg- and 8 or 17 lower-case hex digits)", f.SecurityGroup)
	}
	switch {
	case f.TaskDefinition == "":
		c.Errorf("fargate.task_definition", "is required: the coordinator's task definition as family, family:revision or ARN")
	case strings.HasPrefix(f.TaskDefinition, "arn:"):
		if !taskARNRE.MatchString(f.TaskDefinition) || len(familyOf(f.TaskDefinition)) > 255 {
			c.Errorf("fargate.task_definition", "%q is not a task-definition ARN (arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>)", f.TaskDefinition)
		}
	case !taskFamilyRE.MatchString(f.TaskDefinition) || len(familyOf(f.TaskDefinition)) > 255:
		c.Errorf("fargate.task_definition", "%q is not a task definition family (letters, digits, _ and -, up to 255) with an optional :revision", f.TaskDefinition)
	}
	if f.PlatformVersion != "" && !platformVersionRE.MatchString(f.PlatformVersion) {
		c.Errorf("fargate.platform_version", "%q is not a Fargate platform version such as LATEST or 1.4.0", f.PlatformVersion)
	}
	c.ManagedDir("fargate.metadata_dir", f.MetadataDir)
	if !config.ValidUserName(f.SSH.Username) {
		c.Errorf("fargate.ssh.username", "%q is not a valid user name (lower-case letters, digits, _ and -, at most 32)", f.SSH.Username)
	}
	if f.SSH.Port < 1 || f.SSH.Port > 65535 {
		c.Errorf("fargate.ssh.port", "must be in 1..65535, got %d", f.SSH.Port)
	}
	c.OneOf("fargate.log_level", f.LogLevel, logLevels)
	c.OneOf("fargate.log_format", f.LogFormat, logFormats)
}

func validateDriver(c *config.Checker, d *Driver) {
	switch {
	case d.Version == "":
		c.Errorf("fargate.driver.version", "is required: a release tag such as v0.5.1")
	case d.Version == "latest":
		c.Errorf("fargate.driver.version", "must be a pinned release tag such as v0.5.1, not latest: GitLab publishes no checksum, so the binary is verified against fargate.driver.sha256")
	case !driverVersionRE.MatchString(d.Version):
		c.Errorf("fargate.driver.version", "%q is not a release tag such as v0.5.1", d.Version)
	}
	if d.SHA256 == strings.Repeat("0", 64) {
		c.Warnf("fargate.driver.sha256", "is the example's placeholder (64 zeros): put the SHA-256 of the driver release here, or the fargate-driver phase fails")
	}
	switch {
	case d.SHA256 == "":
		c.Errorf("fargate.driver.sha256", "is required: the SHA-256 of the driver binary (sha256sum fargate-linux-amd64), since GitLab publishes none")
	case len(d.SHA256) != 64:
		c.Errorf("fargate.driver.sha256", "must be 64 hex digits, got %d characters", len(d.SHA256))
	case !sha256RE.MatchString(d.SHA256):
		c.Errorf("fargate.driver.sha256", "must be 64 hex digits, got characters other than 0-9 and a-f")
	}
	if d.URL != "" {
		validateDriverURL(c, d.URL)
	}
	if what := ownProgram(d.Path); what != "" {
		c.Errorf("fargate.driver.path", "%q is %s: installing the driver there would overwrite it; use %s or /usr/local/bin/%s",
			d.Path, what, DefaultDriverPath, path.Base(DefaultDriverPath))
	} else {
		c.ProgramPath("fargate.driver.path", d.Path, DefaultDriverPath)
	}
}

// ownPrograms are the base names of the programs the front runs the driver with: glbootstrap
// (installed as /usr/local/bin/glbootstrap by the AMI bake, elsewhere by hand) and gitlab-runner
// (RunnerBinary from the package, /usr/local/bin/gitlab-runner when installed by hand).
var ownPrograms = map[string]string{
	"glbootstrap":   "glbootstrap's own binary",
	"gitlab-runner": "the gitlab-runner binary",
}

// ownProgram says which of the front's own programs p would overwrite ("" for none): the
// gitlab-runner binary's path, or a file named like glbootstrap or gitlab-runner anywhere.
func ownProgram(p string) string {
	if p == RunnerBinary {
		return ownPrograms["gitlab-runner"]
	}
	return ownPrograms[path.Base(p)]
}

func validateDriverURL(c *config.Checker, raw string) {
	const field = "fargate.driver.url"
	u, err := url.Parse(raw)
	if err != nil || !strings.Contains(raw, "://") {
		c.Errorf(field, "%q is not a URL; use https://host/path, s3://bucket/key or file:///absolute/path", raw)
		return
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			c.Errorf(field, "has no host: %q", raw)
		}
		if u.User != nil {
			c.Errorf(field, "must not contain a user name or password; credentials never go in the configuration")
		}
	case "s3":
		if u.Host == "" || strings.Trim(u.Path, "/") == "" {
			c.Errorf(field, "%q needs a bucket and a key: s3://bucket/key", raw)
		}
	case "file":
		if u.Host != "" || !path.IsAbs(u.Path) {
			c.Errorf(field, "%q needs an absolute path: file:///absolute/path", raw)
		}
	case "http":
		c.Errorf(field, "must not use http: the driver is an executable and would be downloaded in clear; use https, s3:// or file://")
	default:
		c.Errorf(field, "scheme %q is not supported; use https://, s3://bucket/key or file:///absolute/path", u.Scheme)
	}
}

// afterLast returns s after the last sep (all of s without one).
func afterLast(s, sep string) string { return s[strings.LastIndex(s, sep)+1:] }

// familyOf returns a task definition's family: the ARN's resource name or
// the family:revision form without the revision.
func familyOf(td string) string {
	family, _, _ := strings.Cut(afterLast(td, "/"), ":")
	return family
}

func coordinatorDefaults(c *Coordinator) {
	if c.Timeout == 0 {
		c.Timeout = config.Duration(DefaultCoordinatorTimeout)
	}
	config.DefaultString(&c.KeyPrefix, "glbootstrap/codebuild")
}

var (
	// ECR private repository URIs (https://docs.aws.amazon.com/AmazonECR/latest/userguide/Repositories.html).
	ecrRepoRE = regexp.MustCompile(`^\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/[a-z0-9]+(?:[._/-][a-z0-9]+)*$`)
	// CodeBuild project names: 2..255 of letters, digits, - and _, starting with a letter or digit.
	codebuildProjectRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9\-_]+$`)
)

func validateCoordinator(c *config.Checker, co *Coordinator) {
	switch {
	case co.Repository == "":
		c.Errorf("coordinator.repository", "is required: the ECR repository URI, e.g. 123456789012.dkr.ecr.us-east-2.amazonaws.com/ci-coordinator")
	case strings.Contains(co.Repository[strings.LastIndex(co.Repository, "/")+1:], ":") || strings.Contains(co.Repository, "@"):
		c.Errorf("coordinator.repository", "must not name a tag or digest (glbootstrap pushes latest and a context-hash tag), got %q", co.Repository)
	case !ecrRepoRE.MatchString(co.Repository):
		c.Errorf("coordinator.repository", "must be a private ECR repository URI ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME, got %q", co.Repository)
	}
	switch {
	case co.CodeBuildProject == "":
		c.Errorf("coordinator.codebuild_project", "is required: the CodeBuild project that builds the image")
	case !codebuildProjectRE.MatchString(co.CodeBuildProject) || len(co.CodeBuildProject) > 255:
		c.Errorf("coordinator.codebuild_project", "%q is not a CodeBuild project name (letters, digits, - and _)", co.CodeBuildProject)
	}
	switch {
	case co.Bucket == "":
		c.Errorf("coordinator.bucket", "is required: the S3 bucket the build context is uploaded to")
	case !config.ValidBucket(co.Bucket):
		c.Errorf("coordinator.bucket", "%q is not an S3 bucket name", co.Bucket)
	}
	if co.Timeout < 0 || (co.Timeout > 0 && time.Duration(co.Timeout) < time.Minute) {
		c.Errorf("coordinator.timeout", "must be at least 1m, got %s", co.Timeout)
	}
}
