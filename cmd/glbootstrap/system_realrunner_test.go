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
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/nspawn"
)

const fargateDriverSHA256 = "1ea4b551b3c4e28f897f168e1de8347c95c2d047062cda3a42ce8d1ef5cb6776"

// systemTaskLauncher is what an ECS task of the system tests runs: the one place that chooses
// it. Each task is a container of the coordinator image built from templates/coordinator
// (testenv.BuildCoordinatorImage with buildah, its runner download from a local mirror), started
// with `buildah run` on its own loopback address (testenv.ImageLauncher). The booted container
// shares the host's network, so the driver inside reaches it; the job's builds_dir
// (/opt/gitlab-runner/builds) is in the task's own filesystem, not on this machine. log returns
// what the tasks printed.
func systemTaskLauncher(t *testing.T) (l testenv.ECSLauncher, log func() string) {
	t.Helper()
	img := coordinatorImage(t, 22, "root")
	buf := &syncLog{}
	return &testenv.ImageLauncher{Image: img, Log: buf}, buf.String
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

// liveFront is a booted container set up as the baked AMI leaves a front, with the stand-ins
// (GitLab, S3 holding the real driver, ECS behind the AWS proxy, tasks from
// systemTaskLauncher) and the config in SSM naming the mirrored driver.
type liveFront struct {
	t         *testing.T
	w         *world
	c         *nspawn.Container
	env       []string
	proxy     *testenv.AWSProxy
	tasks     *testenv.ImageLauncher // the ECS stand-in's launcher (systemTaskLauncher)
	taskLog   func() string
	driverURL string
	begin     time.Time
	booted    time.Time
}

// startLiveFront prepares the stand-ins, boots a container and installs gitlab-runner in it
// as its package and the AMI bake do. The service is enabled (gitlab-runner install does that)
// and stopped.
func startLiveFront(t *testing.T) *liveFront {
	t.Helper()
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: boots a systemd-nspawn container as root; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	rootfs := nspawn.Prerequisites(t, "go")
	f := &liveFront{t: t, begin: time.Now()}

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
	f.w = w
	// The local mirror: the real driver release in the S3 stand-in, pinned by its SHA-256.
	const driverKey = "fargate/v0.1.0/fargate-linux-amd64"
	w.stack.S3.PutObject(testenv.StackBucket, driverKey, driver)
	f.driverURL = "s3://" + testenv.StackBucket + "/" + driverKey
	cfg := w.stack.RunnerConfig(testenv.CreateAuth, "")
	cfg = strings.NewReplacer(w.stack.DriverURL, f.driverURL, w.stack.DriverSHA256, fargateDriverSHA256, "version: v0.5.1", "version: v0.1.0").Replace(cfg)
	if !strings.Contains(cfg, f.driverURL) || !strings.Contains(cfg, fargateDriverSHA256) || !strings.Contains(cfg, "version: v0.1.0") {
		t.Fatalf("the runner config does not name the mirrored driver:\n%s", cfg)
	}
	w.setConfig(cfg)

	f.proxy, err = testenv.NewAWSProxy(map[string]http.Handler{
		"ecs." + region + ".amazonaws.com": w.stack.ECS.Handler(),
		"ec2." + region + ".amazonaws.com": w.stack.EC2.Handler(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.proxy.Close)
	var launcher testenv.ECSLauncher
	launcher, f.taskLog = systemTaskLauncher(t)
	f.tasks, _ = launcher.(*testenv.ImageLauncher)
	w.stack.ECS.SetLauncher(launcher)
	t.Cleanup(w.stack.ECS.StopAll)
	for name, data := range map[string][]byte{"gitlab.crt": w.stack.GitLab.CAPEM(), "aws-proxy-ca.pem": f.proxy.CAPEM()} {
		if err := os.WriteFile(filepath.Join(share, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.env = w.stack.Env(nil)

	c := nspawn.Boot(t, rootfs, nspawn.BindRO(share, "/glb-test"))
	f.c, f.booted = c, time.Now()
	requireReachable(t, c, f.env, w.stack.GitLab.URL())

	// The AMI: the real package install and the bake's clean-up; the CA user-data drops; the
	// test's way to AWS for the driver.
	c.Sh(t, packageInstall)
	c.Sh(t, "install -D -m 0644 /glb-test/gitlab.crt "+testenv.StackCAFile+
		" && install -m 0755 /glb-test/glbootstrap /usr/local/bin/glbootstrap")
	if v := strings.TrimSpace(c.Sh(t, "gitlab-runner --version | head -1")); v != "Version:      17.9.3" {
		t.Fatalf("/usr/bin/gitlab-runner in the container: %q, want 17.9.3", v)
	}
	checkPackageUnit(t, c.Sh(t, "cat /etc/systemd/system/"+runnerUnit), w.read("etc/systemd/system/"+runnerUnit))
	c.Sh(t, "mkdir -p /etc/systemd/system/"+runnerUnit+".d")
	c.Write(t, "/etc/systemd/system/"+runnerUnit+".d/50-glb-test-aws.conf", fmt.Sprintf(driverDropIn, f.proxy.URL()))
	c.Sh(t, "systemctl daemon-reload")
	// gitlab-runner install enables the unit (kardianos/service); the bake only stops it.
	if got := c.Systemctl("is-enabled", runnerUnit); got != "enabled" {
		t.Errorf("after gitlab-runner install: is-enabled = %q, want enabled", got)
	}
	if got := c.Systemctl("is-active", runnerUnit); got != "inactive" {
		t.Fatalf("after the bake: is-active = %q, want inactive", got)
	}
	return f
}

// apply runs glbootstrap apply --role runner in the container.
func (f *liveFront) apply(what string) result {
	f.t.Helper()
	r := execIn(f.t, f.c, f.env, what, "/usr/local/bin/glbootstrap", "apply", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam)
	failOnLeak(f.t, what, r.stdout+r.stderr, f.w.secrets())
	return r
}

// journal is what gitlab-runner.service logged.
func (f *liveFront) journal() string {
	out, _, _ := f.c.Exec(nil, "journalctl", "-u", runnerUnit, "--no-pager", "-o", "cat")
	return out
}

// firstApply applies the role to the fresh front and checks the driver it installed and that
// the service is active, running the real gitlab-runner. It returns the service's main PID.
func (f *liveFront) firstApply() (result, string) {
	t, c := f.t, f.c
	t.Helper()
	first := f.apply("first apply")
	t.Logf("first apply:\n%s", first.stdout)
	if first.code != 0 {
		t.Fatalf("first apply: %s", first)
	}
	if want := "installed v0.1.0 from " + f.driverURL; !strings.Contains(first.stdout, want) {
		t.Errorf("first apply output lacks %q", want)
	}
	if got := strings.Fields(c.Sh(t, "sha256sum /opt/gitlab-runner/fargate && stat -c %a /opt/gitlab-runner/fargate")); len(got) != 3 || got[0] != fargateDriverSHA256 || got[2] != "755" {
		t.Errorf("/opt/gitlab-runner/fargate: sha256 and mode %v, want %s 755", got, fargateDriverSHA256)
	}
	if got := c.Systemctl("is-active", runnerUnit); got != "active" {
		t.Fatalf("after apply: is-active = %q, want active\n%s", got, f.journal())
	}
	pid := c.Show(t, runnerUnit, "MainPID")
	if comm := strings.TrimSpace(c.Sh(t, "cat /proc/"+pid+"/comm")); comm != "gitlab-runner" {
		t.Errorf("MainPID %s of %s is %q, want gitlab-runner", pid, runnerUnit, comm)
	}
	if n := len(f.w.stack.GitLab.Runners()); n != 1 {
		t.Fatalf("GitLab has %d runners after apply, want 1", n)
	}
	return first, pid
}

// hostBuilds is the reference config's builds_dir: where a job's files go in the task.
const hostBuilds = "/opt/gitlab-runner/builds"

// runJob sends one job through the front and checks it end to end: success with its trace,
// the script run over SSH in the one task started for it, StopTask by the driver's cleanup,
// and the runner manager that asked for jobs is the one glbootstrap recorded, GitLab's only one.
func (f *liveFront) runJob() testenv.GitLabJob {
	t, c, gl, ecs := f.t, f.c, f.w.stack.GitLab, f.w.stack.ECS
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	_, statErr := os.Stat(hostBuilds)
	start := time.Now()
	id := gl.EnqueueJob(testenv.JobSpec{Name: "hello", Tags: []string{"fargate"}, Script: []string{
		"echo hello from the front in the container",
		`echo "task address: ${SSH_CONNECTION#* * }"`, // SSH_CONNECTION: client port server port
		// The task is the coordinator image: its gitlab-runner came from the build's mirror.
		`echo "in the task: $(gitlab-runner --version | sed -n 's/^Version: *//p')"`,
	}})
	job, err := gl.WaitJob(ctx, id)
	if err != nil {
		t.Fatalf("%v\n--- journalctl -u %s\n%s\n--- tasks\n%s", err, runnerUnit, f.journal(), f.taskLog())
	}
	t.Logf("job %d: %s in %s", job.ID, job.State, time.Since(start).Round(time.Millisecond))
	if job.State != "success" || !job.TraceHasLine("hello from the front in the container") {
		t.Errorf("job %d = %s (%s); trace:\n%s\n--- journalctl -u %s\n%s", job.ID, job.State, job.FailureReason, job.Trace, runnerUnit, f.journal())
	}
	tasks := ecs.Tasks()
	if len(tasks) != 1 {
		t.Fatalf("%d ECS tasks started for one job, want 1", len(tasks))
	}
	if want := "task address: " + tasks[0].IP + " 22"; !job.TraceHasLine(want) {
		t.Errorf("job %d trace does not show SSH to the task (%s):\n%s", job.ID, want, job.Trace)
	}
	if !job.TraceHasLine("in the task: 17.9.3") {
		t.Errorf("job %d did not run in the coordinator image (its gitlab-runner 17.9.3):\n%s", job.ID, job.Trace)
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
	if refused := f.proxy.Refused(); len(refused) > 0 {
		t.Errorf("the driver asked the proxy for %v: only the ECS and EC2 stand-ins are served", refused)
	}
	if _, err := os.Stat(hostBuilds); statErr != nil && err == nil {
		t.Errorf("the job's builds_dir landed on this machine (%s): a task's filesystem must be its own (systemTaskLauncher)", hostBuilds)
	}

	// One runner manager on GitLab, and it is the one glbootstrap recorded: the runner the
	// service runs used glbootstrap's .runner_system_id.
	sysID := strings.TrimSpace(c.Sh(t, "cat /etc/gitlab-runner/.runner_system_id"))
	runners := gl.Runners()
	if len(runners) != 1 || len(runners[0].SystemIDs) != 1 || runners[0].SystemIDs[0] != sysID {
		t.Errorf("GitLab's runners and managers: %+v, want one runner with the single manager %s", runners, sysID)
	}
	if len(runners) > 0 && (job.RunnerID != runners[0].ID || job.SystemID != sysID) {
		t.Errorf("job %d taken by runner %d manager %q, want %d %q", job.ID, job.RunnerID, job.SystemID, runners[0].ID, sysID)
	}
	reqs := gl.JobRequests()
	if len(reqs) == 0 {
		t.Error("no POST /api/v4/jobs/request reached GitLab")
	}
	for _, r := range reqs {
		if len(runners) > 0 && (r.RunnerID != runners[0].ID || r.SystemID != sysID) {
			t.Errorf("jobs/request from runner %d manager %q, want %d %q", r.RunnerID, r.SystemID, runners[0].ID, sysID)
			break
		}
	}
	return job
}

// convergedApply applies again and checks that nothing changed and the runner kept running:
// the same process, not restarted.
func (f *liveFront) convergedApply(pid string) {
	t, c := f.t, f.c
	t.Helper()
	restarts := c.Show(t, runnerUnit, "NRestarts")
	again := f.apply("converged apply")
	if again.code != 0 || !regexp.MustCompile(`\b0 changed, \d+ unchanged, 0 failed`).MatchString(again.stdout) ||
		!strings.Contains(again.stdout, "service  "+runnerUnit+": running") {
		t.Errorf("converged apply: want exit 0, 0 changed and the service running: %s", again)
	}
	if got := c.Show(t, runnerUnit, "MainPID"); got != pid {
		t.Errorf("converged apply: MainPID %s -> %s, want the same process", pid, got)
	}
	if got := c.Show(t, runnerUnit, "NRestarts"); got != restarts {
		t.Errorf("converged apply: NRestarts %s -> %s", restarts, got)
	}
	if got := c.Systemctl("is-active", runnerUnit); got != "active" {
		t.Errorf("after the converged apply: is-active = %q", got)
	}
}

// finish logs what gitlab-runner said, fails on a secret in its journal, and logs the timing.
func (f *liveFront) finish(job testenv.GitLabJob) {
	t := f.t
	t.Helper()
	out := f.journal()
	failOnLeak(t, "gitlab-runner (journal)", out, f.w.secrets())
	if os.Getenv("GLB_RUNNER_LOG") != "" || t.Failed() {
		t.Logf("--- journalctl -u %s\n%s\n--- job %d trace\n%s\n--- tasks\n%s", runnerUnit, out, job.ID, job.Trace, f.taskLog())
	}
	for _, l := range runnerFindings(out) {
		t.Logf("gitlab-runner: %s", l)
	}
	t.Logf("build, stand-ins and boot %s; install, applies, job and checks %s", f.booted.Sub(f.begin).Round(time.Millisecond),
		time.Since(f.booted).Round(time.Millisecond))
}

// The baked front, its service stopped: apply installs the driver from the mirror and starts
// gitlab-runner.service over D-Bus; a job runs end to end; a second apply changes nothing.
func TestSystemRealRunnerJob(t *testing.T) {
	f := startLiveFront(t)
	first, pid := f.firstApply()
	for _, want := range []string{"service  " + runnerUnit + ": enabled", "service  " + runnerUnit + ": started"} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("first apply output lacks %q", want)
		}
	}
	job := f.runJob()
	f.convergedApply(pid)
	f.finish(job)
}

// A front booted from the AMI: gitlab-runner.service is enabled (gitlab-runner install did
// that and the bake only stops it), so it starts at boot, before glbootstrap, with no
// config.toml, and makes its own .runner_system_id. Apply must leave GitLab with one runner
// manager, glbootstrap's, and that must be the one the running gitlab-runner uses for jobs.
func TestSystemRealRunnerBootedAMI(t *testing.T) {
	f := startLiveFront(t)
	c := f.c
	c.Sh(t, "systemctl start "+runnerUnit) // what boot does with the enabled unit
	var bootID string
	for deadline := time.Now().Add(10 * time.Second); bootID == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		bootID = strings.TrimSpace(c.Sh(t, "cat /etc/gitlab-runner/.runner_system_id 2>/dev/null || true"))
	}
	if bootID == "" {
		t.Fatalf("gitlab-runner started without config.toml made no .runner_system_id in 10 s:\n%s", f.journal())
	}
	bootPID := c.Show(t, runnerUnit, "MainPID")
	t.Logf("at boot gitlab-runner (pid %s) made system id %s", bootPID, bootID)

	first, pid := f.firstApply()
	if want := "replaces " + bootID + ": not recorded as made on this instance"; !strings.Contains(first.stdout, want) {
		t.Errorf("first apply does not say it replaced the boot-time system id (%q)", want)
	}
	// The running gitlab-runner had the boot-time id: apply restarts it with glbootstrap's.
	if want := "service  " + runnerUnit + ": restarted (new runner manager system id and token)"; !strings.Contains(first.stdout, want) {
		t.Errorf("first apply output lacks %q:\n%s", want, first.stdout)
	}
	if pid == bootPID {
		t.Errorf("first apply kept gitlab-runner (pid %s) running with the boot-time system id", pid)
	}
	job := f.runJob()
	if job.SystemID == bootID {
		t.Errorf("the running gitlab-runner asked for jobs as %s, the system id it made at boot, not glbootstrap's", bootID)
	}
	f.convergedApply(pid)
	f.finish(job)
}

// checkPackageUnit compares the unit `gitlab-runner install` wrote with the one the offline
// tests seed (testenv.SeedRunnerRoot): every directive must be the same.
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
	if len(r) < 5 {
		t.Fatalf("gitlab-runner install wrote a unit with %d directives:\n%s", len(r), real)
	}
	for k := range s {
		if _, ok := r[k]; !ok {
			r[k] = ""
		}
	}
	for k, v := range r {
		if s[k] != v {
			t.Errorf("%s: gitlab-runner install writes %s=%q, testenv.SeedRunnerRoot's unit has %q", runnerUnit, k, v, s[k])
		}
	}
}
