package host

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// ErrNoSuchUser means an owner named in the desired state does not exist in
// the target's /etc/passwd or /etc/group.
var ErrNoSuchUser = errors.New("no such user or group")

// lookupOwner resolves o through the target root's /etc/passwd and
// /etc/group, so "--root DIR" resolves the users of the tree being built,
// not of the machine running glbootstrap. -1 means "leave alone". A group
// left empty defaults to the user's primary group.
func (h *Host) lookupOwner(o Owner) (uid, gid int, err error) {
	uid, gid = -1, -1
	if o.User != "" {
		var primary int
		uid, primary, err = h.lookupDB("/etc/passwd", o.User, 2, 3)
		if err != nil {
			return -1, -1, fmt.Errorf("user %q: %w", o.User, err)
		}
		gid = primary
	}
	if o.Group != "" {
		gid, _, err = h.lookupDB("/etc/group", o.Group, 2, -1)
		if err != nil {
			return -1, -1, fmt.Errorf("group %q: %w", o.Group, err)
		}
	}
	return uid, gid, nil
}

// lookupDB finds name in a colon-separated database file under the root
// and returns the numeric fields at positions idA and idB (-1 = unused).
func (h *Host) lookupDB(file, name string, idA, idB int) (int, int, error) {
	f, err := h.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, -1, fmt.Errorf("%w: %s is missing under %s", ErrNoSuchUser, file, h.Root)
	}
	if err != nil {
		return -1, -1, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 || fields[0] != name {
			continue
		}
		a, err := strconv.Atoi(fields[idA])
		if err != nil {
			return -1, -1, fmt.Errorf("malformed %s entry for %s", file, name)
		}
		b := -1
		if idB >= 0 && idB < len(fields) {
			if b, err = strconv.Atoi(fields[idB]); err != nil {
				return -1, -1, fmt.Errorf("malformed %s entry for %s", file, name)
			}
		}
		return a, b, nil
	}
	if err := sc.Err(); err != nil {
		return -1, -1, err
	}
	return -1, -1, fmt.Errorf("%w: not in %s", ErrNoSuchUser, file)
}

// IsNoSuchUser reports whether err is a missing user or group.
func IsNoSuchUser(err error) bool { return errors.Is(err, ErrNoSuchUser) }
