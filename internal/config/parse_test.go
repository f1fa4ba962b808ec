package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Two made-up roles exercise the reader without any real role: alpha and beta share the gitlab
// section (each extends it) and each has a section of its own. The real roles' rules are tested
// beside them (roles/runner, roles/gitlab).

type alphaDoc struct {
	Base   `yaml:",inline"`
	GitLab alphaGitLab `yaml:"gitlab"`
	Alpha  *alphaSec   `yaml:"alpha"`
}

type alphaGitLab struct {
	GitLab         `yaml:",inline"`
	TokenParameter string `yaml:"token_parameter"`
}

type alphaSec struct {
	On   bool     `yaml:"on"`
	Size int      `yaml:"size"`
	Dir  string   `yaml:"dir"`
	Tags []string `yaml:"tags"`
	Free free     `yaml:"free"`
}

// free is a value that checks its own node: every key must be lower case.
type free struct{ keys []string }

func (f *free) CheckNode(n *yaml.Node, path string, report func(string, int, string)) bool {
	if n.Kind != yaml.MappingNode {
		report(path, n.Line, "must be a mapping, got "+DescribeNode(n))
		return false
	}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; strings.ToLower(k.Value) != k.Value {
			report(path+"."+k.Value, k.Line, "keys are lower case")
			ok = false
		}
	}
	return ok
}

func (f *free) UnmarshalYAML(n *yaml.Node) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		f.keys = append(f.keys, n.Content[i].Value)
	}
	return nil
}

func (d *alphaDoc) Check(c *Checker) {
	CheckGitLab(c, &d.GitLab.GitLab)
	if d.Alpha == nil {
		c.Errorf("alpha", "the alpha section is required")
		return
	}
	if !c.Present("alpha.size") {
		d.Alpha.Size = 3
	}
	if d.Alpha.Size < 1 {
		c.Errorf("alpha.size", "must be > 0, got %d", d.Alpha.Size)
	}
	if d.Alpha.Dir != "" {
		c.ManagedDir("alpha.dir", d.Alpha.Dir)
	}
}

type betaDoc struct {
	Base   `yaml:",inline"`
	GitLab struct {
		GitLab  `yaml:",inline"`
		Edition string `yaml:"edition"`
	} `yaml:"gitlab"`
	Beta *struct {
		Name string `yaml:"name"`
	} `yaml:"beta"`
}

func (d *betaDoc) Check(c *Checker) { CheckGitLab(c, &d.GitLab.GitLab) }

var testSchemas = []Schema{
	{Role: "alpha", Title: "the alpha host", New: func() Document { return new(alphaDoc) }},
	{Role: "beta", Title: "the beta host", New: func() Document { return new(betaDoc) }},
}

const alphaBase = "version: 1\ngitlab:\n  url: https://gitlab.example.com\nalpha:\n  size: 2\n"

func strs(ps Problems) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func TestParseUsesTheRolesDocument(t *testing.T) {
	doc, ps := Parse([]byte(alphaBase+"  free: {a: 1, b: 2}\n  tags: [x]\n"), "alpha", testSchemas)
	if err := ps.Err(); err != nil {
		t.Fatal(err)
	}
	d := doc.(*alphaDoc)
	if d.Version != 1 || d.GitLab.URL != "https://gitlab.example.com" || d.Alpha.Size != 2 ||
		!slices.Equal(d.Alpha.Free.keys, []string{"a", "b"}) || !slices.Equal(d.Alpha.Tags, []string{"x"}) {
		t.Errorf("decoded %+v %+v", d, d.Alpha)
	}
	if d.GitLab.ReadyTimeout != Duration(DefaultReadyTimeout) {
		t.Errorf("shared gitlab defaults not applied: %v", d.GitLab.ReadyTimeout)
	}
	doc, _ = Parse([]byte("version: 1\ngitlab: {url: https://g.example.com}\nalpha: {}\n"), "alpha", testSchemas)
	if doc.(*alphaDoc).Alpha.Size != 3 {
		t.Errorf("role default not applied: %+v", doc.(*alphaDoc).Alpha)
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name, role, data string
		want             []string
	}{
		{"empty", "alpha", "", []string{"the configuration is empty; role alpha needs at least version: 1 and its sections (gitlab, alpha; see examples/alpha.yaml)"}},
		{"only comments", "alpha", "# nothing\n", []string{"the configuration is empty; role alpha needs at least version: 1 and its sections (gitlab, alpha; see examples/alpha.yaml)"}},
		{"null", "beta", "~\n", []string{"the configuration is empty; role beta needs at least version: 1 and its sections (gitlab, beta; see examples/beta.yaml)"}},
		{"two documents", "alpha", "version: 1\n---\nversion: 1\n", []string{"line 2: a second YAML document starts here; the configuration must be one document (remove the --- separator)"}},
		{"syntax error", "alpha", "version: 1\ngitlab:\n  url: [\n", []string{"line 3: invalid YAML: did not find expected node content"}},
		{"tab indentation", "alpha", "version: 1\ngitlab:\n\turl: x\n", []string{"line 3: invalid YAML: found character that cannot start any token; the line is indented with a tab: YAML indents with spaces only"}},
		{"not a mapping", "alpha", "- version: 1\n", []string{"line 1: the configuration is a list of 1 item(s), not a YAML mapping (version: ..., gitlab: ..., alpha: ...): " + notASecret}},
		{"a single string", "alpha", "hunter2-Secret\n", []string{"line 1: the configuration is a string of 14 character(s), not a YAML mapping (version: ..., gitlab: ..., alpha: ...): " + notASecret}},
		{"not YAML and no version", "alpha", "a: b: c\n", []string{"invalid YAML: mapping values are not allowed in this context; it has no version: line either, so it is not a glbootstrap configuration: " + notASecret}},
		{"merge key", "alpha", "version: 1\nbase: &b {url: https://g.example.com}\ngitlab:\n  <<: *b\nalpha: {}\n", []string{
			`base (line 2): unknown key; known keys in the top level: version, instance, packages, gitlab, alpha`,
			"gitlab (line 4): merge keys (<<) are not supported; write the keys out",
		}},
		{"alias is followed", "alpha", alphaBase + "  dir: &d /opt/a\n  tags: [*d]\n", nil},
		{"version", "alpha", strings.Replace(alphaBase, "version: 1", "version: 2", 1), []string{"version (line 1): unsupported schema version 2; this glbootstrap reads version 1"}},
		{"no version", "alpha", strings.Replace(alphaBase, "version: 1", "", 1), []string{"version: is required; write version: 1"}},
		{"role rule with line", "alpha", strings.Replace(alphaBase, "size: 2", "size: 0", 1), []string{"alpha.size (line 5): must be > 0, got 0"}},
		{"required section", "alpha", "version: 1\ngitlab:\n  url: https://gitlab.example.com\n", []string{"alpha: the alpha section is required"}},
		{"kinds", "alpha", alphaBase + "  tags: x\n  dir: [a]\n", []string{
			`alpha.tags (line 6): must be a list, got "x"`, "alpha.dir (line 7): must be a string, got a list"}},
		{"unknown key close", "alpha", alphaBase + "  sise: 1\n", []string{`alpha.sise (line 6): unknown key; did you mean "size"?`}},
		{"unknown key in another section", "alpha", alphaBase + "  url: x\n", []string{`alpha.url (line 6): unknown key; did you mean gitlab.url? (it belongs in another section)`}},
		{"inline keys are the section's", "alpha", strings.Replace(alphaBase, "gitlab:\n", "gitlab:\n  token_parameter: /a/b\n  ready_timeout: 90s\n", 1), nil},
		{"a key of the shared section only another role reads", "alpha", strings.Replace(alphaBase, "gitlab:\n", "gitlab:\n  edition: ce\n", 1),
			[]string{"warning: gitlab.edition (line 3): is read by role beta (the beta host) only; role alpha ignores it: is this the beta host's configuration?"}},
		{"another role's section", "alpha", alphaBase + "beta:\n  name: b\n",
			[]string{"beta (line 6): the beta section belongs to role beta: is this the beta host's configuration? Give the alpha host's configuration to --role alpha"}},
		{"and the other way round", "beta", "version: 1\ngitlab:\n  url: https://gitlab.example.com\n  token_parameter: /a/b\nalpha:\n  size: 2\n", []string{
			"warning: gitlab.token_parameter (line 4): is read by role alpha (the alpha host) only; role beta ignores it: is this the alpha host's configuration?",
			"alpha (line 5): the alpha section belongs to role alpha: is this the alpha host's configuration? Give the beta host's configuration to --role beta"}},
		{"a value that checks itself", "alpha", alphaBase + "  free:\n    ok: 1\n    Bad: 2\n", []string{"alpha.free.Bad (line 8): keys are lower case"}},
		{"a self-checking value of the wrong kind", "alpha", alphaBase + "  free: [1]\n", []string{`alpha.free (line 6): must be a mapping, got a list`}},
		{"system directory", "alpha", alphaBase + "  dir: /etc/x\n", []string{`alpha.dir (line 6): "/etc/x" is a system directory or lies directly in one; use a directory of its own such as /opt/gitlab-runner/...`}},
		{"secret under an unknown key", "alpha", alphaBase + "  token: glpat-AbCdEfGhIjKlMnOpQrSt\n", []string{
			"alpha.token (line 6): holds what looks like a personal access token (glpat-********); secrets never go in the configuration: store it in an SSM SecureString parameter and put the parameter's name in runner.create.access_token_parameter",
			"alpha.token (line 6): unknown key; known keys in alpha: on, size, dir, tags, free"}},
		{"instance facts", "alpha", alphaBase + "instance:\n  id: i-0123456789abcdef0\n  private_ipv4: 10.0.1.20\n  security_groups: [sg-0aaaaaaaaaaaaaaaa]\n  vpc_cidr: 10.0.0.0/16\n", nil},
		{"instance facts invalid", "alpha", alphaBase + "instance:\n  id: 12\n  private_ipv4: ::1\n  security_groups: [sg-1]\n  vpc_cidr: 10.0.0.1/16\n", []string{
			`instance.id (line 7): "12" is not an instance id (i- and 8 or 17 lower-case hex digits)`,
			`instance.private_ipv4 (line 8): "::1" is not an IPv4 address such as 10.0.1.20`,
			`instance.security_groups[0] (line 9): "sg-1" is not a security group id (sg- and 8 or 17 lower-case hex digits)`,
			`instance.vpc_cidr (line 10): "10.0.0.1/16" has host bits set; write 10.0.0.0/16`}},
		{"duplicated key", "alpha", alphaBase + "  size: 3\n", []string{"alpha.size (line 6): duplicated key; it is already set on line 5"}},
		{"a mirror that re-signs with its own key", "alpha", alphaBase + "packages:\n  mirror: https://aptly.internal\n  mirror_key_fingerprint: 5A2B 0C91 D4E3 F6A7 B8C9  0D1E 2F3A 4B5C 6D7E 8F90\n", nil},
		{"mirror with credentials", "alpha", alphaBase + "packages:\n  mirror: https://ci:hunter2-Secret@aptly.internal/gitlab\n", []string{
			"packages.mirror (line 7): has a user name or password in it (https://ci:xxxxx@aptly.internal/gitlab): the configuration is not secret " +
				"(it is embedded in user-data and written to the package manager's world-readable repository file) and glbootstrap takes no mirror credentials: " +
				"let the mirror admit the VPC without them (its security group, or a VPC endpoint policy)"}},
		{"mirror without a scheme", "alpha", alphaBase + "packages:\n  mirror: aptly.internal\n", []string{
			`packages.mirror (line 7): "aptly.internal" is not a base URL such as https://packages.example.internal (http or https, no query)`}},
		{"mirror key without a mirror", "alpha", alphaBase + "packages:\n  mirror_key_fingerprint: 5A2B0C91D4E3F6A7B8C90D1E2F3A4B5C6D7E8F90\n", []string{
			"packages.mirror_key_fingerprint (line 7): is only valid with packages.mirror: GitLab's own repository is always checked against GitLab's pinned key; set packages.mirror or remove this key"}},
		{"mirror key not a fingerprint", "alpha", alphaBase + "packages:\n  mirror: https://aptly.internal\n  mirror_key_fingerprint: 0x6D7E8F90\n", []string{
			`packages.mirror_key_fingerprint (line 8): "0x6D7E8F90" is not an OpenPGP fingerprint: want the 40 hex digits gpg --fingerprint prints for the mirror's signing key`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, ps := Parse([]byte(tt.data), tt.role, testSchemas)
			if got := strs(ps); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n got  %q\n want %q", got, tt.want)
			}
			if (doc == nil) != (len(ps.Errors()) > 0) {
				t.Errorf("document is nil: %v, with %d errors", doc == nil, len(ps.Errors()))
			}
		})
	}
}

// TestBooleansAreTrueOrFalse: a boolean key takes YAML's true or false; every string, quoted or
// not, YAML 1.1's yes/on/y included, is refused with the same message.
func TestBooleansAreTrueOrFalse(t *testing.T) {
	for _, v := range []string{"true", "false", "True", "FALSE"} {
		if _, ps := Parse([]byte(alphaBase+"  on: "+v+"\n"), "alpha", testSchemas); ps.Err() != nil {
			t.Errorf("%s refused: %v", v, ps.Err())
		}
	}
	for _, v := range []string{`"true"`, `'false'`, `"yes"`, `"on"`, "yes", "on", "no", "off", "y", "n", `"1"`, "1"} {
		_, ps := Parse([]byte(alphaBase+"  on: "+v+"\n"), "alpha", testSchemas)
		want := fmt.Sprintf("alpha.on (line 6): must be true or false, got %q", strings.Trim(v, `"'`))
		if got := strs(ps); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %q, want %q", v, got, want)
		}
	}
}

func TestUnknownRole(t *testing.T) {
	doc, ps := Parse([]byte(alphaBase), "front", testSchemas)
	if doc != nil || len(ps) != 1 || ps[0].String() != `unknown role "front"; want one of alpha, beta` {
		t.Errorf("got %v %q", doc, strs(ps))
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{Path: "runner.concurrent", Line: 12, Message: "must be > 0"}, "runner.concurrent (line 12): must be > 0"},
		{Problem{Path: "runner", Message: "x"}, "runner: x"},
		{Problem{Line: 3, Message: "x"}, "line 3: x"},
		{Problem{Message: "x"}, "x"},
		{Problem{Path: "runner.limit", Line: 9, Message: "x", Warning: true}, "warning: runner.limit (line 9): x"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestProblemsFilters(t *testing.T) {
	ps := Problems{{Path: "a", Message: "e1"}, {Path: "b", Message: "w", Warning: true}, {Path: "c", Message: "e2"}}
	if got := strs(ps.Errors()); !slices.Equal(got, []string{"a: e1", "c: e2"}) {
		t.Errorf("Errors() = %q", got)
	}
	if got := strs(ps.Warnings()); !slices.Equal(got, []string{"warning: b: w"}) {
		t.Errorf("Warnings() = %q", got)
	}
	if err := ps.Err(); err == nil || err.Error() != "a: e1\nc: e2" {
		t.Errorf("Err() = %v", err)
	}
	if err := ps.Warnings().Err(); err != nil {
		t.Errorf("warnings alone: Err() = %v", err)
	}
}

// TestManagedPlacesStayOutOfTheSystem: a managed directory is refused anywhere under /etc, /usr,
// /boot, /proc, /sys, /dev and glbootstrap's own state directory, at any depth; a managed
// program too, but for /usr/local/bin and /usr/local/sbin.
func TestManagedPlacesStayOutOfTheSystem(t *testing.T) {
	check := func(f func(c *Checker)) []string {
		p := &parser{lines: map[string]int{}, present: map[string]bool{}, bad: map[string]bool{}}
		f(&Checker{p})
		return strs(p.problems)
	}
	for _, dir := range []string{"/etc/gitlab-runner/builds", "/usr/local/ci", "/usr/share/a/b", "/boot/efi/x", "/proc/self/x",
		"/sys/fs/x", "/dev/shm/ci", "/var/lib/glbootstrap", "/var/lib/glbootstrap/builds/x"} {
		got := check(func(c *Checker) { c.ManagedDir("x.dir", dir) })
		if len(got) != 1 || !strings.Contains(got[0], "is under /") || !strings.Contains(got[0], "use a directory of its own") {
			t.Errorf("%s: %q", dir, got)
		}
	}
	for _, dir := range []string{"/opt/gitlab-runner/builds", "/srv/ci/cache", "/var/lib/gitlab-runner/metadata", "/home/ci/builds", "/var/lib/glbootstrap-other"} {
		if got := check(func(c *Checker) { c.ManagedDir("x.dir", dir) }); len(got) != 0 {
			t.Errorf("%s refused: %q", dir, got)
		}
	}
	for p, ok := range map[string]bool{"/usr/local/bin/fargate": true, "/opt/gitlab-runner/fargate": true,
		"/usr/lib/x/fargate": false, "/var/lib/glbootstrap/fargate": false, "/boot/x/fargate": false, "/etc/x/fargate": false} {
		got := check(func(c *Checker) { c.ProgramPath("x.path", p, "/opt/gitlab-runner/fargate") })
		if ok != (len(got) == 0) {
			t.Errorf("program %s: %q", p, got)
		}
	}
}

func TestSystemDirectoriesRefused(t *testing.T) {
	for _, p := range []string{"/", "/etc", "/usr/bin", "/etc/passwd", "/usr/bin/fargate", "/var/lib", "/opt"} {
		if !SystemPath(p) {
			t.Errorf("%s accepted", p)
		}
	}
	for _, p := range []string{"/opt/gitlab-runner", "/opt/gitlab-runner/builds", "/var/lib/gitlab-runner", "/srv/ci", "/usr/local/gitlab-runner"} {
		if SystemPath(p) {
			t.Errorf("%s refused", p)
		}
	}
}

// TestParseNeverEchoesANonMapping: a source that is not a configuration (--config pointed at a
// SecureString: a password, a PEM key, a JSON list, a value YAML reads as an alias or a tag) is
// described by its shape and nothing of it is shown, however it parses or fails to.
func TestParseNeverEchoesANonMapping(t *testing.T) {
	tests := []struct {
		name, data, want string
		secrets          []string
	}{
		{"password", "demo-Root-pw'\"#{1}-0001", "is a string of 23 character(s), not a YAML mapping", []string{"demo-Root-pw", "#{1}-0001"}},
		{"quoted password", `"s3cr3t-Value"`, "is a string of 12 character(s)", []string{"s3cr3t"}},
		{"number", "918273645\n", "is a single value of 9 character(s)", []string{"918273645"}},
		{"PEM key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\nAAAAAAAABAAABlwAAAAdzc2gtcn\n-----END OPENSSH PRIVATE KEY-----\n",
			"is a string of 129 character(s)", []string{"b3BlbnNz", "AAAAdzc2", "OPENSSH"}},
		{"literal block", "|\n  first-secret-line\n  second-secret-line\n", "is a string of 37 character(s) on 2 lines", []string{"first-secret", "second-secret"}},
		{"JSON list", `["user-one", "pw-two"]`, "is a list of 2 item(s)", []string{"user-one", "pw-two"}},
		{"alias", "*Secret-Alias-pw\n", "an alias (*name) refers to an anchor (&name) that is not defined", []string{"Secret-Alias-pw"}},
		{"tagged", "!Tagged-pw value-pw\n", "is a single value of 8 character(s)", []string{"Tagged-pw", "value-pw"}},
		{"invalid YAML", "pw: is: hunter-two\n", "invalid YAML: mapping values are not allowed", []string{"hunter-two", "pw:"}},
		{"two documents", "pw-one\n---\npw-two\n", "a second YAML document starts here", []string{"pw-one", "pw-two"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, ps := Parse([]byte(tt.data), "alpha", testSchemas)
			if doc != nil || len(ps.Errors()) != 1 {
				t.Fatalf("want one error, got %q", strs(ps))
			}
			got := ps.Errors()[0].String()
			if !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want it to say %q", got, tt.want)
			}
			for _, s := range tt.secrets {
				if strings.Contains(got, s) {
					t.Errorf("%q shows %q from the document", got, s)
				}
			}
		})
	}
}

// TestYAMLErrorsAreRedacted: the library's error texts that copy part of the document lose it,
// checked against the errors the library itself produces (a new wording fails here).
func TestYAMLErrorsAreRedacted(t *testing.T) {
	var n int
	var m map[string]any
	var mi map[any]any
	for _, tt := range []struct {
		name, data string
		into       any
		want       string
		secrets    []string
	}{
		{"long value", "pw-Long-Secret-Value", &n, "cannot unmarshal !!str value into int", []string{"pw-Long"}},
		{"short value", "pw`x`9", &n, "cannot unmarshal !!str value into int", []string{"pw", "x`9"}},
		{"unknown anchor", "a: *Anchor-pw\n", &m, "an alias (*name) refers to an anchor (&name) that is not defined before it", []string{"Anchor-pw"}},
		{"invalid map key", "[x-secret-key]: 1\n", &mi, "invalid map key", []string{"x-secret-key"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := yaml.Unmarshal([]byte(tt.data), tt.into)
			if err == nil {
				t.Fatal("no error from the library")
			}
			var msgs []string
			var te *yaml.TypeError
			if errors.As(err, &te) {
				msgs = te.Errors
			} else {
				msgs = []string{err.Error()}
			}
			for _, e := range msgs {
				_, got := splitYAMLError(e)
				if !strings.Contains(got, tt.want) {
					t.Errorf("%q became %q, want it to say %q", e, got, tt.want)
				}
				for _, s := range tt.secrets {
					if strings.Contains(got, s) {
						t.Errorf("%q became %q, which still shows %q", e, got, s)
					}
				}
			}
		})
	}
}
