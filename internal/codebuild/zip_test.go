package codebuild

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// unzip reads an archive into name -> content (links: "-> target", dirs: "/").
func unzip(t *testing.T, data []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("reading the zip: %v", err)
	}
	out := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		switch {
		case f.Mode()&fs.ModeSymlink != 0:
			out[f.Name] = "-> " + string(b)
		case f.FileInfo().IsDir():
			out[f.Name] = "/"
		default:
			out[f.Name] = string(b)
		}
	}
	return out
}

func keys(m map[string]string) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}

func zipDir(t *testing.T, d *Dir) (map[string]string, ZipStats, error) {
	t.Helper()
	var buf bytes.Buffer
	st, err := d.WriteZip(context.Background(), &buf)
	if err != nil {
		return nil, st, err
	}
	return unzip(t, buf.Bytes()), st, nil
}

func TestZipTree(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	write(t, root, map[string]string{
		"Dockerfile":          "FROM scratch\n",
		"src/main.go":         "package main\n",
		"src/gen/big.txt":     strings.Repeat("glbootstrap ", 10000),
		"node_modules/x/a.js": "x",
		"build/out.bin":       "out",
		"keep.log":            "kept by !",
		"debug.log":           "ignored",
		".codebuildignore":    "# comment\nnode_modules/\n/build\n*.log\n!keep.log\n",
	})
	write(t, outside, map[string]string{"secret": "do not upload"})
	if err := os.Chmod(filepath.Join(root, "src/main.go"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"src/link-in":       "main.go",                                // relative, inside
		"abs-in":            filepath.Join(root, "src", "main.go"),    // absolute, inside: made relative
		"src/dir-link":      "gen",                                    // a directory inside: a link, not descended
		"leak":              filepath.Join(outside, "secret"),         // outside: skipped
		"src/up-and-out":    "../../" + filepath.Base(outside) + "/x", // dangling: skipped
		"src/outside-dir":   outside,                                  // a directory outside: skipped
		"src/gen/back-up":   "../../Dockerfile",                       // relative, inside
		"src/gen/self-loop": "self-loop",                              // a loop: skipped
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	var warnings []string
	got, st, err := zipDir(t, &Dir{Path: root, Warn: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatal(err)
	}
	want := ".codebuildignore Dockerfile abs-in keep.log src/ src/dir-link src/gen/ src/gen/back-up src/gen/big.txt src/link-in src/main.go"
	if keys(got) != want {
		t.Errorf("zip holds\n %s\nwant\n %s", keys(got), want)
	}
	for name, v := range map[string]string{"abs-in": "-> src/main.go", "src/link-in": "-> main.go", "src/dir-link": "-> gen", "src/gen/back-up": "-> ../../Dockerfile"} {
		if got[name] != v {
			t.Errorf("%s = %q, want %q", name, got[name], v)
		}
	}
	for _, v := range got {
		if strings.Contains(v, "do not upload") {
			t.Error("a file outside the source directory was uploaded")
		}
	}
	if len(warnings) != 4 || len(st.Skipped) != 4 {
		t.Errorf("warnings = %q, skipped %q; want 4 (leak, up-and-out, outside-dir, self-loop)", warnings, st.Skipped)
	}
	if !strings.Contains(strings.Join(warnings, "\n"), "skipping symlink leak: it points outside the source directory") {
		t.Errorf("warnings = %q", warnings)
	}
	if st.Files != 5 || st.Symlinks != 4 {
		t.Errorf("stats = %+v", st)
	}

	// Modes survive: CodeBuild runs scripts straight from the zip.
	var buf bytes.Buffer
	if _, err := (&Dir{Path: root}).WriteZip(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	zr, _ := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	for _, f := range zr.File {
		if f.Name == "src/main.go" && f.Mode().Perm() != 0o755 {
			t.Errorf("src/main.go mode %v, want 0755", f.Mode())
		}
	}
}

func TestZipEmpty(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"empty":           {},
		"only dirs":       {"a/b/.keep-dir/": ""},
		"all ignored":     {".codebuildignore": "*\n", "a.txt": "a"},
		"links elsewhere": {},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			for rel, c := range files {
				if strings.HasSuffix(rel, "/") {
					os.MkdirAll(filepath.Join(root, rel), 0o755)
					continue
				}
				write(t, root, map[string]string{rel: c})
			}
			if name == "links elsewhere" {
				os.Symlink("/etc/hostname", filepath.Join(root, "h"))
			}
			_, _, err := zipDir(t, &Dir{Path: root})
			if !errors.Is(err, ErrEmptySource) {
				t.Fatalf("err = %v, want ErrEmptySource", err)
			}
			if !strings.Contains(err.Error(), root) {
				t.Errorf("error %q does not name the directory", err)
			}
		})
	}
}

func TestZipFileDisappears(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{"a.txt": "a", "b.txt": "b", "c/d.txt": "d"})
	for name, victim := range map[string]string{"file": "b.txt", "directory": "c"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.CopyFS(dir, os.DirFS(root))
			d := &Dir{Path: dir, OnFile: func(rel string) {
				if rel == "a.txt" {
					// a.txt is being zipped; the walk has already listed the next entries.
					if err := os.RemoveAll(filepath.Join(dir, victim)); err != nil {
						t.Fatal(err)
					}
				}
			}}
			_, _, err := zipDir(t, d)
			if !errors.Is(err, ErrVanished) {
				t.Fatalf("err = %v, want ErrVanished", err)
			}
			if !strings.Contains(err.Error(), victim) || !strings.Contains(err.Error(), "still writing") {
				t.Errorf("error %q does not say which file and why", err)
			}
		})
	}
}

func TestParseIgnore(t *testing.T) {
	ps := ParseIgnore("# c\n\n\\#hash\n*.tmp\n!keep.tmp\ndocs/\n/root-only\na/**/z\n")
	m := newMatcher(ps)
	for path, want := range map[string]bool{
		"#hash": true, "x.tmp": true, "deep/x.tmp": true, "keep.tmp": false, "docs": true, "sub/docs": true,
		"root-only": true, "sub/root-only": false, "a/b/c/z": true, "a/z": true, "b/z": false, "main.go": false,
	} {
		isDir := path == "docs" || path == "sub/docs"
		if got := m.Match(strings.Split(path, "/"), isDir); got != want {
			t.Errorf("%s ignored = %v, want %v", path, got, want)
		}
	}
}
