// Package host is the target machine as glbootstrap sees it: a root directory that is a
// boundary, atomic file writes with owners and modes, command execution that only happens on
// the live system, and the run lock.
//
// Every file operation goes through Go's os.Root opened on the root directory, after the path
// was resolved inside the root the way a chroot would see it (resolve.go): a symbolic link in
// the tree, absolute or relative, is followed within the root and never takes a read or a
// write outside it.
//
// A Host is made for apply or for plan (New). Reads are the same in both; every change goes
// through a mutator: apply's acts, plan's only records the action. Code that asks a Host for a
// change never needs to know which one it has, so a plan cannot change the tree by
// construction.
package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Host is the machine being converged.
type Host struct {
	// Root is the absolute directory every target path is resolved under; "/" is the live
	// system. With any other root nothing is executed on this machine: commands become
	// reported actions.
	Root string

	root *os.Root
	m    mutator
	log  *actionLog
}

// ErrNoRoot means --root names a directory that does not exist (or is not a directory): a
// usage error, and nothing is created.
var ErrNoRoot = errors.New("no such root directory")

// New opens root (made absolute and clean) as the target tree, for apply (plan false: changes
// are made) or for plan (changes are only recorded). The root must be an existing directory:
// a --root that does not exist is refused (errors wrap ErrNoRoot) and nothing creates it.
// The Host holds the root open; Close releases it.
func New(root string, plan bool) (*Host, error) {
	if root == "" {
		// An empty --root "$UNSET" must never silently mean the live system.
		return nil, fmt.Errorf(`%w: --root is empty: give a directory, or "/" for the live system`, ErrNoRoot)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolving root %q: %w", root, err)
	}
	info, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: --root %s does not exist: create the directory first (glbootstrap never creates a root)", ErrNoRoot, root)
	case err != nil:
		return nil, fmt.Errorf("--root %s: %w", root, err)
	case !info.IsDir():
		return nil, fmt.Errorf("%w: --root %s is not a directory", ErrNoRoot, root)
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("opening --root %s: %w", root, err)
	}
	h := &Host{Root: abs, root: r, log: &actionLog{}}
	if plan {
		h.m = h.planMutator()
	} else {
		h.m = &applyMutator{h: h}
	}
	return h, nil
}

// Close releases the root directory. The Host must not be used afterwards.
func (h *Host) Close() error { return h.root.Close() }

// AsPlan returns a Host on the same root that only records changes (a plan), whatever h is:
// for a check that wants to know what a change would be without making it.
func (h *Host) AsPlan() *Host {
	p := &Host{Root: h.Root, root: h.root, log: &actionLog{}}
	p.m = p.planMutator()
	return p
}

func (h *Host) planMutator() planMutator {
	pm := planMutator{log: h.log}
	if !h.Live() {
		pm.offline = h.offline()
	}
	return pm
}

// Planned returns the changes a plan Host recorded, in order (none for an apply Host).
func (h *Host) Planned() []Action { return h.log.list() }

// Live reports whether the host is the running system (root "/"), where services may be
// started and commands run.
func (h *Host) Live() bool { return h.Root == "/" }

// ReadFile reads the target file p. A missing file returns an error that satisfies
// errors.Is(err, fs.ErrNotExist).
func (h *Host) ReadFile(p string) ([]byte, error) {
	rel, err := h.resolve(p, true)
	if err != nil {
		return nil, err
	}
	b, err := h.root.ReadFile(rel)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, h.explain("reading", p, err)
	}
	return b, err
}

// Open opens the target file p for reading. It never blocks in the open itself: a named pipe
// is opened non-blocking (opening one for reading waits for a writer, in the kernel, where no
// signal can cut it short), so the caller can look at f.Stat() and refuse it.
func (h *Host) Open(p string) (*os.File, error) {
	rel, err := h.resolve(p, true)
	if err != nil {
		return nil, err
	}
	f, err := h.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, h.explain("opening", p, err)
	}
	return f, err
}

// Stat returns the file info of the target path p, following links within the root.
func (h *Host) Stat(p string) (fs.FileInfo, error) {
	rel, err := h.resolve(p, true)
	if err != nil {
		return nil, err
	}
	return h.root.Stat(rel)
}

// Lstat returns the file info of the target path p without following a final link.
func (h *Host) Lstat(p string) (fs.FileInfo, error) {
	rel, err := h.resolve(p, false)
	if err != nil {
		return nil, err
	}
	return h.root.Lstat(rel)
}

// Readlink returns the target of the link at the target path p (its own directory's links
// followed within the root, p itself not).
func (h *Host) Readlink(p string) (string, error) {
	rel, err := h.resolve(p, false)
	if err != nil {
		return "", err
	}
	return h.root.Readlink(rel)
}

// Exists reports whether the target path exists (without following a final symlink).
func (h *Host) Exists(p string) bool {
	_, err := h.Lstat(p)
	return err == nil
}

// FS returns the target directory p as a read-only fs.FS confined to it (os.Root's FS: links
// inside it that lead out of it fail instead of being followed), for walking a tree such as
// /etc/gitlab into an archive. The caller closes the returned io.Closer.
func (h *Host) FS(p string) (fs.FS, io.Closer, error) {
	rel, err := h.resolve(p, true)
	if err != nil {
		return nil, nil, err
	}
	sub, err := h.root.OpenRoot(rel)
	if err != nil {
		return nil, nil, h.explain("opening", p, err)
	}
	return sub.FS(), sub, nil
}

// ReadDir lists the target directory p (names sorted).
func (h *Host) ReadDir(p string) ([]fs.DirEntry, error) {
	f, err := h.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}

// FileSHA256 returns the lower-case hex SHA-256 of the target file, or "" with a nil error
// when it does not exist.
func (h *Host) FileSHA256(p string) (string, error) {
	f, err := h.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && !info.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file (%s)", p, info.Mode().Type())
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// Action is a change a plan Host recorded, or a command a Host ran or did not run.
type Action struct {
	// Kind is write, mkdir, chmod, chown, remove or run.
	Kind string `json:"kind"`
	// Target is the path, or the command line for run.
	Target string `json:"target"`
	// Command is the argv of a run action.
	Command []string `json:"command,omitempty"`
	// Ran is true when the command was executed.
	Ran bool `json:"ran,omitempty"`
	// NotRun says why a command was not executed: "would run" (plan) or
	// "not run (--root DIR is not the live system)".
	NotRun string `json:"not_run,omitempty"`
}

// Planned reports whether the action was only planned (a plan Host), as opposed to
// executed or skipped under a --root.
func (a Action) Planned() bool { return !a.Ran && a.NotRun == wouldRun }

// Summary describes what happened to a command for a step: "ran: why", "would run: why" or
// "not run (...): why".
func (a Action) Summary(why string) string {
	if a.Ran {
		return "ran: " + why
	}
	return a.NotRun + ": " + why
}

const wouldRun = "would run"

type actionLog struct {
	mu sync.Mutex
	a  []Action
}

func (l *actionLog) add(a Action) {
	l.mu.Lock()
	l.a = append(l.a, a)
	l.mu.Unlock()
}

func (l *actionLog) list() []Action {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Action(nil), l.a...)
}

// Run executes name with args on the live system and returns its combined output. A plan
// Host records it instead ("would run"); under a root other than "/" it is not run either
// (the command belongs to the machine the tree is for). Secrets must never be passed in
// args: use stdin.
func (h *Host) Run(ctx context.Context, stdin io.Reader, name string, args ...string) (Action, []byte, error) {
	return h.m.run(ctx, stdin, append([]string{name}, args...))
}

// Check runs a read-only command (sshd -t, systemd-analyze verify) on this machine whatever
// the Host's mode, since it changes nothing; under a root other than "/" it is not run and
// the returned Action says so.
func (h *Host) Check(ctx context.Context, stdin io.Reader, name string, args ...string) (Action, []byte, error) {
	argv := append([]string{name}, args...)
	if !h.Live() {
		return Action{Kind: "run", Target: strings.Join(argv, " "), Command: argv, NotRun: h.offline()}, nil, nil
	}
	return execute(ctx, stdin, argv)
}

func (h *Host) offline() string { return "not run (--root " + h.Root + " is not the live system)" }

// tail returns the last n lines of b, for error messages.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// IsNotExist reports whether err means a file does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
