package host

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// outsideTree makes a root and a directory beside it that a link inside the root points at,
// and returns both; the test then checks nothing ever lands in outside.
func outsideTree(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Fatalf("%s outside the root got %d entries (first %s): a write escaped", dir, len(entries), entries[0].Name())
	}
}

// TestSymlinkedDirsStayInsideRoot: /etc/gitlab-runner and /var/lib/glbootstrap as links to
// places outside the root, absolute and relative (with more ".." than the root is deep), are
// followed within the root: every write lands under the root, none outside.
func TestSymlinkedDirsStayInsideRoot(t *testing.T) {
	for name, link := range map[string]func(outside string) string{
		"absolute": func(outside string) string { return outside },
		"relative": func(outside string) string { return "../../../../../../../../" + strings.TrimPrefix(outside, "/") },
		"dotdot":   func(string) string { return "../.." },
	} {
		t.Run(name, func(t *testing.T) {
			root, outside := outsideTree(t)
			h, err := New(root, false)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			for _, d := range []string{"etc", "var/lib"} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, l := range []string{"etc/gitlab-runner", "var/lib/glbootstrap"} {
				if err := os.Symlink(link(outside), filepath.Join(root, l)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := h.EnsureFile(File{Path: "/etc/gitlab-runner/config.toml", Data: []byte("x\n"), Mode: 0o600}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.EnsureFile(File{Path: "/var/lib/glbootstrap/runner.json", Data: []byte("{}\n"), Mode: 0o600}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.EnsureDir("/etc/gitlab-runner/sub", 0o700, Owner{}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.EnsureAbsent("/var/lib/glbootstrap/runner.json", "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := h.EnsureFile(File{Path: "/var/lib/glbootstrap/../glbootstrap/x", Data: []byte("y"), Mode: 0o644}); err != nil {
				t.Fatal(err)
			}
			assertEmpty(t, outside)
			got, err := h.ReadFile("/etc/gitlab-runner/config.toml")
			if err != nil || string(got) != "x\n" {
				t.Fatalf("read back through the link: %q %v", got, err)
			}
			// The link was followed inside the root: the file sits where the link's target
			// is when the root is taken as "/".
			want := filepath.Join(root, strings.TrimPrefix(outside, "/"), "config.toml")
			if name == "dotdot" {
				want = filepath.Join(root, "config.toml")
			}
			if _, err := os.Stat(want); err != nil {
				t.Fatalf("expected the write at %s: %v", want, err)
			}
			if real, err := h.Resolve("/etc/gitlab-runner/config.toml"); err != nil || real != want {
				t.Fatalf("Resolve = %q, %v; want %q", real, err, want)
			}
		})
	}
}

// TestDotDotNeverLeavesRoot: ".." in a target path stops at the root, as in a chroot.
func TestDotDotNeverLeavesRoot(t *testing.T) {
	root, outside := outsideTree(t)
	h, err := New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, p := range []string{"/../outside/a", "../../outside/b", "/etc/../../../outside/c", "etc/missing/../../../outside/d"} {
		if _, err := h.EnsureFile(File{Path: p, Data: []byte("z"), Mode: 0o644}); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	assertEmpty(t, outside)
	for _, n := range []string{"a", "b", "c", "d"} {
		if _, err := os.Stat(filepath.Join(root, "outside", n)); err != nil {
			t.Errorf("%s not under the root: %v", n, err)
		}
	}
}

// TestFinalLinkIsRefusedNamingIt: a link where a managed file belongs is not written through;
// the error names the link and its target.
func TestFinalLinkIsRefusedNamingIt(t *testing.T) {
	root, outside := outsideTree(t)
	h, err := New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := os.MkdirAll(filepath.Join(root, "etc/gitlab-runner"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "config.toml"), filepath.Join(root, "etc/gitlab-runner/config.toml")); err != nil {
		t.Fatal(err)
	}
	_, err = h.EnsureFile(File{Path: "/etc/gitlab-runner/config.toml", Data: []byte("x"), Mode: 0o600})
	if err == nil || !strings.Contains(err.Error(), "/etc/gitlab-runner/config.toml") || !strings.Contains(err.Error(), "symbolic link to "+outside) {
		t.Fatalf("err = %v", err)
	}
	assertEmpty(t, outside)
}

func TestLinkLoopIsAnError(t *testing.T) {
	root, _ := outsideTree(t)
	h, err := New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := os.Symlink("b", filepath.Join(root, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(root, "b")); err != nil {
		t.Fatal(err)
	}
	_, err = h.EnsureFile(File{Path: "/a/x", Data: []byte("x"), Mode: 0o600})
	if !errors.Is(err, ErrLoop) {
		t.Fatalf("err = %v", err)
	}
}

func TestNewRefusesMissingRootAndCreatesNothing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := New(missing, false)
	if !errors.Is(err, ErrNoRoot) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("the missing root was created: %v", err)
	}
}

// TestStaleTempFilesRemoved: a temp file a killed run left beside a managed file is removed by
// the next run of the same step, whether it writes or finds the file unchanged; plan leaves it.
func TestStaleTempFilesRemoved(t *testing.T) {
	h := newRoot(t)
	f := File{Path: "/etc/gitlab-runner/config.toml", Data: []byte("a\n"), Mode: 0o600}
	if _, err := h.EnsureFile(f); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(h.Root, "etc/gitlab-runner/.config.toml.glb-123abc")
	other := filepath.Join(h.Root, "etc/gitlab-runner/.fargate.toml.glb-999")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	plan := h.AsPlan()
	if _, err := plan.EnsureFile(f); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Fatal("plan removed a temp file")
	}
	st, err := h.EnsureFile(f)
	if err != nil || st.Changed {
		t.Fatalf("%+v %v", st, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatal("stale temp file of the step's own file was kept")
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatal("another file's temp file was removed by this step")
	}
}

// TestPlanRecordsAndChangesNothing: a plan Host reports and records every change and leaves
// content, mode and mtime as they were.
func TestPlanRecordsAndChangesNothing(t *testing.T) {
	h := newRoot(t)
	if _, err := h.EnsureFile(File{Path: "/etc/a", Data: []byte("old\n"), Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(filepath.Join(h.Root, "etc/a"))
	p, err := New(h.Root, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	st, err := p.EnsureFile(File{Path: "/etc/a", Data: []byte("new\n"), Mode: 0o600})
	if err != nil || !st.Changed || st.Summary != "would be updated" || !strings.Contains(st.Diff, "+new") {
		t.Fatalf("%+v %v", st, err)
	}
	if _, err := p.EnsureAbsent("/etc/a", "test"); err != nil {
		t.Fatal(err)
	}
	// Under a root, apply does not run commands, and plan says the same.
	act, _, err := p.Run(t.Context(), nil, "false")
	if err != nil || act.Ran || act.Planned() || !strings.Contains(act.NotRun, "not the live system") {
		t.Fatalf("plan under a root: %+v %v", act, err)
	}
	// On the live system, plan records the command it would run and runs nothing.
	live, err := New("/", true)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	act, _, err = live.Run(t.Context(), nil, "touch", filepath.Join(h.Root, "ran"))
	if err != nil || act.Ran || !act.Planned() || len(live.Planned()) != 1 {
		t.Fatalf("plan on the live system: %+v %v", act, err)
	}
	if _, err := os.Stat(filepath.Join(h.Root, "ran")); !os.IsNotExist(err) {
		t.Fatal("plan ran the command")
	}
	after, _ := os.Stat(filepath.Join(h.Root, "etc/a"))
	data, _ := os.ReadFile(filepath.Join(h.Root, "etc/a"))
	if string(data) != "old\n" || after.Mode() != before.Mode() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("plan changed the file: %q %v %v", data, after.Mode(), after.ModTime())
	}
	var kinds []string
	for _, a := range p.Planned() {
		kinds = append(kinds, a.Kind)
	}
	if got := strings.Join(kinds, ","); got != "write,remove" {
		t.Fatalf("recorded %s", got)
	}
}

func TestNoDiffForFilesNotOwned(t *testing.T) {
	h := newRoot(t)
	if _, err := h.EnsureFile(File{Path: "/etc/gitlab/gitlab.rb", Data: []byte("smtp_password 'hunter2'\n"), Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	st, err := h.EnsureFile(File{Path: "/etc/gitlab/gitlab.rb", Data: []byte("smtp_password 'hunter2'\nfrom_file 'x'\n"), Mode: 0o600, NoDiff: "adds the from_file line"})
	if err != nil || st.Diff != "" || strings.Contains(st.Summary, "hunter2") || st.Summary != "updated: adds the from_file line" {
		t.Fatalf("%+v %v", st, err)
	}
}

func TestEnsureFileCheckedKeepsOldOnVerifyFailure(t *testing.T) {
	h := newRoot(t)
	f := File{Path: "/etc/ssh/sshd_config.d/00-x.conf", Data: []byte("old\n"), Mode: 0o644}
	if _, err := h.EnsureFile(f); err != nil {
		t.Fatal(err)
	}
	f.Data = []byte("new\n")
	var seen string
	_, err := h.EnsureFileChecked(f, func(tmp string) error {
		b, _ := os.ReadFile(tmp)
		seen = string(b)
		return errors.New("sshd -t said no")
	})
	if err == nil || err.Error() != "sshd -t said no" || seen != "new\n" {
		t.Fatalf("err = %v, verify saw %q", err, seen)
	}
	if b, _ := os.ReadFile(filepath.Join(h.Root, f.Path)); string(b) != "old\n" {
		t.Fatalf("file now %q", b)
	}
	entries, _ := os.ReadDir(filepath.Join(h.Root, "etc/ssh/sshd_config.d"))
	if len(entries) != 1 {
		t.Fatalf("%d entries left", len(entries))
	}
}

// TestSecretFileDiffHidesOldLines: replacing a file with HideOldLines never prints its old lines
// (a hand-added DB_PASSWORD in config.toml), only that they were there; other files keep their
// ordinary diff.
func TestSecretFileDiffHidesOldLines(t *testing.T) {
	h := newRoot(t)
	old := "concurrent = 1\nenvironment = [\"DB_PASSWORD=hunter2\"]\n[[runners]]\n"
	if err := os.MkdirAll(filepath.Join(h.Root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.Root, "etc/config.toml"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := h.EnsureFile(File{Path: "/etc/config.toml", Data: []byte("concurrent = 2\n[[runners]]\n"), Mode: 0o600, HideOldLines: true})
	if err != nil || strings.Contains(st.Diff, "hunter2") || strings.Contains(st.Diff, "concurrent = 1") ||
		!strings.Contains(st.Diff, "+concurrent = 2") || !strings.Contains(st.Diff, "not shown") || !strings.Contains(st.Diff, " [[runners]]") {
		t.Fatalf("%v\n%s", err, st.Diff)
	}
	if err := os.WriteFile(filepath.Join(h.Root, "etc/pub.toml"), []byte("a = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = h.EnsureFile(File{Path: "/etc/pub.toml", Data: []byte("a = 2\n"), Mode: 0o644})
	if err != nil || !strings.Contains(st.Diff, "-a = 1") {
		t.Fatalf("%v\n%s", err, st.Diff)
	}
}

// TestFollowLinkWritesThroughWithinRoot: an admin's file kept elsewhere and linked is updated
// where the link leads (inside the root), the link kept.
func TestFollowLinkWritesThroughWithinRoot(t *testing.T) {
	root, outside := outsideTree(t)
	h, err := New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := os.MkdirAll(filepath.Join(root, "etc/gitlab"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "srv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "srv/gitlab.rb"), []byte("a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/srv/gitlab.rb", "../../srv/gitlab.rb"} {
		link := filepath.Join(root, "etc/gitlab/gitlab.rb")
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if _, err := h.EnsureFile(File{Path: "/etc/gitlab/gitlab.rb", Data: []byte("a\nb " + target + "\n"), Mode: 0o600, FollowLink: true}); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "srv/gitlab.rb")); string(b) != "a\nb "+target+"\n" {
			t.Fatalf("target holds %q", b)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
			t.Fatal("the link was replaced")
		}
	}
	// A link leading out of the root is followed inside it.
	link := filepath.Join(root, "etc/gitlab/gitlab.rb")
	_ = os.Remove(link)
	if err := os.Symlink(filepath.Join(outside, "gitlab.rb"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := h.EnsureFile(File{Path: "/etc/gitlab/gitlab.rb", Data: []byte("x\n"), Mode: 0o600, FollowLink: true}); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, outside)
}
