package host

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pmezard/go-difflib/difflib"
)

// Step is the result of one idempotent primitive: what it looked at, whether
// it changed (or, in dry-run, would change) anything, and how.
type Step struct {
	// Kind is the primitive: file, dir, download, command, service, remote, note.
	Kind string `json:"kind"`
	// Target is the path, unit, URL or object the step is about.
	Target string `json:"target"`
	// Changed is true when the step acted (or would act, under plan).
	Changed bool `json:"changed"`
	// Summary says what happened in a few words ("created", "mode 0644 -> 0600").
	Summary string `json:"summary,omitempty"`
	// Diff is a unified diff for text files, with secrets masked.
	Diff string `json:"diff,omitempty"`
	// Warning is set when the step succeeded but something needs a human.
	Warning string `json:"warning,omitempty"`
}

// Owner names the user and group a path should belong to, as names
// resolved through the target's /etc/passwd and /etc/group. The zero Owner
// leaves ownership alone (files are then owned by whoever runs glbootstrap,
// root on a real host).
type Owner struct {
	User  string
	Group string
}

// File is a desired regular file.
type File struct {
	Path  string      // absolute target path
	Data  []byte      // full content
	Mode  fs.FileMode // permission bits, e.g. 0o600 for files that hold secrets
	Owner Owner
	// Secrets are values masked as "[MASKED]" in diffs and summaries. Any
	// file with secrets should have Mode 0o600.
	Secrets []string
}

// maxDiff is the largest file (bytes) that gets a text diff; bigger or
// binary files get a checksum summary instead.
const maxDiff = 256 << 10

// EnsureFile makes the target file hold exactly f.Data with f.Mode and
// f.Owner. It reads the current state first and writes nothing when it
// already matches; otherwise it writes atomically (temp file in the same
// directory, fsync, chmod, chown, rename, fsync of the directory), so a
// reader or a crash sees the old file or the new one, never a mix.
func (h *Host) EnsureFile(f File) (Step, error) {
	st := Step{Kind: "file", Target: f.Path}
	uid, gid, err := h.lookupOwner(f.Owner)
	if err != nil {
		return st, err
	}
	full := h.Path(f.Path)
	old, info, err := readRegular(full)
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
		st.Diff = Diff(f.Path, old, f.Data, exists, f.Secrets)
	}
	if h.DryRun {
		st.Summary = "would be " + st.Summary
		return st, nil
	}
	if sameData {
		if err := os.Chmod(full, f.Mode.Perm()); err != nil {
			return st, fmt.Errorf("setting mode of %s: %w", f.Path, err)
		}
		if err := chown(full, uid, gid); err != nil {
			return st, fmt.Errorf("setting owner of %s: %w", f.Path, err)
		}
		return st, nil
	}
	if err := h.WriteAtomic(f.Path, bytes.NewReader(f.Data), f.Mode, f.Owner, nil); err != nil {
		return st, err
	}
	return st, nil
}

// WriteAtomic streams r into a temp file beside the target path p, lets
// verify inspect the finished temp file (nil to skip), then sets mode and
// owner and renames it over p. When anything fails, including verify, the
// temp file is removed and the old p is left as it was. Parent directories
// are created (0755) when missing.
func (h *Host) WriteAtomic(p string, r io.Reader, mode fs.FileMode, owner Owner, verify func(tmp string) error) error {
	if h.DryRun {
		return nil
	}
	uid, gid, err := h.lookupOwner(owner)
	if err != nil {
		return err
	}
	full := h.Path(p)
	dir := filepath.Dir(full)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(p), err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(full)+".glb-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// Mode first, so a secret is never readable by others, even as a temp file.
	if err := tmp.Chmod(mode.Perm()); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if _, err := io.Copy(tmp, r); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := chown(tmp.Name(), uid, gid); err != nil {
		return fmt.Errorf("setting owner of %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if verify != nil {
		if err := verify(tmp.Name()); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), full); err != nil {
		return fmt.Errorf("replacing %s: %w", p, err)
	}
	committed = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// EnsureDir makes the target directory exist with mode and owner. Missing
// parents are created 0755 and owned by the caller.
func (h *Host) EnsureDir(p string, mode fs.FileMode, owner Owner) (Step, error) {
	st := Step{Kind: "dir", Target: p}
	uid, gid, err := h.lookupOwner(owner)
	if err != nil {
		return st, err
	}
	full := h.Path(p)
	info, err := os.Lstat(full)
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
	default:
		return st, fmt.Errorf("checking %s: %w", p, err)
	}
	if h.DryRun {
		st.Summary = "would be " + st.Summary
		return st, nil
	}
	// Parents are 0755, like mkdir -p by root: the mode asked for is this
	// directory's alone, or its owner could not reach it through a 0700 parent.
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return st, fmt.Errorf("creating %s: %w", filepath.Dir(p), err)
	}
	if err := os.Mkdir(full, mode.Perm()); err != nil && !errors.Is(err, fs.ErrExist) {
		return st, fmt.Errorf("creating %s: %w", p, err)
	}
	if err := os.Chmod(full, mode.Perm()); err != nil {
		return st, fmt.Errorf("setting mode of %s: %w", p, err)
	}
	if err := chown(full, uid, gid); err != nil {
		return st, fmt.Errorf("setting owner of %s: %w", p, err)
	}
	return st, nil
}

// EnsureAbsent removes the target file p when it exists (why says why, for
// the step's summary), under the root and dry-run rules like every write.
func (h *Host) EnsureAbsent(p, why string) (Step, error) {
	st := Step{Kind: "file", Target: p}
	if _, err := os.Lstat(h.Path(p)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			st.Summary = "absent"
			return st, nil
		}
		return st, fmt.Errorf("checking %s: %w", p, err)
	}
	st.Changed, st.Summary = true, "removed ("+why+")"
	if h.DryRun {
		st.Summary = "would be " + st.Summary
		return st, nil
	}
	if err := os.Remove(h.Path(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("removing %s: %w", p, err)
	}
	return st, nil
}

// FileSHA256 returns the lower-case hex SHA-256 of the target file, or ""
// with a nil error when it does not exist.
func (h *Host) FileSHA256(p string) (string, error) {
	f, err := os.Open(h.Path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// readRegular returns the content and info of a regular file, nil info when
// it does not exist, and an error for anything else (a directory or a
// symlink where a file belongs is never silently replaced).
func readRegular(full string) ([]byte, fs.FileInfo, error) {
	info, err := os.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s exists and is not a regular file (%s): move it away", full, info.Mode().Type())
	}
	data, err := os.ReadFile(full)
	return data, info, err
}

// Diff returns a unified diff between old and new content of path with each
// secret replaced by [MASKED]. Binary or large content gets a one-line
// checksum summary instead.
func Diff(path string, old, new []byte, existed bool, secrets []string) string {
	if len(old) > maxDiff || len(new) > maxDiff || isBinary(old) || isBinary(new) {
		return fmt.Sprintf("binary %s: sha256 %s -> %s\n", path, shortSum(old, existed), shortSum(new, true))
	}
	from := path
	if !existed {
		from = "/dev/null"
	}
	ud := difflib.UnifiedDiff{
		A:        splitLines(Mask(string(old), secrets)),
		B:        splitLines(Mask(string(new), secrets)),
		FromFile: from,
		ToFile:   path,
		Context:  2,
	}
	text, err := difflib.GetUnifiedDiffString(ud)
	if err != nil {
		return ""
	}
	return text
}

// Mask replaces every non-empty secret in s with [MASKED].
func Mask(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[MASKED]")
		}
	}
	return s
}

// splitLines splits s into lines that keep their "\n" (difflib's
// SplitLines adds a phantom empty last line).
func splitLines(s string) []string {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	} else {
		lines[len(lines)-1] += "\n\\ No newline at end of file\n"
	}
	return lines
}

func isBinary(b []byte) bool { return bytes.IndexByte(b, 0) >= 0 }

func shortSum(b []byte, existed bool) string {
	if !existed {
		return "(none)"
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:6])
}

func ownerMatches(info fs.FileInfo, uid, gid int) bool {
	if uid < 0 && gid < 0 {
		return true
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	return (uid < 0 || int(st.Uid) == uid) && (gid < 0 || int(st.Gid) == gid)
}

func chown(path string, uid, gid int) error {
	if uid < 0 && gid < 0 {
		return nil
	}
	return os.Lchown(path, uid, gid)
}
