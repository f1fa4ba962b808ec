package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"apply", "--config", "x.yaml"}, "--role is required"},
		{[]string{"apply", "--role", "web", "--config", "x.yaml"}, `unknown role "web": one of runner`},
		{[]string{"apply", "--role", "runner"}, "--config is required"},
		{[]string{"plan", "--role", "runner", "--config", "x", "--output", "yaml"}, "--output must be text or json"},
		{[]string{"apply", "--role", "runner", "--config", "x", "--phase", "nope"}, `unknown phase "nope"`},
		{[]string{"apply", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"version", "extra"}, "unknown command"},
	} {
		code, _, stderr := run(t, "", tc.args...)
		if code != ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestVersionAndPhases(t *testing.T) {
	code, out, _ := run(t, "", "version")
	if code != 0 || out != "glbootstrap dev\n" {
		t.Errorf("version: %d %q", code, out)
	}
	code, out, _ = run(t, "", "phases", "--role", "runner")
	if code != 0 {
		t.Fatalf("phases: %d", code)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		names = append(names, strings.Fields(l)[0])
	}
	if got := strings.Join(names, " "); got != "packages directories fargate-driver coordinator-image preflight fargate-config register runner-config service" {
		t.Errorf("phases = %q", got)
	}
}

func TestValidateFromStdinAndFile(t *testing.T) {
	example, err := os.ReadFile("../../examples/runner.yaml")
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr := run(t, string(example), "validate", "--role", "runner", "--config", "-")
	if code != 0 || !strings.Contains(out, "valid for role runner") {
		t.Fatalf("valid example: %d %q %q", code, out, stderr)
	}
	bad := strings.Replace(string(example), "concurrent: 200", "concurrent: 0", 1)
	bad = strings.Replace(bad, "security_group: sg-0123456789abcdef0", "security_group: sg-xyz", 1)
	p := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, "", "validate", "--role", "runner", "--config", p)
	if code != ExitInvalidConfig {
		t.Fatalf("exit %d, want 3; %s", code, stderr)
	}
	for _, want := range []string{"runner.concurrent (line ", "must be > 0", "fargate.security_group (line ", "2 problem(s)\n"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	code, _, stderr = run(t, "", "validate", "--role", "runner", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != ExitInvalidConfig || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing file: %d %s", code, stderr)
	}
}

// TestJSONErrorLine: with --output json an error that ends the run is one
// JSON line on stdout too, so SSM and CloudWatch consumers see why.
func TestJSONErrorLine(t *testing.T) {
	code, out, _ := run(t, "version: 1\nrunner:\n  concurent: 1\n", "plan", "--role", "runner", "--config", "-", "-o", "json")
	if code != ExitInvalidConfig {
		t.Fatalf("exit %d", code)
	}
	var line struct {
		Type     string   `json:"type"`
		ExitCode int      `json:"exit_code"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(out), &line); err != nil {
		t.Fatalf("stdout is not one JSON line: %q", out)
	}
	found := false
	for _, p := range line.Problems {
		found = found || strings.Contains(p, `runner.concurent (line 3): unknown key; did you mean "concurrent"?`)
	}
	if line.Type != "error" || line.ExitCode != 3 || !found {
		t.Errorf("line = %+v", line)
	}
}
