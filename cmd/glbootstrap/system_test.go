package main

// The system test of the runner role on a live system: the real binary runs
// "apply --role runner" with root "/" inside a booted Debian 12 container
// (internal/testenv/nspawn), so the live code paths run: gitlab-runner.service
// enabled and started over D-Bus, directories chowned to the container's
// gitlab-runner user, the lock in /run. The container shares the host's
// network namespace, so it reaches the stand-ins this test process serves on
// 127.0.0.1 through the AWS SDK's standard variables, as in the blackbox tests.

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/nspawn"
)

const runnerUnit = "gitlab-runner.service"

// standInRunner is /usr/bin/gitlab-runner in the container: a runner that
// stays up (systemd sees its process as the service's main process).
const standInRunner = "#!/bin/sh\n# Stand-in for the gitlab-runner package's binary: stays running like \"gitlab-runner run\".\nexec sleep infinity\n"

// brokenRunnerDropIn makes the unit's ExecStart fail in a way systemd reports
// as a failed start job: Type=exec and a binary that is not there. (With the
// package's Type=simple a gitlab-runner that exits at once still gives a
// successful start job; systemd then restarts it every RestartSec.)
const brokenRunnerDropIn = `[Service]
Type=exec
ExecStart=
ExecStart=/usr/bin/gitlab-runner-missing run --config /etc/gitlab-runner/config.toml
`

// TestSystemRunnerLive converges a booted container into a runner front:
// first apply, a converged apply, a stopped service started again, and a
// service that cannot start.
func TestSystemRunnerLive(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: boots a systemd-nspawn container as root; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	rootfs := nspawn.Prerequisites(t, "go")
	begin := time.Now()

	share := staticBinaryDir(t)
	// newWorld starts the stand-ins, puts the reference config in SSM and
	// seeds a baked runner tree; the unit and the CA are taken from that tree.
	w := newWorld(t, testenv.IMDSValues{})
	ca := w.read(testenv.StackCAFile)
	unitText := w.read("etc/systemd/system/" + runnerUnit)
	if err := os.WriteFile(filepath.Join(share, "gitlab.crt"), []byte(ca), 0o644); err != nil {
		t.Fatal(err)
	}
	// Only the stack's AWS_* variables: nspawn.BaseEnv supplies PATH and HOME.
	env := w.stack.Env(nil)

	prepared := time.Now()
	c := nspawn.Boot(t, rootfs, nspawn.BindRO(share, "/glb-test"))
	booted := time.Now()

	requireReachable(t, c, env, w.stack.GitLab.URL())

	// What the AMI bake leaves: the package's user, binary and unit, and
	// the CA user-data drops. Not enabled, not running.
	c.Sh(t, "useradd --system --create-home --shell /bin/bash gitlab-runner")
	c.Write(t, "/usr/bin/gitlab-runner", standInRunner)
	c.Sh(t, "chmod 0755 /usr/bin/gitlab-runner")
	c.Write(t, "/etc/systemd/system/"+runnerUnit, unitText)
	c.Sh(t, "install -D -m 0644 /glb-test/gitlab.crt "+testenv.StackCAFile+
		" && install -m 0755 /glb-test/glbootstrap /usr/local/bin/glbootstrap && systemctl daemon-reload")
	if got := c.Systemctl("is-enabled", runnerUnit); got != "disabled" {
		t.Fatalf("before apply: is-enabled %s = %q, want disabled", runnerUnit, got)
	}
	if got := c.Systemctl("is-active", runnerUnit); got != "inactive" {
		t.Fatalf("before apply: is-active %s = %q, want inactive", runnerUnit, got)
	}

	apply := func(what string) result {
		t.Helper()
		return execIn(t, c, env, what, "/usr/local/bin/glbootstrap", "apply", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam)
	}
	servicePhase := func(status string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^\[runner\] service +` + status + ` `)
	}

	// First apply: everything, and the service enabled and started by glbootstrap.
	first := apply("first apply")
	if first.code != 0 {
		t.Fatalf("first apply: %s", first)
	}
	t.Logf("first apply:\n%s", first.stdout)
	for _, want := range []string{
		"glbootstrap apply --role runner on the live system",
		"created runner #",
		"service  " + runnerUnit + ": enabled",
		"service  " + runnerUnit + ": started",
		"6 changed, 1 unchanged, 0 failed",
	} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("first apply output lacks %q:\n%s", want, first)
		}
	}
	if !servicePhase("changed").MatchString(first.stdout) {
		t.Errorf("first apply: service phase not changed:\n%s", first)
	}
	if got := c.Systemctl("is-enabled", runnerUnit); got != "enabled" {
		t.Errorf("after apply: is-enabled = %q, want enabled", got)
	}
	c.Sh(t, "test -L /etc/systemd/system/multi-user.target.wants/"+runnerUnit)
	if got := c.Systemctl("is-active", runnerUnit); got != "active" {
		t.Fatalf("after apply: is-active = %q, want active\n%s", got, c.Sh(t, "journalctl -u "+runnerUnit+" --no-pager || true"))
	}
	pid := c.Show(t, runnerUnit, "MainPID")
	if comm := strings.TrimSpace(c.Sh(t, "cat /proc/"+pid+"/comm")); comm != "sleep" {
		t.Errorf("MainPID %s of %s is %q, want the stand-in's sleep", pid, runnerUnit, comm)
	}

	// config.toml: 0600, root's, with the runner GitLab created.
	if got := strings.TrimSpace(c.Sh(t, "stat -c '%a %U:%G' /etc/gitlab-runner/config.toml")); got != "600 root:root" {
		t.Errorf("config.toml: mode and owner %q, want 600 root:root", got)
	}
	var cfg struct {
		Runners []struct {
			URL       string `toml:"url"`
			CloneURL  string `toml:"clone_url"`
			Token     string `toml:"token"`
			TLSCAFile string `toml:"tls-ca-file"`
		} `toml:"runners"`
	}
	if _, err := toml.Decode(c.Sh(t, "cat /etc/gitlab-runner/config.toml"), &cfg); err != nil {
		t.Fatalf("config.toml: %v", err)
	}
	runners := w.stack.GitLab.Runners()
	if len(runners) != 1 || len(cfg.Runners) != 1 {
		t.Fatalf("GitLab has %d runners, config.toml %d [[runners]]; want 1 and 1", len(runners), len(cfg.Runners))
	}
	rc := cfg.Runners[0]
	if rc.Token != runners[0].Token || !strings.HasPrefix(rc.Token, "glrt-") {
		t.Error("config.toml's token is not the glrt- token of the runner GitLab created")
	}
	if rc.URL != w.stack.GitLab.URL() || rc.CloneURL != w.stack.GitLab.URL() || rc.TLSCAFile != testenv.StackCAFile {
		t.Errorf("config.toml url/clone_url/tls-ca-file = %q/%q/%q, want %q twice and %s", rc.URL, rc.CloneURL, rc.TLSCAFile, w.stack.GitLab.URL(), testenv.StackCAFile)
	}
	if strings.Contains(first.stdout+first.stderr, rc.Token) {
		t.Error("the runner token was printed")
	}

	// The directories belong to the container's gitlab-runner user.
	for _, d := range []string{"builds", "cache", "metadata"} {
		p := "/opt/gitlab-runner/" + d
		if got := strings.TrimSpace(c.Sh(t, "stat -c %U "+p)); got != "gitlab-runner" {
			t.Errorf("%s owned by %q, want gitlab-runner", p, got)
		}
	}
	if got := strings.TrimSpace(c.Sh(t, "stat -c %a /opt/gitlab-runner/metadata")); got != "700" {
		t.Errorf("/opt/gitlab-runner/metadata mode %s, want 700", got)
	}
	if got := strings.TrimSpace(c.Sh(t, "stat -c '%a %U' /opt/gitlab-runner/fargate")); got != "755 root" {
		t.Errorf("/opt/gitlab-runner/fargate: %q, want 755 root", got)
	}
	// The run lock is the live system's.
	c.Sh(t, "test -f /run/glbootstrap.lock")

	// Converged: nothing changes, the same process keeps running.
	second := apply("second apply")
	if second.code != 0 || !strings.Contains(second.stdout, "0 changed, 7 unchanged, 0 failed") ||
		!strings.Contains(second.stdout, "service  "+runnerUnit+": running") {
		t.Errorf("second apply: want exit 0, \"0 changed\" and the service running: %s", second)
	}
	if got := c.Show(t, runnerUnit, "MainPID"); got != pid {
		t.Errorf("second apply: MainPID %s -> %s, want the same process", pid, got)
	}
	if n := len(w.stack.GitLab.Runners()); n != 1 {
		t.Errorf("GitLab has %d runners after two applies, want 1", n)
	}
	if n := w.stack.GitLab.Requests("POST", "/api/v4/user/runners"); n != 1 {
		t.Errorf("POST /api/v4/user/runners called %d times, want 1", n)
	}

	// Someone stopped gitlab-runner: the next apply starts it, nothing else.
	c.Sh(t, "systemctl stop "+runnerUnit)
	if got := c.Systemctl("is-active", runnerUnit); got != "inactive" {
		t.Fatalf("after systemctl stop: is-active = %q", got)
	}
	third := apply("apply after systemctl stop")
	if third.code != 0 || !strings.Contains(third.stdout, "1 changed, 6 unchanged, 0 failed") ||
		!servicePhase("changed").MatchString(third.stdout) || !strings.Contains(third.stdout, "service  "+runnerUnit+": started") {
		t.Errorf("apply after stop: want exit 0, 1 changed in the service phase (started): %s", third)
	}
	if got := c.Systemctl("is-active", runnerUnit); got != "active" {
		t.Errorf("apply after stop: is-active = %q, want active", got)
	}

	// A gitlab-runner that dies at once: with the package's Type=simple the
	// start job succeeds, but the unit never stays up; apply must not call it
	// started.
	c.Write(t, "/usr/bin/gitlab-runner", "#!/bin/sh\necho 'FATAL: config.toml: permission denied' >&2\nexit 1\n")
	c.Sh(t, "chmod 0755 /usr/bin/gitlab-runner && systemctl stop "+runnerUnit)
	crash := apply("apply with a gitlab-runner that exits at once")
	if crash.code != 1 || !servicePhase("failed").MatchString(crash.stdout) ||
		!strings.Contains(crash.stdout, runnerUnit+" did not stay up after starting (state activating/auto-restart)") ||
		strings.Contains(crash.stdout, runnerUnit+": started") {
		t.Errorf("apply with a crashing gitlab-runner: want exit 1, the service phase failed, not \"started\": %s", crash)
	}
	c.Write(t, "/usr/bin/gitlab-runner", standInRunner)
	c.Sh(t, "chmod 0755 /usr/bin/gitlab-runner")

	// A gitlab-runner that cannot start: the service phase fails, says where
	// to look, and the journal there says why.
	c.Sh(t, "mkdir -p /etc/systemd/system/"+runnerUnit+".d")
	c.Write(t, "/etc/systemd/system/"+runnerUnit+".d/10-broken.conf", brokenRunnerDropIn)
	c.Sh(t, "systemctl daemon-reload && systemctl stop "+runnerUnit)
	broken := apply("apply with a failing ExecStart")
	t.Logf("apply with a failing ExecStart:\n%s", broken.stdout)
	hint := "journalctl -u " + runnerUnit
	if broken.code != 1 || !servicePhase("failed").MatchString(broken.stdout) ||
		!strings.Contains(broken.stdout, "error: starting "+runnerUnit+": job failed; see "+hint) ||
		!strings.Contains(broken.stdout, "0 changed, 6 unchanged, 1 failed") {
		t.Errorf("apply with a failing ExecStart: want exit 1, the service phase failed with %q: %s", hint, broken)
	}
	// The journal is written asynchronously: give it a moment. Either systemd's own line
	// naming the missing binary or the exec failure status (203/EXEC) says what failed.
	var journal string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		journal = c.Sh(t, hint+" --no-pager")
		if strings.Contains(journal, "gitlab-runner-missing") || strings.Contains(journal, "status=203/EXEC") || time.Now().After(deadline) {
			break
		}
	}
	if !strings.Contains(journal, "gitlab-runner-missing") && !strings.Contains(journal, "status=203/EXEC") {
		t.Errorf("%s does not say what failed:\n%s", hint, journal)
	}
	if n := len(w.stack.GitLab.Runners()); n != 1 {
		t.Errorf("GitLab has %d runners at the end, want 1", n)
	}
	t.Logf("build and stand-ins %s, boot %s, setup, applies and checks %s", prepared.Sub(begin).Round(time.Millisecond),
		booted.Sub(prepared).Round(time.Millisecond), time.Since(booted).Round(time.Millisecond))
}

// staticBinaryDir puts glbootstrap, built statically (the container's libc need not be the
// host's), in a new directory for the container to bind-mount. The build runs once per test
// process; every caller gets its own directory holding a link to (or a copy of) that binary.
func staticBinaryDir(t *testing.T) string {
	t.Helper()
	static.once.Do(func() {
		// Next to TestMain's build, whose directory goes when the tests end.
		static.path = filepath.Join(filepath.Dir(binary), "static", "glbootstrap")
		if err := os.MkdirAll(filepath.Dir(static.path), 0o755); err != nil {
			static.err = err
			return
		}
		build := exec.Command("go", "build", "-o", static.path, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			static.err = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if static.err != nil {
		t.Fatalf("building glbootstrap statically: %v", static.err)
	}
	share := t.TempDir()
	dst := filepath.Join(share, "glbootstrap")
	if err := os.Link(static.path, dst); err != nil {
		b, err := os.ReadFile(static.path)
		if err == nil {
			err = os.WriteFile(dst, b, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return share
}

// static is the statically built glbootstrap of this test process (staticBinaryDir).
var static struct {
	once sync.Once
	path string
	err  error
}

// requireReachable fails the test unless every AWS endpoint in env and each
// extra URL is reachable from inside c: 127.0.0.1 in the container is the
// test process's, since the container shares the host's network namespace.
func requireReachable(t *testing.T, c *nspawn.Container, env []string, extra ...string) {
	t.Helper()
	endpoints := append([]string(nil), extra...)
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_E") && strings.HasPrefix(v, "http") {
			endpoints = append(endpoints, v)
		}
	}
	for _, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil {
			t.Fatal(err)
		}
		h, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			t.Fatalf("endpoint %s: %v", e, err)
		}
		if _, stderr, code := c.Exec(nil, "bash", "-c", `exec 3<>"/dev/tcp/$0/$1"`, h, port); code != 0 {
			t.Fatalf("the container cannot reach the stand-in at %s (it should share the host's network namespace): %s", e, stderr)
		}
	}
}

// execIn runs argv in the booted container c with env (nspawn.BaseEnv adds PATH and HOME), logs
// its exit code and duration under what, and fails the test when it could not be run at all.
func execIn(t testing.TB, c *nspawn.Container, env []string, what string, argv ...string) result {
	t.Helper()
	start := time.Now()
	stdout, stderr, code := c.Exec(env, argv...)
	r := result{code: code, stdout: stdout, stderr: stderr}
	t.Logf("%s: exit %d in %s", what, code, time.Since(start).Round(time.Millisecond))
	if code == -1 {
		t.Fatalf("%s: could not run glbootstrap in the container: %s", what, r)
	}
	return r
}
