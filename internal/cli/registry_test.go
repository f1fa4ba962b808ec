package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/role"
	"github.com/glbootstrap/glbootstrap/roles"
)

// A role that exists only in this test, to show what adding a role takes: a configuration
// document with a section of its own, one phase, a Prepare, and one registry entry. Nothing in
// internal/cli or internal/config names it.

// helloConfig is role hello's document: version and a hello section.
type helloConfig struct {
	config.Base `yaml:",inline"`
	Hello       *helloSection `yaml:"hello"`
}

type helloSection struct {
	// Greeting is written to Dir/hello.txt; required.
	Greeting string `yaml:"greeting"`
	// Dir is where; default /opt/hello.
	Dir string `yaml:"dir"`
	// Times repeats the greeting; default 1, 1..10.
	Times int `yaml:"times"`
}

func (c *helloConfig) Check(ck *config.Checker) {
	h := c.Hello
	if h == nil {
		ck.Errorf("hello", "the hello section is required for role hello")
		return
	}
	config.DefaultString(&h.Dir, "/opt/hello")
	if !ck.Present("hello.times") {
		h.Times = 1
	}
	if h.Greeting == "" {
		ck.Errorf("hello.greeting", "is required: what to write")
	}
	if h.Times < 1 || h.Times > 10 {
		ck.Errorf("hello.times", "must be in 1..10, got %d", h.Times)
	}
	ck.ManagedDir("hello.dir", h.Dir)
}

// helloRole is role hello prepared on a host.
type helloRole struct {
	host *host.Host
	cfg  *helloSection
}

func (r *helloRole) Phases() []engine.Phase {
	return []engine.Phase{{Name: "greet", Stage: engine.Boot, Description: "write the greeting to hello.txt",
		Run: func(context.Context) ([]host.Step, error) {
			if _, err := r.host.EnsureDir(r.cfg.Dir, 0o755, host.Owner{}); err != nil {
				return nil, err
			}
			st, err := r.host.EnsureFile(host.File{Path: r.cfg.Dir + "/hello.txt", Mode: 0o644,
				Data: []byte(strings.Repeat(r.cfg.Greeting+"\n", r.cfg.Times))})
			return []host.Step{st}, err
		}}}
}

func (r *helloRole) Secrets() []string { return nil }

var helloDefinition = role.Definition{
	Name:      "hello",
	Title:     "the hello host",
	NewConfig: func() config.Document { return new(helloConfig) },
	Phases:    func() []engine.Phase { return (&helloRole{}).Phases() },
	Prepare: func(_ context.Context, env role.Env, doc config.Document) (role.Prepared, error) {
		return &helloRole{host: env.Host, cfg: doc.(*helloConfig).Hello}, nil
	},
}

// withHello is the build's registry plus role hello: the one line adding a role takes.
var withHello = append(append(role.Registry{}, roles.All...), helloDefinition)

func runWith(t *testing.T, reg role.Registry, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := MainWithRoles(context.Background(), reg, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestARoleIsOnePackageAndOneRegistryLine(t *testing.T) {
	// No AWS and no instance metadata: a closed port, so a stray read fails fast and visibly.
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1")
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("hello.yaml", "version: 1\nhello:\n  greeting: hi\n  times: 2\n  dir: /srv/hello\n")

	t.Run("phases", func(t *testing.T) {
		code, out, stderr := runWith(t, withHello, "phases", "--role", "hello")
		if code != 0 || !strings.HasPrefix(out, "greet ") || !strings.Contains(out, "write the greeting") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		code, _, stderr = runWith(t, withHello, "phases", "--role", "bogus")
		if code != ExitUsage || !strings.Contains(stderr, "one of runner, gitlab, hello") {
			t.Errorf("unknown role: exit %d, %q", code, stderr)
		}
		// Without the registry line the role does not exist.
		code, _, _ = runWith(t, roles.All, "phases", "--role", "hello")
		if code != ExitUsage {
			t.Errorf("hello without registration: exit %d", code)
		}
	})

	t.Run("validate", func(t *testing.T) {
		code, out, stderr := runWith(t, withHello, "validate", "--role", "hello", "--config", good)
		if code != 0 || !strings.Contains(out, "valid for role hello") {
			t.Fatalf("valid: exit %d %q %q", code, out, stderr)
		}
		bad := write("bad.yaml", "version: 1\nhello:\n  greting: hi\n  times: 11\n  dir: /etc\nrunner:\n  concurrent: 1\n")
		code, _, stderr = runWith(t, withHello, "validate", "--role", "hello", "--config", bad)
		for _, want := range []string{
			`hello.greting (line 3): unknown key; did you mean "greeting"?`,
			"hello.times (line 4): must be in 1..10, got 11",
			`hello.dir (line 5): "/etc" is a system directory`,
			"runner (line 6): the runner section belongs to role runner: is this the runner front's configuration? Give the hello host's configuration to --role hello",
			"hello.greeting (line 2): is required: what to write",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if code != ExitInvalidConfig {
			t.Errorf("exit %d, want 3", code)
		}
		// The other way round: hello's section in a runner front's configuration.
		example, err := os.ReadFile("../../examples/runner.yaml")
		if err != nil {
			t.Fatal(err)
		}
		p := write("runner.yaml", string(example)+"hello:\n  greeting: hi\n")
		code, _, stderr = runWith(t, withHello, "validate", "--role", "runner", "--config", p)
		line := strings.Count(string(example), "\n") + 1
		if want := fmt.Sprintf("hello (line %d): the hello section belongs to role hello: is this the hello host's configuration? Give the runner front's configuration to --role runner", line); code != ExitInvalidConfig || !strings.Contains(stderr, want) {
			t.Errorf("runner with a hello section: exit %d, stderr lacks %q:\n%s", code, want, stderr)
		}
	})

	t.Run("plan and apply under --root", func(t *testing.T) {
		root := t.TempDir()
		target := filepath.Join(root, "srv/hello/hello.txt")
		code, out, stderr := runWith(t, withHello, "plan", "--role", "hello", "--config", good, "--root", root)
		if code != ExitPlanChanges || !strings.Contains(out, "greet") {
			t.Fatalf("plan: exit %d\n%s%s", code, out, stderr)
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Fatalf("plan wrote %s: %v", target, err)
		}
		code, out, stderr = runWith(t, withHello, "apply", "--role", "hello", "--config", good, "--root", root)
		if code != 0 || !strings.Contains(out, "1 changed") {
			t.Fatalf("apply: exit %d\n%s%s", code, out, stderr)
		}
		if b, err := os.ReadFile(target); err != nil || string(b) != "hi\nhi\n" {
			t.Fatalf("%s = %q, %v", target, b, err)
		}
		code, out, stderr = runWith(t, withHello, "apply", "--role", "hello", "--config", good, "--root", root)
		if code != 0 || !strings.Contains(out, "0 changed") {
			t.Errorf("second apply: exit %d\n%s%s", code, out, stderr)
		}
		code, _, stderr = runWith(t, withHello, "plan", "--role", "hello", "--config", good, "--root", root)
		if code != 0 {
			t.Errorf("plan after apply: exit %d\n%s", code, stderr)
		}
	})
}

func TestRegistryCheck(t *testing.T) {
	for _, tc := range []struct {
		reg  role.Registry
		want string
	}{
		{roles.All, ""},
		{withHello, ""},
		{append(append(role.Registry{}, roles.All...), roles.All[0]), `role "runner" is registered twice`},
		{role.Registry{{Name: "Web", Title: "x"}}, `name "Web" is not a lower-case word`},
		{role.Registry{{Name: "web"}}, `role "web": a definition needs Title, NewConfig, Phases and Prepare`},
	} {
		err := tc.reg.Check()
		if got := fmt.Sprint(err); tc.want == "" && err != nil || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("Check(%v) = %v, want %q", tc.reg.Names(), err, tc.want)
		}
	}
	if code, _, stderr := runWith(t, role.Registry{{Name: "web"}}, "version"); code != ExitFailed || !strings.Contains(stderr, "a definition needs") {
		t.Errorf("bad registry: exit %d %q", code, stderr)
	}
}
