package runner

import (
	"strings"
	"time"
)

// Paths of the files this role manages on the front.
const (
	ConfigTOML   = "/etc/gitlab-runner/config.toml"
	FargateTOML  = "/etc/gitlab-runner/fargate.toml"
	SystemIDFile = "/etc/gitlab-runner/.runner_system_id"
	StateFile    = "/var/lib/glbootstrap/runner.json"
	RunnerBinary = "/usr/bin/gitlab-runner"
	ServiceUnit  = "gitlab-runner.service"
)

// FargateFile is /etc/gitlab-runner/fargate.toml: every key the Fargate
// custom executor driver decodes (BurntSushi/toml), in its own spelling.
// Source: the driver's README and config package,
// https://gitlab.com/gitlab-org/ci-cd/custom-executor-drivers/fargate.
type FargateFile struct {
	LogLevel     string              `toml:"LogLevel"`  // debug|info|warn|error|fatal|panic
	LogFile      string              `toml:"LogFile"`   // empty = stdout (the runner's job log)
	LogFormat    string              `toml:"LogFormat"` // text|json
	Fargate      FargateSection      `toml:"Fargate"`
	TaskMetadata TaskMetadataSection `toml:"TaskMetadata"`
	SSH          SSHSection          `toml:"SSH"`
}

// FargateSection is [Fargate]: where and how the driver runs tasks.
type FargateSection struct {
	Cluster         string `toml:"Cluster"`
	Region          string `toml:"Region"`
	Subnet          string `toml:"Subnet"`
	SecurityGroup   string `toml:"SecurityGroup"`
	TaskDefinition  string `toml:"TaskDefinition"` // family, family:revision or ARN
	EnablePublicIP  bool   `toml:"EnablePublicIP"`
	PlatformVersion string `toml:"PlatformVersion"` // empty = ECS default (LATEST)
}

// TaskMetadataSection is [TaskMetadata]: where the driver keeps per-job
// task state (including each task's SSH private key).
type TaskMetadataSection struct {
	Directory string `toml:"Directory"`
}

// SSHSection is [SSH]: how the driver logs in to the coordinator container.
type SSHSection struct {
	Username string `toml:"Username"`
	Port     int    `toml:"Port"`
}

// RunnerConfigFile is /etc/gitlab-runner/config.toml for a runner manager
// with one custom-executor runner. Keys and spellings are gitlab-runner's
// (common.Config / common.RunnerConfig, decoded with BurntSushi/toml); see
// https://docs.gitlab.com/runner/configuration/advanced-configuration/.
type RunnerConfigFile struct {
	Concurrent    int             `toml:"concurrent"`     // jobs (Fargate tasks) at once, > 0
	CheckInterval int             `toml:"check_interval"` // seconds between job requests
	Runners       []RunnerSection `toml:"runners"`
}

// RunnerSection is one [[runners]] entry.
type RunnerSection struct {
	Name     string `toml:"name"`
	URL      string `toml:"url"`       // GitLab's private URL: API, artifacts, cache, LFS
	CloneURL string `toml:"clone_url"` // the same private URL, for git clone
	// ID is the runner's numeric id (RunnerCredentials.ID, toml "id"), which
	// gitlab-runner reset-token --id looks the runner up by; omitted when GitLab did not say.
	ID                 int64     `toml:"id,omitzero"`
	Token              string    `toml:"token"` // runner authentication token (glrt-)
	TokenObtainedAt    time.Time `toml:"token_obtained_at"`
	TokenExpiresAt     time.Time `toml:"token_expires_at"` // zero = never
	TLSCAFile          string    `toml:"tls-ca-file,omitempty"`
	Executor           string    `toml:"executor"`
	BuildsDir          string    `toml:"builds_dir"`
	CacheDir           string    `toml:"cache_dir"`
	Limit              int       `toml:"limit"` // 0 = unlimited
	RequestConcurrency int       `toml:"request_concurrency"`
	// CustomBuildDir is written out although it holds the custom executor's default (off):
	// gitlab-runner 17.9.3 checks its config against a JSON schema that wants a boolean there
	// and, when the section is missing, prints "There might be a problem with your config" on
	// every start and verify (seen running the real binary).
	CustomBuildDir CustomBuildDirSection `toml:"custom_build_dir"`
	Custom         CustomSection         `toml:"custom"`
	// Cache is [runners.cache], written only with runner.cache.
	Cache *CacheSection `toml:"cache,omitempty"`
}

// CacheSection is [runners.cache] (gitlab-runner 17.9.3 common.CacheConfig): the distributed
// cache in S3. Type "s3" selects the cache/s3v2 adapter (aws-sdk-go-v2) unless the feature flag
// FF_USE_LEGACY_S3_CACHE_ADAPTER is on.
type CacheSection struct {
	Type   string         `toml:"Type"`           // "s3"
	Path   string         `toml:"Path,omitempty"` // key prefix
	Shared bool           `toml:"Shared"`         // no per-runner namespace
	S3     CacheS3Section `toml:"s3"`
}

// CacheS3Section is [runners.cache.s3] (common.CacheS3Config). With no ServerAddress the URLs are
// AWS's own endpoint for BucketLocation (virtual-hosted, dual-stack by default:
// BUCKET.s3.dualstack.REGION.amazonaws.com); AuthenticationType "iam" takes the AWS SDK's default
// credentials, the instance profile on EC2, and no keys are written here.
type CacheS3Section struct {
	BucketName         string `toml:"BucketName"`
	BucketLocation     string `toml:"BucketLocation"`
	AuthenticationType string `toml:"AuthenticationType"` // "iam"
}

// cacheSection is [runners.cache] for runner.cache in region (the bucket's), nil without it.
func cacheSection(c *Cache, region string) *CacheSection {
	if c == nil {
		return nil
	}
	return &CacheSection{
		Type: "s3", Path: strings.Trim(c.Path, "/"), Shared: c.Shared,
		S3: CacheS3Section{BucketName: c.Bucket, BucketLocation: firstNonEmpty(c.Region, region), AuthenticationType: "iam"},
	}
}

// CustomBuildDirSection is [runners.custom_build_dir]: whether jobs may pick their build
// directory with GIT_CLONE_PATH. Off, as the custom executor's default
// (DefaultCustomBuildsDirEnabled false): the driver decides where a job's files live.
type CustomBuildDirSection struct {
	Enabled bool `toml:"enabled"`
}

// CustomSection is [runners.custom]: the four custom-executor stages, each
// running the Fargate driver with its stage name.
type CustomSection struct {
	ConfigExec  string   `toml:"config_exec"`
	ConfigArgs  []string `toml:"config_args"`
	PrepareExec string   `toml:"prepare_exec"`
	PrepareArgs []string `toml:"prepare_args"`
	RunExec     string   `toml:"run_exec"`
	RunArgs     []string `toml:"run_args"`
	CleanupExec string   `toml:"cleanup_exec"`
	CleanupArgs []string `toml:"cleanup_args"`
}

// fargateFile builds fargate.toml from the config and the resolved region
// and subnet.
func fargateFile(f *Fargate, region, subnet string) FargateFile {
	return FargateFile{
		LogLevel:  f.LogLevel,
		LogFormat: f.LogFormat,
		Fargate: FargateSection{
			Cluster:         f.Cluster,
			Region:          region,
			Subnet:          subnet,
			SecurityGroup:   f.SecurityGroup,
			TaskDefinition:  f.TaskDefinition,
			EnablePublicIP:  f.EnablePublicIP,
			PlatformVersion: f.PlatformVersion,
		},
		TaskMetadata: TaskMetadataSection{Directory: f.MetadataDir},
		SSH:          SSHSection{Username: f.SSH.Username, Port: f.SSH.Port},
	}
}

// customSection points every custom-executor stage at the driver.
func customSection(driver string) CustomSection {
	args := func(stage string) []string {
		return []string{"--config", FargateTOML, "custom", stage}
	}
	return CustomSection{
		ConfigExec: driver, ConfigArgs: args("config"),
		PrepareExec: driver, PrepareArgs: args("prepare"),
		RunExec: driver, RunArgs: args("run"),
		CleanupExec: driver, CleanupArgs: args("cleanup"),
	}
}
