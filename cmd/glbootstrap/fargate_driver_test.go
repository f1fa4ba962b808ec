package main

// The real Fargate driver (../shared/consumers: GitLab's driver 0.1.0 as kept in the fork
// rawpixel-vincent/gitlab-ci-fargate-arm-driver) reads the fargate.toml `apply --role runner`
// converged, and runs a job's stages against the ECS stand-in, reached the only way the driver
// allows (aws-sdk-go v1, no endpoint override): HTTPS_PROXY to a CONNECT proxy that terminates
// TLS for ecs.REGION.amazonaws.com with a test CA (AWS_CA_BUNDLE). Its tasks are real sshd
// processes configured with the coordinator image's sshd_config.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/templates/coordinator"
)

const fargateDriverFixture = "fargate-driver-0.1.0-fork-f5cc12a-linux-amd64.xz"

// Exit codes the runner hands the driver (any distinct values do; these are the test's).
const (
	buildFailureExit  = 11
	systemFailureExit = 12
)

// driverWorld is a converged runner root, the real driver and the ECS stand-in behind the proxy.
type driverWorld struct {
	*world
	driver  string
	config  string // fargate.toml as apply wrote it, metadata directory moved under the root
	meta    string // that metadata directory
	subnet  string // fargate.toml's Subnet
	env     []string
	sshd    *testenv.SSHDLauncher
	proxy   *testenv.AWSProxy
	sshdLog *bytes.Buffer
}

// newDriverWorld converges a runner root (after beforeApply, if given, has prepared it) and
// points the ECS stand-in's tasks at real sshd processes behind the AWS proxy.
func newDriverWorld(t *testing.T, beforeApply ...func(*world)) *driverWorld {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "the real driver logs in to the task's sshd as root (fargate.ssh.username): run the test as root"
		if os.Getenv("GLB_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg + "; GLB_REQUIRE_TOOLS=1 requires it")
		}
		t.Skip(msg)
	}
	for _, tool := range []string{"/usr/sbin/sshd", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " is not installed (Debian packages openssh-server, openssh-client)"
			if os.Getenv("GLB_REQUIRE_TOOLS") == "1" {
				t.Fatal(msg + "; GLB_REQUIRE_TOOLS=1 requires it")
			}
			t.Skip(msg)
		}
	}
	driver := testenv.Consumer(t, fargateDriverFixture, "fargate")

	w := newWorld(t, testenv.IMDSValues{})
	for _, f := range beforeApply {
		f(w)
	}
	if r := w.apply(); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	// fargate.toml exactly as converged, but for its absolute metadata directory, which is moved
	// under the root (the driver runs on this machine, not in the root).
	text := w.read("etc/gitlab-runner/fargate.toml")
	var ft struct {
		Fargate      struct{ Region, Subnet string }
		TaskMetadata struct{ Directory string }
	}
	if _, err := toml.Decode(text, &ft); err != nil {
		t.Fatalf("fargate.toml: %v", err)
	}
	meta := filepath.Join(w.root, ft.TaskMetadata.Directory)
	if fi, err := os.Stat(meta); err != nil || !fi.IsDir() {
		t.Fatalf("apply did not make the metadata directory %s: %v", ft.TaskMetadata.Directory, err)
	}
	old := fmt.Sprintf("Directory = %q", ft.TaskMetadata.Directory)
	if !strings.Contains(text, old) {
		t.Fatalf("fargate.toml has no %s:\n%s", old, text)
	}
	cfg := filepath.Join(t.TempDir(), "fargate.toml")
	if err := os.WriteFile(cfg, []byte(strings.Replace(text, old, fmt.Sprintf("Directory = %q", meta), 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	region := ft.Fargate.Region
	proxy, err := testenv.NewAWSProxy(map[string]http.Handler{
		"ecs." + region + ".amazonaws.com": w.stack.ECS.Handler(),
		"ec2." + region + ".amazonaws.com": w.stack.EC2.Handler(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	tmp := t.TempDir()
	caFile := filepath.Join(tmp, "ca.pem")
	sshdConf := filepath.Join(tmp, "coordinator.conf")
	imageConf, err := fs.ReadFile(coordinator.FS, "sshd_config")
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string][]byte{caFile: proxy.CAPEM(), sshdConf: imageConf} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log := &bytes.Buffer{}
	sshd := &testenv.SSHDLauncher{Dir: filepath.Join(tmp, "tasks"), Include: []string{sshdConf}, Log: log}
	w.stack.ECS.SetLauncher(sshd)
	t.Cleanup(w.stack.ECS.StopAll)

	home := filepath.Join(tmp, "home")
	_ = os.Mkdir(home, 0o700)
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		// How the driver reaches AWS here; on a front it is the instance profile and the network.
		"HTTPS_PROXY=" + proxy.URL(), "AWS_CA_BUNDLE=" + caFile,
		"AWS_ACCESS_KEY_ID=AKIDEXAMPLEDRIVER", "AWS_SECRET_ACCESS_KEY=driver-test-secret",
		"AWS_EC2_METADATA_DISABLED=true",
		// What gitlab-runner's custom executor sets for every stage.
		fmt.Sprintf("BUILD_FAILURE_EXIT_CODE=%d", buildFailureExit),
		fmt.Sprintf("SYSTEM_FAILURE_EXIT_CODE=%d", systemFailureExit),
		"CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN=t3stRunn",
		"CUSTOM_ENV_CI_PROJECT_URL=https://gitlab.example.com/group/project",
		"CUSTOM_ENV_CI_PIPELINE_ID=7",
	}
	return &driverWorld{world: w, driver: driver, config: cfg, meta: meta, subnet: ft.Fargate.Subnet, env: env, sshd: sshd, proxy: proxy, sshdLog: log}
}

// stage runs `fargate --config fargate.toml custom ARGS...` for job, as the runner would.
func (d *driverWorld) stage(t *testing.T, job int, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.driver, append([]string{"--config", d.config, "custom"}, args...)...)
	cmd.Env = append(append([]string(nil), d.env...), fmt.Sprintf("CUSTOM_ENV_CI_JOB_ID=%d", job))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var xe *exec.ExitError
	switch {
	case errors.As(err, &xe):
		r.code = xe.ExitCode()
	case err != nil:
		t.Fatalf("running the driver: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("driver %v: still running after 2 minutes\n%s", args, r)
	}
	if refused := d.proxy.Refused(); len(refused) > 0 {
		t.Errorf("the driver asked the proxy for %v: only the ECS and EC2 stand-ins are served", refused)
	}
	return r
}

func (d *driverWorld) script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(p, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func metadataFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestRealFargateDriverRunsAJobInATask(t *testing.T) {
	d := newDriverWorld(t)
	ecs := d.stack.ECS

	prep := d.stage(t, 101, "prepare")
	if prep.code != 0 {
		t.Fatalf("prepare: %s\n%s", prep, d.sshdLog)
	}
	tasks := ecs.Tasks()
	if len(tasks) != 1 || tasks[0].LastStatus != "RUNNING" {
		t.Fatalf("tasks after prepare: %+v", tasks)
	}
	task := tasks[0]
	if task.Container != "ci-coordinator" || !strings.HasPrefix(task.Env["SSH_PUBLIC_KEY"], "ssh-rsa ") {
		t.Errorf("RunTask overrides: container %q, env %v; want SSH_PUBLIC_KEY (ssh-rsa) for ci-coordinator", task.Container, task.Env)
	}
	if task.AssignPublicIP != "DISABLED" || task.Subnets[0] != d.subnet || task.SecurityGroups[0] != testenv.StackTaskSG {
		t.Errorf("RunTask network: public IP %s, subnets %v, security groups %v", task.AssignPublicIP, task.Subnets, task.SecurityGroups)
	}
	if files := metadataFiles(t, d.meta); len(files) != 1 {
		t.Errorf("metadata directory after prepare: %v, want the task's file", files)
	}

	ok := d.stage(t, 101, "run", d.script(t, "echo \"job output from $(id -un) via ${SSH_CONNECTION}\"\n"), "build_script")
	if ok.code != 0 {
		t.Fatalf("run: %s\n%s", ok, d.sshdLog)
	}
	// SSH_CONNECTION is "client-ip client-port server-ip server-port": the task's address and the
	// task definition's port.
	if want := task.IP + " 22"; !strings.Contains(ok.stdout, "job output from root via ") || !strings.Contains(ok.stdout, want) {
		t.Errorf("run stdout = %q, want the script's line over SSH to %s", ok.stdout, want)
	}

	// A failing script: this old driver reports it as a system failure, not a build failure.
	bad := d.stage(t, 101, "run", d.script(t, "echo failing; exit 3\n"), "build_script")
	if bad.code != systemFailureExit || !strings.Contains(bad.stdout, "failing") {
		t.Errorf("failing script: want exit %d (SYSTEM_FAILURE_EXIT_CODE: the driver's known behaviour) and its output\n%s", systemFailureExit, bad)
	}

	stops := ecs.Calls("StopTask")
	if r := d.stage(t, 101, "cleanup"); r.code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if ecs.Calls("StopTask") != stops+1 {
		t.Errorf("cleanup called StopTask %d times, want 1", ecs.Calls("StopTask")-stops)
	}
	if st := ecs.Tasks()[0]; st.LastStatus != "STOPPED" || st.StopCode != "UserInitiated" {
		t.Errorf("task after cleanup: %s (%s)", st.LastStatus, st.StopCode)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(task.IP, "22"), time.Second); err == nil {
		c.Close()
		t.Errorf("the task's sshd still listens after cleanup")
	}
	if files := metadataFiles(t, d.meta); len(files) != 0 {
		t.Errorf("metadata directory after cleanup: %v", files)
	}
	if got := d.proxy.Accepted(); len(got) == 0 || !strings.HasPrefix(got[0], "ecs.") {
		t.Errorf("proxy tunnels: %v", got)
	}
}

func TestRealFargateDriverTaskThatNeverRuns(t *testing.T) {
	d := newDriverWorld(t)
	ecs := d.stack.ECS
	const reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s): not found"
	ecs.SetTaskBehaviour(testenv.ECSTaskBehaviour{NeverStart: true, StopAfter: time.Second, StoppedReason: reason})

	r := d.stage(t, 102, "prepare")
	tasks := ecs.Tasks()
	if len(tasks) != 1 {
		t.Fatalf("tasks: %+v", tasks)
	}
	arn := tasks[0].ARN
	out := r.stdout + r.stderr
	if r.code != systemFailureExit || !strings.Contains(out, arn) {
		t.Errorf("prepare of a task that never runs: want exit %d and a message naming %s\n%s", systemFailureExit, arn, r)
	}
	if ecs.Calls("StopTask") != 1 {
		t.Errorf("StopTask called %d times, want 1 (no orphan task)", ecs.Calls("StopTask"))
	}
	// What the driver does not do: its error never says why the task stopped (stoppedReason),
	// only the waiter's "ResourceNotReady: failed waiting for successful resource state".
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "Application execution failed") {
			t.Logf("prepare said: %s", line)
		}
	}
	if strings.Contains(out, "CannotPullContainerError") {
		t.Logf("the driver now reports the stopped reason")
	}
}

// The driver's golang.org/x/crypto (2020) signs with ssh-rsa (SHA-1) only. OpenSSH >= 8.8 no
// longer accepts it by default, so the coordinator's sshd_config must add it back: without that
// line (sshd's default list in front of the image's config) the job cannot log in.
func TestRealFargateDriverNeedsSSHRSA(t *testing.T) {
	d := newDriverWorld(t)
	d.sshd.Options = []string{"PubkeyAcceptedAlgorithms ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256"}
	if r := d.stage(t, 103, "prepare"); r.code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := d.stage(t, 103, "run", d.script(t, "echo should-not-run\n"), "build_script")
	if r.code != systemFailureExit || strings.Contains(r.stdout, "should-not-run") || !strings.Contains(r.stdout+r.stderr, "unable to authenticate") {
		t.Errorf("run against an sshd without ssh-rsa: want an authentication failure\n%s", r)
	}
	if !strings.Contains(d.sshdLog.String(), "ssh-rsa") {
		t.Logf("sshd log:\n%s", d.sshdLog)
	}
	if r := d.stage(t, 103, "cleanup"); r.code != 0 {
		t.Errorf("cleanup: %s", r)
	}
}

// A task whose sshd is not up yet when the task is RUNNING (a slow entrypoint): the driver's run
// stage dials once, without retrying, so the job fails as a system failure. What the image can do
// about it is start sshd first and do the rest after; the driver cannot be told to wait.
func TestRealFargateDriverSlowSSHD(t *testing.T) {
	d := newDriverWorld(t)
	d.sshd.StartDelay = 30 * time.Second
	if r := d.stage(t, 104, "prepare"); r.code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := d.stage(t, 104, "run", d.script(t, "echo too-early\n"), "build_script")
	if r.code != systemFailureExit || !strings.Contains(r.stdout+r.stderr, "connection refused") {
		t.Errorf("run before sshd listens: want a system failure on connection refused\n%s", r)
	}
	if r := d.stage(t, 104, "cleanup"); r.code != 0 {
		t.Errorf("cleanup: %s", r)
	}
}
