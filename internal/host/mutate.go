package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
	"syscall"
)

// mutator makes the changes a Host decided on. Paths are relative to the root and already
// resolved (resolve.go). apply's mutator acts through os.Root; plan's only records.
type mutator interface {
	// verb turns a past-tense summary ("created") into what the mode says ("would be created").
	verb(summary string) string
	writeFile(rel string, r io.Reader, mode fs.FileMode, uid, gid int, verify func(string) error) error
	// mkdir creates rel with mode, and missing parents 0755.
	mkdir(rel string, mode fs.FileMode) error
	chmod(rel string, mode fs.FileMode) error
	chown(rel string, uid, gid int) error
	remove(rel string) error
	// symlink makes rel a link to target, replacing a link already there atomically.
	symlink(rel, target string) error
	// cleanTemps removes temp files a killed run left beside rel (.NAME.glb-*).
	cleanTemps(rel string) error
	run(ctx context.Context, stdin io.Reader, argv []string) (Action, []byte, error)
}

// planMutator records every change and makes none. It holds no handle on the tree at all.
// offline is set under a root other than "/", where apply would not run commands either.
type planMutator struct {
	log     *actionLog
	offline string
}

func (p planMutator) verb(s string) string { return "would be " + s }
func (p planMutator) writeFile(rel string, _ io.Reader, _ fs.FileMode, _, _ int, _ func(string) error) error {
	p.log.add(Action{Kind: "write", Target: "/" + rel})
	return nil
}
func (p planMutator) mkdir(rel string, _ fs.FileMode) error {
	p.log.add(Action{Kind: "mkdir", Target: "/" + rel})
	return nil
}
func (p planMutator) chmod(rel string, _ fs.FileMode) error {
	p.log.add(Action{Kind: "chmod", Target: "/" + rel})
	return nil
}
func (p planMutator) chown(rel string, uid, gid int) error {
	if uid >= 0 || gid >= 0 {
		p.log.add(Action{Kind: "chown", Target: "/" + rel})
	}
	return nil
}
func (p planMutator) remove(rel string) error {
	p.log.add(Action{Kind: "remove", Target: "/" + rel})
	return nil
}
func (p planMutator) symlink(rel, target string) error {
	p.log.add(Action{Kind: "symlink", Target: "/" + rel})
	return nil
}
func (p planMutator) cleanTemps(string) error { return nil }
func (p planMutator) run(_ context.Context, _ io.Reader, argv []string) (Action, []byte, error) {
	a := Action{Kind: "run", Target: strings.Join(argv, " "), Command: argv, NotRun: wouldRun}
	if p.offline != "" {
		// Plan says what apply would do: under this root, apply would not run it either.
		a.NotRun = p.offline
		return a, nil, nil
	}
	p.log.add(a)
	return a, nil, nil
}

// applyMutator changes the tree through the Host's os.Root.
type applyMutator struct{ h *Host }

func (a *applyMutator) verb(s string) string { return s }

func (a *applyMutator) writeFile(rel string, r io.Reader, mode fs.FileMode, uid, gid int, verify func(string) error) error {
	root := a.h.root
	dir := path.Dir(rel)
	if err := root.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := path.Join(dir, tempPrefix(rel)+hex.EncodeToString(rnd[:]))
	// 0600 and O_EXCL: a secret is never readable by others, even as a temp file, and a link
	// planted at the temp name is never followed.
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if verify != nil {
		real := a.h.Root + "/" + tmp
		if a.h.Root == "/" {
			real = "/" + tmp
		}
		if err := verify(real); err != nil {
			return &verifyError{err}
		}
	}
	if err := root.Rename(tmp, rel); err != nil {
		return err
	}
	committed = true
	if d, err := root.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// verifyError carries a verify callback's error through writeFile unchanged.
type verifyError struct{ err error }

func (v *verifyError) Error() string { return v.err.Error() }

func (a *applyMutator) mkdir(rel string, mode fs.FileMode) error {
	// Parents are 0755, like mkdir -p by root: the mode asked for is this directory's alone,
	// or its owner could not reach it through a 0700 parent.
	if err := a.h.root.MkdirAll(path.Dir(rel), 0o755); err != nil {
		return err
	}
	if err := a.h.root.Mkdir(rel, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

func (a *applyMutator) chmod(rel string, mode fs.FileMode) error { return a.h.root.Chmod(rel, mode) }

func (a *applyMutator) chown(rel string, uid, gid int) error {
	if uid < 0 && gid < 0 {
		return nil
	}
	return a.h.root.Lchown(rel, uid, gid)
}

func (a *applyMutator) remove(rel string) error { return a.h.root.Remove(rel) }

func (a *applyMutator) symlink(rel, target string) error {
	if err := a.h.root.MkdirAll(path.Dir(rel), 0o755); err != nil {
		return err
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := path.Join(path.Dir(rel), tempPrefix(rel)+hex.EncodeToString(rnd[:]))
	if err := a.h.root.Symlink(target, tmp); err != nil {
		return err
	}
	if err := a.h.root.Rename(tmp, rel); err != nil {
		_ = a.h.root.Remove(tmp)
		return err
	}
	return nil
}

func (a *applyMutator) cleanTemps(rel string) error {
	d, err := a.h.root.Open(path.Dir(rel))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return nil // the write that follows reports a real problem with the directory
	}
	names, _ := d.Readdirnames(-1)
	_ = d.Close()
	prefix := tempPrefix(rel)
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			if err := a.h.root.Remove(path.Join(path.Dir(rel), n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("removing %s, left by an interrupted run: %w", "/"+path.Join(path.Dir(rel), n), err)
			}
		}
	}
	return nil
}

func (a *applyMutator) run(ctx context.Context, stdin io.Reader, argv []string) (Action, []byte, error) {
	if !a.h.Live() {
		return Action{Kind: "run", Target: strings.Join(argv, " "), Command: argv, NotRun: a.h.offline()}, nil, nil
	}
	return execute(ctx, stdin, argv)
}

// execute runs argv and returns its combined output; an error carries the output's last lines.
func execute(ctx context.Context, stdin io.Reader, argv []string) (Action, []byte, error) {
	act := Action{Kind: "run", Target: strings.Join(argv, " "), Command: argv, Ran: true}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return act, out.Bytes(), fmt.Errorf("running %s: %w\n%s", argv[0], err, tail(out.Bytes(), 20))
	}
	return act, out.Bytes(), nil
}
