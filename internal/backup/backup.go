// Package backup is "glbootstrap backup run" and "backup status": the
// nightly GitLab backup that a restore can actually use. It runs
// "gitlab-backup create CRON=1" (Omnibus uploads the application archive to
// S3 itself, with the settings the gitlab role renders), archives /etc/gitlab
// with gitlab-secrets.json under the same timestamp and uploads it with
// server-side encryption, then checks that both objects are in S3 with the
// right sizes. Every failure names the step; only a run that passed every
// step is recorded as a success.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/host"
)

// Paths on the GitLab host (Omnibus defaults).
const (
	// Program is Omnibus's gitlab-backup (the package links /usr/bin/gitlab-backup to it).
	Program = "/opt/gitlab/bin/gitlab-backup"
	// ArchiveDir is gitlab_rails['backup_path'], where gitlab-backup writes archives.
	ArchiveDir = "/var/opt/gitlab/backups"
	// EtcGitLab holds gitlab.rb, gitlab-secrets.json, TLS and SSH host keys: not in the
	// application archive (docs.gitlab.com, "Back up GitLab", "Storing configuration files").
	EtcGitLab = "/etc/gitlab"
	// StatusFile records the last run for "backup status" (and monitoring).
	StatusFile = "/var/lib/glbootstrap/backup.json"
	// archiveSuffix ends every application archive: <timestamp>_gitlab_backup.tar.
	archiveSuffix = "_gitlab_backup.tar"
)

// MinFree is the free space (bytes) the backup directory needs at least;
// with a previous archive there, twice its size is needed (the dump files
// and the tar exist side by side while gitlab-backup packs).
const MinFree = 1 << 30

// Steps, in order; a failure names one of them.
const (
	StepDisk     = "disk-space"
	StepCreate   = "gitlab-backup"
	StepArchive  = "find-archive"
	StepConfig   = "config-archive"
	StepVerify   = "verify"
	StepRecord   = "record"
	resultOK     = "success"
	resultFailed = "failed"
)

// Store is the part of S3 a backup needs.
type Store interface {
	Upload(ctx context.Context, bucket, key string, body io.Reader, partSize int64, sse s3.SSE) (int64, error)
	Head(ctx context.Context, bucket, key string) (int64, error)
	List(ctx context.Context, bucket, prefix string) ([]s3.Object, error)
	Open(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error)
}

// Runner runs one backup.
type Runner struct {
	Host   *host.Host // files are resolved under its root
	Store  Store
	Config *config.Backup
	// Exec runs gitlab-backup with its arguments and returns its combined
	// output; nil means the host's own Omnibus program, Program under the
	// root (never one found on this machine's PATH: under --root that would
	// back up this machine's GitLab, not the tree's).
	Exec func(ctx context.Context, name string, args ...string) ([]byte, error)
	// Free returns the free bytes of the file system holding path; nil
	// means statfs(2).
	Free func(path string) (uint64, error)
	Now  func() time.Time
	Log  func(string)
}

// Record is one run, as kept in StatusFile.
type Record struct {
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Result     string    `json:"result"` // success | failed
	FailedStep string    `json:"failed_step,omitempty"`
	Error      string    `json:"error,omitempty"`
	// Timestamp is the backup's id, the prefix of both archive names (BACKUP= for a restore).
	Timestamp string `json:"timestamp,omitempty"`
	Bucket    string `json:"bucket"`
	AppKey    string `json:"app_key,omitempty"`
	AppSize   int64  `json:"app_size,omitempty"` // bytes
	// ConfigBucket holds the configuration archive (backup.secrets.bucket, else Bucket).
	ConfigBucket string `json:"config_bucket,omitempty"`
	ConfigKey    string `json:"config_key,omitempty"`
	ConfigSize   int64  `json:"config_size,omitempty"` // bytes
}

// StepError is a failed run: the step and why.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("backup failed at step %s: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Run makes one backup and records the outcome in StatusFile. The error is
// a *StepError naming the step that failed.
func (r *Runner) Run(ctx context.Context) (Record, error) {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	rec := Record{StartedAt: now().UTC(), Bucket: r.Config.Bucket}
	step, err := r.run(ctx, &rec)
	rec.FinishedAt = now().UTC()
	if err != nil {
		rec.Result, rec.FailedStep, rec.Error = resultFailed, step, err.Error()
	} else {
		rec.Result = resultOK
	}
	if werr := r.writeRecord(rec); werr != nil && err == nil {
		step, err = StepRecord, werr
	}
	if err != nil {
		return rec, &StepError{Step: step, Err: err}
	}
	return rec, nil
}

func (r *Runner) log(format string, args ...any) {
	if r.Log != nil {
		r.Log(fmt.Sprintf(format, args...))
	}
}

func (r *Runner) run(ctx context.Context, rec *Record) (string, error) {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	before, err := r.archives()
	if err != nil {
		return StepDisk, err
	}
	if err := r.checkDisk(before); err != nil {
		return StepDisk, err
	}
	if !r.Host.Exists(EtcGitLab + "/gitlab-secrets.json") {
		return StepDisk, fmt.Errorf("%s/gitlab-secrets.json is missing: a restore without it loses CI/CD variables, 2FA and runner tokens; run gitlab-ctl reconfigure (it creates the file) before backing up", EtcGitLab)
	}

	prefix := r.Config.PrefixOrDefault()
	args := []string{"create", "CRON=1"}
	if dir := strings.TrimSuffix(prefix, "/"); dir != "" {
		// DIRECTORY is the key prefix of the upload (lib/backup/manager.rb remote_target).
		args = append(args, "DIRECTORY="+dir)
	}
	r.log("running gitlab-backup %s", strings.Join(args, " "))
	run, name := r.Exec, "gitlab-backup"
	if run == nil {
		prog, err := r.Host.Resolve(Program)
		if err == nil {
			var info os.FileInfo
			if info, err = r.Host.Stat(Program); err == nil && (!info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0) {
				err = fmt.Errorf("%s is not an executable file", Program)
			}
		}
		if err != nil {
			return StepCreate, fmt.Errorf("Omnibus's gitlab-backup is not usable under %s (%v): is GitLab Omnibus installed on this host?", r.Host.Root, err)
		}
		run, name = execPath, prog
	}
	if out, err := run(ctx, name, args...); err != nil {
		return StepCreate, fmt.Errorf("gitlab-backup %s: %w\n%s", strings.Join(args, " "), err, lastLines(out, 20))
	}

	after, err := r.archives()
	if err != nil {
		return StepArchive, err
	}
	name, size := newest(after, before)
	if name == "" {
		return StepArchive, fmt.Errorf("gitlab-backup exited 0 but wrote no new *%s in %s: check gitlab_rails['backup_path'] and the output of gitlab-backup create", archiveSuffix, ArchiveDir)
	}
	rec.Timestamp = strings.TrimSuffix(name, archiveSuffix)
	rec.AppKey, rec.AppSize = prefix+name, size

	// The application archive must be in S3 before the config archive joins
	// it: a failed run never leaves a config archive without its pair.
	if err := r.verify(ctx, rec.AppKey, rec.AppSize, "application archive (uploaded by gitlab-backup: check backup_upload_connection in gitlab.rb and the instance profile's s3:PutObject)"); err != nil {
		return StepVerify, err
	}

	// The configuration archive goes to its own location (backup.secrets) under the same
	// backup ID, so a restore can pair the two.
	cfgBucket, cfgPrefix, cfgKMS := r.Config.SecretsLocation()
	rec.ConfigBucket, rec.ConfigKey = cfgBucket, ConfigKey(cfgPrefix, rec.Timestamp)
	r.log("uploading %s to s3://%s/%s", EtcGitLab, cfgBucket, rec.ConfigKey)
	n, err := r.uploadConfig(ctx, cfgBucket, rec.ConfigKey, cfgKMS, rec.Timestamp, now().UTC())
	if err != nil {
		return StepConfig, err
	}
	rec.ConfigSize = n
	if err := r.verifyIn(ctx, cfgBucket, rec.ConfigKey, rec.ConfigSize, "configuration archive"); err != nil {
		return StepVerify, err
	}
	for _, p := range r.prune(now(), name) {
		r.log("removed %s/%s: older than backup.keep_local (%s)", ArchiveDir, p, time.Duration(r.Config.KeepLocal))
	}
	return "", nil
}

// ConfigKey is the key of the configuration archive of backup id under prefix.
func ConfigKey(prefix, id string) string { return prefix + id + configSuffix }

// configSuffix ends every configuration archive: <backup id>_gitlab_config.tar.gz.
const configSuffix = "_gitlab_config.tar.gz"

// prune removes the application archives in ArchiveDir (and downloads a restore left behind)
// whose modification time is older than backup.keep_local, whatever GitLab version made them
// (Omnibus's backup_keep_time skips archives of another version, so after an upgrade they pile
// up), except keep. It returns the names removed; a file it cannot remove is logged and kept.
func (r *Runner) prune(now time.Time, keep string) []string {
	keepFor := time.Duration(r.Config.KeepLocal)
	if keepFor <= 0 {
		return nil
	}
	ents, err := r.Host.ReadDir(ArchiveDir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		n := e.Name()
		if n == keep || !e.Type().IsRegular() || !strings.HasSuffix(n, archiveSuffix) {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) <= keepFor {
			continue
		}
		if _, err := r.Host.EnsureAbsent(ArchiveDir+"/"+n, "older than backup.keep_local"); err != nil {
			r.log("could not remove %s/%s: %v", ArchiveDir, n, err)
			continue
		}
		removed = append(removed, n)
	}
	return removed
}

// verify checks that s3://bucket/key exists with size bytes (HeadObject).
func (r *Runner) verify(ctx context.Context, key string, size int64, what string) error {
	return r.verifyIn(ctx, r.Config.Bucket, key, size, what)
}

func (r *Runner) verifyIn(ctx context.Context, bucket, key string, size int64, what string) error {
	got, err := r.Store.Head(ctx, bucket, key)
	if err != nil {
		return fmt.Errorf("the %s is not in S3: %w", what, err)
	}
	if got != size {
		return fmt.Errorf("s3://%s/%s is %d bytes, the local copy %d: the %s is incomplete", bucket, key, got, size, what)
	}
	return nil
}

// archives lists the application archives in ArchiveDir with their sizes.
func (r *Runner) archives() (map[string]int64, error) {
	ents, err := r.Host.ReadDir(ArchiveDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: is GitLab installed and configured (gitlab-ctl reconfigure)?", ArchiveDir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ArchiveDir, err)
	}
	out := map[string]int64{}
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), archiveSuffix) {
			continue
		}
		if info, err := e.Info(); err == nil {
			out[e.Name()] = info.Size()
		}
	}
	return out, nil
}

// newest returns the archive in after that is not in before (the newest by
// name, which starts with the Unix time), and its size.
func newest(after, before map[string]int64) (string, int64) {
	var names []string
	for n := range after {
		if _, old := before[n]; !old {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", 0
	}
	sort.Strings(names)
	n := names[len(names)-1]
	return n, after[n]
}

func (r *Runner) checkDisk(existing map[string]int64) error {
	need := uint64(MinFree)
	for _, size := range existing {
		if uint64(2*size) > need {
			need = uint64(2 * size)
		}
	}
	free := r.Free
	if free == nil {
		free = statfsFree
	}
	dir, err := r.Host.Resolve(ArchiveDir)
	if err != nil {
		return err
	}
	have, err := free(dir)
	if err != nil {
		return fmt.Errorf("checking free space on %s: %w", ArchiveDir, err)
	}
	if have < need {
		return fmt.Errorf("%s has %s free, a backup needs at least %s (twice the largest archive there, at least 1 GiB): grow the volume or lower backup.keep_local so old archives are pruned", ArchiveDir, human(have), human(need))
	}
	return nil
}

// uploadConfig streams a gzipped tar of /etc/gitlab into S3 (no temp file)
// and returns the bytes uploaded. The archive starts with ManifestName, which
// names the backup ID it belongs to.
func (r *Runner) uploadConfig(ctx context.Context, bucket, key, kms, id string, now time.Time) (int64, error) {
	etc, closer, err := r.Host.FS(EtcGitLab)
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	manifest, err := json.Marshal(configManifest{BackupID: id, CreatedAt: now})
	if err != nil {
		return 0, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, etc, path.Base(EtcGitLab), manifest, now)) }()
	n, err := r.Store.Upload(ctx, bucket, key, pr, int64(r.Config.ChunkSize), s3.SSE{KMSKeyID: kms})
	pr.CloseWithError(err) // stops the writer if the upload gave up first
	return n, err
}

// ManifestName is the first entry of a configuration archive: JSON naming the backup ID the
// archive was made with (configManifest), so a restore can tell an archive renamed or copied
// from another run.
const ManifestName = "glbootstrap-backup.json"

type configManifest struct {
	BackupID  string    `json:"backup_id"`
	CreatedAt time.Time `json:"created_at"`
}

// writeTar writes the tree dir (named name under etc/) as a gzipped tar with paths relative
// to / (etc/gitlab/...): regular files, directories and symlinks (not followed), modes and
// owners kept.
func writeTar(w io.Writer, dir fs.FS, name string, manifest []byte, now time.Time) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: ManifestName, Mode: 0o600, Size: int64(len(manifest)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(manifest); err != nil {
		return err
	}
	err := fs.WalkDir(dir, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("archiving %s: %w", path.Join("/etc", name, p), err)
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("archiving %s: %w", path.Join("/etc", name, p), err)
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = fs.ReadLink(dir, p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = path.Join("etc", name, p)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := dir.Open(p)
		if err != nil {
			return fmt.Errorf("archiving %s: %w", path.Join("/etc", name, p), err)
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, hdr.Size)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func (r *Runner) writeRecord(rec Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	_, err = r.Host.EnsureFile(host.File{Path: StatusFile, Data: append(b, '\n'), Mode: 0o644})
	return err
}

// ReadRecord returns the last run recorded under h's root; ok is false when
// no backup has run yet.
func ReadRecord(h *host.Host) (rec Record, ok bool, err error) {
	b, err := h.ReadFile(StatusFile)
	if host.IsNotExist(err) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, false, fmt.Errorf("reading %s: %w", StatusFile, err)
	}
	return rec, true, nil
}

// execPath runs name from PATH and returns its combined output.
func execPath(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

func statfsFree(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func human(b uint64) string {
	const gib = 1 << 30
	if b >= gib {
		return fmt.Sprintf("%.1f GiB", float64(b)/gib)
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
