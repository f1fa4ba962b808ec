package gitlab

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/glbootstrap/glbootstrap/internal/render"
	"github.com/glbootstrap/glbootstrap/templates"
)

var testFacts = Facts{PrivateIPv4: "10.0.1.20", VPCCIDR: "10.0.0.0/16"}

// parse parses a role gitlab document and fails the test on any error.
func parse(t *testing.T, doc string) *Config {
	t.Helper()
	cfg, ps := parseDoc([]byte(doc), Name)
	if cfg == nil {
		t.Fatalf("config: %v\n%s", ps.Err(), doc)
	}
	return cfg
}

const baseDoc = "version: 1\ngitlab:\n  url: https://gitlab.example.com\n"

// hostile are values that would run code or break out of a literal if pasted into Ruby.
var hostile = []string{
	`it's a "quote"`,
	`back\slash\' and \\`,
	`#{File.write(ENV['GLB_PWNED'], 'pwned')}`,
	"'; File.write(ENV['GLB_PWNED'], 'pwned'); '",
	"\"; File.write(ENV['GLB_PWNED'], 'pwned'); \"",
	"line one\nline two\n__END__\n=begin\n",
	"#@x #$0 %q{x} `id`",
	"tab\there\r\nnul\x00bell\x07del\x7f",
	"Grüße ✓ \u2028 \U0001F600",
	"",
}

// hostileDoc is a configuration whose settings (keys and values, in hashes and lists) and URL
// path carry the hostile strings; the password file gets hostile[1].
func hostileDoc(t *testing.T) (string, map[string]any) {
	t.Helper()
	rails := map[string]any{}
	for i, h := range hostile {
		rails["k"+string(rune('a'+i))] = h
	}
	rails["key'with#{quote}\n"] = "v"
	rails["list"] = []any{hostile[0], hostile[2], int64(-3), 2.5, true}
	rails["hash"] = map[string]any{hostile[3]: map[string]any{"deep": hostile[5]}}
	settings := map[string]any{"gitlab_rails": rails, "registry_external_url": hostile[2]}
	doc := map[string]any{
		"version": 1,
		"gitlab": map[string]any{
			"url":      "https://gitlab.example.com/git-lab",
			"ssh_port": 2222,
			"settings": settings,
		},
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), settings
}

// rubyCheck runs ruby -c on data.
func rubyCheck(t *testing.T, ruby, name string, data []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fragment.rb")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ruby, "-c", p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Syntax OK") {
		t.Errorf("%s: ruby -c: %v\n%s\n--- fragment\n%s", name, err, out, data)
	}
}

func TestFragmentRubySyntax(t *testing.T) {
	ruby := needTool(t, "ruby", "ruby")
	hd, _ := hostileDoc(t)
	for name, doc := range map[string]string{
		"defaults":        baseDoc,
		"tls termination": baseDoc + "  nlb: {tls_termination: true}\n",
		"proxy protocol":  baseDoc + "  nlb: {tls_termination: false, proxy_protocol: true}\n  ssh_port: 2222\n",
		"both":            baseDoc + "  nlb: {tls_termination: true, proxy_protocol: true}\n",
		"settings": baseDoc + `  settings:
    gitlab_rails: {time_zone: Europe/Berlin, monitoring_whitelist: [192.168.0.0/24], env: {A: "1"}, max: 1.5}
    nginx: {client_max_body_size: 250m}
    roles: [redis_sentinel_role]
    letsencrypt: {auto_renew: false}
`,
		"hostile": hd,
	} {
		cfg := parse(t, doc)
		frag, err := renderFragment(cfg, testFacts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rubyCheck(t, ruby, name, frag)
		pw, err := render.Template(templates.FS, rootPasswordTemplate, funcs, struct {
			Header, Parameter, Password string
		}{render.Header, "/p", hostile[3]})
		if err != nil {
			t.Fatal(err)
		}
		rubyCheck(t, ruby, name+" password file", pw)
	}
}

// evaluate lays out /etc/gitlab under a temp root (the package's gitlab.rb with the from_file
// line, the fragment, and the password file when password != ""), evaluates gitlab.rb with
// testdata/evaluate.rb and returns what it set.
func evaluate(t *testing.T, ruby string, frag []byte, password string) (calls map[string]any, settings map[string]map[string]any) {
	t.Helper()
	root := t.TempDir()
	etc := filepath.Join(root, "etc/gitlab")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	rb := "external_url 'http://gitlab.example.com'\ngitlab_rails['time_zone'] = 'UTC'\n\n" + includeComment + IncludeLine + "\n"
	files := map[string][]byte{"gitlab.rb": []byte(rb), "glbootstrap.rb": frag}
	if password != "" {
		pw, err := render.Template(templates.FS, rootPasswordTemplate, funcs, struct {
			Header, Parameter, Password string
		}{render.Header, "/p", password})
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(RootPasswordFile)] = pw
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(etc, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pwned := filepath.Join(root, "pwned")
	cmd := exec.Command(ruby, "testdata/evaluate.rb", GitLabRB)
	cmd.Env = append(os.Environ(), "GLB_ROOT="+root, "GLB_PWNED="+pwned)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if xe, ok := err.(*exec.ExitError); ok {
			stderr = string(xe.Stderr)
		}
		t.Fatalf("evaluating: %v\n%s\n--- fragment\n%s", err, stderr, frag)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatalf("a configuration value ran Ruby code:\n%s", frag)
	}
	var got struct {
		Calls    map[string]any            `json:"calls"`
		Settings map[string]map[string]any `json:"settings"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("evaluator output: %v\n%s", err, out)
	}
	return got.Calls, got.Settings
}

// jsonish converts v to what it looks like after a JSON round trip (numbers as float64).
func jsonish(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFragmentEvaluatesToTheConfiguredValues loads the fragment for each TLS mode and each row of
// omnibusVersions (and an unknown version): the nginx client settings land where that Omnibus
// reads them, and nowhere else, so 19.2+ prints no deprecation (translate_client_settings looks
// at nginx[k] for every client key) and 18.x does not miss them.
func TestFragmentEvaluatesToTheConfiguredValues(t *testing.T) {
	ruby := needTool(t, "ruby", "ruby")
	versions := []string{""}
	for _, row := range omnibusVersions {
		versions = append(versions, row.Since)
	}
	versions = append(versions, "19.3.0")
	for _, c := range []struct {
		name, doc           string
		port                float64
		https, proxy, letse bool
	}{
		{"passthrough", baseDoc + "  ssh_port: 2222\n", 443, true, false, false},
		{"passthrough with gitlab.tls", baseDoc + "  tls: {certificate_parameter: /c, key_parameter: /k}\n", 443, true, false, false},
		{"passthrough with Let's Encrypt", baseDoc + "  letsencrypt: true\n", 443, true, false, true},
		{"tls termination with proxy protocol", baseDoc + "  nlb: {tls_termination: true, proxy_protocol: true}\n", 80, false, true, false},
		{"passthrough with proxy protocol", baseDoc + "  nlb: {proxy_protocol: true}\n  settings:\n    gitlab_rails: {nginx: {client_max_body_size: 250m}}\n", 443, true, true, false},
	} {
		for _, version := range versions {
			t.Run(c.name+" "+version, func(t *testing.T) {
				cfg := parse(t, c.doc)
				frag, err := renderFragmentFor(cfg, testFacts, version)
				if err != nil {
					t.Fatal(err)
				}
				rubyCheck(t, ruby, c.name, frag)
				calls, s := evaluate(t, ruby, frag, "")
				if calls["external_url"] != "https://gitlab.example.com" {
					t.Errorf("external_url = %v (the fragment must win over gitlab.rb's)", calls["external_url"])
				}
				client, other := s["nginx"], map[string]any{}
				if rn, ok := s["gitlab_rails"]["nginx"].(map[string]any); ok {
					other = rn
				}
				moved := version >= "19.2.0" && version != ""
				if moved {
					client, other = other, s["nginx"]
				}
				for _, k := range nginxClientKeys {
					if v, ok := other[k]; ok {
						t.Errorf("Omnibus %q: client setting %s = %v in the wrong place:\n%s", version, k, v, frag)
					}
				}
				if client["listen_port"] != c.port || client["listen_https"] != c.https {
					t.Errorf("Omnibus %q: client settings = %v", version, client)
				}
				if got := s["gitlab_rails"]["gitlab_shell_ssh_port"]; got != float64(cfg.GitLab.SSHPort) {
					t.Errorf("gitlab_shell_ssh_port = %v", got)
				}
				wl := []any{"127.0.0.0/8", "::1/128", "10.0.0.0/16"}
				if got := s["gitlab_rails"]["monitoring_whitelist"]; !reflect.DeepEqual(got, wl) {
					t.Errorf("monitoring_whitelist = %v, want %v", got, wl)
				}
				if s["gitlab_rails"]["time_zone"] != "UTC" {
					t.Error("the admin's own setting in gitlab.rb was lost")
				}
				_, hasProxy := client["proxy_protocol"]
				if hasProxy != c.proxy || (c.proxy && !reflect.DeepEqual(client["real_ip_trusted_addresses"], []any{"10.0.0.0/16"})) {
					t.Errorf("proxy protocol settings = %v", client)
				}
				// Always explicit: nil would let Omnibus turn Let's Encrypt on by itself.
				if got, has := s["letsencrypt"]["enable"]; !has || got != c.letse {
					t.Errorf("letsencrypt = %v, want enable = %v", s["letsencrypt"], c.letse)
				}
				if _, has := s["gitlab_rails"]["initial_root_password"]; has {
					t.Error("initial_root_password set without the password file")
				}
				if strings.Contains(c.doc, "client_max_body_size") && other["client_max_body_size"] == nil && client["client_max_body_size"] == nil {
					t.Errorf("gitlab_rails.nginx setting lost: %v", s["gitlab_rails"])
				}
			})
		}
	}
}

func TestHostileValuesStayInertStrings(t *testing.T) {
	ruby := needTool(t, "ruby", "ruby")
	doc, settings := hostileDoc(t)
	cfg := parse(t, doc)
	frag, err := renderFragment(cfg, testFacts)
	if err != nil {
		t.Fatal(err)
	}
	calls, s := evaluate(t, ruby, frag, hostile[4])
	if calls["external_url"] != "https://gitlab.example.com/git-lab" {
		t.Errorf("external_url = %v", calls["external_url"])
	}
	if calls["registry_external_url"] != hostile[2] {
		t.Errorf("registry_external_url = %q, want %q", calls["registry_external_url"], hostile[2])
	}
	want := jsonish(t, settings["gitlab_rails"]).(map[string]any)
	for k, v := range want {
		if got := s["gitlab_rails"][k]; !reflect.DeepEqual(got, v) {
			t.Errorf("gitlab_rails[%q] = %#v, want %#v", k, got, v)
		}
	}
	if got := s["gitlab_rails"]["initial_root_password"]; got != hostile[4] {
		t.Errorf("initial_root_password = %q, want %q", got, hostile[4])
	}
	if got := s["gitlab_rails"]["store_initial_root_password"]; got != false {
		t.Errorf("store_initial_root_password = %v", got)
	}
	for _, line := range strings.Split(string(frag), "\n") {
		for _, r := range line {
			if r > 0x7e || (r < 0x20 && r != '\t') {
				t.Fatalf("the fragment is not printable ASCII: %q", line)
			}
		}
	}
}

func TestFragmentIsStable(t *testing.T) {
	doc := baseDoc + "  settings:\n    nginx: {b: 1, a: 2}\n    gitlab_rails: {z: x, y: [1, 2]}\n"
	swapped := baseDoc + "  settings:\n    gitlab_rails: {y: [1, 2], z: x}\n    nginx: {a: 2, b: 1}\n"
	a, err := renderFragment(parse(t, doc), testFacts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := renderFragment(parse(t, swapped), testFacts)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Errorf("reordering the YAML changed the fragment:\n%s\n---\n%s", a, b)
	}
	if !strings.HasPrefix(string(a), render.Header) || !strings.Contains(string(a), "# (no backup section in the configuration)") {
		t.Errorf("fragment:\n%s", a)
	}
}

func TestExampleRendersValidRuby(t *testing.T) {
	b, err := os.ReadFile("../../examples/gitlab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, ps := parseDoc(b, Name)
	if cfg == nil || len(ps) != 0 {
		t.Fatalf("examples/gitlab.yaml: %v", ps)
	}
	frag, err := renderFragment(cfg, testFacts)
	if err != nil {
		t.Fatal(err)
	}
	rubyCheck(t, needTool(t, "ruby", "ruby"), "examples/gitlab.yaml", frag)
}
