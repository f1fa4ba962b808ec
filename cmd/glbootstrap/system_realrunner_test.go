package main

// The runner role on a live system with the real consumers (../shared/consumers): a booted
// Debian 12 container gets the real gitlab-runner 17.9.3 the way its package installs it
// (the package's post-install: the user, /etc/gitlab-runner, `gitlab-runner install`, which
// writes the unit), then the AMI bake's clean-up; `glbootstrap apply --role runner` runs in it
// with root "/", installs the real Fargate driver from a local mirror (the S3 stand-in) pinned
// by its SHA-256, and starts gitlab-runner.service over D-Bus. Then a job goes end to end: the
// GitLab stand-in (this process, on 127.0.0.1, which the container shares) hands it to the
// runner, the runner runs the driver, the driver calls the ECS stand-in through the AWS CONNECT
// proxy, and the script runs over SSH in the task.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/nspawn"
	"github.com/glbootstrap/glbootstrap/templates/coordinator"
)

const fargateDriverSHA256 = "1ea4b551b3c4e28f897f168e1de8347c95c2d047062cda3a42ce8d1ef5cb6776"

// systemTaskLauncher is what an ECS task of the system tests runs: the one place that chooses
// it. Today a real sshd on the host per task (testenv.SSHDLauncher: the task's own loopback
// address, the coordinator image's sshd_config); the container shares the host's network, so
// the driver inside reaches it. log returns what the tasks printed.
func systemTaskLauncher(t *testing.T) (l testenv.ECSLauncher, log func() string) {
	t.Helper()
	for _, tool := range []string{"/usr/sbin/sshd", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the tasks are real sshd processes: %s is not installed (Debian packages openssh-server, openssh-client)", tool)
		}
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "coordinator.conf")
	imageConf, err := fs.ReadFile(coordinator.FS, "sshd_config")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, imageConf, 0o644); err != nil {
		t.Fatal(err)
	}
	buf := &syncLog{}
	return &testenv.SSHDLauncher{Dir: filepath.Join(dir, "tasks"), Include: []string{conf}, Log: buf}, buf.String
}

// syncLog is a buffer the tasks' log goroutines write to while the test reads it.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The package's post-install (packaging/root/usr/share/gitlab-runner/post-install at v17.9.3,
// gitlabhq/gitlab-runner), the steps that shape the front, run with the real binary; then the
// bake's clean-up (packer/runner.pkr.hcl): nothing that names this machine stays.
const packageInstall = `set -e
install -m 0755 /glb-test/gitlab-runner /usr/bin/gitlab-runner
useradd --system --shell /bin/bash --comment 'GitLab Runner' --create-home --skel /dev/null gitlab-runner
mkdir -p /etc/gitlab-runner
chmod 0700 /etc/gitlab-runner
gitlab-runner install --user=gitlab-runner --working-directory=/home/gitlab-runner
systemctl stop gitlab-runner || true
rm -f /etc/gitlab-runner/.runner_system_id /etc/gitlab-runner/config.toml
`

// driverDropIn is how the driver reaches AWS in this test, and only here: the unit's
// environment, which gitlab-runner passes to every custom executor stage. On a front the
// driver has the instance profile and the network; here a CONNECT proxy for
// ecs/ec2.REGION.amazonaws.com with its own CA, and static keys (aws-sdk-go v1 has no endpoint
// override). Go's proxy rules never proxy 127.0.0.1, so the runner still reaches GitLab directly.
const driverDropIn = `# Written by glbootstrap's system test: the Fargate driver's way to the ECS stand-in.
[Service]
Environment=HTTPS_PROXY=%s
Environment=AWS_CA_BUNDLE=/glb-test/aws-proxy-ca.pem
Environment=AWS_ACCESS_KEY_ID=AKIDEXAMPLEDRIVER
Environment=AWS_SECRET_ACCESS_KEY=driver-test-secret
Environment=AWS_EC2_METADATA_DISABLED=true
`

func TestSystemRealRunnerJob(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: boots a systemd-nspawn container as root; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	rootfs := nspawn.Prerequisites(t, "go")
	begin := time.Now()

	share := staticBinaryDir(t)
	consumer(t, gitlabRunnerXZ, gitlabRunnerSHA256, share, "gitlab-runner")
	driver, err := os.ReadFile(testenv.Consumer(t, fargateDriverFixture, "fargate"))
	if err != nil {
		t.Fatal(err)
	}
	if s := sha256.Sum256(driver); hex.EncodeToString(s[:]) != fargateDriverSHA256 {
		t.Fatalf("%s decompresses to SHA-256 %x, %s/README.md says %s", fargateDriverFixture, s, consumersDir, fargateDriverSHA256)
	}

	const region = "us-east-2"
	w := newWorld(t, testenv.IMDSValues{Region: region})
	gl, ecs := w.stack.GitLab, w.stack.ECS
	// The local mirror: the real driver release in the S3 stand-in, pinned by its SHA-256.
	const driverKey = "fargate/v0.1.0/fargate-linux-amd64"
	w.stack.S3.PutObject(testenv.StackBucket, driverKey, driver)
	driverURL := "s3://" + testenv.StackBucket + "/" + driverKey
	cfg := w.stack.RunnerConfig(testenv.CreateAuth, "")
	cfg = strings.NewReplacer(w.stack.DriverURL, driverURL, w.stack.DriverSHA256, fargateDriverSHA256, "version: v0.5.1", "version: v0.1.0").Replace(cfg)
	if !strings.Contains(cfg, driverURL) || !strings.Contains(cfg, fargateDriverSHA256) {
		t.Fatalf("the runner config does not name the mirrored driver:\n%s", cfg)
	}
	w.setConfig(cfg)

	proxy, err := testenv.NewAWSProxy(map[string]http.Handler{
		"ecs." + region + ".amazonaws.com": ecs.Handler(),
		"ec2." + region + ".amazonaws.com": w.stack.EC2.Handler(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	launcher, taskLog := systemTaskLauncher(t)
	ecs.SetLauncher(launcher)
	t.Cleanup(ecs.StopAll)
	for name, data := range map[string][]byte{"gitlab.crt": gl.CAPEM(), "aws-proxy-ca.pem": proxy.CAPEM()} {
		if err := os.WriteFile(filepath.Join(share, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := w.stack.Env(nil)

	prepared := time.Now()
	c := nspawn.Boot(t, rootfs, nspawn.BindRO(share, "/glb-test"))
	booted := time.Now()
	requireReachable(t, c, env, gl.URL())

	// The AMI: the real package install and the bake's clean-up; the CA user-data drops; the
	// test's way to AWS for the driver.
	c.Sh(t, packageInstall)
	c.Sh(t, "install -D -m 0644 /glb-test/gitlab.crt "+testenv.StackCAFile+
		" && install -m 0755 /glb-test/glbootstrap /usr/local/bin/glbootstrap")
	if v := strings.TrimSpace(c.Sh(t, "gitlab-runner --version | head -1")); v != "Version:      17.9.3" {
		t.Fatalf("/usr/bin/gitlab-runner in the container: %q, want 17.9.3", v)
	}
	unit := c.Sh(t, "cat /etc/systemd/system/"+runnerUnit)
	checkPackageUnit(t, unit, w.read("etc/systemd/system/"+runnerUnit))
	c.Sh(t, "mkdir -p /etc/systemd/system/"+runnerUnit+".d")
	c.Write(t, "/etc/systemd/system/"+runnerUnit+".d/50-glb-test-aws.conf", fmt.Sprintf(driverDropIn, proxy.URL()))
	c.Sh(t, "systemctl daemon-reload")
	// gitlab-runner install enables the unit (kardianos/service); the bake only stops it.
	if got := c.Systemctl("is-enabled", runnerUnit); got != "enabled" {
		t.Errorf("after gitlab-runner install: is-enabled = %q, want enabled", got)
	}
	if got := c.Systemctl("is-active", runnerUnit); got != "inactive" {
		t.Fatalf("before apply: is-active = %q, want inactive", got)
	}

	apply := func(what string) result {
		t.Helper()
		start := time.Now()
		stdout, stderr, code := c.Exec(env, "/usr/local/bin/glbootstrap", "apply", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam)
		r := result{code: code, stdout: stdout, stderr: stderr}
		t.Logf("%s: exit %d in %s", what, code, time.Since(start).Round(time.Millisecond))
		failOnLeak(t, what, stdout+stderr, w.secrets())
		return r
	}
	journal := func() string {
		out, _, _ := c.Exec(nil, "journalctl", "-u", runnerUnit, "--no-pager", "-o", "cat")
		return out
	}

	first := apply("first apply")
	t.Logf("first apply:\n%s", first.stdout)
	if first.code != 0 {
		t.Fatalf("first apply: %s", first)
	}
	for _, want := range []string{
		"installed v0.1.0 from " + driverURL,
		"service  " + runnerUnit + ": started",
	} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("first apply output lacks %q", want)
		}
	}
	if got := strings.Fields(c.Sh(t, "sha256sum /opt/gitlab-runner/fargate && stat -c %a /opt/gitlab-runner/fargate")); len(got) != 3 || got[0] != fargateDriverSHA256 || got[2] != "755" {
		t.Errorf("/opt/gitlab-runner/fargate: sha256 and mode %v, want %s 755", got, fargateDriverSHA256)
	}
	if got := c.Systemctl("is-active", runnerUnit); got != "active" {
		t.Fatalf("after apply: is-active = %q, want active\n%s", got, journal())
	}
	pid := c.Show(t, runnerUnit, "MainPID")
	if comm := strings.TrimSpace(c.Sh(t, "cat /proc/"+pid+"/comm")); comm != "gitlab-runner" {
		t.Errorf("MainPID %s of %s is %q, want gitlab-runner", pid, runnerUnit, comm)
	}
	sysID := strings.TrimSpace(c.Sh(t, "cat /etc/gitlab-runner/.runner_system_id"))
	runners := gl.Runners()
	if len(runners) != 1 {
		t.Fatalf("GitLab has %d runners after apply, want 1", len(runners))
	}

	// One job end to end.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	jobStart := time.Now()
	id := gl.EnqueueJob(testenv.JobSpec{Name: "hello", Tags: []string{"fargate"}, Script: []string{
		"echo hello from the front in the container",
		`echo "task address: ${SSH_CONNECTION#* * }"`, // SSH_CONNECTION: client port server port
	}})
	job, err := gl.WaitJob(ctx, id)
	if err != nil {
		t.Fatalf("%v\n--- journalctl -u %s\n%s\n--- tasks\n%s", err, runnerUnit, journal(), taskLog())
	}
	t.Logf("job %d: %s in %s", job.ID, job.State, time.Since(jobStart).Round(time.Millisecond))
	if job.State != "success" || !job.TraceHasLine("hello from the front in the container") {
		t.Errorf("job %d = %s (%s); trace:\n%s\n--- journalctl -u %s\n%s", job.ID, job.State, job.FailureReason, job.Trace, runnerUnit, journal())
	}
	tasks := ecs.Tasks()
	if len(tasks) != 1 {
		t.Fatalf("%d ECS tasks started for one job, want 1", len(tasks))
	}
	if want := "task address: " + tasks[0].IP + " 22"; !job.TraceHasLine(want) {
		t.Errorf("job %d trace does not show SSH to the task (%s):\n%s", job.ID, want, job.Trace)
	}
	// The runner reports the job's state before cleanup_exec ends: give cleanup its time.
	for deadline := time.Now().Add(10 * time.Second); ecs.Calls("StopTask") < 1 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if n := ecs.Calls("StopTask"); n != 1 {
		t.Errorf("StopTask called %d times after the job, want 1 (the driver's cleanup)", n)
	}
	if task := ecs.Tasks()[0]; task.LastStatus != "STOPPED" {
		t.Errorf("task %s is %s after the job, want STOPPED", task.ARN, task.LastStatus)
	}
	if refused := proxy.Refused(); len(refused) > 0 {
		t.Errorf("the driver asked the proxy for %v: only the ECS and EC2 stand-ins are served", refused)
	}

	// One runner manager on GitLab, and it is the one glbootstrap recorded: the runner the
	// service runs used glbootstrap's .runner_system_id.
	if got := gl.Runners(); len(got) != 1 || len(got[0].SystemIDs) != 1 || got[0].SystemIDs[0] != sysID {
		t.Errorf("GitLab's runners and managers: %+v, want one runner with the single manager %s", got, sysID)
	}
	if job.RunnerID != runners[0].ID || job.SystemID != sysID {
		t.Errorf("job %d taken by runner %d manager %q, want %d %q", job.ID, job.RunnerID, job.SystemID, runners[0].ID, sysID)
	}
	reqs := gl.JobRequests()
	if len(reqs) == 0 {
		t.Error("no POST /api/v4/jobs/request reached GitLab")
	}
	for _, r := range reqs {
		if r.RunnerID != runners[0].ID || r.SystemID != sysID {
			t.Errorf("jobs/request from runner %d manager %q, want %d %q", r.RunnerID, r.SystemID, runners[0].ID, sysID)
			break
		}
	}

	// Converged: nothing changes and the runner keeps running, not restarted.
	restarts := c.Show(t, runnerUnit, "NRestarts")
	second := apply("second apply")
	if second.code != 0 || !regexp.MustCompile(`\b0 changed, \d+ unchanged, 0 failed`).MatchString(second.stdout) ||
		!strings.Contains(second.stdout, "service  "+runnerUnit+": running") {
		t.Errorf("second apply: want exit 0, 0 changed and the service running: %s", second)
	}
	if got := c.Show(t, runnerUnit, "MainPID"); got != pid {
		t.Errorf("second apply: MainPID %s -> %s, want the same process", pid, got)
	}
	if got := c.Show(t, runnerUnit, "NRestarts"); got != restarts {
		t.Errorf("second apply: NRestarts %s -> %s", restarts, got)
	}
	if got := c.Systemctl("is-active", runnerUnit); got != "active" {
		t.Errorf("after the second apply: is-active = %q", got)
	}

	out := journal()
	failOnLeak(t, "gitlab-runner (journal)", out, w.secrets())
	if os.Getenv("GLB_RUNNER_LOG") != "" || t.Failed() {
		t.Logf("--- journalctl -u %s\n%s\n--- job %d trace\n%s\n--- tasks\n%s", runnerUnit, out, job.ID, job.Trace, taskLog())
	}
	for _, l := range runnerFindings(out) {
		t.Logf("gitlab-runner: %s", l)
	}
	t.Logf("build and stand-ins %s, boot %s, install, applies, job and checks %s", prepared.Sub(begin).Round(time.Millisecond),
		booted.Sub(prepared).Round(time.Millisecond), time.Since(booted).Round(time.Millisecond))
}

// checkPackageUnit compares the unit `gitlab-runner install` wrote with the one the offline
// tests seed (testenv.SeedRunnerRoot): what systemd runs must be the same.
func checkPackageUnit(t *testing.T, real, seeded string) {
	t.Helper()
	directives := func(s string) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(s, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
				m[k] = strings.TrimSpace(v)
			}
		}
		return m
	}
	r, s := directives(real), directives(seeded)
	for _, k := range []string{"ExecStart", "Restart", "RestartSec", "EnvironmentFile", "ConditionFileIsExecutable", "WantedBy"} {
		if r[k] != s[k] {
			t.Errorf("%s: gitlab-runner install writes %s=%q, the seeded unit has %q", runnerUnit, k, r[k], s[k])
		}
	}
	for k, v := range r {
		if s[k] != v {
			t.Logf("%s: gitlab-runner install writes %s=%q, the seeded unit has %q", runnerUnit, k, v, s[k])
		}
	}
}
