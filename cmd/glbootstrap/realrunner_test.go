package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// The real programs that consume glbootstrap's files (../shared/consumers/README.md).
const (
	consumersDir       = "../shared/consumers"
	gitlabRunnerXZ     = "gitlab-runner-17.9.3-linux-amd64.xz"
	gitlabRunnerSHA256 = "d324168479a5c99857433a2b9bc0442116af5dacd1293596dc47baea069a06dd"
)

// consumer decompresses one of the real programs from ../shared/consumers (next to the
// repository) into dir and checks its SHA-256. Without that folder the test skips naming it,
// or fails under GLB_REQUIRE_TOOLS=1 (CI).
func consumer(t *testing.T, xzName, sha, dir, name string) string {
	t.Helper()
	p := testenv.Consumer(t, xzName, name)
	bin, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if s := sha256.Sum256(bin); hex.EncodeToString(s[:]) != sha {
		t.Fatalf("%s decompresses to SHA-256 %x, %s/README.md says %s", xzName, s, consumersDir, sha)
	}
	out := filepath.Join(dir, name)
	if err := os.Rename(p, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// testExecutor stands in for the Fargate driver as the custom executor while the ECS stand-in
// it needs is being built: the same four stages and arguments (--config FILE custom STAGE, then
// the runner's script and sub-stage for run), running the stage scripts locally. A script that
// fails is a build failure, as the custom executor contract asks (BUILD_FAILURE_EXIT_CODE).
const testExecutor = `#!/bin/bash
stage="$4"
case "$stage" in
config)  echo '{"driver":{"name":"glbootstrap-test-executor","version":"1"}}' ;;
prepare) echo "test executor: prepare" ;;
run)     bash "$5" || exit "$BUILD_FAILURE_EXIT_CODE" ;;
cleanup) ;;
*)       echo "test executor: unknown stage $stage" >&2; exit "$SYSTEM_FAILURE_EXIT_CODE" ;;
esac
`

// quotedAbsPath matches every quoted absolute path in config.toml.
var quotedAbsPath = regexp.MustCompile(`"(/[^"]*)"`)

// A runner front converged by glbootstrap, run by the real gitlab-runner 17.9.3: it verifies
// with glbootstrap's token and system id, polls the GitLab stand-in, runs a job that succeeds
// and one whose script exits 1 through the custom executor, and GitLab gets their traces and
// states.
func TestRealGitLabRunnerRunsJobs(t *testing.T) {
	bin := t.TempDir()
	runnerBin := consumer(t, gitlabRunnerXZ, gitlabRunnerSHA256, bin, "gitlab-runner")

	w := newWorld(t, testenv.IMDSValues{})
	// The real binary where the package puts it, before glbootstrap looks at the front.
	if err := os.Rename(runnerBin, filepath.Join(w.root, "usr/bin/gitlab-runner")); err != nil {
		t.Fatal(err)
	}
	runnerBin = filepath.Join(w.root, "usr/bin/gitlab-runner")
	if r := w.apply(); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	gl := w.stack.GitLab
	rn := gl.Runners()
	if len(rn) != 1 {
		t.Fatalf("GitLab has %d runners after apply", len(rn))
	}
	sysID := strings.TrimSpace(w.read("etc/gitlab-runner/.runner_system_id"))

	// The child runs outside the root, so every absolute path in glbootstrap's config.toml is
	// mapped under it (what a chroot would do); keys, values and types stay as rendered. The
	// file sits next to glbootstrap's .runner_system_id, which the runner must use as it is.
	executor := filepath.Join(bin, "test-executor")
	if err := os.WriteFile(executor, []byte(testExecutor), 0o755); err != nil {
		t.Fatal(err)
	}
	product := w.read("etc/gitlab-runner/config.toml")
	mapped := quotedAbsPath.ReplaceAllString(product, `"`+w.root+`$1"`)
	mapped = regexp.MustCompile(`(?m)^(\s*(?:config|prepare|run|cleanup)_exec = )".*"$`).ReplaceAllString(mapped, `${1}"`+executor+`"`)
	cfgPath := filepath.Join(w.root, "etc/gitlab-runner/config.test.toml")
	if err := os.WriteFile(cfgPath, []byte(mapped), 0o600); err != nil {
		t.Fatal(err)
	}
	workDir := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := append(os.Environ(), "HOME="+workDir)

	verifies := gl.Requests("POST", "/api/v4/runners/verify")
	verify := exec.CommandContext(ctx, runnerBin, "verify", "--config", cfgPath)
	verify.Env = env
	vout, err := verify.CombinedOutput()
	failOnLeak(t, "gitlab-runner verify", string(vout), w.secrets())
	if err != nil || !strings.Contains(string(vout), "is valid") {
		t.Fatalf("gitlab-runner verify: %v\n%s", err, vout)
	}
	if gl.Requests("POST", "/api/v4/runners/verify") != verifies+1 {
		t.Error("gitlab-runner verify sent no POST /api/v4/runners/verify")
	}
	if ids := gl.Runners()[0].SystemIDs; len(ids) != 1 || ids[0] != sysID {
		t.Errorf("runner managers on GitLab after verify = %v, want glbootstrap's %s", ids, sysID)
	}

	okJob := gl.EnqueueJob(testenv.JobSpec{Name: "hello", Tags: []string{"fargate"}, Script: []string{"echo hello from the real runner"}})
	failJob := gl.EnqueueJob(testenv.JobSpec{Name: "fails", Tags: []string{"fargate"}, Script: []string{"echo about to fail", "exit 1"}})

	run := exec.CommandContext(ctx, runnerBin, "run", "--config", cfgPath, "--working-directory", workDir)
	run.Env = env
	stop, runnerLog := startRunner(t, run)
	defer stop()

	ok, err := gl.WaitJob(ctx, okJob)
	if err != nil {
		t.Fatalf("%v\n--- gitlab-runner run\n%s", err, runnerLog())
	}
	failed, err := gl.WaitJob(ctx, failJob)
	if err != nil {
		t.Fatalf("%v\n--- gitlab-runner run\n%s", err, runnerLog())
	}
	stop()
	out := runnerLog()
	failOnLeak(t, "gitlab-runner run", out, w.secrets())

	if ok.State != "success" || !ok.TraceHasLine("hello from the real runner") {
		t.Errorf("job %d = %s; trace:\n%s", ok.ID, ok.State, ok.Trace)
	}
	if ok.Checksum != testenv.TraceChecksum(ok.Trace) || ok.Bytesize != len(ok.Trace) {
		t.Errorf("job %d: runner reported checksum %s bytesize %d, GitLab holds %s, %d bytes", ok.ID, ok.Checksum, ok.Bytesize, testenv.TraceChecksum(ok.Trace), len(ok.Trace))
	}
	if failed.State != "failed" || !failed.TraceHasLine("about to fail") {
		t.Errorf("job %d = %s; trace:\n%s", failed.ID, failed.State, failed.Trace)
	}
	// The custom executor contract: run_exec exiting BUILD_FAILURE_EXIT_CODE is the job's own failure.
	if failed.FailureReason != "script_failure" {
		t.Errorf("job %d failure_reason = %q, want script_failure", failed.ID, failed.FailureReason)
	}
	t.Logf("failed job: state %s, failure_reason %s, exit_code %d", failed.State, failed.FailureReason, failed.ExitCode)
	for _, j := range []testenv.GitLabJob{ok, failed} {
		if j.RunnerID != rn[0].ID || j.SystemID != sysID {
			t.Errorf("job %d taken by runner %d manager %q, want %d %q", j.ID, j.RunnerID, j.SystemID, rn[0].ID, sysID)
		}
	}
	reqs := gl.JobRequests()
	if len(reqs) < 2 {
		t.Fatalf("%d POST /jobs/request", len(reqs))
	}
	for _, r := range reqs {
		if r.RunnerID != rn[0].ID || r.SystemID != sysID || r.Info["executor"] != "custom" {
			t.Errorf("jobs/request from runner %d manager %q executor %v, want %d %q custom", r.RunnerID, r.SystemID, r.Info["executor"], rn[0].ID, sysID)
			break
		}
	}

	// What the real runner says about glbootstrap's config.toml: every warning and error it
	// logged, for the report; a config problem fails the test.
	if os.Getenv("GLB_RUNNER_LOG") != "" {
		t.Logf("--- gitlab-runner verify\n%s--- gitlab-runner run\n%s", vout, out)
	}
	if strings.Contains(string(vout)+out, "problem with your config") {
		t.Errorf("gitlab-runner finds a problem with glbootstrap's config.toml:\n%s%s", vout, out)
	}
	for _, l := range runnerFindings(string(vout) + out) {
		t.Logf("gitlab-runner: %s", l)
		if strings.Contains(l, "config") && !strings.Contains(l, "custom_build_dir") {
			t.Errorf("gitlab-runner complains about the config: %s", l)
		}
	}
}

// runnerFindings are the warning and error lines of gitlab-runner's output.
func runnerFindings(out string) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "WARNING") || strings.Contains(l, "ERROR") || strings.Contains(l, "level=warn") || strings.Contains(l, "level=error") {
			lines = append(lines, l)
		}
	}
	return lines
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startRunner starts `gitlab-runner run` as cmd and returns stop (SIGQUIT, so a finishing job
// ends cleanly; killed after 20 s; safe to call twice) and a reader of everything it printed.
func startRunner(t *testing.T, run *exec.Cmd) (stop func(), runnerLog func() string) {
	t.Helper()
	var logMu sync.Mutex
	var log bytes.Buffer
	run.Stdout, run.Stderr = &lockedWriter{mu: &logMu, w: &log}, &lockedWriter{mu: &logMu, w: &log}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = run.Process.Signal(syscall.SIGQUIT) // graceful: lets a finishing job end
		done := make(chan struct{})
		go func() { _ = run.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = run.Process.Kill()
			<-done
		}
	}
	runnerLog = func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return log.String()
	}
	return stop, runnerLog
}
