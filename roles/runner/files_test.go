package runner

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// referenceRole is a Role prepared for the reference setup (examples/runner.yaml),
// without any network: what Prepare would resolve is filled in directly.
func referenceRole(t *testing.T) *Role {
	t.Helper()
	data, err := os.ReadFile("../../examples/runner.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, problems := parseDoc(data, Name)
	if err := problems.Err(); err != nil {
		t.Fatalf("examples/runner.yaml: %v", err)
	}
	cfg.GitLab.PrivateURL = "https://10.0.1.10"
	cfg.GitLab.CAFile = "/etc/gitlab-runner/certs/gitlab.crt"
	return &Role{
		cfg:        cfg,
		privateURL: "https://10.0.1.10",
		region:     "us-east-2",
		subnet:     "subnet-0123456789abcdef0",
		name:       "fargate-front",
		token:      "glrt-EXAMPLEtoken000000",
		runnerID:   42,
		obtainedAt: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update, then review the diff):\n%s", name, got)
	}
}

// driverConfig mirrors the keys the Fargate driver decodes from
// fargate.toml (its config package, BurntSushi/toml). Written from the
// driver's documentation, independently of FargateFile.
type driverConfig struct {
	LogLevel  string
	LogFile   string
	LogFormat string
	Fargate   struct {
		Cluster         string
		Region          string
		Subnet          string
		SecurityGroup   string
		TaskDefinition  string
		EnablePublicIP  bool
		PlatformVersion string
	}
	TaskMetadata struct{ Directory string }
	SSH          struct {
		Username string
		Port     int
	}
}

// runnerConsumerConfig mirrors the part of gitlab-runner's common.Config
// that a custom-executor runner uses, with gitlab-runner's key names.
type runnerConsumerConfig struct {
	Concurrent      int    `toml:"concurrent"`
	CheckInterval   int    `toml:"check_interval"`
	LogLevel        string `toml:"log_level"`
	LogFormat       string `toml:"log_format"`
	ShutdownTimeout int    `toml:"shutdown_timeout"`
	Runners         []struct {
		Name               string    `toml:"name"`
		URL                string    `toml:"url"`
		CloneURL           string    `toml:"clone_url"`
		ID                 int64     `toml:"id"`
		Token              string    `toml:"token"`
		TokenObtainedAt    time.Time `toml:"token_obtained_at"`
		TokenExpiresAt     time.Time `toml:"token_expires_at"`
		TLSCAFile          string    `toml:"tls-ca-file"`
		Executor           string    `toml:"executor"`
		BuildsDir          string    `toml:"builds_dir"`
		CacheDir           string    `toml:"cache_dir"`
		Limit              int       `toml:"limit"`
		RequestConcurrency int       `toml:"request_concurrency"`
		Environment        []string  `toml:"environment"`
		OutputLimit        int       `toml:"output_limit"`
		CustomBuildDir     struct {
			Enabled *bool `toml:"enabled"`
		} `toml:"custom_build_dir"`
		Custom customConsumerCfg `toml:"custom"`
		Cache  *cacheConsumerCfg `toml:"cache"`
	} `toml:"runners"`
}

// cacheConsumerCfg mirrors gitlab-runner 17.9.3's common.CacheConfig and the S3 part of
// common.CacheS3Config (common/config.go at v17.9.3), with its key names.
type cacheConsumerCfg struct {
	Type                   string `toml:"Type"`
	Path                   string `toml:"Path"`
	Shared                 bool   `toml:"Shared"`
	MaxUploadedArchiveSize int64  `toml:"MaxUploadedArchiveSize"`
	S3                     *struct {
		ServerAddress      string `toml:"ServerAddress"`
		AccessKey          string `toml:"AccessKey"`
		SecretKey          string `toml:"SecretKey"`
		BucketName         string `toml:"BucketName"`
		BucketLocation     string `toml:"BucketLocation"`
		AuthenticationType string `toml:"AuthenticationType"`
		DualStack          *bool  `toml:"DualStack"`
		PathStyle          *bool  `toml:"PathStyle"`
	} `toml:"s3"`
}

type customConsumerCfg struct {
	ConfigExec         string   `toml:"config_exec"`
	ConfigArgs         []string `toml:"config_args"`
	ConfigExecTimeout  *int     `toml:"config_exec_timeout"`
	PrepareExec        string   `toml:"prepare_exec"`
	PrepareArgs        []string `toml:"prepare_args"`
	PrepareExecTimeout *int     `toml:"prepare_exec_timeout"`
	RunExec            string   `toml:"run_exec"`
	RunArgs            []string `toml:"run_args"`
	CleanupExec        string   `toml:"cleanup_exec"`
	CleanupArgs        []string `toml:"cleanup_args"`
	CleanupExecTimeout *int     `toml:"cleanup_exec_timeout"`
}

func TestFargateTOMLGoldenAndDecodesForDriver(t *testing.T) {
	r := referenceRole(t)
	data, err := renderTOML(fargateFile(r.cfg.Fargate, r.region, r.subnet))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "fargate.toml", data)

	var got driverConfig
	md, err := toml.Decode(string(data), &got)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("keys the driver would ignore: %v", u)
	}
	f := got.Fargate
	if f.Cluster != "ci-cluster" || f.Region != "us-east-2" || f.Subnet != "subnet-0123456789abcdef0" ||
		f.SecurityGroup != "sg-0123456789abcdef0" || f.TaskDefinition != "ci-coordinator:1" || f.EnablePublicIP {
		t.Errorf("[Fargate] = %+v", f)
	}
	if got.TaskMetadata.Directory != "/opt/gitlab-runner/metadata" || got.SSH.Username != "root" || got.SSH.Port != 22 {
		t.Errorf("metadata/ssh = %+v %+v", got.TaskMetadata, got.SSH)
	}
	if got.LogLevel != "info" || got.LogFormat != "text" {
		t.Errorf("log = %q %q", got.LogLevel, got.LogFormat)
	}
}

func TestConfigTOMLGoldenAndDecodesForRunner(t *testing.T) {
	r := referenceRole(t)
	data, err := renderTOML(r.runnerConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "config.toml", data)

	var got runnerConsumerConfig
	md, err := toml.Decode(string(data), &got)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("keys gitlab-runner would ignore: %v", u)
	}
	if got.Concurrent != 200 || got.CheckInterval != 3 || len(got.Runners) != 1 {
		t.Fatalf("global = %+v", got)
	}
	rs := got.Runners[0]
	if rs.URL != "https://10.0.1.10" || rs.CloneURL != rs.URL {
		t.Errorf("url/clone_url = %q %q, want both GitLab's private URL", rs.URL, rs.CloneURL)
	}
	if rs.Executor != "custom" || rs.Limit != 200 || rs.RequestConcurrency != 4 || rs.TLSCAFile != "/etc/gitlab-runner/certs/gitlab.crt" {
		t.Errorf("runner = %+v", rs)
	}
	if rs.BuildsDir != "/opt/gitlab-runner/builds" || rs.CacheDir != "/opt/gitlab-runner/cache" {
		t.Errorf("dirs = %q %q", rs.BuildsDir, rs.CacheDir)
	}
	c := rs.Custom
	for stage, pair := range map[string][2]any{
		"config": {c.ConfigExec, c.ConfigArgs}, "prepare": {c.PrepareExec, c.PrepareArgs},
		"run": {c.RunExec, c.RunArgs}, "cleanup": {c.CleanupExec, c.CleanupArgs},
	} {
		args := pair[1].([]string)
		if pair[0] != "/opt/gitlab-runner/fargate" || len(args) != 4 || args[1] != FargateTOML || args[3] != stage {
			t.Errorf("%s stage = %v %v", stage, pair[0], args)
		}
	}
	if !rs.TokenObtainedAt.Equal(r.obtainedAt) || !rs.TokenExpiresAt.IsZero() {
		t.Errorf("token times = %v %v", rs.TokenObtainedAt, rs.TokenExpiresAt)
	}
	if e := rs.CustomBuildDir.Enabled; e == nil || *e {
		t.Errorf("custom_build_dir.enabled = %v, want false written out (gitlab-runner's schema check wants a boolean)", e)
	}
	if rs.ID != 42 {
		t.Errorf("id = %d, want the runner's id 42 (gitlab-runner reset-token --id)", rs.ID)
	}
}

// runner.cache becomes [runners.cache] Type s3 with IAM authentication: no keys in the file, the
// bucket's region (the tasks' when runner.cache.region is not set), the path without slashes.
func TestConfigTOMLWithCacheGoldenAndDecodesForRunner(t *testing.T) {
	r := referenceRole(t)
	if r.cfg.Runner.Cache != nil {
		t.Fatalf("examples/runner.yaml sets runner.cache; this test adds its own")
	}
	data, err := renderTOML(r.runnerConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("[runners.cache")) {
		t.Fatalf("[runners.cache] without runner.cache:\n%s", data)
	}
	r.cfg.Runner.Cache = &Cache{Bucket: "my-ci-cache", Path: "gitlab-runner/cache/", Shared: true}
	data, err = renderTOML(r.runnerConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "config-cache.toml", data)
	var got runnerConsumerConfig
	md, err := toml.Decode(string(data), &got)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("keys gitlab-runner would ignore: %v", u)
	}
	c := got.Runners[0].Cache
	if c == nil || c.S3 == nil {
		t.Fatalf("no [runners.cache] / [runners.cache.s3]:\n%s", data)
	}
	if c.Type != "s3" || c.Path != "gitlab-runner/cache" || !c.Shared {
		t.Errorf("[runners.cache] = %+v", c)
	}
	s3 := c.S3
	if s3.BucketName != "my-ci-cache" || s3.BucketLocation != "us-east-2" || s3.AuthenticationType != "iam" {
		t.Errorf("[runners.cache.s3] = %+v, want bucket my-ci-cache in the tasks' region us-east-2, iam", s3)
	}
	if s3.AccessKey != "" || s3.SecretKey != "" || s3.ServerAddress != "" {
		t.Errorf("[runners.cache.s3] has keys or an endpoint: %+v", s3)
	}

	r.cfg.Runner.Cache.Region = "eu-west-1"
	data, err = renderTOML(r.runnerConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`BucketLocation = "eu-west-1"`)) {
		t.Errorf("runner.cache.region is not the BucketLocation:\n%s", data)
	}
}

// GitLab < 15.10 does not say a verified token's runner id: config.toml then has no id at all
// rather than id = 0, which no runner has.
func TestConfigTOMLWithoutRunnerIDOmitsKey(t *testing.T) {
	r := referenceRole(t)
	r.runnerID = 0
	data, err := renderTOML(r.runnerConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "id = ") {
		t.Errorf("config.toml has an id line for an unknown id:\n%s", data)
	}
}

func TestConfigTOMLWithoutCAFileOmitsKey(t *testing.T) {
	r := referenceRole(t)
	r.cfg.GitLab.CAFile = ""
	data, err := renderTOML(r.runnerConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("tls-ca-file")) {
		t.Fatalf("tls-ca-file present without ca_file:\n%s", data)
	}
}
