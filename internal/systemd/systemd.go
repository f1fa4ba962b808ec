// Package systemd enables and starts units: over D-Bus (go-systemd) on a
// live host, and offline with "systemctl --root" when the target is a
// directory tree (a --root run, an image being built), where nothing may be
// started.
package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
	sdunit "github.com/coreos/go-systemd/v22/unit"

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
	// Stop stops unit unless it is inactive, and waits for the job. Offline it does nothing.
	Stop(ctx context.Context, unit string) (host.Step, error)
	// Disable removes unit's [Install] links unless none is there (systemctl disable), so it
	// no longer starts at boot.
	Disable(ctx context.Context, unit string) (host.Step, error)
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

// Offline enables units in a root directory the way "systemctl --root=DIR enable" does (it
// only creates the [Install] links), and never starts anything. It makes the links itself,
// through the Host, rather than running systemctl: systemctl follows a link inside the root
// (a *.wants directory pointing elsewhere) out of it, the Host never does. The tests check its
// links with the real "systemctl --root is-enabled".
type Offline struct {
	// Host is the tree; unit files are looked up and links made in it.
	Host *host.Host
	// Plan makes Enable report what it would do when the unit file is not there yet (an
	// earlier step of the same plan only said it would write it).
	Plan bool
}

// Installed looks for the unit file in the root's unit directories; it must be loadable
// (parse as a unit file) and have an [Install] section, or it could not be enabled.
func (o *Offline) Installed(ctx context.Context, unit string) error {
	_, _, err := o.installLinks(unit)
	return err
}

// installLinks finds unit's file and returns where it is and the links "systemctl enable"
// makes for it: WantedBy= and RequiredBy= (DIR.wants/UNIT, DIR.requires/UNIT in
// /etc/systemd/system) and Alias= (/etc/systemd/system/ALIAS), each pointing at the unit file
// (systemd.unit(5), "[Install] Section Options"; systemctl(1) enable).
func (o *Offline) installLinks(unit string) (string, map[string]string, error) {
	h := o.Host
	file := ""
	for _, d := range unitDirs {
		if h.Exists(d + "/" + unit) {
			file = d + "/" + unit
			break
		}
	}
	if file == "" {
		return "", nil, fmt.Errorf("%w: %s is in none of %s under %s; the package that provides it (for gitlab-runner: \"gitlab-runner install\") should have put it there",
			ErrNoUnit, unit, strings.Join(unitDirs, ", "), h.Root)
	}
	if target, err := h.Readlink(file); err == nil && target == "/dev/null" {
		return "", nil, fmt.Errorf("%s is masked (%s links to /dev/null): systemctl --root=%s unmask %s", unit, file, h.Root, unit)
	}
	if strings.Contains(unit, "@") {
		return "", nil, fmt.Errorf("%s is a template unit: glbootstrap enables only plain units", unit)
	}
	b, err := h.ReadFile(file)
	if err != nil {
		return "", nil, fmt.Errorf("reading %s: %w", file, err)
	}
	opts, err := sdunit.DeserializeOptions(bytes.NewReader(b))
	if err != nil {
		return "", nil, fmt.Errorf("%s is not a valid unit file (%v): reinstall the package that provides it", file, err)
	}
	links := map[string]string{}
	for _, op := range opts {
		if op.Section != "Install" {
			continue
		}
		for _, v := range strings.Fields(op.Value) {
			switch op.Name {
			case "WantedBy":
				links[unitDirs[0]+"/"+v+".wants/"+unit] = file
			case "RequiredBy":
				links[unitDirs[0]+"/"+v+".requires/"+unit] = file
			case "Alias":
				links[unitDirs[0]+"/"+v] = file
			}
		}
	}
	if len(links) == 0 {
		return "", nil, fmt.Errorf("%s has no [Install] section with WantedBy=, RequiredBy= or Alias=, so nothing starts it at boot: reinstall the package that provides it", file)
	}
	return file, links, nil
}

// Enable makes the unit's [Install] links (see installLinks) that are missing; with all of them
// in place it changes nothing.
func (o *Offline) Enable(ctx context.Context, unit string) (host.Step, error) {
	st := host.Step{Kind: "service", Target: unit}
	_, links, err := o.installLinks(unit)
	if errors.Is(err, ErrNoUnit) && o.Plan {
		// Under plan an earlier step of the same phase may only have said it would install
		// the unit.
		st.Changed, st.Summary = true, "would be enabled offline once its unit file is installed"
		return st, nil
	}
	if err != nil {
		return st, err
	}
	names := make([]string, 0, len(links))
	for l := range links {
		names = append(names, l)
	}
	sort.Strings(names)
	var made []string
	for _, l := range names {
		ls, err := o.Host.EnsureSymlink(l, links[l])
		if err != nil {
			return st, fmt.Errorf("enabling %s: %w", unit, err)
		}
		if ls.Changed {
			made = append(made, l)
		}
	}
	if len(made) == 0 {
		st.Summary = "enabled (offline)"
		return st, nil
	}
	st.Changed = true
	st.Summary = "enabled offline: " + strings.Join(made, ", ")
	if o.Plan {
		st.Summary = "would be " + st.Summary
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

// Stop does nothing under a root: nothing runs there.
func (o *Offline) Stop(ctx context.Context, unit string) (host.Step, error) {
	return host.Step{Kind: "service", Target: unit, Summary: "not stopped: --root " + o.Host.Root + " is not the live system"}, nil
}

// Disable removes the unit's [Install] links (see installLinks) that are there, as
// "systemctl --root=DIR disable" does; with none there it changes nothing.
func (o *Offline) Disable(ctx context.Context, unit string) (host.Step, error) {
	st := host.Step{Kind: "service", Target: unit}
	_, links, err := o.installLinks(unit)
	if err != nil {
		return st, err
	}
	names := make([]string, 0, len(links))
	for l := range links {
		names = append(names, l)
	}
	sort.Strings(names)
	var removed []string
	for _, l := range names {
		if _, err := o.Host.Lstat(l); err != nil {
			continue
		}
		ls, err := o.Host.EnsureAbsent(l, "disabled")
		if err != nil {
			return st, fmt.Errorf("disabling %s: %w", unit, err)
		}
		if ls.Changed {
			removed = append(removed, l)
		}
	}
	if len(removed) == 0 {
		st.Summary = "disabled (offline)"
		return st, nil
	}
	st.Changed, st.Summary = true, "disabled offline: removed "+strings.Join(removed, ", ")
	if o.Plan {
		st.Summary = "would be " + st.Summary
	}
	return st, nil
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

// Stop stops unit unless it is inactive, and waits for the job's result.
func (l *Live) Stop(ctx context.Context, unit string) (host.Step, error) {
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
	if v, _ := p.Value.Value().(string); v == "inactive" || v == "failed" {
		st.Summary = "stopped"
		return st, nil
	}
	st.Changed, st.Summary = true, "stopped"
	if l.plan {
		st.Summary = "would be stopped"
		return st, nil
	}
	done := make(chan string, 1)
	if _, err := c.StopUnitContext(ctx, unit, "replace", done); err != nil {
		return st, fmt.Errorf("stopping %s: %w", unit, err)
	}
	return st, waitJob(ctx, done, "stopping", unit)
}

// Disable disables unit (DisableUnitFiles) unless it is not enabled.
func (l *Live) Disable(ctx context.Context, unit string) (host.Step, error) {
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
	if v, _ := p.Value.Value().(string); v != "enabled" {
		st.Summary = "disabled"
		return st, nil
	}
	st.Changed, st.Summary = true, "disabled"
	if l.plan {
		st.Summary = "would be disabled"
		return st, nil
	}
	if _, err := c.DisableUnitFilesContext(ctx, []string{unit}, false); err != nil {
		return st, fmt.Errorf("disabling %s: %w", unit, err)
	}
	return st, c.ReloadContext(ctx)
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
