package systemd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/testenv/nspawn"
)

// The system test of Live: it boots a Debian 12 rootfs with systemd-nspawn
// (internal/testenv/nspawn, with a private network) and drives the real
// systemd in it over D-Bus. It is opt-in (GLB_SYSTEM_TEST=1, "make
// system-test"); the package nspawn says what it needs.

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
	rootfs := nspawn.Prerequisites(t, "go")

	// The helper calls systemd.For(&host.Host{Root: "/"}) inside the container.
	share := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(share, "livehelper"), "./testdata/livehelper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building testdata/livehelper: %v\n%s", err, out)
	}

	c := container{nspawn.Boot(t, rootfs, nspawn.Name("glb-live-"+strconv.Itoa(os.Getpid())),
		nspawn.PrivateNetwork(), nspawn.BindRO(share, "/glb-test"))}

	// A fresh unit: not enabled, not running.
	c.Write(t, "/etc/systemd/system/"+liveUnit, liveUnitFile(1))
	c.Write(t, "/etc/systemd/system/glb-fails.service", failingUnit)
	c.Sh(t, "systemctl daemon-reload")
	if got := c.Systemctl("is-enabled", liveUnit); got != "disabled" {
		t.Fatalf("before Enable: is-enabled %s = %q, want disabled", liveUnit, got)
	}

	// plan: reported, nothing done.
	if st := c.helper(t, true, "enable", liveUnit); !st.Changed || st.Summary != "would be enabled" {
		t.Errorf("plan Enable: %+v, want changed \"would be enabled\"", st)
	}
	if got := c.Systemctl("is-enabled", liveUnit); got != "disabled" {
		t.Errorf("after plan Enable: is-enabled = %q, want disabled (plan must not enable)", got)
	}

	// Enable: changed once, then unchanged.
	if st := c.helper(t, false, "enable", liveUnit); !st.Changed || st.Summary != "enabled" {
		t.Errorf("first Enable: %+v, want changed \"enabled\"", st)
	}
	if got := c.Systemctl("is-enabled", liveUnit); got != "enabled" {
		t.Errorf("after Enable: is-enabled = %q, want enabled", got)
	}
	c.Sh(t, "test -L /etc/systemd/system/multi-user.target.wants/"+liveUnit)
	if st := c.helper(t, false, "enable", liveUnit); st.Changed {
		t.Errorf("second Enable: %+v, want unchanged", st)
	}

	// Start: plan does nothing, then started once, then "running".
	if st := c.helper(t, true, "start", liveUnit); !st.Changed || st.Summary != "would be started" {
		t.Errorf("plan Start: %+v, want changed \"would be started\"", st)
	}
	if got := c.Systemctl("is-active", liveUnit); got != "inactive" {
		t.Errorf("after plan Start: is-active = %q, want inactive", got)
	}
	if st := c.helper(t, false, "start", liveUnit); !st.Changed || st.Summary != "started" {
		t.Errorf("first Start: %+v, want changed \"started\"", st)
	}
	if got := c.Systemctl("is-active", liveUnit); got != "active" {
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
	c.Write(t, "/etc/systemd/system/"+liveUnit, liveUnitFile(2))
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
	if got := c.Systemctl("is-active", liveUnit); got != "active" {
		t.Errorf("after Restart: is-active = %q, want active", got)
	}
	if pid := c.show(t, "MainPID"); pid == pid1 || pid == "0" {
		t.Errorf("after Restart: MainPID %s, want a new process (was %s)", pid, pid1)
	}
	if env := c.show(t, "Environment"); env != "GLB_GEN=2" {
		t.Errorf("after Restart: Environment = %q, want the edited GLB_GEN=2", env)
	}
	if got := c.Systemctl("is-enabled", liveUnit); got != "enabled" {
		t.Errorf("after Restart: is-enabled = %q, want enabled", got)
	}

	// Stop and Disable (glbootstrap bake): plan does nothing, then changed once, then unchanged.
	if st := c.helper(t, true, "stop", liveUnit); !st.Changed || st.Summary != "would be stopped" {
		t.Errorf("plan Stop: %+v", st)
	}
	if st := c.helper(t, false, "stop", liveUnit); !st.Changed || st.Summary != "stopped" {
		t.Errorf("Stop: %+v, want changed \"stopped\"", st)
	}
	if got := c.Systemctl("is-active", liveUnit); got != "inactive" {
		t.Errorf("after Stop: is-active = %q, want inactive", got)
	}
	if st := c.helper(t, false, "stop", liveUnit); st.Changed {
		t.Errorf("second Stop: %+v, want unchanged", st)
	}
	if st := c.helper(t, true, "disable", liveUnit); !st.Changed || st.Summary != "would be disabled" {
		t.Errorf("plan Disable: %+v", st)
	}
	if st := c.helper(t, false, "disable", liveUnit); !st.Changed || st.Summary != "disabled" {
		t.Errorf("Disable: %+v, want changed \"disabled\"", st)
	}
	if got := c.Systemctl("is-enabled", liveUnit); got != "disabled" {
		t.Errorf("after Disable: is-enabled = %q, want disabled", got)
	}
	if st := c.helper(t, false, "disable", liveUnit); st.Changed {
		t.Errorf("second Disable: %+v, want unchanged", st)
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

// container is the booted container with this test's queries.
type container struct{ *nspawn.Container }

func (c container) show(t *testing.T, prop string) string {
	t.Helper()
	return c.Show(t, liveUnit, prop)
}

type helperResult struct {
	Step  host.Step `json:"step"`
	Error string    `json:"error"`
}

func (c container) helperRun(t *testing.T, dry bool, action, unit string) (helperResult, error) {
	t.Helper()
	argv := []string{"/glb-test/livehelper"}
	if dry {
		argv = append(argv, "-dry")
	}
	out, stderr, err := c.Run("", nil, append(argv, action, unit)...)
	var r helperResult
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		t.Fatalf("livehelper %s %s: %v; stdout %q, stderr %q", action, unit, err, out, stderr)
	}
	return r, err
}

// helper runs one Live call that must succeed and returns its step.
func (c container) helper(t *testing.T, dry bool, action, unit string) host.Step {
	t.Helper()
	r, err := c.helperRun(t, dry, action, unit)
	if err != nil || r.Error != "" {
		t.Fatalf("livehelper dry=%v %s %s: %v: %s", dry, action, unit, err, r.Error)
	}
	t.Logf("%s %s (dry=%v): changed=%v %q", action, unit, dry, r.Step.Changed, r.Step.Summary)
	return r.Step
}

// helperErr runs one Live call that must fail and returns its error text.
func (c container) helperErr(t *testing.T, action, unit string) (host.Step, string) {
	t.Helper()
	r, err := c.helperRun(t, false, action, unit)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || r.Error == "" {
		t.Fatalf("livehelper %s %s: want exit 1 with an error, got %v, %+v", action, unit, err, r)
	}
	t.Logf("%s %s: error %q", action, unit, r.Error)
	return r.Step, r.Error
}
