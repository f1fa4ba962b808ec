package host

import (
	"bytes"
	"testing"
)

// BenchmarkEnsureFileUnchanged is the cost of the common case of a no-op
// apply: reading a converged 4 KiB file and finding nothing to do.
func BenchmarkEnsureFileUnchanged(b *testing.B) {
	h, err := New(b.TempDir(), false)
	if err != nil {
		b.Fatal(err)
	}
	f := File{Path: "/etc/gitlab-runner/config.toml", Data: bytes.Repeat([]byte("x = 1\n"), 700), Mode: 0o600}
	if _, err := h.EnsureFile(f); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		st, err := h.EnsureFile(f)
		if err != nil || st.Changed {
			b.Fatal(st, err)
		}
	}
}

// BenchmarkEnsureFileChanged writes a new 4 KiB version atomically (temp
// file, fsync, rename, directory fsync) on every iteration.
func BenchmarkEnsureFileChanged(b *testing.B) {
	h, err := New(b.TempDir(), false)
	if err != nil {
		b.Fatal(err)
	}
	data := [][]byte{bytes.Repeat([]byte("x = 1\n"), 700), bytes.Repeat([]byte("x = 2\n"), 700)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := h.EnsureFile(File{Path: "/etc/app.toml", Data: data[i%2], Mode: 0o600}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
