package codebuild

import (
	"archive/zip"
	"bufio"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// IgnoreFile is the name of the file at the top of a source directory whose patterns (gitignore
// syntax: #comments, !negation, trailing / for directories, leading / to anchor, ** for any
// depth) name what is left out of the zip. Only the top-level file is read; an excluded directory
// is never entered, so a later !pattern cannot bring back a file under it (as in git).
const IgnoreFile = ".codebuildignore"

var (
	// ErrEmptySource: after .codebuildignore there is no file or link to build from.
	ErrEmptySource = errors.New("source directory has nothing to upload")
	// ErrVanished: a file or directory was removed while it was being zipped.
	ErrVanished = errors.New("file disappeared while zipping")
)

// ZipStats says what a source zip holds.
type ZipStats struct {
	Files, Dirs, Symlinks int
	// Bytes is the uncompressed size of the files.
	Bytes int64
	// Skipped are the paths (slash-separated, relative) left out because they are links that
	// leave the source directory or lead nowhere; IgnoreFile exclusions are not counted.
	Skipped []string
}

// Source is a build's source, written as a zip archive.
type Source interface {
	// WriteZip writes the archive to w, reading lazily: memory does not grow with the source.
	WriteZip(ctx context.Context, w io.Writer) (ZipStats, error)
	// String names the source in messages.
	String() string
}

// Dir is a directory as a build source.
//
// Symbolic links are never followed: a link whose target resolves inside the directory is
// stored as a link (with a relative target, so it still resolves once CodeBuild unpacks the
// zip), and is not descended into even when it names a directory. A link that resolves outside
// the directory, or nowhere, is skipped with a warning naming it and its target: following it
// would upload files from outside the tree (a CI runner's credentials, /etc), and storing it
// would give the build a dangling link. Skipping rather than failing keeps common trees working
// (a virtualenv's bin/python -> /usr/bin/python3); add such paths to .codebuildignore to
// silence the warning.
type Dir struct {
	Path string
	// Warn receives one line per skipped link; nil discards them.
	Warn func(string)
	// OnFile, when set, is called with each regular file's relative slash path just before it is
	// opened (progress listings).
	OnFile func(rel string)
}

func (d *Dir) String() string { return d.Path }

func (d *Dir) warn(format string, args ...any) {
	if d.Warn != nil {
		d.Warn(fmt.Sprintf(format, args...))
	}
}

// WriteZip walks the directory in lexical order and streams it into w. Errors: ErrEmptySource,
// ErrVanished, or the I/O error with the path.
func (d *Dir) WriteZip(ctx context.Context, w io.Writer) (ZipStats, error) {
	var st ZipStats
	root, err := filepath.Abs(d.Path)
	if err != nil {
		return st, err
	}
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return st, fmt.Errorf("reading source directory %s: %w", d.Path, err)
	}
	if fi, err := os.Stat(root); err != nil {
		return st, fmt.Errorf("reading source directory %s: %w", d.Path, err)
	} else if !fi.IsDir() {
		return st, fmt.Errorf("source %s is not a directory", d.Path)
	}
	ignore, err := readIgnore(root)
	if err != nil {
		return st, err
	}

	bw := bufio.NewWriterSize(w, 256<<10)
	zw := newZipWriter(bw)
	walkErr := filepath.WalkDir(root, func(abs string, de fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		rel, _ := filepath.Rel(root, abs)
		rel = filepath.ToSlash(rel)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && rel != "." {
				return fmt.Errorf("%w: %s (is something still writing to %s?)", ErrVanished, rel, d.Path)
			}
			return fmt.Errorf("reading %s: %w", abs, err)
		}
		if rel == "." {
			return nil
		}
		isDir := de.IsDir()
		if ignore != nil && ignore.Match(strings.Split(rel, "/"), isDir) {
			if isDir {
				return filepath.SkipDir
			}
			return nil
		}
		switch typ := de.Type(); {
		case isDir:
			info, err := de.Info()
			if err != nil {
				return vanished(err, rel, d.Path)
			}
			h := &zip.FileHeader{Name: rel + "/", Method: zip.Store, Modified: info.ModTime()}
			h.SetMode(info.Mode())
			if _, err := zw.CreateHeader(h); err != nil {
				return err
			}
			st.Dirs++
		case typ&fs.ModeSymlink != 0:
			target, why := linkTarget(root, abs, rel)
			if why != "" {
				d.warn("skipping symlink %s: %s", rel, why)
				st.Skipped = append(st.Skipped, rel)
				return nil
			}
			h := &zip.FileHeader{Name: rel, Method: zip.Store}
			h.SetMode(fs.ModeSymlink | 0o777)
			if info, err := de.Info(); err == nil {
				h.Modified = info.ModTime()
			}
			fw, err := zw.CreateHeader(h)
			if err != nil {
				return err
			}
			if _, err := io.WriteString(fw, target); err != nil {
				return err
			}
			st.Symlinks++
		case typ.IsRegular():
			if d.OnFile != nil {
				d.OnFile(rel)
			}
			n, err := addFile(zw, abs, rel)
			if err != nil {
				return vanished(err, rel, d.Path)
			}
			st.Files++
			st.Bytes += n
		default:
			d.warn("skipping %s: not a regular file, directory or symlink (%s)", rel, typ)
			st.Skipped = append(st.Skipped, rel)
		}
		return nil
	})
	if walkErr != nil {
		return st, walkErr
	}
	if st.Files+st.Symlinks == 0 {
		what := "it is empty"
		if ignore != nil {
			what = "it is empty or " + IgnoreFile + " excludes everything"
		}
		return st, fmt.Errorf("%w: %s: %s", ErrEmptySource, d.Path, what)
	}
	if err := zw.Close(); err != nil {
		return st, err
	}
	return st, bw.Flush()
}

func vanished(err error, rel, dir string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s (is something still writing to %s?)", ErrVanished, rel, dir)
	}
	return err
}

// linkTarget returns what to store for the link at abs (rel inside root): its target relative to
// the link's directory when it resolves inside root, else a reason to skip it.
func linkTarget(root, abs, rel string) (target, skip string) {
	raw, err := os.Readlink(abs)
	if err != nil {
		return "", err.Error()
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Sprintf("its target %s does not exist", raw)
	}
	if resolved != root && !strings.HasPrefix(resolved, root+string(filepath.Separator)) {
		return "", fmt.Sprintf("it points outside the source directory (to %s); add it to %s to silence this", resolved, IgnoreFile)
	}
	// The link's parent directories are real directories (links are never descended into), so
	// its place in the unpacked tree is root/dir(rel).
	t, err := filepath.Rel(filepath.Join(root, filepath.FromSlash(path.Dir(rel))), resolved)
	if err != nil {
		return "", err.Error()
	}
	return filepath.ToSlash(t), ""
}

// addFile streams one regular file into zw and returns its size. Already-compressed formats are
// stored, everything else deflated at the fastest level: the zip goes straight to S3, so the
// compressor must keep up with the network, and CodeBuild unpacks either the same way.
func addFile(zw *zip.Writer, abs, rel string) (int64, error) {
	f, err := os.Open(abs)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	h := &zip.FileHeader{Name: rel, Method: zip.Deflate, Modified: info.ModTime()}
	if storedExt[strings.ToLower(path.Ext(rel))] {
		h.Method = zip.Store
	}
	h.SetMode(info.Mode())
	fw, err := zw.CreateHeader(h)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(fw, f)
	if err != nil {
		return n, fmt.Errorf("reading %s: %w", abs, err)
	}
	return n, nil
}

// storedExt are extensions of formats that deflate cannot shrink.
var storedExt = map[string]bool{
	".gz": true, ".tgz": true, ".zip": true, ".jar": true, ".war": true, ".whl": true, ".xz": true,
	".zst": true, ".bz2": true, ".7z": true, ".png": true, ".jpg": true, ".jpeg": true, ".gif": true,
	".webp": true, ".woff": true, ".woff2": true, ".mp4": true, ".mp3": true, ".pdf": true,
}

// flateWriters reuses deflate state (about 1 MiB each) across the files of an archive.
var flateWriters sync.Pool

type pooledFlate struct{ *flate.Writer }

func (p pooledFlate) Close() error {
	err := p.Writer.Close()
	flateWriters.Put(p.Writer)
	return err
}

func newZipWriter(w io.Writer) *zip.Writer {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		if fw, ok := flateWriters.Get().(*flate.Writer); ok {
			fw.Reset(out)
			return pooledFlate{fw}, nil
		}
		fw, err := flate.NewWriter(out, flate.BestSpeed)
		if err != nil {
			return nil, err
		}
		return pooledFlate{fw}, nil
	})
	return zw
}

// readIgnore reads root/.codebuildignore; nil when there is none.
func readIgnore(root string) (gitignore.Matcher, error) {
	data, err := os.ReadFile(filepath.Join(root, IgnoreFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", IgnoreFile, err)
	}
	return newMatcher(ParseIgnore(string(data))), nil
}

// ParseIgnore reads gitignore-syntax patterns, one a line; blank lines and lines starting with
// # are skipped (write \# for a pattern starting with #).
func ParseIgnore(text string) []gitignore.Pattern {
	var ps []gitignore.Pattern
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, `\#`) {
			line = line[1:]
		}
		ps = append(ps, gitignore.ParsePattern(line, nil))
	}
	return ps
}

func newMatcher(ps []gitignore.Pattern) gitignore.Matcher { return gitignore.NewMatcher(ps) }
