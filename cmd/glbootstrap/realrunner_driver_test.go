package main

// The two real consumers together (../shared/consumers): the real gitlab-runner 17.9.3 takes
// jobs from the GitLab stand-in and runs them with the custom executor config.toml names, which
// is the real Fargate driver reading the fargate.toml `apply --role runner` converged; the driver
// reaches the ECS stand-in through the AWS proxy and runs each job over SSH in a task that is a
// real sshd with the coordinator image's sshd_config.

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// execLine matches config.toml's custom executor stage commands.
var execLine = regexp.MustCompile(`(?m)^\s*(?:config|prepare|run|cleanup)_exec = "(/[^"]*)"$`)

func TestRealRunnerThroughRealDriver(t *testing.T) {
	bin := t.TempDir()
	var runnerBin string
	d := newDriverWorld(t, func(w *world) {
		// The real runner where the package puts it, before glbootstrap looks at the front.
		p := consumer(t, gitlabRunnerXZ, gitlabRunnerSHA256, bin, "gitlab-runner")
		runnerBin = filepath.Join(w.root, "usr/bin/gitlab-runner")
		if err := os.Rename(p, runnerBin); err != nil {
			t.Fatal(err)
		}
	})
	w, gl, ecs := d.world, d.stack.GitLab, d.stack.ECS

	// config.toml as converged, every absolute path mapped under the root (what a chroot would
	// do). The real driver goes where its *_exec points (apply put the stand-in driver there),
	// and its --config is the converged fargate.toml with the metadata directory under the root.
	product := w.read("etc/gitlab-runner/config.toml")
	execs := execLine.FindAllStringSubmatch(product, -1)
	if len(execs) != 4 {
		t.Fatalf("config.toml has %d custom *_exec lines, want 4:\n%s", len(execs), product)
	}
	driverPath := execs[0][1]
	for _, m := range execs {
		if m[1] != driverPath {
			t.Fatalf("custom stages run different programs: %s and %s", driverPath, m[1])
		}
	}
	drv, err := os.ReadFile(d.driver)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.root, driverPath), drv, 0o755); err != nil {
		t.Fatal(err)
	}
	mapped := quotedAbsPath.ReplaceAllString(product, `"`+w.root+`$1"`)
	ftoml := `"` + filepath.Join(w.root, "etc/gitlab-runner/fargate.toml") + `"`
	if !strings.Contains(mapped, ftoml) {
		t.Fatalf("config.toml does not pass the driver /etc/gitlab-runner/fargate.toml:\n%s", product)
	}
	mapped = strings.ReplaceAll(mapped, ftoml, `"`+d.config+`"`)
	cfgPath := filepath.Join(w.root, "etc/gitlab-runner/config.test.toml")
	if err := os.WriteFile(cfgPath, []byte(mapped), 0o600); err != nil {
		t.Fatal(err)
	}

	// The runner's environment is what every stage inherits: the driver's way to AWS here
	// (proxy, CA, static keys, no IMDS). The runner itself sets the exit codes and CUSTOM_ENV_*.
	workDir := t.TempDir()
	env := []string{"HOME=" + workDir}
	for _, kv := range d.env {
		if !strings.HasPrefix(kv, "BUILD_FAILURE_") && !strings.HasPrefix(kv, "SYSTEM_FAILURE_") && !strings.HasPrefix(kv, "CUSTOM_ENV_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}

	okJob := gl.EnqueueJob(testenv.JobSpec{Name: "hello", Tags: []string{"fargate"}, Script: []string{
		"echo hello from the real driver",
		`echo "task address: ${SSH_CONNECTION#* * }"`, // SSH_CONNECTION: client port server port
	}})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, runnerBin, "run", "--config", cfgPath, "--working-directory", workDir)
	run.Env = env
	stop, runnerLog := startRunner(t, run)
	defer stop()
	wait := func(id int64) testenv.GitLabJob {
		t.Helper()
		j, err := gl.WaitJob(ctx, id)
		if err != nil {
			t.Fatalf("%v\n--- gitlab-runner run\n%s\n--- sshd\n%s", err, runnerLog(), d.sshdLog)
		}
		return j
	}
	// noTaskLeft checks that every task the jobs so far started was stopped by the driver and
	// its sshd no longer listens.
	noTaskLeft := func(what string, wantTasks int) {
		t.Helper()
		tasks := ecs.Tasks()
		if len(tasks) != wantTasks {
			t.Errorf("after %s: %d tasks started, want %d", what, len(tasks), wantTasks)
		}
		// The runner reports the job's state before cleanup_exec ends: give cleanup its time.
		deadline := time.Now().Add(10 * time.Second)
		for ecs.Calls("StopTask") < wantTasks && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := ecs.Calls("StopTask"); n != wantTasks {
			t.Errorf("after %s: StopTask called %d times, want %d (one cleanup per job)", what, n, wantTasks)
		}
		for _, task := range ecs.Tasks() {
			if task.LastStatus != "STOPPED" || task.StopCode != "UserInitiated" {
				t.Errorf("after %s: task %s is %s (%s), want STOPPED by StopTask", what, task.ARN, task.LastStatus, task.StopCode)
			}
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(task.IP, "22"), time.Second); err == nil {
				c.Close()
				t.Errorf("after %s: the sshd of task %s still listens on %s", what, task.ARN, task.IP)
			}
		}
		if files := metadataFiles(t, d.meta); len(files) != 0 {
			t.Errorf("after %s: metadata directory still holds %v", what, files)
		}
	}

	ok := wait(okJob)
	if ok.State != "success" || !ok.TraceHasLine("hello from the real driver") {
		t.Errorf("job %d = %s (%s); trace:\n%s", ok.ID, ok.State, ok.FailureReason, ok.Trace)
	}
	noTaskLeft("the job that succeeds", 1)
	if tasks := ecs.Tasks(); len(tasks) == 1 {
		// The script really ran over SSH in the task: its address and the task definition's port.
		if want := "task address: " + tasks[0].IP + " 22"; !ok.TraceHasLine(want) {
			t.Errorf("job %d trace does not show SSH to the task (%s):\n%s", ok.ID, want, ok.Trace)
		}
	}

	failJob := gl.EnqueueJob(testenv.JobSpec{Name: "fails", Tags: []string{"fargate"}, Script: []string{"echo about to fail", "exit 1"}})
	failed := wait(failJob)
	if failed.State != "failed" || !failed.TraceHasLine("about to fail") {
		t.Errorf("job %d = %s; trace:\n%s", failed.ID, failed.State, failed.Trace)
	}
	// What really happens with this old driver (observed): its run stage exits with
	// SYSTEM_FAILURE_EXIT_CODE (the runner sets 2) when the script exits non-zero ("executing SSH
	// command: Process exited with status 1"), so gitlab-runner reports "Job failed (system
	// failure): exit status 2" and GitLab gets failure_reason runner_system_failure, no exit_code:
	// a user's failing script looks like an infrastructure fault (retried by `retry: when:
	// runner_system_failure`). A driver that returns BUILD_FAILURE_EXIT_CODE makes this
	// script_failure; then this assertion must change with it.
	if failed.FailureReason != "runner_system_failure" {
		t.Errorf("job %d failure_reason = %q, want runner_system_failure (the 0.1.0 driver's known behaviour); has the driver changed?", failed.ID, failed.FailureReason)
	}
	t.Logf("failed job: state %s, failure_reason %q, exit_code %d", failed.State, failed.FailureReason, failed.ExitCode)
	noTaskLeft("the job that fails", 2)

	stop()
	out := runnerLog()
	failOnLeak(t, "gitlab-runner run", out, w.secrets())
	if refused := d.proxy.Refused(); len(refused) > 0 {
		t.Errorf("the driver asked the proxy for %v: only the ECS and EC2 stand-ins are served", refused)
	}
	if os.Getenv("GLB_RUNNER_LOG") != "" {
		t.Logf("--- gitlab-runner run\n%s\n--- job %d trace\n%s\n--- job %d trace\n%s", out, ok.ID, ok.Trace, failed.ID, failed.Trace)
	}
	for _, l := range runnerFindings(out) {
		t.Logf("gitlab-runner: %s", l)
	}
}
