package main

// Blackbox tests: the real binary, built once, against a temp --root and
// the stand-ins of internal/testenv (AWS's metadata mock, gofakes3, the SSM
// and GitLab stand-ins), configured only through the AWS SDK's standard
// environment variables.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/gofrs/flock"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/standin"
)

var binary string

func TestMain(m *testing.M) {
	// This test binary doubles as Omnibus's gitlab-backup for the backup tests.
	if os.Getenv(standInFlag) != "" {
		if err := standin.GitLabBackup(context.Background(), os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "glb-blackbox-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "glbootstrap")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building glbootstrap: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// world is one stack of stand-ins and one seeded root.
type world struct {
	t     testing.TB
	stack *testenv.Stack
	root  string
	env   []string
	// known are secrets beyond the stack's own (testenv.Stack.Secrets): those of a GitLab the
	// test replaced, values a test made up. run fails the test when output holds any of them.
	known []testenv.Secret
}

// secret adds a secret value the test made up, so that run fails the test on its appearance.
func (w *world) secret(source, value string) {
	w.known = append(w.known, testenv.Secret{Source: source, Value: value})
}

// secrets are every secret the world's stand-ins were seeded with or handed out.
func (w *world) secrets() []testenv.Secret {
	return append(w.stack.Secrets(), w.known...)
}

// failOnLeak fails t when out (a run's stdout and stderr) holds any of secrets, in any encoding
// (testenv.Leaks). Every run of the binary in these tests passes through it.
func failOnLeak(t testing.TB, what, out string, secrets []testenv.Secret) {
	t.Helper()
	for _, l := range testenv.Leaks(out, secrets) {
		t.Errorf("%s printed a secret (%s: %q):\n%s", what, l.Source, l.Value, out)
	}
}

func newWorld(t testing.TB, v testenv.IMDSValues) *world {
	t.Helper()
	// Not a context with a deadline: the metadata mock lives as long as the test.
	stack, err := testenv.StartStack(context.Background(), v)
	if err != nil {
		t.Fatalf("starting stand-ins: %v", err)
	}
	t.Cleanup(stack.Close)
	root := t.TempDir()
	if err := testenv.SeedRunnerRoot(root, stack.GitLab.CAPEM()); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, stack: stack, root: root, env: stack.Env(os.Environ())}
	w.setConfig(stack.RunnerConfig(testenv.CreateAuth, ""))
	return w
}

func (w *world) setConfig(yaml string) { w.stack.SSM.Put(testenv.StackConfigParam, yaml, true) }

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

func (w *world) run(args ...string) result {
	w.t.Helper()
	return runBinary(w.t, w.env, w.secrets(), args...)
}

// runBinary runs glbootstrap with args in env and fails t when its output holds any of
// secrets: every run of the binary in these tests goes through here.
func runBinary(t testing.TB, env []string, secrets []testenv.Secret, args ...string) result {
	t.Helper()
	return runExecutable(t, binary, env, secrets, args...)
}

// runExecutable is runBinary with glbootstrap at exe (a copy of binary somewhere else).
func runExecutable(t testing.TB, exe string, env []string, secrets []testenv.Secret, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var xe *exec.ExitError
	switch {
	case errors.As(err, &xe):
		r.code = xe.ExitCode()
	case err != nil:
		t.Fatalf("running glbootstrap: %v", err)
	}
	failOnLeak(t, "glbootstrap "+strings.Join(args, " "), "--- stdout\n"+r.stdout+"--- stderr\n"+r.stderr, secrets)
	return r
}

func (w *world) apply(extra ...string) result {
	w.t.Helper()
	return w.run(append([]string{"apply", "--role", "runner", "--config", "ssm:" + testenv.StackConfigParam, "--root", w.root}, extra...)...)
}

func (w *world) plan(extra ...string) result {
	w.t.Helper()
	return w.run(append([]string{"plan", "--role", "runner", "--config", "ssm:" + testenv.StackConfigParam, "--root", w.root}, extra...)...)
}

func (w *world) read(p string) string {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.root, p))
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}

// snapshot is every path under the root with its mode and content hash.
func (w *world) snapshot() string {
	w.t.Helper()
	var lines []string
	err := filepath.WalkDir(w.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(w.root, p)
		if rel == "run" || strings.HasPrefix(rel, "run/") {
			return nil // the lock file is the only thing a failed run may leave
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		sum := ""
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			sum = hex.EncodeToString(s[:8])
		}
		lines = append(lines, fmt.Sprintf("%s %v %s", rel, info.Mode(), sum))
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestApplyConvergesThenChangesNothing(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	first := w.apply()
	if first.code != 0 {
		t.Fatalf("first apply: %s", first)
	}
	for _, want := range []string{"[runner] directories", "created runner #", "6 changed, 1 unchanged, 0 failed"} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("first apply output lacks %q:\n%s", want, first)
		}
	}

	// The tree a user expects.
	for p, mode := range map[string]fs.FileMode{
		"etc/gitlab-runner/config.toml":       0o600,
		"etc/gitlab-runner/fargate.toml":      0o644,
		"etc/gitlab-runner/.runner_system_id": 0o600,
		"var/lib/glbootstrap/runner.json":     0o600,
		"opt/gitlab-runner/fargate":           0o755,
	} {
		info, err := os.Stat(filepath.Join(w.root, p))
		if err != nil || info.Mode().Perm() != mode {
			t.Errorf("%s: mode %v err %v, want %04o", p, info, err, mode)
		}
	}
	if got := w.read("opt/gitlab-runner/fargate"); got != string(w.stack.Driver) {
		t.Error("installed driver differs from the mirror's")
	}
	if info, err := os.Stat(filepath.Join(w.root, "opt/gitlab-runner/metadata")); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("metadata dir: %v %v", info, err)
	}
	if _, err := os.Lstat(filepath.Join(w.root, "etc/systemd/system/multi-user.target.wants/gitlab-runner.service")); err != nil {
		t.Errorf("gitlab-runner.service not enabled offline: %v", err)
	}

	var cfg struct {
		Runners []struct {
			URL      string `toml:"url"`
			CloneURL string `toml:"clone_url"`
			ID       int64  `toml:"id"`
			Token    string `toml:"token"`
		} `toml:"runners"`
	}
	if _, err := toml.Decode(w.read("etc/gitlab-runner/config.toml"), &cfg); err != nil {
		t.Fatal(err)
	}
	runners := w.stack.GitLab.Runners()
	if len(cfg.Runners) != 1 || len(runners) != 1 {
		t.Fatalf("config.toml has %d [[runners]], GitLab %d runners", len(cfg.Runners), len(runners))
	}
	if cfg.Runners[0].ID != runners[0].ID {
		t.Errorf("config.toml id = %d, want the created runner's id %d (gitlab-runner reset-token --id)", cfg.Runners[0].ID, runners[0].ID)
	}
	if cfg.Runners[0].Token != runners[0].Token || !strings.HasPrefix(runners[0].Token, "glrt-") {
		t.Error("config.toml token is not the created runner's glrt- token")
	}
	if cfg.Runners[0].URL != w.stack.GitLab.URL() || cfg.Runners[0].CloneURL != w.stack.GitLab.URL() {
		t.Errorf("url/clone_url = %q/%q, want the published private URL %q", cfg.Runners[0].URL, cfg.Runners[0].CloneURL, w.stack.GitLab.URL())
	}
	if strings.Contains(first.stdout+first.stderr, runners[0].Token) || strings.Contains(first.stdout+first.stderr, testenv.StackAccessTokenVal) {
		t.Error("a token was printed")
	}
	if got := runners[0].Tags; len(got) != 1 || got[0] != "fargate" {
		t.Errorf("tags on GitLab = %v", got)
	}

	before := w.snapshot()
	for i := 0; i < 10; i++ {
		again := w.apply()
		if again.code != 0 || !strings.Contains(again.stdout, "0 changed, 7 unchanged, 0 failed") {
			t.Fatalf("apply #%d: %s", i+2, again)
		}
	}
	if after := w.snapshot(); after != before {
		t.Errorf("converged applies changed the tree:\n%s\n---\n%s", before, after)
	}
	if n := len(w.stack.GitLab.Runners()); n != 1 {
		t.Errorf("GitLab has %d runners after 11 applies", n)
	}
	if n := w.stack.GitLab.Requests("POST", "/api/v4/user/runners"); n != 1 {
		t.Errorf("POST /user/runners called %d times", n)
	}
	if ids := w.stack.GitLab.Runners()[0].SystemIDs; len(ids) != 1 || strings.TrimSpace(w.read("etc/gitlab-runner/.runner_system_id")) != ids[0] {
		t.Errorf("runner managers seen by GitLab = %v", ids)
	}
}

// A runner made in GitLab's UI, whose glrt- token the config names: its id comes from
// POST /runners/verify and lands in runner.json and config.toml.
func TestVerifiedTokenRecordsRunnerID(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	w.stack.GitLab.AddRunner(testenv.GitLabRunner{Description: "made first, so the ids differ"})
	made := w.stack.GitLab.AddRunner(testenv.GitLabRunner{Token: testenv.StackRunnerTokenVal, Description: "admin-made"})
	w.setConfig(w.stack.RunnerConfig("  token_parameter: "+testenv.StackRunnerToken+"\n", ""))
	if r := w.apply(); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	var st struct {
		RunnerID int64  `json:"runner_id"`
		Source   string `json:"source"`
	}
	if err := json.Unmarshal([]byte(w.read("var/lib/glbootstrap/runner.json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.RunnerID != made.ID || st.Source != "parameter" {
		t.Errorf("runner.json runner_id = %d source %q, want %d from verify, parameter", st.RunnerID, st.Source, made.ID)
	}
	if want := fmt.Sprintf("\n  id = %d\n", made.ID); !strings.Contains(w.read("etc/gitlab-runner/config.toml"), want) {
		t.Errorf("config.toml lacks %q", strings.TrimSpace(want))
	}
	if n := w.stack.GitLab.Requests("POST", "/api/v4/user/runners"); n != 0 {
		t.Errorf("POST /user/runners called %d times for a token that verifies", n)
	}
	if r := w.apply(); r.code != 0 || !strings.Contains(r.stdout, "0 changed") {
		t.Fatalf("second apply: %s", r)
	}
}

func TestPlanShowsManualEditAndExits10(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	if r := w.apply(); r.code != 0 {
		t.Fatal(r)
	}
	p := filepath.Join(w.root, "etc/gitlab-runner/fargate.toml")
	orig := w.read("etc/gitlab-runner/fargate.toml")
	edited := strings.Replace(orig, `Cluster = "ci-cluster"`, `Cluster = "by-hand"`, 1)
	if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	before := w.snapshot()
	r := w.plan()
	if r.code != 10 {
		t.Fatalf("plan: %s", r)
	}
	for _, want := range []string{`-  Cluster = "by-hand"`, `+  Cluster = "ci-cluster"`, "would be updated", "1 to change"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan output lacks %q:\n%s", want, r.stdout)
		}
	}
	if w.snapshot() != before {
		t.Error("plan changed the tree")
	}
	if r := w.apply(); r.code != 0 || w.read("etc/gitlab-runner/fargate.toml") != orig {
		t.Fatalf("apply did not repair: %s", r)
	}
	if r := w.plan(); r.code != 0 || !strings.Contains(r.stdout, "0 to change") {
		t.Fatalf("plan on a converged root: %s", r)
	}
}

func TestJSONOutput(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	r := w.apply("--output", "json")
	if r.code != 0 {
		t.Fatal(r)
	}
	var phases []string
	var summary map[string]any
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		switch m["type"] {
		case "phase":
			phases = append(phases, m["phase"].(string)+"="+m["status"].(string))
		case "summary":
			summary = m
		}
	}
	want := "packages=skipped directories=changed fargate-driver=changed coordinator-image=skipped preflight=unchanged fargate-config=changed register=changed runner-config=changed service=changed"
	if strings.Join(phases, " ") != want {
		t.Errorf("phases = %v", phases)
	}
	if summary == nil || summary["changed"].(float64) != 6 {
		t.Errorf("summary = %v", summary)
	}
}

func TestSecondConcurrentRunExits4(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	lockPath := filepath.Join(w.root, "run/glbootstrap.lock")
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		t.Fatal(err)
	}
	fl := flock.New(lockPath)
	if ok, err := fl.TryLock(); !ok || err != nil {
		t.Fatalf("taking the lock: %v", err)
	}
	defer fl.Unlock()
	before := w.snapshot()
	r := w.apply()
	if r.code != 4 || !strings.Contains(r.stderr, "another glbootstrap run holds the lock") {
		t.Fatalf("%s", r)
	}
	if w.snapshot() != before {
		t.Error("a locked-out run changed the tree")
	}
}

func TestPhaseSelection(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	r := w.apply("--phase", "directories,fargate-config")
	if r.code != 0 || !strings.Contains(r.stdout, "2 changed, 0 unchanged") {
		t.Fatalf("%s", r)
	}
	if _, err := os.Stat(filepath.Join(w.root, "etc/gitlab-runner/config.toml")); !os.IsNotExist(err) {
		t.Error("runner-config ran although not selected")
	}
	r = w.apply("--skip-phases", "service")
	if r.code != 0 || !strings.Contains(r.stdout, "3 changed, 3 unchanged") {
		t.Fatalf("%s", r)
	}
	r = w.apply("--phase", "nope")
	if r.code != 2 || !strings.Contains(r.stderr, `unknown phase "nope"`) || !strings.Contains(r.stderr, "fargate-driver") {
		t.Fatalf("%s", r)
	}
}

func TestNewInstanceReplacesCarriedSystemID(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	for i := 0; i < 2; i++ { // the second apply verifies, so GitLab records this manager
		if r := w.apply(); r.code != 0 {
			t.Fatal(r)
		}
	}
	oldID := strings.TrimSpace(w.read("etc/gitlab-runner/.runner_system_id"))

	// The same disk (an AMI made from it) boots as another instance.
	ctx := context.Background()
	other, err := testenv.StartIMDS(ctx, testenv.IMDSValues{InstanceID: "i-0fedcba9876543210"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for i, kv := range w.env {
		if strings.HasPrefix(kv, "AWS_EC2_METADATA_SERVICE_ENDPOINT=") {
			w.env[i] = "AWS_EC2_METADATA_SERVICE_ENDPOINT=" + other.Endpoint()
		}
	}
	r := w.apply()
	if r.code != 0 || !strings.Contains(r.stdout, "it was made on instance i-0123456789abcdef0") {
		t.Fatalf("%s", r)
	}
	newID := strings.TrimSpace(w.read("etc/gitlab-runner/.runner_system_id"))
	if newID == oldID {
		t.Fatal(".runner_system_id carried over to a new instance")
	}
	runners := w.stack.GitLab.Runners()
	// Still one runner, now with two managers: the old instance's and this one's.
	if len(runners) != 1 || !slices.Equal(runners[0].SystemIDs, []string{oldID, newID}) {
		t.Fatalf("want one runner with managers [%s %s], got %+v\n%s", oldID, newID, runners, r)
	}
}
