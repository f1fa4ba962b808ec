package runner

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/roles/gitlab"
)

// schemas are the roles config.Parse tells apart in these tests: this one and the GitLab host,
// whose sections a runner front's configuration must not have.
var schemas = []config.Schema{Definition.Schema(), gitlab.Definition.Schema()}

// parseDoc parses data for role (Name or gitlab.Name); the Config is nil unless the document is
// a valid role runner one.
func parseDoc(data []byte, role string) (*Config, config.Problems) {
	doc, ps := config.Parse(data, role, schemas)
	cfg, _ := doc.(*Config)
	return cfg, ps
}

func TestExampleRunnerConfig(t *testing.T) {
	data, err := os.ReadFile("../../examples/runner.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, ps := parseDoc(data, Name)
	// The one warning the example must give: its checksum is a placeholder to replace.
	if len(ps) != 1 || !ps[0].Warning || ps[0].Path != "fargate.driver.sha256" {
		t.Fatalf("examples/runner.yaml has problems:\n%s", strings.Join(strs(ps), "\n"))
	}
	// The reference setup (examples/runner.yaml).
	r, f := cfg.Runner, cfg.Fargate
	checks := []struct {
		name      string
		got, want any
	}{
		{"concurrent", r.Concurrent, 200},
		{"check_interval", r.CheckInterval, 3},
		{"limit", r.Limit, 200},
		{"request_concurrency", r.RequestConcurrency, 4},
		{"builds_dir", r.BuildsDir, "/opt/gitlab-runner/builds"},
		{"cache_dir", r.CacheDir, "/opt/gitlab-runner/cache"},
		{"region", f.Region, "us-east-2"},
		{"enable_public_ip", f.EnablePublicIP, false},
		{"metadata_dir", f.MetadataDir, "/opt/gitlab-runner/metadata"},
		{"ssh", f.SSH, SSH{Username: "root", Port: 22}},
		{"driver.version", f.Driver.Version, "v0.5.1"},
		{"driver.sha256", f.Driver.SHA256, strings.Repeat("0", 64)},
		{"ready_timeout", cfg.GitLab.ReadyTimeout, config.Duration(10 * time.Minute)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, ps := parseDoc([]byte(doc(t, nil)), Name)
	if len(ps) != 0 {
		t.Fatal(strs(ps))
	}
	want := Config{
		Base:   config.Base{Version: 1},
		GitLab: GitLabSection{GitLab: config.GitLab{URL: "https://gitlab.example.com", PrivateURL: "https://10.0.1.10", ReadyTimeout: config.Duration(10 * time.Minute)}},
		Runner: &Runner{
			User: "gitlab-runner", Concurrent: 10, CheckInterval: 3, RequestConcurrency: 1,
			BuildsDir: "/opt/gitlab-runner/builds", CacheDir: "/opt/gitlab-runner/cache",
			Create: &Create{AccessTokenParameter: "/glb/create-runner-token", RunnerType: "instance_type"},
			Tags:   []string{"fargate"},
		},
		Fargate: &Fargate{
			Driver:  Driver{Version: "v0.5.1", SHA256: strings.Repeat("a", 64), Path: "/opt/gitlab-runner/fargate"},
			Cluster: "ci", SecurityGroup: "sg-0123456789abcdef0", TaskDefinition: "ci-coordinator",
			MetadataDir: "/opt/gitlab-runner/metadata", SSH: SSH{Username: "root", Port: 22},
			LogLevel: "info", LogFormat: "text",
		},
	}
	if cfg.Version != want.Version || cfg.GitLab != want.GitLab || *cfg.Runner.Create != *want.Runner.Create ||
		!slices.Equal(cfg.Runner.Tags, want.Runner.Tags) {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
	gr, wr := *cfg.Runner, *want.Runner
	gr.Create, wr.Create, gr.Tags, wr.Tags = nil, nil, nil, nil
	if !reflect.DeepEqual(gr, wr) {
		t.Errorf("runner: got %+v\nwant %+v", gr, wr)
	}
	if *cfg.Fargate != *want.Fargate {
		t.Errorf("fargate: got %+v\nwant %+v", *cfg.Fargate, *want.Fargate)
	}
}

func TestSHA256Normalized(t *testing.T) {
	cfg, ps := parseDoc([]byte(doc(t, map[string]string{"fargate.driver.sha256": strings.Repeat("AB", 32)})), Name)
	if len(ps) != 0 {
		t.Fatal(strs(ps))
	}
	if got := cfg.Fargate.Driver.SHA256; got != strings.Repeat("ab", 32) {
		t.Errorf("sha256 = %q, want lower case", got)
	}
}

// TestManyProblemsAtOnce checks that one run reports every problem of a badly broken document, from
// every pass (secrets, structure, values), each with its path and line, in line order.
func TestManyProblemsAtOnce(t *testing.T) {
	const data = `version: 2
gitlab:
  url: http://gitlab.example.com
  private_url: 10.0.1.10
  ready_timeout: 600
runner:
  concurent: 10
  concurrent: abc
  limit: -1
  token_parameter: glrt-abcdefghijklmnopqrstuvwx
  tags: [a, "b,c"]
  locked: true
fargate:
  SecurityGroup: sg-0123abcd
  driver: {version: latest, sha256: abc, url: "http://mirror/fargate"}
  ssh: {port: 0}
  log_level: verbose
  subnet: subnet-1
  subnet: subnet-0123abcd
`
	want := []string{
		"version (line 1): unsupported schema version 2; this glbootstrap reads version 1",
		`gitlab.url (line 3): must use https, got "http://gitlab.example.com"`,
		`gitlab.private_url (line 4): "10.0.1.10" is not a URL; write the scheme and the host, e.g. https://10.0.1.10`,
		`gitlab.ready_timeout (line 5): must be a duration such as "90s" or "10m", got "600" (a unit is required: "600s" for seconds)`,
		`runner.concurent (line 7): unknown key; did you mean "concurrent"?`,
		`runner.concurrent (line 8): must be an integer, got "abc"`,
		"runner.limit (line 9): must be >= 0 (0 = unlimited), got -1",
		"runner.token_parameter (line 10): holds what looks like a runner authentication token (glrt-********); secrets never go in the configuration: store it in an SSM SecureString parameter and put the parameter's name here",
		`runner.tags[1] (line 11): "b,c" contains a comma; write each tag as its own list item`,
		"warning: runner.tags (line 11): is ignored with a glrt- runner authentication token (runner.token_parameter): tags, run-untagged and locked are set on the runner in GitLab (Admin area > CI/CD > Runners > Edit)",
		"warning: runner.locked (line 12): is ignored with a glrt- runner authentication token (runner.token_parameter): tags, run-untagged and locked are set on the runner in GitLab (Admin area > CI/CD > Runners > Edit)",
		"fargate.cluster (line 13): is required: the ECS cluster's name or ARN",
		"fargate.security_group (line 13): is required: the tasks' security group, sg-xxxxxxxxxxxxxxxxx",
		"fargate.task_definition (line 13): is required: the coordinator's task definition as family, family:revision or ARN",
		`fargate.SecurityGroup (line 14): unknown key; did you mean "security_group"?`,
		"fargate.driver.version (line 15): must be a pinned release tag such as v0.5.1, not latest: GitLab publishes no checksum, so the binary is verified against fargate.driver.sha256",
		"fargate.driver.sha256 (line 15): must be 64 hex digits, got 3 characters",
		"fargate.driver.url (line 15): must not use http: the driver is an executable and would be downloaded in clear; use https, s3:// or file://",
		"fargate.ssh.port (line 16): must be in 1..65535, got 0",
		`fargate.log_level (line 17): must be one of debug, info, warn, error, fatal, panic, got "verbose"`,
		`fargate.subnet (line 18): "subnet-1" is not a subnet id (subnet- and 8 or 17 lower-case hex digits)`,
		"fargate.subnet (line 19): duplicated key; it is already set on line 18",
	}
	cfg, ps := parseDoc([]byte(data), Name)
	if cfg != nil {
		t.Error("config is not nil despite errors")
	}
	got := strs(ps)
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n got:\n  %s\n want:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestSecretsAreReportedAndMasked(t *testing.T) {
	tokens := []string{
		"glrt-t1_AbCdEfGhIjKlMnOpQrSt",
		"glpat-AbCdEfGhIjKlMnOpQrSt",
		"GR1348941AbCdEfGhIjKlMnOpQrSt",
	}
	tests := []struct {
		name, data, want string
	}{
		{"runner token in a known field", "version: 1\ngitlab:\n  url: https://g.example.com\nrunner:\n  name: " + tokens[0] + "\n",
			"runner.name (line 5): holds what looks like a runner authentication token (glrt-********); secrets never go in the configuration: store it in an SSM SecureString parameter and put the parameter's name in runner.token_parameter"},
		{"access token under an unknown key", "version: 1\ngitlab:\n  url: https://g.example.com\nrunner:\n  create:\n    access_token: " + tokens[1] + "\n",
			"runner.create.access_token (line 6): holds what looks like a personal access token (glpat-********); secrets never go in the configuration: store it in an SSM SecureString parameter and put the parameter's name in runner.create.access_token_parameter"},
		{"registration token in a list", "version: 1\ngitlab:\n  url: https://g.example.com\nrunner:\n  tags: [a, " + tokens[2] + "]\n",
			"runner.tags[1] (line 5): holds what looks like a runner registration token (GR1348941********); secrets never go in the configuration: store it in an SSM SecureString parameter and put the parameter's name in runner.registration_token_parameter"},
		{"token inside a URL", "version: 1\ngitlab:\n  url: https://oauth2:" + tokens[1] + "@g.example.com\n",
			"gitlab.url (line 3): holds what looks like a personal access token (glpat-********); secrets never go in the configuration: store it in an SSM SecureString parameter and put the parameter's name in runner.create.access_token_parameter"},
		{"token as a key", "version: 1\ngitlab:\n  url: https://g.example.com\n" + tokens[0] + ": x\n",
			"glrt-******** (line 4): holds what looks like a runner authentication token (glrt-********); secrets never go in the configuration: store it in an SSM SecureString parameter and put the parameter's name in runner.token_parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := parseDoc([]byte(tt.data), Name)
			got := strs(ps)
			if !slices.Contains(got, tt.want) {
				t.Errorf("missing problem %q in\n  %s", tt.want, strings.Join(got, "\n  "))
			}
			for _, p := range got {
				for _, tok := range tokens {
					if strings.Contains(p, tok) || strings.Contains(p, tok[len(tok)-12:]) {
						t.Errorf("problem echoes the secret: %s", p)
					}
				}
			}
		})
	}

	// A parameter whose name merely contains a prefix is not a secret.
	_, ps := parseDoc([]byte(doc(t, map[string]string{"runner.create.access_token_parameter": "/ci/glpat-create-runner-token"})), Name)
	if len(ps) != 0 {
		t.Errorf("parameter name taken for a secret: %q", strs(ps))
	}
}

func TestDownloadURL(t *testing.T) {
	d := Driver{Version: "v0.5.1"}
	if got, want := d.DownloadURL("arm64"), "https://gitlab-runner-custom-fargate-downloads.s3.amazonaws.com/v0.5.1/fargate-linux-arm64"; got != want {
		t.Errorf("DownloadURL = %q, want %q", got, want)
	}
	d.URL = "s3://bucket/fargate"
	if got := d.DownloadURL("amd64"); got != "s3://bucket/fargate" {
		t.Errorf("DownloadURL with url = %q", got)
	}
}
