package host

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newRoot(t *testing.T) *Host {
	t.Helper()
	h, err := New(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestEnsureFileCreateUpdateUnchanged(t *testing.T) {
	h := newRoot(t)
	f := File{Path: "/etc/app/config.toml", Data: []byte("token = \"s3cret\"\n"), Mode: 0o600, Secrets: []string{"s3cret"}}
	st, err := h.EnsureFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Changed || st.Summary != "created" {
		t.Fatalf("first write: %+v", st)
	}
	if strings.Contains(st.Diff, "s3cret") || !strings.Contains(st.Diff, "[MASKED]") {
		t.Fatalf("diff leaks the secret or lacks the mask:\n%s", st.Diff)
	}
	info, err := os.Stat(filepath.Join(h.Root, f.Path))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v", info.Mode(), err)
	}
	st, err = h.EnsureFile(f)
	if err != nil || st.Changed {
		t.Fatalf("second write changed: %+v %v", st, err)
	}
	f.Mode = 0o644
	st, err = h.EnsureFile(f)
	if err != nil || !st.Changed || !strings.Contains(st.Summary, "0600 -> 0644") {
		t.Fatalf("mode change: %+v %v", st, err)
	}
	f.Data = []byte("token = \"other\"\n")
	st, err = h.EnsureFile(f)
	if err != nil || st.Summary != "updated" || !strings.Contains(st.Diff, "+token = \"other\"") {
		t.Fatalf("update: %+v %v", st, err)
	}
	// No temp files left behind.
	entries, _ := os.ReadDir(filepath.Dir(filepath.Join(h.Root, f.Path)))
	if len(entries) != 1 {
		t.Fatalf("directory has %d entries, want 1", len(entries))
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	dir := t.TempDir()
	h, err := New(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.EnsureFile(File{Path: "/etc/x", Data: []byte("a\n"), Mode: 0o644})
	if err != nil || !st.Changed || !strings.HasPrefix(st.Summary, "would be") {
		t.Fatalf("%+v %v", st, err)
	}
	ds, err := h.EnsureDir("/opt/d", 0o755, Owner{})
	if err != nil || !ds.Changed {
		t.Fatalf("%+v %v", ds, err)
	}
	if h.Exists("/etc/x") || h.Exists("/opt/d") || h.Exists("/etc") {
		t.Fatal("dry run wrote to the root")
	}
}

func TestEnsureFileRefusesDirectory(t *testing.T) {
	h := newRoot(t)
	if err := os.MkdirAll(filepath.Join(h.Root, "/etc/x"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := h.EnsureFile(File{Path: "/etc/x", Data: []byte("a"), Mode: 0o644})
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
}

func TestOwnerResolvedUnderRoot(t *testing.T) {
	h := newRoot(t)
	uid, gid := os.Getuid(), os.Getgid()
	mustWrite(t, filepath.Join(h.Root, "/etc/passwd"), fmt.Sprintf("svc:x:%d:%d::/:/bin/sh\n", uid, gid))
	mustWrite(t, filepath.Join(h.Root, "/etc/group"), fmt.Sprintf("svc:x:%d:\n", gid))
	st, err := h.EnsureDir("/opt/svc", 0o750, Owner{User: "svc", Group: "svc"})
	if err != nil || !st.Changed {
		t.Fatalf("%+v %v", st, err)
	}
	st, err = h.EnsureDir("/opt/svc", 0o750, Owner{User: "svc", Group: "svc"})
	if err != nil || st.Changed {
		t.Fatalf("second: %+v %v", st, err)
	}
	_, err = h.EnsureDir("/opt/other", 0o750, Owner{User: "nobody-here"})
	if !IsNoSuchUser(err) || !strings.Contains(err.Error(), "nobody-here") {
		t.Fatalf("missing user: %v", err)
	}
	if h.Exists("/opt/other") {
		t.Fatal("directory created for a missing user")
	}
}

func TestWriteAtomicVerifyFailureKeepsOld(t *testing.T) {
	h := newRoot(t)
	mustWrite(t, filepath.Join(h.Root, "/bin/tool"), "old")
	boom := errors.New("checksum mismatch")
	err := h.WriteAtomic("/bin/tool", strings.NewReader("new"), 0o755, Owner{}, func(string) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(h.Root, "/bin/tool"))
	if string(b) != "old" {
		t.Fatalf("content = %q", b)
	}
	entries, _ := os.ReadDir(filepath.Join(h.Root, "/bin"))
	if len(entries) != 1 {
		t.Fatalf("temp file left: %d entries", len(entries))
	}
}

func TestLockSecondHolderFails(t *testing.T) {
	h := newRoot(t)
	unlock, err := h.Lock()
	if err != nil {
		t.Fatal(err)
	}
	// A second process (this test binary) must fail to take it.
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
	cmd.Env = append(os.Environ(), "GLB_LOCK_HELPER_ROOT="+h.Root)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "holds the lock") || !strings.Contains(string(out), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("second process: err=%v\n%s", err, out)
	}
	unlock()
	cmd = exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
	cmd.Env = append(os.Environ(), "GLB_LOCK_HELPER_ROOT="+h.Root)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("after unlock: %v\n%s", err, out)
	}
}

func TestLockHelper(t *testing.T) {
	root := os.Getenv("GLB_LOCK_HELPER_ROOT")
	if root == "" {
		t.Skip("helper process for TestLockSecondHolderFails")
	}
	h, err := New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Lock(); err != nil {
		t.Fatal(err)
	}
}

// TestKillDuringWriteLeavesOldOrNew kills a writer process at random points
// while it replaces a large file and checks that the file is always
// entirely the old content or entirely the new one.
func TestKillDuringWriteLeavesOldOrNew(t *testing.T) {
	h := newRoot(t)
	const size = 8 << 20
	oldData := bytes.Repeat([]byte("o"), size)
	newData := bytes.Repeat([]byte("n"), size)
	target := "/etc/gitlab-runner/config.toml"
	if _, err := h.EnsureFile(File{Path: target, Data: oldData, Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	sawNew, sawOld := false, false
	for i := 0; i < 12; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriterHelper$")
		cmd.Env = append(os.Environ(), "GLB_WRITER_ROOT="+h.Root)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(5+i*7) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		got, err := os.ReadFile(filepath.Join(h.Root, target))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case bytes.Equal(got, oldData):
			sawOld = true
		case bytes.Equal(got, newData):
			sawNew = true
			// Reset so the next kill can land mid-write again.
			if _, err := h.EnsureFile(File{Path: target, Data: oldData, Mode: 0o600}); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("kill %d left a mixed file of %d bytes", i, len(got))
		}
	}
	t.Logf("saw old=%v new=%v", sawOld, sawNew)
}

func TestWriterHelper(t *testing.T) {
	root := os.Getenv("GLB_WRITER_ROOT")
	if root == "" {
		t.Skip("helper process for TestKillDuringWriteLeavesOldOrNew")
	}
	h, err := New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := h.EnsureFile(File{Path: "/etc/gitlab-runner/config.toml", Data: bytes.Repeat([]byte("n"), 8<<20), Mode: 0o600}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.EnsureFile(File{Path: "/etc/gitlab-runner/config.toml", Data: bytes.Repeat([]byte("o"), 8<<20), Mode: 0o600}); err != nil {
			t.Fatal(err)
		}
	}
}

func mustWrite(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesEmptyOrFileRoot(t *testing.T) {
	if _, err := New("", false); err == nil || !strings.Contains(err.Error(), "--root is empty") {
		t.Errorf("empty root: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	mustWrite(t, f, "x")
	if _, err := New(f, false); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("file root: %v", err)
	}
}

func TestEnsureDirParentsStayReachable(t *testing.T) {
	h := newRoot(t)
	if _, err := h.EnsureDir("/opt/gitlab-runner/metadata", 0o700, Owner{}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{"/opt": 0o755, "/opt/gitlab-runner": 0o755, "/opt/gitlab-runner/metadata": 0o700} {
		info, err := os.Stat(filepath.Join(h.Root, p))
		if err != nil || info.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %04o", p, info, err, want)
		}
	}
}
