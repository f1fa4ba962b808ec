package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ConsumersDir is where the real programs that consume glbootstrap's files are kept for tests
// (gitlab-runner, the Fargate driver; see its README.md), relative to the repository's parent:
// ../shared/consumers next to the checkout.
const ConsumersDir = "../shared/consumers"

// Consumer decompresses ConsumersDir/file (xz) into a temp directory of t as an executable named
// name and returns its path. When the folder or the file is missing the test is skipped with a
// message naming ../shared/consumers, or fails under GLB_REQUIRE_TOOLS=1 (CI) unless
// GLB_CONSUMERS_ABSENT=1 says the whole folder is known to be missing on this machine.
func Consumer(t testing.TB, file, name string) string {
	t.Helper()
	src, err := consumerPath(file)
	if err == nil {
		_, err = exec.LookPath("xz")
		if err != nil {
			err = fmt.Errorf("xz is not installed (Debian package xz-utils): %w", err)
		}
	}
	if err != nil {
		msg := fmt.Sprintf("real consumer %s unavailable (%v): put the fixtures in %s next to the checkout", file, err, ConsumersDir)
		// .ci/run sets GLB_CONSUMERS_ABSENT=1 (and says so loudly) when the machine has no
		// ../shared/consumers at all: then these tests skip even under GLB_REQUIRE_TOOLS=1.
		if os.Getenv("GLB_REQUIRE_TOOLS") == "1" && os.Getenv("GLB_CONSUMERS_ABSENT") != "1" {
			t.Fatal(msg + "; GLB_REQUIRE_TOOLS=1 requires it")
		}
		t.Skip(msg)
	}
	dst := filepath.Join(t.TempDir(), name)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd := exec.Command("xz", "-dc", src)
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xz -dc %s: %v: %s", src, err, stderr.String())
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// consumerPath finds file in ConsumersDir next to the module root (the nearest directory up
// from the working directory holding go.mod).
func consumerPath(file string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
	p := filepath.Join(dir, ConsumersDir, file)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}
