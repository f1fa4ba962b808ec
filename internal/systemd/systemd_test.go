package systemd

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

func needSystemctl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("systemctl"); err != nil {
		if os.Getenv("GLB_REQUIRE_TOOLS") == "1" {
			t.Fatal("systemctl is not installed (Debian package systemd); GLB_REQUIRE_TOOLS=1 requires it")
		}
		t.Skip("systemctl is not installed (Debian package systemd)")
	}
}

const unit = `[Unit]
Description=demo
[Service]
ExecStart=/bin/true
[Install]
WantedBy=multi-user.target
`

// TestOfflineEnable enables a unit in a root with the real systemctl
// --root, once: the second call reads is-enabled and changes nothing.
func TestOfflineEnable(t *testing.T) {
	needSystemctl(t)
	root := t.TempDir()
	ctx := context.Background()
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	m := &Offline{Host: h}
	if _, err := m.Enable(ctx, "demo.service"); !errors.Is(err, ErrNoUnit) || !strings.Contains(err.Error(), "demo.service is in none of") {
		t.Fatalf("missing unit: %v", err)
	}
	dry := &Offline{Host: h.AsPlan(), Plan: true}
	if st, err := dry.Enable(ctx, "demo.service"); err != nil || !st.Changed || !strings.HasPrefix(st.Summary, "would be") {
		t.Fatalf("dry run before the unit exists: %+v %v", st, err)
	}
	dir := filepath.Join(root, "etc/systemd/system")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "demo.service"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := dry.Enable(ctx, "demo.service")
	if err != nil || !st.Changed {
		t.Fatalf("dry run: %+v %v", st, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "multi-user.target.wants/demo.service")); !os.IsNotExist(err) {
		t.Fatal("dry run enabled the unit")
	}
	st, err = m.Enable(ctx, "demo.service")
	if err != nil || !st.Changed {
		t.Fatalf("enable: %+v %v", st, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "multi-user.target.wants/demo.service")); err != nil {
		t.Fatalf("no [Install] symlink: %v", err)
	}
	st, err = m.Enable(ctx, "demo.service")
	if err != nil || st.Changed {
		t.Fatalf("second enable changed: %+v %v", st, err)
	}
	// Nothing is started or restarted in a root, and that is not a change.
	if st, err := m.Start(ctx, "demo.service"); err != nil || st.Changed || !strings.Contains(st.Summary, "not the live system") {
		t.Errorf("start: %+v %v", st, err)
	}
	if st, err := m.Restart(ctx, "demo.service"); err != nil || st.Changed || !strings.Contains(st.Summary, "not the live system") {
		t.Errorf("restart: %+v %v", st, err)
	}
}

// isEnabled asks the real systemctl whether unit is enabled in root: the links Offline makes
// must be the ones systemctl itself reads.
func isEnabled(t *testing.T, root, unit string) string {
	t.Helper()
	out, _ := exec.Command("systemctl", "--root="+root, "is-enabled", unit).CombinedOutput()
	return strings.TrimSpace(string(out))
}

// TestOfflineEnableMatchesSystemctl: WantedBy, RequiredBy and Alias links made through the
// Host read as "enabled" to the real systemctl, and a unit in /lib/systemd/system (where
// packages put them) is linked where systemctl would link it.
func TestOfflineEnableMatchesSystemctl(t *testing.T) {
	needSystemctl(t)
	root := t.TempDir()
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, d := range []string{"etc/systemd/system", "lib/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"lib/systemd/system/pkg.service":    "[Unit]\nDescription=p\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nAlias=pkg-alias.service\n",
		"etc/systemd/system/backup.timer":   "[Unit]\nDescription=t\n[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
		"etc/systemd/system/req.service":    "[Unit]\nDescription=r\n[Service]\nExecStart=/bin/true\n[Install]\nRequiredBy=multi-user.target\n",
		"etc/systemd/system/static.service": "[Unit]\nDescription=s\n[Service]\nExecStart=/bin/true\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := &Offline{Host: h}
	for _, u := range []string{"pkg.service", "backup.timer", "req.service"} {
		if got := isEnabled(t, root, u); got == "enabled" {
			t.Fatalf("%s enabled before Enable", u)
		}
		st, err := m.Enable(t.Context(), u)
		if err != nil || !st.Changed {
			t.Fatalf("enable %s: %+v %v", u, st, err)
		}
		if got := isEnabled(t, root, u); got != "enabled" {
			t.Errorf("systemctl --root is-enabled %s = %q after Enable", u, got)
		}
		if st, err := m.Enable(t.Context(), u); err != nil || st.Changed {
			t.Errorf("second enable of %s: %+v %v", u, st, err)
		}
	}
	if err := m.Installed(t.Context(), "static.service"); err == nil || !strings.Contains(err.Error(), "no [Install] section") {
		t.Errorf("a unit without [Install]: %v", err)
	}
	if _, err := m.Enable(t.Context(), "static.service"); err == nil {
		t.Error("enabled a unit without [Install]")
	}
}

// TestOfflineEnableNeverWritesOutsideRoot: a *.wants directory that is a link out of the root
// (absolute or relative) is followed inside the root; systemctl --root would follow it out.
func TestOfflineEnableNeverWritesOutsideRoot(t *testing.T) {
	for name, target := range map[string]func(outside string) string{
		"absolute": func(o string) string { return o },
		"relative": func(o string) string { return strings.Repeat("../", 12) + strings.TrimPrefix(o, "/") },
	} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
			dir := filepath.Join(root, "etc/systemd/system")
			for _, d := range []string{dir, outside} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, "demo.service"), []byte(unit), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target(outside), filepath.Join(dir, "multi-user.target.wants")); err != nil {
				t.Fatal(err)
			}
			h, err := host.New(root, false)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if _, err := (&Offline{Host: h}).Enable(t.Context(), "demo.service"); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("a link was made outside the root: %v", ents[0].Name())
			}
			if _, err := os.Lstat(filepath.Join(root, strings.TrimPrefix(outside, "/"), "demo.service")); err != nil {
				t.Errorf("the link is not where the .wants link leads inside the root: %v", err)
			}
		})
	}
}
