// Package systemd enables and starts units: over D-Bus (go-systemd) on a
// live host, and offline with "systemctl --root" when the target is a
// directory tree (a --root run, an image being built), where nothing may be
// started.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// Manager enables and starts units, each call reading the unit's state
// first and acting only on a difference. The returned step's summary is the
// implementation's: what it did, or under plan what it would do.
type Manager interface {
	Enable(ctx context.Context, unit string) (host.Step, error)
	Start(ctx context.Context, unit string) (host.Step, error)
	// Restart reloads systemd's view of changed unit files (daemon-reload)
	// and restarts unit, for when its file or its configuration changed.
	// Offline it does nothing.
	Restart(ctx context.Context, unit string) (host.Step, error)
	// Reload asks a running unit to reread its configuration (ExecReload,
	// e.g. sshd). Offline it does nothing.
	Reload(ctx context.Context, unit string) (host.Step, error)
	// Installed checks, changing nothing, that unit's file is installed and
	// systemd could start it: an error wrapping ErrNoUnit when it is not
	// installed, another error when it is masked or systemd cannot load it.
	Installed(ctx context.Context, unit string) error
}

// For returns the manager that fits h: D-Bus on the live system, offline
// systemctl --root otherwise. With plan, it reads the units' state like the
// other and records what it would change instead of changing it.
func For(h *host.Host, plan bool) Manager {
	if h.Live() {
		return &Live{plan: plan}
	}
	return &Offline{Host: h, Plan: plan}
}

// unitDirs are where unit files may live (systemd.unit(5), system units).
var unitDirs = []string{"/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// ErrNoUnit means the unit file is not installed.
var ErrNoUnit = errors.New("unit file not installed")

// Offline enables units in a root directory with "systemctl --root=DIR"
// (which only creates the [Install] symlinks) and never starts anything.
type Offline struct {
	// Host is the tree; unit files are looked up in it.
	Host *host.Host
	// Plan makes Enable report what it would do and do nothing.
	Plan bool
}

// Installed looks for the unit file in the root's unit directories.
func (o *Offline) Installed(ctx context.Context, unit string) error {
	for _, d := range unitDirs {
		if o.Host.Exists(d + "/" + unit) {
			if target, err := o.Host.Readlink(d + "/" + unit); err == nil && target == "/dev/null" {
				return fmt.Errorf("%s is masked (%s/%s links to /dev/null): systemctl --root=%s unmask %s", unit, d, unit, o.Host.Root, unit)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: %s is in none of %s under %s", ErrNoUnit, unit, strings.Join(unitDirs, ", "), o.Host.Root)
}

// Enable runs "systemctl --root=DIR enable UNIT" unless is-enabled already
// says enabled.
func (o *Offline) Enable(ctx context.Context, unit string) (host.Step, error) {
	st := host.Step{Kind: "service", Target: unit}
	h, root := o.Host, o.Host.Root
	found := false
	for _, d := range unitDirs {
		if h.Exists(d + "/" + unit) {
			found = true
			break
		}
	}
	if !found && o.Plan {
		// Under plan an earlier step of the same phase may only have said it
		// would install the unit.
		st.Changed, st.Summary = true, "would be enabled offline once its unit file is installed"
		return st, nil
	}
	if !found {
		return st, fmt.Errorf("%w: %s is in none of %s under %s; the package that provides it (for gitlab-runner: \"gitlab-runner install\") should have put it there",
			ErrNoUnit, unit, strings.Join(unitDirs, ", "), root)
	}
	out, _ := exec.CommandContext(ctx, "systemctl", "--root="+root, "is-enabled", unit).CombinedOutput()
	if strings.TrimSpace(string(out)) == "enabled" {
		st.Summary = "enabled (offline)"
		return st, nil
	}
	st.Changed = true
	st.Summary = "enabled offline (systemctl --root)"
	if o.Plan {
		st.Summary = "would be " + st.Summary
		return st, nil
	}
	if out, err := exec.CommandContext(ctx, "systemctl", "--root="+root, "enable", unit).CombinedOutput(); err != nil {
		return st, fmt.Errorf("systemctl --root=%s enable %s: %w: %s", root, unit, err, strings.TrimSpace(string(out)))
	}
	return st, nil
}

// Start does nothing under a root: there is no running system to start a
// unit in. The step says so and is not a change, so a converged root
// reports 0 changed.
func (o *Offline) Start(ctx context.Context, unit string) (host.Step, error) {
	return host.Step{Kind: "service", Target: unit, Summary: "not started: --root " + o.Host.Root + " is not the live system"}, nil
}

// Restart does nothing under a root: the next boot reads the new unit.
func (o *Offline) Restart(ctx context.Context, unit string) (host.Step, error) {
	return host.Step{Kind: "service", Target: unit, Summary: "not restarted: --root " + o.Host.Root + " is not the live system"}, nil
}

// Reload does nothing under a root: the next boot reads the new configuration.
func (o *Offline) Reload(ctx context.Context, unit string) (host.Step, error) {
	return host.Step{Kind: "service", Target: unit, Summary: "not reloaded: --root " + o.Host.Root + " is not the live system"}, nil
}

// Live talks to the running systemd over D-Bus.
type Live struct {
	// plan reads states and reports what would change, changing nothing.
	plan bool
}

func (l *Live) conn(ctx context.Context) (*dbus.Conn, error) {
	c, err := dbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd over D-Bus: %w (is this host booted with systemd?)", err)
	}
	return c, nil
}

// Installed asks systemd for the unit's LoadState: "loaded" is installed,
// "not-found" is not (ErrNoUnit), "masked" and the rest cannot start.
func (l *Live) Installed(ctx context.Context, unit string) error {
	c, err := l.conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	p, err := c.GetUnitPropertyContext(ctx, unit, "LoadState")
	if err != nil {
		return fmt.Errorf("reading the state of %s: %w", unit, err)
	}
	switch v, _ := p.Value.Value().(string); v {
	case "loaded":
		return nil
	case "not-found":
		return fmt.Errorf("%w: systemd does not know %s", ErrNoUnit, unit)
	case "masked":
		return fmt.Errorf("%s is masked, so it cannot start: systemctl unmask %s", unit, unit)
	default:
		return fmt.Errorf("systemd cannot load %s (LoadState %s): systemctl status %s says why", unit, v, unit)
	}
}

// Enable enables unit (EnableUnitFiles) unless it is already enabled.
func (l *Live) Enable(ctx context.Context, unit string) (host.Step, error) {
	st := host.Step{Kind: "service", Target: unit}
	c, err := l.conn(ctx)
	if err != nil {
		return st, err
	}
	defer c.Close()
	p, err := c.GetUnitPropertyContext(ctx, unit, "UnitFileState")
	if err != nil {
		return st, fmt.Errorf("reading the state of %s: %w", unit, err)
	}
	if v, _ := p.Value.Value().(string); v == "enabled" {
		st.Summary = "enabled"
		return st, nil
	}
	st.Changed, st.Summary = true, "enabled"
	if l.plan {
		st.Summary = "would be enabled"
		return st, nil
	}
	if _, _, err := c.EnableUnitFilesContext(ctx, []string{unit}, false, true); err != nil {
		return st, fmt.Errorf("enabling %s: %w", unit, err)
	}
	return st, c.ReloadContext(ctx)
}

// Start starts unit unless it is active, and waits for the job's result.
func (l *Live) Start(ctx context.Context, unit string) (host.Step, error) {
	st := host.Step{Kind: "service", Target: unit}
	c, err := l.conn(ctx)
	if err != nil {
		return st, err
	}
	defer c.Close()
	p, err := c.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		return st, fmt.Errorf("reading the state of %s: %w", unit, err)
	}
	if v, _ := p.Value.Value().(string); v == "active" {
		st.Summary = "running"
		return st, nil
	}
	st.Changed = true
	if l.plan {
		st.Summary = "would be started"
		return st, nil
	}
	st.Summary = "failed to start"
	done := make(chan string, 1)
	if _, err := c.StartUnitContext(ctx, unit, "replace", done); err != nil {
		return st, fmt.Errorf("starting %s: %w", unit, err)
	}
	if err := waitJob(ctx, done, "starting", unit); err != nil {
		return st, err
	}
	// A Type=simple service (gitlab-runner's package unit) counts as started as soon as its
	// process is forked; one that dies at once then sits in "activating (auto-restart)" and the
	// job still said done. Watch it settle briefly before calling it started.
	if err := l.settled(ctx, c, unit); err != nil {
		return st, err
	}
	st.Summary = "started"
	return st, nil
}

// settleTime is how long a started unit must stay active to count as started.
const settleTime = 1500 * time.Millisecond

// settled waits settleTime and fails unless unit is still active (active/running for a
// service, active/waiting for a timer), naming its state and where to look.
func (l *Live) settled(ctx context.Context, c *dbus.Conn, unit string) error {
	deadline := time.Now().Add(settleTime)
	for {
		props, err := c.GetUnitPropertiesContext(ctx, unit)
		if err != nil {
			return fmt.Errorf("reading the state of %s: %w", unit, err)
		}
		active, _ := props["ActiveState"].(string)
		sub, _ := props["SubState"].(string)
		if active != "active" {
			return fmt.Errorf("%s did not stay up after starting (state %s/%s): its process exits or crashes; see journalctl -u %s", unit, active, sub, unit)
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Restart runs daemon-reload, then restarts unit and waits for the job.
func (l *Live) Restart(ctx context.Context, unit string) (host.Step, error) {
	st := host.Step{Kind: "service", Target: unit, Changed: true, Summary: "restarted (unit file changed)"}
	if l.plan {
		st.Summary = "would be restarted (unit file changed)"
		return st, nil
	}
	c, err := l.conn(ctx)
	if err != nil {
		return st, err
	}
	defer c.Close()
	if err := c.ReloadContext(ctx); err != nil {
		return st, fmt.Errorf("systemctl daemon-reload: %w", err)
	}
	done := make(chan string, 1)
	if _, err := c.RestartUnitContext(ctx, unit, "replace", done); err != nil {
		return st, fmt.Errorf("restarting %s: %w", unit, err)
	}
	if err := waitJob(ctx, done, "restarting", unit); err != nil {
		return st, err
	}
	return st, nil
}

// Reload reloads unit (its ExecReload) and waits for the job.
func (l *Live) Reload(ctx context.Context, unit string) (host.Step, error) {
	st := host.Step{Kind: "service", Target: unit, Changed: true, Summary: "reloaded"}
	if l.plan {
		st.Summary = "would be reloaded"
		return st, nil
	}
	c, err := l.conn(ctx)
	if err != nil {
		return st, err
	}
	defer c.Close()
	done := make(chan string, 1)
	if _, err := c.ReloadUnitContext(ctx, unit, "replace", done); err != nil {
		st.Summary = "reload failed"
		return st, fmt.Errorf("reloading %s: %w", unit, err)
	}
	if err := waitJob(ctx, done, "reloading", unit); err != nil {
		st.Summary = "reload failed"
		return st, err
	}
	return st, nil
}

// waitJob waits for the result of a systemd job (go-systemd sends it on done: "done", "failed",
// "timeout", …) or for ctx to end. A unit can take minutes to start (TimeoutStartSec defaults to
// 90 s, and may be infinity); a signal must not wait for it. The job itself goes on in systemd:
// the error says so and how to look at it.
func waitJob(ctx context.Context, done <-chan string, verb, unit string) error {
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("%s %s: job %s; see journalctl -u %s", verb, unit, res, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: stopped waiting for the systemd job (systemd goes on with it; see systemctl status %s): %w", verb, unit, unit, ctx.Err())
	}
}
