package host

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
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
	// NoDiff, when set, replaces the diff of a content change with this description: for a
	// file glbootstrap does not own (the admin's gitlab.rb), whose lines may hold secrets it
	// cannot know, so none of them is ever printed ("adds the from_file line").
	NoDiff string
	// HideOldLines keeps the diff from printing any line of the old content that is not also
	// in the new one: for a file glbootstrap renders whole but others write to as well
	// (gitlab-runner's config.toml, where gitlab-runner stores rotated tokens and an admin may
	// have added environment = ["DB_PASSWORD=..."]), whose old lines may hold secrets nobody
	// told glbootstrap about.
	HideOldLines bool
	// FollowLink writes through a link at Path (followed within the root, like every other
	// link) instead of refusing it: for the admin's own files (gitlab.rb), which an admin may
	// keep elsewhere and link. Files glbootstrap owns refuse a link in their place.
	FollowLink bool
}

// maxDiff is the largest file (bytes) that gets a text diff; bigger or
// binary files get a checksum summary instead.
const maxDiff = 256 << 10

// Diff returns a unified diff between old and new content of path with each
// secret replaced by [MASKED]. Binary or large content gets a one-line
// checksum summary instead.
func Diff(path string, old, new []byte, existed bool, secrets []string) string {
	return diff(path, old, new, existed, secrets, false)
}

// hiddenLine stands for a line of the old content that a secret file's diff does not print.
const hiddenLine = "(a line of the old file, not shown: this file holds secrets)\n"

// diff is Diff; with hideOld, every line of the old content that is not also in the new one
// is printed as hiddenLine: the old file of a 0600 file may hold secrets glbootstrap never knew
// (another runner's token, a hand-added environment = ["DB_PASSWORD=..."]), which no mask covers.
func diff(path string, old, new []byte, existed bool, secrets []string, hideOld bool) string {
	if len(old) > maxDiff || len(new) > maxDiff || isBinary(old) || isBinary(new) {
		return fmt.Sprintf("binary %s: sha256 %s -> %s\n", path, shortSum(old, existed), shortSum(new, true))
	}
	from := path
	if !existed {
		from = "/dev/null"
	}
	a, b := splitLines(Mask(string(old), secrets)), splitLines(Mask(string(new), secrets))
	if hideOld {
		keep := make(map[string]bool, len(b))
		for _, l := range b {
			keep[l] = true
		}
		for i, l := range a {
			if !keep[l] {
				a[i] = hiddenLine
			}
		}
	}
	ud := difflib.UnifiedDiff{
		A:        a,
		B:        b,
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
