package systemd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// The system test of Live: it boots a Debian 12 rootfs with systemd-nspawn
// and drives the real systemd in it over D-Bus. It is opt-in
// (GLB_SYSTEM_TEST=1, "make system-test"): it needs root, systemd-nspawn
// (Debian package systemd-container), nsenter and a rootfs made by
//
//	debootstrap --variant=minbase --include=systemd,dbus,systemd-sysv bookworm DIR http://deb.debian.org/debian
//
// at GLB_NSPAWN_ROOT (default /var/tmp/glb-nspawn). The rootfs is never
// written: the container runs with --volatile=overlay. The host's PID 1 need
// not be systemd: the container is started with --register=no --keep-unit,
// so neither machined nor a host D-Bus is used, and commands are run in it
// with nsenter.

const liveUnit = "glb-live.service"

func liveUnitFile(gen int) string {
	return fmt.Sprintf(`[Unit]
Description=glbootstrap live systemd test
[Service]
Environment=GLB_GEN=%d
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
`, gen)
}

const failingUnit = `[Unit]
Description=glbootstrap live systemd test, a unit that fails
[Service]
Type=oneshot
ExecStart=/bin/false
`

// TestLiveSystemd runs Live.Enable, Start and Restart (through For with
// Root "/", as glbootstrap does on a host) against systemd in a booted
// container and checks each step against systemctl's view.
func TestLiveSystemd(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: boots a systemd-nspawn container as root; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	rootfs := os.Getenv("GLB_NSPAWN_ROOT")
	if rootfs == "" {
		rootfs = "/var/tmp/glb-nspawn"
	}
	if os.Geteuid() != 0 {
		t.Fatal("GLB_SYSTEM_TEST=1 needs root: systemd-nspawn and nsenter do")
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("GLB_SYSTEM_TEST=1 needs %s (systemd-nspawn: Debian package systemd-container; nsenter: util-linux): %v", tool, err)
		}
	}
	for _, f := range []string{"/usr/lib/systemd/systemd", "/usr/bin/dbus-daemon", "/bin/sleep"} {
		if _, err := os.Stat(filepath.Join(rootfs, f)); err != nil {
			t.Fatalf("rootfs %s has no %s: create it with debootstrap --variant=minbase --include=systemd,dbus,systemd-sysv bookworm %s http://deb.debian.org/debian (make system-test does)", rootfs, f, rootfs)
		}
	}

	// The helper calls systemd.For(&host.Host{Root: "/"}) inside the container.
	share := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(share, "livehelper"), "./testdata/livehelper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building testdata/livehelper: %v\n%s", err, out)
	}

	c := bootContainer(t, rootfs, share)

	// A fresh unit: not enabled, not running.
	c.write(t, "/etc/systemd/system/"+liveUnit, liveUnitFile(1))
	c.write(t, "/etc/systemd/system/glb-fails.service", failingUnit)
	c.sh(t, "systemctl daemon-reload")
	if got := c.systemctl(t, "is-enabled", liveUnit); got != "disabled" {
		t.Fatalf("before Enable: is-enabled %s = %q, want disabled", liveUnit, got)
	}

	// plan: reported, nothing done.
	if st := c.helper(t, true, "enable", liveUnit); !st.Changed || st.Summary != "would be enabled" {
		t.Errorf("plan Enable: %+v, want changed \"would be enabled\"", st)
	}
	if got := c.systemctl(t, "is-enabled", liveUnit); got != "disabled" {
		t.Errorf("after plan Enable: is-enabled = %q, want disabled (plan must not enable)", got)
	}

	// Enable: changed once, then unchanged.
	if st := c.helper(t, false, "enable", liveUnit); !st.Changed || st.Summary != "enabled" {
		t.Errorf("first Enable: %+v, want changed \"enabled\"", st)
	}
	if got := c.systemctl(t, "is-enabled", liveUnit); got != "enabled" {
		t.Errorf("after Enable: is-enabled = %q, want enabled", got)
	}
	c.sh(t, "test -L /etc/systemd/system/multi-user.target.wants/"+liveUnit)
	if st := c.helper(t, false, "enable", liveUnit); st.Changed {
		t.Errorf("second Enable: %+v, want unchanged", st)
	}

	// Start: plan does nothing, then started once, then "running".
	if st := c.helper(t, true, "start", liveUnit); !st.Changed || st.Summary != "would be started" {
		t.Errorf("plan Start: %+v, want changed \"would be started\"", st)
	}
	if got := c.systemctl(t, "is-active", liveUnit); got != "inactive" {
		t.Errorf("after plan Start: is-active = %q, want inactive", got)
	}
	if st := c.helper(t, false, "start", liveUnit); !st.Changed || st.Summary != "started" {
		t.Errorf("first Start: %+v, want changed \"started\"", st)
	}
	if got := c.systemctl(t, "is-active", liveUnit); got != "active" {
		t.Fatalf("after Start: is-active = %q, want active", got)
	}
	pid1 := c.show(t, "MainPID")
	if pid1 == "" || pid1 == "0" {
		t.Fatalf("after Start: MainPID = %q", pid1)
	}
	if st := c.helper(t, false, "start", liveUnit); st.Changed || st.Summary != "running" {
		t.Errorf("second Start: %+v, want unchanged \"running\"", st)
	}
	if pid := c.show(t, "MainPID"); pid != pid1 {
		t.Errorf("second Start changed MainPID %s -> %s", pid1, pid)
	}

	// Restart after the unit file changed: daemon-reload, new process, new
	// environment.
	c.write(t, "/etc/systemd/system/"+liveUnit, liveUnitFile(2))
	if got := c.show(t, "NeedDaemonReload"); got != "yes" {
		t.Errorf("after editing the unit: NeedDaemonReload = %q, want yes", got)
	}
	if st := c.helper(t, true, "restart", liveUnit); !st.Changed || !strings.HasPrefix(st.Summary, "would be restarted") {
		t.Errorf("plan Restart: %+v", st)
	}
	if pid := c.show(t, "MainPID"); pid != pid1 {
		t.Errorf("plan Restart changed MainPID %s -> %s", pid1, pid)
	}
	if st := c.helper(t, false, "restart", liveUnit); !st.Changed || st.Summary != "restarted (unit file changed)" {
		t.Errorf("Restart: %+v", st)
	}
	if got := c.show(t, "NeedDaemonReload"); got != "no" {
		t.Errorf("after Restart: NeedDaemonReload = %q, want no (Restart reloads)", got)
	}
	if got := c.systemctl(t, "is-active", liveUnit); got != "active" {
		t.Errorf("after Restart: is-active = %q, want active", got)
	}
	if pid := c.show(t, "MainPID"); pid == pid1 || pid == "0" {
		t.Errorf("after Restart: MainPID %s, want a new process (was %s)", pid, pid1)
	}
	if env := c.show(t, "Environment"); env != "GLB_GEN=2" {
		t.Errorf("after Restart: Environment = %q, want the edited GLB_GEN=2", env)
	}
	if got := c.systemctl(t, "is-enabled", liveUnit); got != "enabled" {
		t.Errorf("after Restart: is-enabled = %q, want enabled", got)
	}

	// A unit whose start job fails, and one that does not exist: errors
	// that name the unit.
	if st, msg := c.helperErr(t, "start", "glb-fails.service"); !strings.Contains(msg, "starting glb-fails.service: job failed") {
		t.Errorf("Start of a failing unit: %+v, error %q, want \"job failed\"", st, msg)
	}
	if st, msg := c.helperErr(t, "enable", "glb-missing.service"); !strings.Contains(msg, "glb-missing.service") {
		t.Errorf("Enable of a missing unit: %+v, error %q, want it to name the unit", st, msg)
	}
}

// container is a booted systemd-nspawn container; commands run in it with
// nsenter into all namespaces of its PID 1.
type container struct {
	leader int
	log    *bytes.Buffer
}

// bootContainer boots rootfs (read-only below a tmpfs overlay) with share
// bound read-only at /glb-test, and waits until its systemd reports ready.
// The container is powered off when the test ends.
func bootContainer(t *testing.T, rootfs, share string) *container {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	name := "glb-live-" + strconv.Itoa(os.Getpid())
	cmd := exec.Command("systemd-nspawn",
		"--directory="+rootfs, "--boot", "--machine="+name,
		// No machined and no scope unit: the host's PID 1 need not be systemd.
		"--register=no", "--keep-unit",
		"--volatile=overlay", "--private-network",
		"--bind-ro="+share+":/glb-test",
		// READY=1 on NOTIFY_SOCKET once the container's systemd finished booting.
		"--notify-ready=yes", "--quiet")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	if os.Getenv("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY") == "" {
		// A pure cgroup v2 container, as on an EC2 Debian 12 host, also when
		// this host mounts the hybrid v1 layout.
		cmd.Env = append(cmd.Env, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	}
	c := &container{log: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM makes nspawn power the container off cleanly.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("container %s did not power off within 30s; killed", name)
		}
		// nspawn leaves this behind when /run is not a tmpfs.
		_ = os.RemoveAll("/run/systemd/nspawn/propagate/" + name)
		if t.Failed() {
			t.Logf("systemd-nspawn output:\n%s", c.log)
		}
	})

	buf := make([]byte, 4096)
	ready := false
	for !ready {
		_ = l.SetReadDeadline(time.Now().Add(90 * time.Second))
		n, err := l.Read(buf)
		if err != nil {
			select {
			case werr := <-exited:
				exited <- werr
				t.Fatalf("systemd-nspawn exited before the container was ready: %v\n%s", werr, c.log)
			default:
			}
			t.Fatalf("waiting for the container to boot: %v\n%s", err, c.log)
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if v, ok := strings.CutPrefix(line, "X_NSPAWN_LEADER_PID="); ok {
				c.leader, _ = strconv.Atoi(v)
			}
			if line == "READY=1" {
				ready = true
			}
		}
	}
	if c.leader == 0 {
		t.Fatalf("systemd-nspawn sent READY=1 without X_NSPAWN_LEADER_PID\n%s", c.log)
	}
	if got := strings.TrimSpace(c.sh(t, "systemctl is-system-running --wait || true")); got != "running" {
		t.Errorf("container state %q, want running; failed units:\n%s", got, c.sh(t, "systemctl --failed --no-legend"))
	}
	t.Logf("container %s (leader pid %d) booted in %s", name, c.leader, time.Since(start).Round(time.Millisecond))
	return c
}

// run runs argv in the container with stdin and returns stdout, stderr and
// the error.
func (c *container) run(stdin string, argv ...string) (string, string, error) {
	cmd := exec.Command("nsenter", append([]string{"--target", strconv.Itoa(c.leader), "--all", "--"}, argv...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (c *container) sh(t *testing.T, script string) string {
	t.Helper()
	out, stderr, err := c.run("", "/bin/sh", "-c", script)
	if err != nil {
		t.Fatalf("in the container: %s: %v\n%s%s", script, err, out, stderr)
	}
	return out
}

func (c *container) write(t *testing.T, path, content string) {
	t.Helper()
	if _, stderr, err := c.run(content, "/bin/sh", "-c", `cat > "$1"`, "sh", path); err != nil {
		t.Fatalf("writing %s in the container: %v\n%s", path, err, stderr)
	}
}

// systemctl returns the trimmed output of a query (is-enabled, is-active)
// whose exit status only encodes the answer.
func (c *container) systemctl(t *testing.T, verb, unit string) string {
	t.Helper()
	out, _, _ := c.run("", "systemctl", verb, unit)
	return strings.TrimSpace(out)
}

func (c *container) show(t *testing.T, prop string) string {
	t.Helper()
	return strings.TrimSpace(c.sh(t, "systemctl show --value -p "+prop+" "+liveUnit))
}

type helperResult struct {
	Step  host.Step `json:"step"`
	Error string    `json:"error"`
}

func (c *container) helperRun(t *testing.T, dry bool, action, unit string) (helperResult, error) {
	t.Helper()
	argv := []string{"/glb-test/livehelper"}
	if dry {
		argv = append(argv, "-dry")
	}
	out, stderr, err := c.run("", append(argv, action, unit)...)
	var r helperResult
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		t.Fatalf("livehelper %s %s: %v; stdout %q, stderr %q", action, unit, err, out, stderr)
	}
	return r, err
}

// helper runs one Live call that must succeed and returns its step.
func (c *container) helper(t *testing.T, dry bool, action, unit string) host.Step {
	t.Helper()
	r, err := c.helperRun(t, dry, action, unit)
	if err != nil || r.Error != "" {
		t.Fatalf("livehelper dry=%v %s %s: %v: %s", dry, action, unit, err, r.Error)
	}
	t.Logf("%s %s (dry=%v): changed=%v %q", action, unit, dry, r.Step.Changed, r.Step.Summary)
	return r.Step
}

// helperErr runs one Live call that must fail and returns its error text.
func (c *container) helperErr(t *testing.T, action, unit string) (host.Step, string) {
	t.Helper()
	r, err := c.helperRun(t, false, action, unit)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || r.Error == "" {
		t.Fatalf("livehelper %s %s: want exit 1 with an error, got %v, %+v", action, unit, err, r)
	}
	t.Logf("%s %s: error %q", action, unit, r.Error)
	return r.Step, r.Error
}
