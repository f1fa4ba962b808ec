package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gofrs/flock"
)

// LockPath is where the run lock lives under the root.
const LockPath = "/run/glbootstrap.lock"

// ErrLocked means another glbootstrap run holds the lock.
var ErrLocked = errors.New("another glbootstrap run holds the lock")

// Lock takes the host's run lock (an flock(2) on /run/glbootstrap.lock under
// the root) without waiting, so user-data and an SSM Run Command cannot
// converge the same host at once. The returned function releases it. When
// another process holds it, the error wraps ErrLocked and names that
// process's PID as recorded in the file.
func (h *Host) Lock() (func(), error) {
	p := h.Path(LockPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", filepath.Dir(LockPath), err)
	}
	fl := flock.New(p)
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("taking %s: %w", LockPath, err)
	}
	if !ok {
		holder := "another process"
		if b, err := os.ReadFile(p); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				holder = "process " + strconv.Itoa(pid)
			}
		}
		return nil, fmt.Errorf("%w: %s holds %s; wait for it to finish (user-data and SSM Run Command may overlap) and run again", ErrLocked, holder, p)
	}
	// The PID is only a hint for the message above; the flock is the lock.
	if f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0o644); err == nil {
		_, _ = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
		_ = f.Close()
	}
	return func() { _ = fl.Unlock() }, nil
}
