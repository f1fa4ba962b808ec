// Package host is the target machine as glbootstrap sees it: a root
// directory that every path is resolved under, a dry-run switch, atomic file
// writes with owners and modes, command execution that only happens on the
// live system, and the run lock.
//
// Every write in the project goes through a Host, so "--root DIR" and "plan"
// (dry-run) hold for all of them at once.
package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Host is the machine being converged.
type Host struct {
	// Root is the directory every absolute path is resolved under; "/" is the
	// live system. With any other root nothing is executed on this machine:
	// commands become reported actions.
	Root string
	// DryRun makes every mutating call report what it would do and do
	// nothing (the "plan" command).
	DryRun bool
}

// New returns a Host for root (made absolute and clean) in the given mode.
func New(root string, dryRun bool) (*Host, error) {
	if root == "" {
		// An empty --root "$UNSET" must never silently mean the live system.
		return nil, errors.New(`--root is empty: give a directory, or "/" for the live system`)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolving root %q: %w", root, err)
	}
	if info, err := os.Stat(abs); err == nil && !info.IsDir() {
		return nil, fmt.Errorf("--root %s is not a directory", root)
	}
	return &Host{Root: abs, DryRun: dryRun}, nil
}

// Live reports whether the host is the running system (root "/"), where
// services may be started and commands run.
func (h *Host) Live() bool { return h.Root == "/" }

// Path resolves an absolute target path under the root. Relative paths and
// ".." components cannot escape the root.
func (h *Host) Path(p string) string {
	clean := filepath.Clean("/" + p)
	if h.Root == "/" {
		return clean
	}
	return filepath.Join(h.Root, clean)
}

// ReadFile reads the target file p (resolved under the root). A missing file
// returns an error that satisfies errors.Is(err, fs.ErrNotExist).
func (h *Host) ReadFile(p string) ([]byte, error) {
	return os.ReadFile(h.Path(p))
}

// Exists reports whether the target path exists (without following a final
// symlink).
func (h *Host) Exists(p string) bool {
	_, err := os.Lstat(h.Path(p))
	return err == nil
}

// Action is what a step did or, in dry-run or under a non-live root, would
// do: a command that was (or would be) run, a service that was (or would be)
// started.
type Action struct {
	Command []string
	Ran     bool
}

// Run executes name with args on the live system and returns its combined
// output. Under dry-run or a root other than "/", nothing runs and Ran is
// false in the returned Action. Secrets must never be passed in args: use
// stdin.
func (h *Host) Run(ctx context.Context, stdin io.Reader, name string, args ...string) (Action, []byte, error) {
	act := Action{Command: append([]string{name}, args...)}
	if h.DryRun || !h.Live() {
		return act, nil, nil
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	act.Ran = true
	if err != nil {
		return act, out.Bytes(), fmt.Errorf("running %s: %w\n%s", name, err, tail(out.Bytes(), 20))
	}
	return act, out.Bytes(), nil
}

// tail returns the last n lines of b, for error messages.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ErrNotInstalled marks a missing program or file that an earlier stage
// (the AMI bake) should have put in place.
var ErrNotInstalled = errors.New("not installed")

// IsNotExist reports whether err means a file does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
