package host

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
)

// LockPath is where the run lock lives under the root.
const LockPath = "/run/glbootstrap.lock"

// ErrLocked means another glbootstrap run holds the lock.
var ErrLocked = errors.New("another glbootstrap run holds the lock")

// Lock takes the host's run lock without waiting: an flock(2) (exclusive, non-blocking) on
// /run/glbootstrap.lock under the root, opened through the root like every other file, so
// user-data, an SSM Run Command and the backup timer cannot work on the same host at once.
// The kernel drops the lock when the process dies, however it dies. The returned function
// releases it. When another process holds it, the error wraps ErrLocked and names that
// process's PID as recorded in the file. The lock file is created when missing, so plan,
// which must leave the tree as it is, does not take it.
func (h *Host) Lock() (func(), error) {
	rel, err := h.resolve(LockPath, true)
	if err != nil {
		return nil, err
	}
	if err := h.root.MkdirAll(path.Dir(rel), 0o755); err != nil {
		return nil, h.explain("creating", path.Dir(LockPath), err)
	}
	f, err := h.root.OpenFile(rel, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, h.explain("opening", LockPath, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("taking %s: %w", LockPath, err)
		}
		holder := "another process"
		if b, err := h.root.ReadFile(rel); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				holder = "process " + strconv.Itoa(pid)
			}
		}
		return nil, fmt.Errorf("%w: %s holds %s; wait for it to finish (user-data, SSM Run Command and the backup timer may overlap) and run again", ErrLocked, holder, path.Join(h.Root, LockPath))
	}
	// The PID is only a hint for the message above; the flock is the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
