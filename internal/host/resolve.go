package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// maxSymlinks bounds how many symbolic links one path may pass through, as Linux's
// path_resolution(7) does (40), so a link loop is an error instead of a hang.
const maxSymlinks = 40

// ErrLoop means a path passes through more than maxSymlinks symbolic links.
var ErrLoop = errors.New("too many levels of symbolic links")

// resolve turns the target path p (absolute or relative, as the configuration gives it) into
// a path relative to the root with no symbolic link in it, the way a chroot would see it
// (Ignition's sysroot path handling does the same): "/" and ".." never go above the root, an
// absolute link target is taken relative to the root, and a relative one relative to the
// link's directory. Components that do not exist are kept as they are (they cannot be links).
// With followFinal false the last component is not followed, so a link there can be refused
// or replaced by the caller. The result is "." for the root itself.
//
// The result is used with the Host's os.Root, which refuses any path that would leave the
// root: a link swapped in between resolve and use fails instead of escaping.
func (h *Host) resolve(p string, followFinal bool) (string, error) {
	todo := splitPath(p)
	var done []string
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c == ".." {
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cand := append(done[:len(done):len(done)], c)
		rel := strings.Join(cand, "/")
		if len(todo) == 0 && !followFinal {
			done = cand
			break
		}
		info, err := h.root.Lstat(rel)
		if errors.Is(err, fs.ErrNotExist) {
			// Not there (yet): nothing to follow. A later ".." may climb back out of it.
			done = cand
			continue
		}
		if err != nil {
			return "", fmt.Errorf("resolving %s under %s: %w", "/"+rel, h.Root, err)
		}
		if info.Mode().Type() != fs.ModeSymlink {
			if len(todo) > 0 && !info.IsDir() {
				return "", fmt.Errorf("resolving %s under %s: /%s is not a directory", p, h.Root, rel)
			}
			done = cand
			continue
		}
		links++
		if links > maxSymlinks {
			return "", fmt.Errorf("resolving %s under %s: %w (a loop through the link /%s?)", p, h.Root, ErrLoop, rel)
		}
		target, err := h.root.Readlink(rel)
		if err != nil {
			return "", fmt.Errorf("reading the link /%s under %s: %w", rel, h.Root, err)
		}
		if strings.HasPrefix(target, "/") {
			// An absolute target means the root's own tree, never the machine running glbootstrap.
			done = nil
		}
		todo = append(splitPath(target), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return strings.Join(done, "/"), nil
}

// splitPath splits p into its components, dropping empty ones and ".".
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// Resolve returns where the target path p really is on this machine: the root joined with p
// after every symbolic link in p was followed within the root (see resolve). It is for handing
// a path to another program (tar, sshd -t, systemctl --root); glbootstrap's own reads and
// writes go through the Host's methods, which use os.Root.
func (h *Host) Resolve(p string) (string, error) {
	rel, err := h.resolve(p, true)
	if err != nil {
		return "", err
	}
	if rel == "." {
		return h.Root, nil
	}
	if h.Root == "/" {
		return "/" + rel, nil
	}
	return h.Root + "/" + rel, nil
}

// explain describes an os.Root error for a path that tried to leave the root (a link changed
// while glbootstrap was using it): never followed, always an error that names the path.
func (h *Host) explain(op, p string, err error) error {
	if err == nil {
		return nil
	}
	var pe *os.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes") {
		return fmt.Errorf("%s %s: a symbolic link on the way leads outside %s (it changed while glbootstrap was using it); refusing", op, p, h.Root)
	}
	return fmt.Errorf("%s %s: %w", op, p, err)
}
