package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// Omnibus programs the restore runs (under the host's root).
const (
	GitLabCtl  = "/opt/gitlab/bin/gitlab-ctl"
	GitLabRake = "/opt/gitlab/bin/gitlab-rake"
)

// Command runs an Omnibus program with extra environment (NAME=value) added to this process's,
// its output going to out.
type Command func(ctx context.Context, env []string, out io.Writer, name string, args ...string) error

// RestoreStep is one step of a restore, in GitLab's documented order.
type RestoreStep struct {
	Title string
	Env   []string // added environment
	Prog  string   // Omnibus program (GitLabCtl, Program, GitLabRake); "" for a step glbootstrap does
	Args  []string
	// IfFails is what to do when the step failed.
	IfFails string
}

// String is the step as a person would type it.
func (s RestoreStep) String() string {
	if s.Prog == "" {
		return s.Title
	}
	return strings.TrimSpace(strings.Join(s.Env, " ") + " " + s.Prog[strings.LastIndex(s.Prog, "/")+1:] + " " + strings.Join(s.Args, " "))
}

// RestoreSteps returns the restore of backup id on a Linux package installation, after the
// archive is in ArchiveDir owned by git (docs.gitlab.com, "Restore GitLab" > "Restore for Linux
// package installations"): stop puma and sidekiq, gitlab-backup restore BACKUP=id without
// prompts, put back gitlab-secrets.json and gitlab.rb, reconfigure, restart, check, and check
// that the secrets decrypt the database.
func RestoreSteps(id string) []RestoreStep {
	started := "puma and sidekiq are stopped, nothing was restored: fix the cause and run the restore again, or run 'gitlab-ctl start' to bring GitLab back as it was"
	restored := "the data and configuration are restored: fix the cause, then run the remaining steps by hand"
	return []RestoreStep{
		{Title: "stop puma", Prog: GitLabCtl, Args: []string{"stop", "puma"}, IfFails: "nothing was restored: check 'gitlab-ctl status'"},
		{Title: "stop sidekiq", Prog: GitLabCtl, Args: []string{"stop", "sidekiq"}, IfFails: started},
		{Title: "restore the application archive", Env: []string{"GITLAB_ASSUME_YES=1"}, Prog: Program, Args: []string{"restore", "BACKUP=" + id},
			IfFails: "puma and sidekiq are stopped and the database may be partly restored: read the output above, fix the cause and run the restore again (it starts over)"},
		{Title: "put back " + EtcGitLab + "/gitlab-secrets.json and " + EtcGitLab + "/gitlab.rb from the configuration archive (the current ones are kept as *.before-restore-" + id + ")",
			IfFails: "the data is restored but not the secrets: put back gitlab-secrets.json and gitlab.rb from the configuration archive by hand, then reconfigure, restart and check"},
		{Title: "reconfigure", Prog: GitLabCtl, Args: []string{"reconfigure"}, IfFails: restored},
		{Title: "restart", Prog: GitLabCtl, Args: []string{"restart"}, IfFails: restored},
		{Title: "check", Prog: GitLabRake, Args: []string{"gitlab:check", "SANITIZE=true"}, IfFails: "GitLab runs on the restored data but gitlab:check found problems: read its output above"},
		{Title: "check that the secrets decrypt the database", Prog: GitLabRake, Args: []string{"gitlab:doctor:secrets"}, IfFails: "some encrypted values do not decrypt with the restored gitlab-secrets.json: read the output above"},
	}
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	ID     string // backup ID (with or without _gitlab_backup.tar); required
	DryRun bool   // check the pair and print the steps; change nothing
	Out    io.Writer
	Exec   Command // nil: run the root's Omnibus programs
}

// Restore restores backup opts.ID onto this host. Before it changes anything it checks, and
// refuses with the reason: the backup ID exists in S3, its configuration archive is there and
// belongs to the same run with the secrets a restore needs, the application archive downloads
// completely, is a GitLab backup and was made by the installed GitLab version. Then it runs
// RestoreSteps, printing each; the error names the step that failed and what to do.
func (r *Runner) Restore(ctx context.Context, opts RestoreOptions) error {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	id := strings.TrimSuffix(opts.ID, archiveSuffix)
	if id == "" {
		return errors.New("--from BACKUP_ID is required: pick one from 'glbootstrap backup status' (e.g. 1796090405_2026_12_01_18.5.1-ee)")
	}
	installed, err := Installed(r.Host)
	if err != nil {
		return err
	}
	p, err := r.FindPair(ctx, id)
	if err != nil {
		return err
	}
	if p.ConfigKey == "" {
		return fmt.Errorf("refusing to restore: %w", noConfigError(p))
	}
	// The version in the archive's name first: a mismatch needs no download.
	if v := id[strings.LastIndex(id, "_")+1:]; !sameVersion(v, installed) {
		return fmt.Errorf("refusing to restore: %w", VersionError{Backup: v, Installed: installed})
	}
	fmt.Fprintf(out, "backup %s, GitLab %s installed\n", id, installed)
	cfg, err := r.checkConfigObject(ctx, p)
	if err != nil {
		return fmt.Errorf("refusing to restore: %w", err)
	}
	fmt.Fprintf(out, "  checked s3://%s/%s: gitlab-secrets.json (%d gitlab_rails keys) and gitlab.rb of this run\n", p.ConfigBucket, p.ConfigKey, cfg.SecretsKeys)

	local := ArchiveDir + "/" + id + archiveSuffix
	steps := RestoreSteps(id)
	if opts.DryRun {
		info, err := r.checkRemoteApp(ctx, p, installed)
		if err != nil {
			return fmt.Errorf("refusing to restore: %w", err)
		}
		fmt.Fprintf(out, "  checked s3://%s/%s: GitLab %s, created %s, database dump and %d repository files\n", p.AppBucket, p.AppKey, info.GitLabVersion, info.CreatedAt, info.Repositories)
		fmt.Fprintf(out, "dry run: a restore would do, in this order:\n")
		owner := "root: this host has no git user"
		if o := r.gitOwner(); o.User != "" {
			owner = "git:git"
		}
		fmt.Fprintf(out, "  0. download s3://%s/%s to %s (owner %s)\n", p.AppBucket, p.AppKey, local, owner)
		for i, s := range steps {
			fmt.Fprintf(out, "  %d. %s\n", i+1, s)
		}
		return nil
	}

	info, err := r.fetchApp(ctx, p, local, installed)
	if err != nil {
		return fmt.Errorf("refusing to restore: %w", err)
	}
	fmt.Fprintf(out, "  downloaded and checked %s: GitLab %s, created %s, database dump and %d repository files\n", local, info.GitLabVersion, info.CreatedAt, info.Repositories)

	run := opts.Exec
	if run == nil {
		run = execRoot
	}
	for i, s := range steps {
		fmt.Fprintf(out, "step %d/%d: %s\n", i+1, len(steps), s)
		if s.Prog == "" {
			err = r.putBackConfig(cfg, id)
		} else {
			var prog string
			if prog, err = r.program(s.Prog); err == nil {
				err = run(ctx, s.Env, out, prog, s.Args...)
			}
		}
		if err != nil {
			var rest []string
			for _, s := range steps[i+1:] {
				rest = append(rest, s.String())
			}
			more := ""
			if len(rest) > 0 && s.IfFails != "" && strings.Contains(s.IfFails, "remaining steps") {
				more = ": " + strings.Join(rest, "; ")
			}
			return fmt.Errorf("restore failed at step %d (%s): %v\n%s%s", i+1, s, err, s.IfFails, more)
		}
	}
	fmt.Fprintf(out, "backup %s restored\n", id)
	return nil
}

// checkRemoteApp streams the application archive from S3 through CheckApp (no local copy).
func (r *Runner) checkRemoteApp(ctx context.Context, p Pair, installed string) (AppInfo, error) {
	body, size, err := r.Store.Open(ctx, p.AppBucket, p.AppKey)
	if err != nil {
		return AppInfo{}, err
	}
	defer body.Close()
	if size < 0 {
		size = p.AppSize
	}
	return CheckApp(body, p.ID, installed, size)
}

// fetchApp puts the application archive at local, owned by git when the host has that user (as
// gitlab-backup restore needs), checked with CheckApp before it takes the name: a truncated or
// wrong archive leaves nothing behind. A local copy of the same size is checked and kept.
func (r *Runner) fetchApp(ctx context.Context, p Pair, local, installed string) (AppInfo, error) {
	var info AppInfo
	check := func(file string) error {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		info, err = CheckApp(f, p.ID, installed, p.AppSize)
		return err
	}
	owner := r.gitOwner()
	if st, err := r.Host.Stat(local); err == nil && st.Size() == p.AppSize {
		path, err := r.Host.Resolve(local)
		if err == nil && check(path) == nil {
			return info, nil
		}
	}
	body, _, err := r.Store.Open(ctx, p.AppBucket, p.AppKey)
	if err != nil {
		return info, err
	}
	defer body.Close()
	return info, r.Host.WriteAtomic(local, &download{r: body, want: p.AppSize}, 0o600, owner, check)
}

// download turns a body that ends early, or breaks, into truncated's advice.
type download struct {
	r       io.Reader
	n, want int64
}

func (d *download) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.n += int64(n)
	switch {
	case errors.Is(err, io.EOF) && d.n < d.want:
		return n, truncated(io.ErrUnexpectedEOF, d.n, d.want, "application archive")
	case err != nil && !errors.Is(err, io.EOF):
		return n, truncated(err, d.n, d.want, "application archive")
	}
	return n, err
}

// gitOwner is git:git when the host has Omnibus's git user (gitlab-backup restore runs as it),
// else the zero Owner (keep root's).
func (r *Runner) gitOwner() host.Owner {
	if b, err := r.Host.ReadFile("/etc/passwd"); err == nil && bytes.Contains(append([]byte("\n"), b...), []byte("\ngit:")) {
		return host.Owner{User: "git", Group: "git"}
	}
	return host.Owner{}
}

// putBackConfig writes gitlab-secrets.json and gitlab.rb from the configuration archive, keeping
// the current files as *.before-restore-<id>.
func (r *Runner) putBackConfig(cfg ConfigInfo, id string) error {
	for _, f := range []struct {
		path string
		data []byte
	}{{EtcGitLab + "/gitlab-secrets.json", cfg.SecretsJSON}, {EtcGitLab + "/gitlab.rb", cfg.GitLabRB}} {
		if old, err := r.Host.ReadFile(f.path); err == nil && !bytes.Equal(old, f.data) {
			if _, err := r.Host.EnsureFile(host.File{Path: f.path + ".before-restore-" + id, Data: old, Mode: 0o600}); err != nil {
				return err
			}
		}
		if _, err := r.Host.EnsureFile(host.File{Path: f.path, Data: f.data, Mode: 0o600}); err != nil {
			return err
		}
	}
	return nil
}

// program resolves an Omnibus program under the host's root and checks it is executable.
func (r *Runner) program(p string) (string, error) {
	prog, err := r.Host.Resolve(p)
	if err == nil {
		var info os.FileInfo
		if info, err = r.Host.Stat(p); err == nil && (!info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0) {
			err = fmt.Errorf("%s is not an executable file", p)
		}
	}
	if err != nil {
		return "", fmt.Errorf("Omnibus's %s is not usable under %s (%v): is GitLab Omnibus installed on this host?", p, r.Host.Root, err)
	}
	return prog, nil
}

// execRoot runs name with env added, its output to out.
func execRoot(ctx context.Context, env []string, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}
