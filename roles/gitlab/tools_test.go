package gitlab

import (
	"os"
	"os/exec"
	"testing"
)

// needTool returns the path of a program the test needs. Without it the test is skipped with
// the reason, unless GLB_REQUIRE_TOOLS=1 (CI), where a missing tool fails it.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := name + " is not installed (Debian package " + pkg + ")"
	if os.Getenv("GLB_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg + "; GLB_REQUIRE_TOOLS=1 requires it")
	}
	t.Skip(msg)
	return ""
}
