package gitlab

import (
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/roles/runner"
)

// schemas are the roles config.Parse tells apart in these tests: this one and the runner front,
// whose sections a GitLab host's configuration must not have.
var schemas = []config.Schema{Definition.Schema(), runner.Definition.Schema()}

// parseDoc parses data for role (Name or runner.Name); the Config is nil unless the document is
// a valid role gitlab one.
func parseDoc(data []byte, role string) (*Config, config.Problems) {
	doc, ps := config.Parse(data, role, schemas)
	cfg, _ := doc.(*Config)
	return cfg, ps
}

const gitlabBase = `version: 1
gitlab:
  url: https://gitlab.example.com
`

func TestGitLabRoleDefaults(t *testing.T) {
	cfg, ps := parseDoc([]byte(gitlabBase), Name)
	if cfg == nil {
		t.Fatal(ps.Err())
	}
	g := cfg.GitLab
	if g.Edition != "ee" || g.SSHPort != 22 || g.NLB != (NLB{}) || g.Settings.Len() != 0 {
		t.Errorf("defaults: %+v", g)
	}
}

func TestGitLabRoleRules(t *testing.T) {
	for _, c := range []struct {
		name, extra string
		want        []string // problem strings, errors and warnings
	}{
		{"full", `  edition: ce
  version: "18.5.1"
  ssh_port: 2222
  nlb: {tls_termination: true, proxy_protocol: false}
  initial_root_password_parameter: /glb/root-password
  publish_private_url_parameter: /glb/private-url
  settings:
    gitlab_rails: {time_zone: UTC, monitoring_whitelist: [192.168.0.0/24], env: {A: "1"}, max_request_duration_seconds: 1.5, gitlab_default_theme: -1}
    roles: [redis_sentinel_role]
    registry_external_url: https://registry.example.com
`, nil},
		{"unknown edition", "  edition: enterprise\n", []string{`gitlab.edition (line 4): unknown edition "enterprise": must be ee (the gitlab-ee package, the default) or ce (gitlab-ce)`}},
		{"package version", "  version: 18.5.1-ee.0\n", []string{`gitlab.version (line 4): write the GitLab version "18.5.1" without the package suffix, got "18.5.1-ee.0"`}},
		{"bad version", "  version: latest\n", []string{`gitlab.version (line 4): "latest" is not a GitLab version: pin an exact release MAJOR.MINOR.PATCH such as "18.5.1" (no leading v, not "latest" or "18.5")`}},
		{"port 0", "  ssh_port: 0\n", []string{`gitlab.ssh_port (line 4): must be in 1..65535 (the port of the NLB's SSH listener), got 0`}},
		{"port high", "  ssh_port: 65536\n", []string{`gitlab.ssh_port (line 4): must be in 1..65535 (the port of the NLB's SSH listener), got 65536`}},
		{"bad parameter", "  publish_private_url_parameter: private-url\n", []string{`gitlab.publish_private_url_parameter (line 4): is not an SSM parameter name`}},
		{"nlb unknown key", "  nlb: {tls: true}\n", []string{`gitlab.nlb.tls (line 4): unknown key`}},
		{"settings not a mapping", "  settings: [a]\n", []string{`gitlab.settings (line 4): must be a mapping of gitlab.rb roots`}},
		{"unknown root", "  settings:\n    ngnix: {a: 1}\n", []string{`gitlab.settings.ngnix (line 5): is not a gitlab.rb setting glbootstrap knows; did you mean "nginx"?`}},
		{"code as root", "  settings:\n    system: {a: 1}\n", []string{`gitlab.settings.system (line 5): is not a gitlab.rb setting glbootstrap knows`}},
		{"hash root with a scalar", "  settings:\n    nginx: 1\n", []string{`gitlab.settings.nginx (line 5): must be a mapping of nginx keys`}},
		{"external_url", "  settings:\n    external_url: https://x\n", []string{`gitlab.settings.external_url (line 5): is set by glbootstrap; use gitlab.url instead`}},
		{"managed key", "  settings:\n    nginx: {listen_port: 8080}\n", []string{`gitlab.settings.nginx.listen_port (line 5): nginx['listen_port'] is set by glbootstrap; use gitlab.nlb.tls_termination instead`}},
		{"null", "  settings:\n    gitlab_rails:\n      time_zone:\n", []string{`gitlab.settings.gitlab_rails.time_zone (line 6): is empty (null)`}},
		{"null in list", "  settings:\n    gitlab_rails:\n      x: [1, null]\n", []string{`gitlab.settings.gitlab_rails.x[1] (line 6): is empty (null)`}},
		{"nan", "  settings:\n    gitlab_rails:\n      x: {y: .NaN}\n", []string{`gitlab.settings.gitlab_rails.x.y (line 6): .NaN has no Ruby literal`}},
		{"inf", "  settings:\n    gitlab_rails:\n      x: -.inf\n", []string{`gitlab.settings.gitlab_rails.x (line 6): -.inf has no Ruby literal`}},
		{"huge int", "  settings:\n    gitlab_rails:\n      x: 99999999999999999999\n", []string{`gitlab.settings.gitlab_rails.x (line 6): 99999999999999999999 is out of range`}},
		{"binary", "  settings:\n    gitlab_rails:\n      x: !!binary aGVsbG8=\n", []string{`gitlab.settings.gitlab_rails.x (line 6): has YAML tag !!binary`}},
		{"secret", "  settings:\n    gitlab_rails:\n      smtp_password: hunter2\n", []string{`gitlab.settings.gitlab_rails.smtp_password (line 6): looks like a secret`}},
		{"whitelist not a list", "  settings:\n    gitlab_rails: {monitoring_whitelist: 10.0.0.0/8}\n", []string{`gitlab.settings.gitlab_rails.monitoring_whitelist (line 5): must be a list of addresses or CIDRs`}},
		{"duplicate", "  settings:\n    gitlab_rails:\n      a: 1\n      a: 2\n", []string{`gitlab.settings.gitlab_rails.a (line 7): duplicated key; it is already set on line 6`}},
		{"proxy protocol warning", "  nlb: {proxy_protocol: true}\n  publish_private_url_parameter: /glb/u\n", []string{`warning: gitlab.nlb.proxy_protocol (line 4): with the PROXY protocol`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ps := parseDoc([]byte(gitlabBase+c.extra), Name)
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if len(got) != len(c.want) {
				t.Fatalf("problems:\n got  %q\n want %q", got, c.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("problem %d:\n got  %s\n want %s…", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestGitLabSettingsValues(t *testing.T) {
	cfg, ps := parseDoc([]byte(gitlabBase+`  settings:
    nginx: {client_max_body_size: 250m, keepalive: 65, gzip: true, ratio: 0.5, list: [a, 1], map: {k: v}, day: 2024-01-02}
    roles: [a_role]
`), Name)
	if cfg == nil {
		t.Fatal(ps.Err())
	}
	s := cfg.GitLab.Settings
	if got := strings.Join(s.Roots(), ","); got != "nginx,roles" {
		t.Errorf("roots = %s", got)
	}
	n := s.Get("nginx").(map[string]any)
	if n["client_max_body_size"] != "250m" || n["keepalive"] != int64(65) || n["gzip"] != true || n["ratio"] != 0.5 ||
		n["day"] != "2024-01-02" || n["map"].(map[string]any)["k"] != "v" || n["list"].([]any)[1] != int64(1) {
		t.Errorf("nginx = %#v", n)
	}
	if r := s.Get("roles").([]any); len(r) != 1 || r[0] != "a_role" {
		t.Errorf("roles = %#v", r)
	}
}

// TestSettingsRefuseAliases: nested aliases would be expanded value by value
// ("billion laughs"); they are refused before anything is copied.
func TestSettingsRefuseAliases(t *testing.T) {
	doc := "version: 1\ngitlab:\n  url: https://gitlab.example.com\n  settings:\n    gitlab_rails:\n" +
		"      a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n      b: &b [*a,*a,*a,*a,*a,*a,*a,*a]\n" +
		"      c: &c [*b,*b,*b,*b,*b,*b,*b,*b]\n      d: &d [*c,*c,*c,*c,*c,*c,*c,*c]\n      e: &e [*d,*d,*d,*d,*d,*d,*d,*d]\n"
	_, ps := parseDoc([]byte(doc), Name)
	err := ps.Err()
	if err == nil || !strings.Contains(err.Error(), "gitlab.settings (line 7): YAML aliases (*name) are not allowed") {
		t.Fatalf("err = %v", err)
	}
}
