package main

// A stock Debian 12 instance becomes a runner front from its user-data alone: the booted
// container of the nspawn rootfs (systemd, curl, ca-certificates; no gitlab-runner) stands in
// for a cloud image, `glbootstrap userdata` makes the script, and the script runs as cloud-init
// would run it. glbootstrap comes from this process over http (checksum pinned), gitlab-runner
// from a signed apt repository on 127.0.0.1 that re-signs like a private mirror
// (packages.mirror_key_fingerprint) and holds a package built around the real gitlab-runner
// 17.9.3 whose maintainer scripts do what GitLab's do: its post-install creates the user,
// installs the service and starts it, before glbootstrap has registered anything.

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/nspawn"
)

// runnerPostInstall does what gitlab-runner 17.9.3's package does on configure
// (packaging/scripts/postinst.deb calls packaging/root/usr/share/gitlab-runner/post-install,
// gitlabhq/gitlab-runner at v17.9.3), for a host without the pre-10.0 gitlab_ci_multi_runner
// user and without Docker (its clear-docker-cache step then does nothing): the system user with
// an empty home, /etc/gitlab-runner 0700, any old service stopped and uninstalled, `gitlab-runner
// install --user --working-directory` (the systemd unit, enabled), and `gitlab-runner start`.
const runnerPostInstall = `#!/bin/sh
set -e
USER=gitlab-runner
if id -u gitlab_ci_multi_runner >/dev/null 2>&1; then USER=gitlab_ci_multi_runner; fi
if ! id -u "$USER" >/dev/null 2>&1; then
  echo "GitLab Runner: creating $USER..."
  useradd --system --shell /bin/bash --comment 'GitLab Runner' --create-home --skel /dev/null "$USER"
fi
HOMEDIR=$(getent passwd "$USER" | cut -d: -f6)
mkdir -p /etc/gitlab-runner
chmod 0700 /etc/gitlab-runner
if gitlab-runner status --service=gitlab-runner; then
  gitlab-runner stop --service=gitlab-runner >/dev/null 2>&1 || :
  gitlab-runner uninstall --service=gitlab-runner >/dev/null 2>&1 || :
fi
gitlab-runner stop >/dev/null 2>&1 || :
gitlab-runner uninstall >/dev/null 2>&1 || :
gitlab-runner install --user="$USER" --working-directory="$HOMEDIR"
gitlab-runner start || :
`

// runnerPreRemove is the package's pre-remove (packaging/root/usr/share/gitlab-runner/pre-remove
// at v17.9.3): stop and uninstall the service, never fail.
const runnerPreRemove = `#!/bin/sh
gitlab-runner stop >/dev/null 2>&1
gitlab-runner uninstall >/dev/null 2>&1
exit 0
`

// realRunnerDebs are gitlab-runner 17.9.3-1 around the real binary at bin and
// gitlab-runner-helper-images 17.9.3-1, with the relations of GitLab's packages
// (magefiles/packages/create.go at v17.9.3): gitlab-runner depends on ca-certificates, curl,
// tar and the helper images at exactly its version. Its dependency on git is left out: git is
// not in the stock rootfs, and fetching it from deb.debian.org would make the test depend on the
// internet (the front's gitlab-runner never clones with the custom executor; the tasks do).
func realRunnerDebs(t *testing.T, bin string) []testenv.DebPackage {
	t.Helper()
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	const v = "17.9.3-1"
	return []testenv.DebPackage{
		{Name: "gitlab-runner", Version: v, Depends: "ca-certificates, curl, tar, gitlab-runner-helper-images (= " + v + ")",
			Files: map[string]string{
				"/usr/bin/gitlab-runner":                     string(exe),
				"/usr/share/gitlab-runner/post-install":      runnerPostInstall,
				"/usr/share/gitlab-runner/pre-remove":        runnerPreRemove,
				"/usr/share/doc/gitlab-runner/glb-test-note": "built by glbootstrap's tests around the real gitlab-runner 17.9.3\n",
			},
			// packaging/scripts/postinst.deb and prerm.deb at v17.9.3.
			Postinst: "#!/bin/sh\nset -e\ncase \"$1\" in\nconfigure) /usr/share/gitlab-runner/post-install ;;\nabort-upgrade|abort-remove|abort-deconfigure) ;;\n*) echo \"postinst called with unknown argument $1\" >&2; exit 1 ;;\nesac\nexit 0\n",
			Prerm:    "#!/bin/sh\nset -e\n/usr/share/gitlab-runner/pre-remove\n"},
		{Name: "gitlab-runner-helper-images", Version: v, Architecture: "all",
			Files: map[string]string{"/usr/lib/gitlab-runner/helper-images/README": "the helper images are not needed by the custom executor\n"}},
	}
}

// stockMirror builds the package mirror of the stock-image tests: GitLab's layout, re-signed
// with the mirror's own key, holding realRunnerDebs, served on 127.0.0.1 through a
// countingProxy. It returns the proxy and the packages section that points at it.
func stockMirror(t *testing.T) (*countingProxy, string) {
	t.Helper()
	start := time.Now()
	runnerBin := consumer(t, gitlabRunnerXZ, gitlabRunnerSHA256, t.TempDir(), "gitlab-runner")
	key := testenv.NewAptKey(t, "Test private mirror (re-signs packages.gitlab.com) <mirror@example.invalid>")
	repo := testenv.NewAptRepo(t, testenv.AptRepoSpec{Path: "runner/gitlab-runner/debian", Suite: "bookworm",
		SignWith: key, Packages: realRunnerDebs(t, runnerBin)})
	mirror := newCountingProxy(t, repo.URL)
	t.Logf("signed repository with the real gitlab-runner built in %s", time.Since(start).Round(time.Millisecond))
	return mirror, "packages:\n  mirror: " + mirror.URL + "\n  mirror_key_fingerprint: " + key.Fingerprint + "\n"
}

// countingProxy serves target through a reverse proxy that counts requests and sums the time
// spent serving them (the downloads), so a test can tell apt-get update from no request at all
// and subtract download time from a measurement.
type countingProxy struct {
	URL      string
	requests atomic.Int64
	nanos    atomic.Int64
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		p.requests.Add(1)
		rp.ServeHTTP(w, r)
		p.nanos.Add(int64(time.Since(start)))
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *countingProxy) served() time.Duration { return time.Duration(p.nanos.Load()) }

// pollWatch records when each POST /api/v4/jobs/request first reached the GitLab stand-in.
type pollWatch struct {
	mu   sync.Mutex
	seen []polled
	stop chan struct{}
	done chan struct{}
}

type polled struct {
	at       time.Time
	systemID string
	runnerID int64
}

func watchPolls(gl *testenv.GitLab) *pollWatch {
	w := &pollWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			reqs := gl.JobRequests()
			w.mu.Lock()
			for _, r := range reqs[len(w.seen):] {
				w.seen = append(w.seen, polled{at: time.Now(), systemID: r.SystemID, runnerID: r.RunnerID})
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *pollWatch) Close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// first returns the first poll by systemID at or after index from, waiting up to limit.
func (w *pollWatch) first(systemID string, from int, limit time.Duration) (polled, bool) {
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		w.mu.Lock()
		for _, p := range w.seen[min(from, len(w.seen)):] {
			if p.systemID == systemID {
				w.mu.Unlock()
				return p, true
			}
		}
		w.mu.Unlock()
		if time.Now().After(deadline) {
			return polled{}, false
		}
	}
}

func (w *pollWatch) all() []polled {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]polled(nil), w.seen...)
}

// managers are the distinct runner manager system ids GitLab has seen for runner id: those
// POST /runners/verify recorded and those that asked for jobs (GitLab makes a manager on either).
func managers(gl *testenv.GitLab, polls []polled, id int64) []string {
	var out []string
	add := func(s string) {
		for _, o := range out {
			if o == s {
				return
			}
		}
		out = append(out, s)
	}
	for _, r := range gl.Runners() {
		if r.ID == id {
			for _, s := range r.SystemIDs {
				add(s)
			}
		}
	}
	for _, p := range polls {
		if p.runnerID == id {
			add(p.systemID)
		}
	}
	return out
}

func TestSystemStockImageUserdata(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: boots a systemd-nspawn container as root and runs apt in it; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	rootfs := nspawn.Prerequisites(t, append([]string{"go"}, testenv.AptRepoTools...)...)
	nspawn.RequireRootfs(t, rootfs, "/usr/bin/apt-get", "/usr/bin/gpgv", "/usr/bin/curl", "/usr/bin/sha256sum")
	if _, err := os.Stat(filepath.Join(rootfs, "usr/bin/gitlab-runner")); err == nil {
		t.Fatalf("rootfs %s has gitlab-runner: it must stand in for a stock image", rootfs)
	}
	begin := time.Now()

	// glbootstrap, served over http as a release download; its SHA-256 goes in the user-data.
	self, err := os.ReadFile(filepath.Join(staticBinaryDir(t), "glbootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(self)
	var binRequests atomic.Int64
	var binNanos atomic.Int64
	binSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		binRequests.Add(1)
		_, _ = w.Write(self)
		binNanos.Add(int64(time.Since(start)))
	}))
	t.Cleanup(binSrv.Close)
	binURL := binSrv.URL + "/v0.0.0/glbootstrap-linux-amd64"

	mirror, mirrorCfg := stockMirror(t)
	w := newWorld(t, testenv.IMDSValues{})
	w.setConfig(w.stack.RunnerConfig(testenv.CreateAuth, "  version: 17.9.3\n") + mirrorCfg)

	ud := w.run("userdata", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam,
		"--binary", binURL, "--sha256", hex.EncodeToString(sum[:]), "--allow-http")
	if ud.code != 0 {
		t.Fatalf("glbootstrap userdata: %s", ud)
	}
	share := t.TempDir()
	for name, data := range map[string][]byte{"part-001": []byte(ud.stdout), "gitlab.crt": w.stack.GitLab.CAPEM()} {
		if err := os.WriteFile(filepath.Join(share, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := w.stack.Env(nil)
	prepared := time.Now()

	c := nspawn.Boot(t, rootfs, nspawn.BindRO(share, "/glb-test"))
	booted := time.Now()
	requireReachable(t, c, env, w.stack.GitLab.URL(), mirror.URL, binSrv.URL)
	// What cloud-init does before the user-data: its directories, the script at its place;
	// and what a write_files part of the same user-data would drop: GitLab's private CA.
	c.Sh(t, "mkdir -p /var/lib/cloud/instance/scripts /var/lib/cloud/scripts/per-boot"+
		" && install -m 0700 /glb-test/part-001 /var/lib/cloud/instance/scripts/part-001"+
		" && install -D -m 0644 /glb-test/gitlab.crt "+testenv.StackCAFile)

	gl := w.stack.GitLab
	polls := watchPolls(gl)
	defer polls.Close()
	run := func(what, script string) (result, time.Duration) {
		t.Helper()
		start := time.Now()
		stdout, stderr, code := c.Exec(env, "sh", script)
		r := result{code: code, stdout: stdout, stderr: stderr}
		took := time.Since(start)
		t.Logf("%s: exit %d in %s", what, code, took.Round(time.Millisecond))
		failOnLeak(t, what, stdout+stderr, w.secrets())
		return r, took
	}
	lastLine := func(s string) string {
		ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
		return ls[len(ls)-1]
	}
	journal := func() string {
		out, _, _ := c.Exec(nil, "journalctl", "-u", runnerUnit, "--no-pager", "-o", "cat")
		return out
	}

	// First boot.
	udStart := time.Now()
	first, firstTook := run("user-data (first boot)", "/var/lib/cloud/instance/scripts/part-001")
	t.Logf("user-data output:\n%s%s", first.stdout, first.stderr)
	if first.code != 0 || !strings.Contains(lastLine(first.stdout), "OK: role runner converged in") {
		t.Fatalf("user-data: want exit 0 and a last line saying OK: %s\n--- journalctl -u %s\n%s", first, runnerUnit, journal())
	}
	for _, want := range []string{
		"installed glbootstrap ",
		"installed /var/lib/cloud/scripts/per-boot/glbootstrap-userdata.sh",
		"package  gitlab-runner: installed 17.9.3-1 with gitlab-runner-helper-images; held",
	} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("user-data output lacks %q", want)
		}
	}
	// The package's own start made an s_ id before glbootstrap registered: apply replaced it
	// and restarted gitlab-runner, or the id was not there yet when register ran.
	if strings.Contains(first.stdout, "not recorded as made on this instance") &&
		!strings.Contains(first.stdout, runnerUnit+": restarted (new runner manager system id and token)") {
		t.Errorf("apply replaced the system id the package's gitlab-runner made but did not restart it")
	}

	// gitlab-runner 17.9.3-1 (the real binary) installed and held, with its helper images.
	for _, p := range []string{"gitlab-runner", "gitlab-runner-helper-images"} {
		if got := strings.TrimSpace(c.Sh(t, "dpkg-query -W -f='${Status} ${Version}' "+p)); got != "hold ok installed 17.9.3-1" {
			t.Errorf("dpkg-query %s: %q, want \"hold ok installed 17.9.3-1\"", p, got)
		}
	}
	if got := strings.Fields(c.Sh(t, "apt-mark showhold")); strings.Join(got, " ") != "gitlab-runner gitlab-runner-helper-images" {
		t.Errorf("apt-mark showhold: %q", got)
	}
	if got := strings.Fields(c.Sh(t, "sha256sum /usr/bin/gitlab-runner")); len(got) == 0 || got[0] != gitlabRunnerSHA256 {
		t.Errorf("/usr/bin/gitlab-runner: sha256 %v, want the real 17.9.3's %s", got, gitlabRunnerSHA256)
	}
	if got := c.Sh(t, "cat /etc/apt/sources.list.d/runner_gitlab-runner.list"); !strings.Contains(got, "deb [signed-by=/etc/apt/keyrings/runner_gitlab-runner.gpg] "+mirror.URL+"/runner/gitlab-runner/debian/ bookworm main") {
		t.Errorf("source list:\n%s", got)
	}
	// The service: enabled by the package, active, running the real binary as the package's user.
	if got := c.Systemctl("is-enabled", runnerUnit); got != "enabled" {
		t.Errorf("is-enabled %s = %q, want enabled", runnerUnit, got)
	}
	if got := c.Systemctl("is-active", runnerUnit); got != "active" {
		t.Fatalf("is-active %s = %q, want active\n%s", runnerUnit, got, journal())
	}
	pid := c.Show(t, runnerUnit, "MainPID")
	if exe := strings.TrimSpace(c.Sh(t, "readlink /proc/"+pid+"/exe")); exe != "/usr/bin/gitlab-runner" {
		t.Errorf("MainPID %s runs %q, want /usr/bin/gitlab-runner", pid, exe)
	}

	// GitLab: one runner, one manager, the one recorded in .runner_system_id, and it polls.
	sysID := strings.TrimSpace(c.Sh(t, "cat /etc/gitlab-runner/.runner_system_id"))
	if !regexp.MustCompile(`^[sr]_[0-9a-zA-Z]{12}$`).MatchString(sysID) {
		t.Fatalf(".runner_system_id %q is not a system id", sysID)
	}
	p, ok := polls.first(sysID, 0, 15*time.Second)
	if !ok {
		t.Fatalf("no POST /api/v4/jobs/request with system_id %s within 15 s after the user-data\n--- journalctl -u %s\n%s", sysID, runnerUnit, journal())
	}
	downloads := time.Duration(binNanos.Load()) + mirror.served()
	t.Logf("user-data start to the runner polling as %s: %s; of which downloads served here %s (glbootstrap %d request(s), mirror %d); without them %s (the user-data itself ran %s)",
		sysID, p.at.Sub(udStart).Round(time.Millisecond), downloads.Round(time.Millisecond), binRequests.Load(), mirror.requests.Load(),
		(p.at.Sub(udStart) - downloads).Round(time.Millisecond), firstTook.Round(time.Millisecond))
	runners := gl.Runners()
	if len(runners) != 1 {
		t.Fatalf("GitLab has %d runners, want 1: %+v", len(runners), runners)
	}
	if m := managers(gl, polls.all(), runners[0].ID); len(m) != 1 || m[0] != sysID {
		t.Errorf("runner %d has managers %v, want only %s", runners[0].ID, m, sysID)
	}
	for _, q := range polls.all() {
		if q.systemID != sysID || q.runnerID != runners[0].ID {
			t.Errorf("a jobs/request from runner %d manager %q, want %d %s", q.runnerID, q.systemID, runners[0].ID, sysID)
			break
		}
	}

	// Next boot: systemd starts the enabled gitlab-runner, cloud-init runs the per-boot copy.
	// Nothing changes, nothing is downloaded (no apt-get update), still one manager.
	c.Sh(t, "systemctl restart "+runnerUnit)
	pid = c.Show(t, runnerUnit, "MainPID")
	mirrorBefore, binBefore, pollsBefore := mirror.requests.Load(), binRequests.Load(), len(polls.all())
	again, _ := run("user-data (next boot, per-boot copy)", "/var/lib/cloud/scripts/per-boot/glbootstrap-userdata.sh")
	if again.code != 0 || !strings.Contains(lastLine(again.stdout), "OK: role runner converged in") ||
		!regexp.MustCompile(`\b0 changed, \d+ unchanged, 0 failed`).MatchString(again.stdout) {
		t.Errorf("per-boot run: want exit 0, 0 changed and OK last: %s", again)
	}
	for _, want := range []string{"glbootstrap already installed at /usr/local/bin/glbootstrap", "service  " + runnerUnit + ": running"} {
		if !strings.Contains(again.stdout, want) {
			t.Errorf("per-boot run output lacks %q:\n%s", want, again.stdout)
		}
	}
	if !regexp.MustCompile(`\[runner\] packages +unchanged`).MatchString(again.stdout) {
		t.Errorf("per-boot run: the packages phase is not unchanged:\n%s", again.stdout)
	}
	if n := mirror.requests.Load() - mirrorBefore; n != 0 {
		t.Errorf("the per-boot run made %d request(s) to the package mirror, want none (no apt-get update)", n)
	}
	if n := binRequests.Load() - binBefore; n != 0 {
		t.Errorf("the per-boot run downloaded glbootstrap %d time(s), want none", n)
	}
	if got := c.Show(t, runnerUnit, "MainPID"); got != pid {
		t.Errorf("the per-boot run restarted gitlab-runner (MainPID %s -> %s)", pid, got)
	}
	if _, ok := polls.first(sysID, pollsBefore, 15*time.Second); !ok {
		t.Errorf("no jobs/request from %s after the next boot", sysID)
	}
	if n := len(gl.Runners()); n != 1 {
		t.Errorf("GitLab has %d runners after the next boot, want 1", n)
	}
	if m := managers(gl, polls.all(), runners[0].ID); len(m) != 1 {
		t.Errorf("runner %d has managers %v after the next boot, want only %s", runners[0].ID, m, sysID)
	}
	if n := gl.Requests("POST", "/api/v4/user/runners"); n != 1 {
		t.Errorf("POST /api/v4/user/runners called %d times, want 1", n)
	}
	out := journal()
	failOnLeak(t, "gitlab-runner (journal)", out, w.secrets())
	if os.Getenv("GLB_RUNNER_LOG") != "" || t.Failed() {
		t.Logf("--- journalctl -u %s\n%s", runnerUnit, out)
	}
	t.Logf("repository, stand-ins and user-data %s; boot %s; user-data runs and checks %s", prepared.Sub(begin).Round(time.Millisecond),
		booted.Sub(prepared).Round(time.Millisecond), time.Since(booted).Round(time.Millisecond))
}

// An AMI baked with `glbootstrap bake` (the packages phase installs gitlab-runner from the mirror;
// its package starts the service, which makes its own system id; the seal stops and disables it
// and removes every machine identity), then two instances booted from that image, each with
// its own instance id, both using one runner authentication token (a fleet from one AMI): GitLab
// sees one runner with two managers, one per instance, each of them polling.
func TestSystemBakeThenBoot(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: boots systemd-nspawn containers as root and runs apt in them; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	rootfs := nspawn.Prerequisites(t, append([]string{"go", "cp"}, testenv.AptRepoTools...)...)
	nspawn.RequireRootfs(t, rootfs, "/usr/bin/apt-get", "/usr/bin/gpgv")
	begin := time.Now()

	share := staticBinaryDir(t)
	mirror, mirrorCfg := stockMirror(t)
	w := newWorld(t, testenv.IMDSValues{})
	gl := w.stack.GitLab
	fleet := gl.AddRunner(testenv.GitLabRunner{Token: testenv.StackRunnerTokenVal, Description: "fargate fleet"})
	cfg := w.stack.RunnerConfig("  token_parameter: "+testenv.StackRunnerToken+"\n", "  version: 17.9.3\n") + mirrorCfg
	w.setConfig(cfg)
	if err := os.WriteFile(filepath.Join(share, "gitlab.crt"), gl.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	env := w.stack.Env(nil)

	// The image: a copy of the stock rootfs, booted writable, baked, powered off.
	image := filepath.Join(t.TempDir(), "image")
	if out, err := exec.Command("cp", "-a", "--reflink=auto", rootfs, image).CombinedOutput(); err != nil {
		t.Fatalf("copying the rootfs: %v\n%s", err, out)
	}
	prepared := time.Now()
	builder := nspawn.Boot(t, image, nspawn.Writable(), nspawn.BindRO(share, "/glb-test"))
	start := time.Now()
	stdout, stderr, code := builder.Exec(env, "/glb-test/glbootstrap", "bake", "--yes", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam)
	bake := result{code: code, stdout: stdout, stderr: stderr}
	failOnLeak(t, "bake", stdout+stderr, w.secrets())
	t.Logf("bake: exit %d in %s\n%s", code, time.Since(start).Round(time.Millisecond), stdout)
	if code != 0 {
		t.Fatalf("bake: %s", bake)
	}
	for _, want := range []string{"package  gitlab-runner: installed 17.9.3-1 with gitlab-runner-helper-images; held", "[runner] seal"} {
		if !strings.Contains(bake.stdout, want) {
			t.Errorf("bake output lacks %q", want)
		}
	}
	for _, p := range []string{"gitlab-runner", "gitlab-runner-helper-images"} {
		if got := strings.TrimSpace(builder.Sh(t, "dpkg-query -W -f='${Status} ${Version}' "+p)); got != "hold ok installed 17.9.3-1" {
			t.Errorf("baked: dpkg-query %s: %q, want \"hold ok installed 17.9.3-1\"", p, got)
		}
	}
	if got := builder.Systemctl("is-enabled", runnerUnit); got != "disabled" {
		t.Errorf("baked: is-enabled %s = %q, want disabled (the package enabled it)", runnerUnit, got)
	}
	if got := builder.Systemctl("is-active", runnerUnit); got != "inactive" {
		t.Errorf("baked: is-active %s = %q, want inactive (the package started it)", runnerUnit, got)
	}
	builder.Close()
	for _, p := range []string{"etc/gitlab-runner/.runner_system_id"} {
		if _, err := os.Stat(filepath.Join(image, p)); err == nil {
			t.Errorf("the baked image has /%s", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(image, "etc/machine-id")); err != nil || len(b) != 0 {
		t.Errorf("the baked image's /etc/machine-id: %q %v, want an empty file", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(image, "etc/gitlab-runner/config.toml")); err == nil && strings.Contains(string(b), "token") {
		t.Errorf("the baked image's config.toml holds a token:\n%s", b)
	}
	baked := time.Now()

	// Two instances of the image. Each boot gets its own overlay on the image.
	polls := watchPolls(gl)
	defer polls.Close()
	mirrorBefore := mirror.requests.Load()
	var ids, machineIDs []string
	for _, instance := range []string{"i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"} {
		param := testenv.StackConfigParam + "-" + instance
		w.stack.SSM.Put(param, cfg+"instance:\n  id: "+instance+"\n", true)
		c := nspawn.Boot(t, image, nspawn.BindRO(share, "/glb-test"))
		if got := c.Systemctl("is-active", runnerUnit); got != "inactive" {
			t.Errorf("%s at boot: is-active %s = %q, want inactive until apply", instance, runnerUnit, got)
		}
		c.Sh(t, "install -D -m 0644 /glb-test/gitlab.crt "+testenv.StackCAFile) // a user-data part
		udStart := time.Now()
		stdout, stderr, code := c.Exec(env, "/usr/local/bin/glbootstrap", "apply", "--role", "runner", "--config", "ssm:"+param)
		failOnLeak(t, "apply on "+instance, stdout+stderr, w.secrets())
		t.Logf("apply on %s: exit %d in %s\n%s", instance, code, time.Since(udStart).Round(time.Millisecond), stdout)
		if code != 0 {
			t.Fatalf("apply on %s: %s", instance, result{code: code, stdout: stdout, stderr: stderr})
		}
		if !regexp.MustCompile(`\[runner\] packages +unchanged`).MatchString(stdout) {
			t.Errorf("apply on %s: the packages phase is not unchanged (the image has them)", instance)
		}
		id := strings.TrimSpace(c.Sh(t, "cat /etc/gitlab-runner/.runner_system_id"))
		p, ok := polls.first(id, 0, 15*time.Second)
		if !ok {
			out, _, _ := c.Exec(nil, "journalctl", "-u", runnerUnit, "--no-pager", "-o", "cat")
			t.Fatalf("%s: no jobs/request with its system id %s within 15 s\n%s", instance, id, out)
		}
		mid := strings.TrimSpace(c.Sh(t, "cat /etc/machine-id"))
		t.Logf("%s (machine-id %s): apply start to polling as %s in %s", instance, mid, id, p.at.Sub(udStart).Round(time.Millisecond))
		machineIDs = append(machineIDs, mid)
		ids = append(ids, id)
	}
	if n := mirror.requests.Load() - mirrorBefore; n != 0 {
		t.Errorf("the instances made %d request(s) to the package mirror, want none: the image has the packages", n)
	}
	if ids[0] == ids[1] {
		t.Fatalf("both instances have the runner manager %s", ids[0])
	}
	if machineIDs[0] == "" || machineIDs[0] == machineIDs[1] {
		t.Errorf("the instances' machine-ids %q: want two different ones, made at first boot", machineIDs)
	}
	// Both still polling, each as itself, and GitLab has exactly these two managers.
	from := len(polls.all())
	for _, id := range ids {
		if _, ok := polls.first(id, from, 15*time.Second); !ok {
			t.Errorf("runner manager %s stopped polling", id)
		}
	}
	if rs := gl.Runners(); len(rs) != 1 {
		t.Errorf("GitLab has %d runners, want the fleet's one: %+v", len(rs), rs)
	}
	m := managers(gl, polls.all(), fleet.ID)
	slices.Sort(m)
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(m, want) {
		t.Errorf("runner %d has managers %v, want exactly the two instances' %v", fleet.ID, m, want)
	}
	t.Logf("repository, stand-ins and copy %s; bake %s; two instances booted, applied and checked %s",
		prepared.Sub(begin).Round(time.Millisecond), baked.Sub(prepared).Round(time.Millisecond), time.Since(baked).Round(time.Millisecond))
}
