package host

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
)

// EnsureFile makes the target file hold exactly f.Data with f.Mode and f.Owner. It reads the
// current state first and changes nothing when it already matches; otherwise it writes
// atomically (WriteAtomic), so a reader or a crash sees the old file or the new one, never a
// mix. Temp files a killed run left beside the target are removed first. The step's diff has
// f.Secrets masked; a file the caller does not own should set NoDiff.
func (h *Host) EnsureFile(f File) (Step, error) {
	return h.ensureFile(f, nil)
}

// EnsureFileChecked is EnsureFile whose new content is first written to a temp file beside the
// target and handed to verify (its real path, e.g. for "sshd -t"); a verify error leaves the
// old file as it was and is returned. verify is not called when nothing changes, nor by a
// plan Host.
func (h *Host) EnsureFileChecked(f File, verify func(tmpPath string) error) (Step, error) {
	return h.ensureFile(f, verify)
}

func (h *Host) ensureFile(f File, verify func(string) error) (Step, error) {
	st := Step{Kind: "file", Target: f.Path}
	uid, gid, err := h.lookupOwner(f.Owner)
	if err != nil {
		return st, err
	}
	rel, err := h.resolve(f.Path, f.FollowLink)
	if err != nil {
		return st, err
	}
	if err := h.m.cleanTemps(rel); err != nil {
		return st, err
	}
	old, info, err := h.readRegular(f.Path, rel)
	if err != nil {
		return st, err
	}
	exists := info != nil
	sameData := exists && bytes.Equal(old, f.Data)
	sameMode := exists && info.Mode().Perm() == f.Mode.Perm()
	sameOwner := !exists || ownerMatches(info, uid, gid)
	if sameData && sameMode && sameOwner {
		st.Summary = "unchanged"
		return st, nil
	}
	st.Changed = true
	switch {
	case !exists:
		st.Summary = "created"
	case !sameData:
		st.Summary = "updated"
	case !sameMode:
		st.Summary = fmt.Sprintf("mode %04o -> %04o", info.Mode().Perm(), f.Mode.Perm())
	default:
		st.Summary = "owner changed"
	}
	if !sameData {
		if f.NoDiff != "" {
			st.Summary += ": " + f.NoDiff
		} else {
			st.Diff = diff(f.Path, old, f.Data, exists, f.Secrets, f.HideOldLines)
		}
	}
	st.Summary = h.m.verb(st.Summary)
	if sameData {
		if err := h.m.chmod(rel, f.Mode.Perm()); err != nil {
			return st, h.explain("setting the mode of", f.Path, err)
		}
		if err := h.m.chown(rel, uid, gid); err != nil {
			return st, h.explain("setting the owner of", f.Path, err)
		}
		return st, nil
	}
	if err := h.m.writeFile(rel, bytes.NewReader(f.Data), f.Mode.Perm(), uid, gid, verify); err != nil {
		return st, h.writeErr(f.Path, err)
	}
	return st, nil
}

// WriteAtomic streams r into a temp file (.NAME.glb-RANDOM) beside the target path p, lets
// verify inspect the finished temp file (its real path; nil to skip), then sets mode and owner
// and renames it over p. When anything fails, including verify, the temp file is removed and
// the old p is left as it was. Parent directories are created (0755) when missing. Temp files
// a killed run left beside p are removed first. A plan Host records the write and reads
// nothing from r.
func (h *Host) WriteAtomic(p string, r io.Reader, mode fs.FileMode, owner Owner, verify func(tmp string) error) error {
	uid, gid, err := h.lookupOwner(owner)
	if err != nil {
		return err
	}
	rel, err := h.resolve(p, false)
	if err != nil {
		return err
	}
	if info, err := h.root.Lstat(rel); err == nil && !info.Mode().IsRegular() {
		return fmt.Errorf("%s exists and is not a regular file (%s): move it away", p, info.Mode().Type())
	}
	if err := h.m.cleanTemps(rel); err != nil {
		return err
	}
	return h.writeErr(p, h.m.writeFile(rel, r, mode.Perm(), uid, gid, verify))
}

// writeErr keeps a verify error as it is (it speaks for itself) and names the path otherwise.
func (h *Host) writeErr(p string, err error) error {
	var v *verifyError
	if errors.As(err, &v) {
		return v.err
	}
	if err != nil {
		return h.explain("writing", p, err)
	}
	return nil
}

// EnsureDir makes the target directory exist with mode and owner. Missing parents are created
// 0755 and owned by the caller.
func (h *Host) EnsureDir(p string, mode fs.FileMode, owner Owner) (Step, error) {
	st := Step{Kind: "dir", Target: p}
	uid, gid, err := h.lookupOwner(owner)
	if err != nil {
		return st, err
	}
	// A link to a directory is followed (within the root): an admin may have moved it.
	rel, err := h.resolve(p, true)
	if err != nil {
		return st, err
	}
	info, err := h.root.Lstat(rel)
	switch {
	case err == nil && !info.IsDir():
		return st, fmt.Errorf("%s exists and is not a directory: move it away", p)
	case err == nil && info.Mode().Perm() == mode.Perm() && ownerMatches(info, uid, gid):
		st.Summary = "unchanged"
		return st, nil
	case err == nil:
		st.Changed = true
		st.Summary = fmt.Sprintf("mode/owner fixed (was %04o)", info.Mode().Perm())
	case errors.Is(err, fs.ErrNotExist):
		st.Changed = true
		st.Summary = "created"
		if err := h.m.mkdir(rel, mode.Perm()); err != nil {
			return st, h.explain("creating", p, err)
		}
	default:
		return st, h.explain("checking", p, err)
	}
	st.Summary = h.m.verb(st.Summary)
	if err := h.m.chmod(rel, mode.Perm()); err != nil {
		return st, h.explain("setting the mode of", p, err)
	}
	if err := h.m.chown(rel, uid, gid); err != nil {
		return st, h.explain("setting the owner of", p, err)
	}
	return st, nil
}

// EnsureMode fixes only the permission bits of the existing target file p (a link is followed
// within the root). A missing file is an error wrapping fs.ErrNotExist.
func (h *Host) EnsureMode(p string, mode fs.FileMode) (Step, error) {
	st := Step{Kind: "file", Target: p}
	rel, err := h.resolve(p, true)
	if err != nil {
		return st, err
	}
	if err := h.m.cleanTemps(rel); err != nil {
		return st, err
	}
	info, err := h.root.Stat(rel)
	if err != nil {
		return st, err
	}
	if info.Mode().Perm() == mode.Perm() {
		st.Summary = "unchanged"
		return st, nil
	}
	st.Changed = true
	st.Summary = h.m.verb(fmt.Sprintf("mode %04o -> %04o", info.Mode().Perm(), mode.Perm()))
	return st, h.explain("setting the mode of", p, h.m.chmod(rel, mode.Perm()))
}

// EnsureAbsent removes the target file p when it exists (why says why, for the step's
// summary). A final link is removed itself, never what it points to.
func (h *Host) EnsureAbsent(p, why string) (Step, error) {
	st := Step{Kind: "file", Target: p}
	rel, err := h.resolve(p, false)
	if err != nil {
		return st, err
	}
	if err := h.m.cleanTemps(rel); err != nil {
		return st, err
	}
	if _, err := h.root.Lstat(rel); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			st.Summary = "absent"
			return st, nil
		}
		return st, h.explain("checking", p, err)
	}
	st.Changed, st.Summary = true, h.m.verb("removed ("+why+")")
	if err := h.m.remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return st, h.explain("removing", p, err)
	}
	return st, nil
}

// readRegular returns the content and info of the regular file at rel, nil info when it does
// not exist, and an error for anything else (a directory or a link where a file belongs is
// never silently replaced).
func (h *Host) readRegular(p, rel string) ([]byte, fs.FileInfo, error) {
	info, err := h.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, h.explain("checking", p, err)
	}
	if !info.Mode().IsRegular() {
		what := info.Mode().Type().String()
		if info.Mode().Type() == fs.ModeSymlink {
			target, _ := h.root.Readlink(rel)
			what = "a symbolic link to " + target
		}
		return nil, nil, fmt.Errorf("%s exists and is not a regular file (%s): move it away", p, what)
	}
	data, err := h.root.ReadFile(rel)
	if err != nil {
		return nil, nil, h.explain("reading", p, err)
	}
	return data, info, nil
}

// tempPrefix is how the temp file of target rel starts: ".NAME.glb-".
func tempPrefix(rel string) string { return "." + path.Base(rel) + ".glb-" }

// Replace writes r to the target path p like WriteAtomic and returns st marked changed, with
// its summary (in the past tense, "installed v0.5.1 from URL") put the way the Host's mode
// says ("would be installed ..." under plan). A plan Host reads nothing from r, so a reader
// that opens a download on its first Read downloads nothing under plan.
func (h *Host) Replace(st Step, p string, r io.Reader, mode fs.FileMode, owner Owner, verify func(tmp string) error) (Step, error) {
	st.Changed = true
	st.Summary = h.m.verb(st.Summary)
	return st, h.WriteAtomic(p, r, mode, owner, verify)
}

// EnsureSymlink makes the target path p a symbolic link whose target is exactly target (kept
// as written: an absolute target means the root's own tree, as for a chroot). A link with
// another target is replaced atomically (a new link beside it, renamed over it); anything else
// at p is refused. Missing parents are created 0755.
func (h *Host) EnsureSymlink(p, target string) (Step, error) {
	st := Step{Kind: "link", Target: p}
	rel, err := h.resolve(p, false)
	if err != nil {
		return st, err
	}
	if err := h.m.cleanTemps(rel); err != nil {
		return st, err
	}
	info, err := h.root.Lstat(rel)
	switch {
	case err == nil && info.Mode().Type() != fs.ModeSymlink:
		return st, fmt.Errorf("%s exists and is not a symbolic link (%s): move it away", p, info.Mode().Type())
	case err == nil:
		cur, err := h.root.Readlink(rel)
		if err != nil {
			return st, h.explain("reading the link", p, err)
		}
		if cur == target {
			st.Summary = "unchanged"
			return st, nil
		}
		st.Summary = "-> " + target + " (was -> " + cur + ")"
	case errors.Is(err, fs.ErrNotExist):
		st.Summary = "-> " + target
	default:
		return st, h.explain("checking", p, err)
	}
	st.Changed = true
	st.Summary = h.m.verb("linked " + st.Summary)
	return st, h.explain("linking", p, h.m.symlink(rel, target))
}
