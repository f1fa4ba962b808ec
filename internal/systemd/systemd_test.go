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
