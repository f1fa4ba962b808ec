package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// VersionManifest is written by the Omnibus package; its first line is "gitlab-ee 18.5.1".
const VersionManifest = "/opt/gitlab/version-manifest.txt"

// Installed returns the GitLab version the host runs, as GitLab writes it into a backup
// (Gitlab::VERSION of an Omnibus package: "18.5.1-ee"), from VersionManifest under h's root.
func Installed(h *host.Host) (string, error) {
	b, err := h.ReadFile(VersionManifest)
	if err != nil {
		return "", fmt.Errorf("GitLab Omnibus is not installed or unreadable (%s: %v): install the GitLab version the backup was made with first", VersionManifest, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pkg, version, ok := strings.Cut(strings.TrimSpace(first), " ")
	edition, isGitLab := strings.CutPrefix(pkg, "gitlab-")
	if !ok || !isGitLab || version == "" {
		return "", fmt.Errorf("%s starts with %q, not \"gitlab-ee|ce VERSION\": reinstall the Omnibus package", VersionManifest, first)
	}
	return version + "-" + edition, nil
}

// sameVersion reports whether a backup's gitlab_version is the installed one ("18.5.1-ee");
// a CE build may write its version without the "-ce" suffix.
func sameVersion(backup, installed string) bool {
	return backup == installed || strings.TrimSuffix(installed, "-ce") == backup
}

// RequiredSecrets are the gitlab_rails keys of gitlab-secrets.json a restore needs: without
// them the encrypted columns (CI/CD variables, 2FA, runner tokens), sessions and ID tokens of the
// restored database cannot be read (docs.gitlab.com, "Restore GitLab" > "GitLab secrets must be
// restored"; the key names are those Omnibus's SecretsHelper generates, as listed for the Rails
// secret in the GitLab chart's "Secrets" page).
var RequiredSecrets = []string{
	"secret_key_base", "db_key_base", "otp_key_base", "encrypted_settings_key_base",
	"openid_connect_signing_key",
	"active_record_encryption_primary_key", "active_record_encryption_deterministic_key",
	"active_record_encryption_key_derivation_salt",
}

// Pair is one backup in S3: the application archive and its configuration archive.
type Pair struct {
	ID                  string // backup ID: <unix>_<YYYY_MM_DD>_<version>
	AppBucket, AppKey   string
	AppSize             int64
	ConfigBucket        string
	ConfigKey           string // "" when the configuration archive is missing
	ConfigSize          int64
	NewestConfigID      string // the newest configuration archive there, when ConfigKey is ""
	ConfigLocation      string // s3://bucket/prefix of configuration archives
	ApplicationLocation string // s3://bucket/prefix of application archives
}

// FindPair returns backup id ("" = the newest application archive) and its configuration
// archive. A missing application archive is an error; a missing configuration archive leaves
// ConfigKey "" (the callers refuse it with their own advice).
func (r *Runner) FindPair(ctx context.Context, id string) (Pair, error) {
	prefix := r.Config.PrefixOrDefault()
	cfgBucket, cfgPrefix, _ := r.Config.SecretsLocation()
	p := Pair{AppBucket: r.Config.Bucket, ConfigBucket: cfgBucket,
		ApplicationLocation: "s3://" + r.Config.Bucket + "/" + prefix, ConfigLocation: "s3://" + cfgBucket + "/" + cfgPrefix}
	apps, err := r.ids(ctx, r.Config.Bucket, prefix, archiveSuffix)
	if err != nil {
		return p, err
	}
	id = strings.TrimSuffix(id, archiveSuffix)
	switch {
	case id == "" && len(apps) == 0:
		return p, fmt.Errorf("no application archive (*%s) in %s: has a backup run yet? (glbootstrap backup status)", archiveSuffix, p.ApplicationLocation)
	case id == "":
		id = apps[len(apps)-1].id
	}
	for _, a := range apps {
		if a.id == id {
			p.ID, p.AppKey, p.AppSize = id, a.key, a.size
		}
	}
	if p.AppKey == "" {
		newest := "none"
		if len(apps) > 0 {
			newest = apps[len(apps)-1].id
		}
		return p, fmt.Errorf("no application archive %s%s in %s (the newest there is %s): pick a backup ID from 'glbootstrap backup status'", id, archiveSuffix, p.ApplicationLocation, newest)
	}
	cfgs, err := r.ids(ctx, cfgBucket, cfgPrefix, configSuffix)
	if err != nil {
		return p, err
	}
	for _, c := range cfgs {
		if c.id == id {
			p.ConfigKey, p.ConfigSize = c.key, c.size
		}
	}
	if len(cfgs) > 0 {
		p.NewestConfigID = cfgs[len(cfgs)-1].id
	}
	return p, nil
}

type object struct {
	id, key string
	size    int64
}

// ids lists the archives directly under prefix whose names end with suffix, oldest first (the
// backup ID starts with the Unix time).
func (r *Runner) ids(ctx context.Context, bucket, prefix, suffix string) ([]object, error) {
	objs, err := r.Store.List(ctx, bucket, prefix)
	if err != nil {
		return nil, fmt.Errorf("listing s3://%s/%s: %w", bucket, prefix, err)
	}
	var out []object
	for _, o := range objs {
		rest := o.Key[len(prefix):]
		if strings.Contains(rest, "/") || !strings.HasSuffix(rest, suffix) {
			continue
		}
		out = append(out, object{id: strings.TrimSuffix(rest, suffix), key: o.Key, size: o.Size})
	}
	sort.Slice(out, func(i, j int) bool { return idTime(out[i].id) < idTime(out[j].id) })
	return out, nil
}

func idTime(id string) int64 {
	head, _, _ := strings.Cut(id, "_")
	n, _ := strconv.ParseInt(head, 10, 64)
	return n
}

// AppInfo is what CheckApp found in an application archive.
type AppInfo struct {
	GitLabVersion string // backup_information.yml :gitlab_version:
	CreatedAt     string // :backup_created_at:
	Skipped       string // :skipped: (SKIP= at backup time)
	DatabaseBytes int64  // db/database.sql.gz, uncompressed
	Repositories  int    // files under repositories/
	Entries       int
	Bytes         int64 // the archive's size as read
}

// CheckApp reads a whole application archive (GitLab's backup tar: backup_information.yml,
// db/database.sql.gz, repositories/, the *.tar.gz of uploads, builds, artifacts and so on;
// docs.gitlab.com, "Backup archive process") and checks what a restore needs: the metadata with
// gitlab_version equal to installed and a backup_created_at, the database dump present and a
// complete gzip stream, and the repositories directory present. id is the backup ID the archive
// is named with; it must end with the archive's gitlab_version. size is the expected length in
// bytes (-1 = unknown): fewer bytes is a truncated download.
func CheckApp(r io.Reader, id, installed string, size int64) (AppInfo, error) {
	cr := &countReader{r: r}
	tr := tar.NewReader(cr)
	var info AppInfo
	var haveInfo, haveDB, haveRepos bool
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return info, truncated(err, cr.n, size, "application archive")
		}
		info.Entries++
		name := strings.TrimPrefix(path.Clean(strings.TrimPrefix(hdr.Name, "./")), "/")
		switch {
		case name == "backup_information.yml":
			b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				return info, truncated(err, cr.n, size, "application archive")
			}
			var meta map[string]any
			if err := yaml.Unmarshal(b, &meta); err != nil {
				return info, fmt.Errorf("backup_information.yml does not parse as YAML (%v): the archive was not written by gitlab-backup", err)
			}
			info.GitLabVersion, info.CreatedAt, info.Skipped = str(meta, "gitlab_version"), str(meta, "backup_created_at"), str(meta, "skipped")
			haveInfo = true
		case name == "db/database.sql.gz":
			zr, err := gzip.NewReader(tr)
			if err == nil {
				info.DatabaseBytes, err = io.Copy(io.Discard, zr)
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) && cr.n < size {
					return info, truncated(err, cr.n, size, "application archive")
				}
				return info, fmt.Errorf("db/database.sql.gz is not a complete gzip stream (%v): the database dump cannot be restored; take a new backup (glbootstrap backup run)", err)
			}
			haveDB = true
		case name == "repositories" || strings.HasPrefix(name, "repositories/"):
			haveRepos = true
			if hdr.Typeflag == tar.TypeReg {
				info.Repositories++
			}
		}
		// tar.Reader skips (reads) the rest of every entry on Next: a short archive shows up.
	}
	info.Bytes = cr.n
	if size >= 0 && cr.n < size {
		return info, truncated(io.ErrUnexpectedEOF, cr.n, size, "application archive")
	}
	var missing []string
	if !haveInfo {
		missing = append(missing, "backup_information.yml")
	}
	if !haveDB {
		missing = append(missing, "db/database.sql.gz")
	}
	if !haveRepos {
		missing = append(missing, "repositories/")
	}
	if len(missing) > 0 {
		why := "it is not a GitLab backup archive, or a partial one"
		if info.Skipped != "" {
			why = "the backup was made with SKIP=" + info.Skipped
		}
		return info, fmt.Errorf("the application archive %s has no %s (%s): a restore needs them; take a full backup (glbootstrap backup run)", id, strings.Join(missing, ", "), why)
	}
	switch {
	case info.GitLabVersion == "":
		return info, fmt.Errorf("backup_information.yml of %s has no gitlab_version: the archive was not written by gitlab-backup", id)
	case info.CreatedAt == "":
		return info, fmt.Errorf("backup_information.yml of %s has no backup_created_at: the archive was not written by gitlab-backup", id)
	case !strings.HasSuffix(id, "_"+info.GitLabVersion):
		return info, fmt.Errorf("the archive is named %s but its backup_information.yml says GitLab %s: it was renamed or mixed up; pick another backup", id, info.GitLabVersion)
	case !sameVersion(info.GitLabVersion, installed):
		return info, VersionError{Backup: info.GitLabVersion, Installed: installed}
	}
	return info, nil
}

// VersionError is a backup made by another GitLab version than the installed one: GitLab
// restores only onto exactly the same version and edition.
type VersionError struct{ Backup, Installed string }

func (e VersionError) Error() string {
	v, ed, _ := strings.Cut(e.Backup, "-")
	if ed == "" {
		ed = "ce"
	}
	return fmt.Sprintf("the backup was made by GitLab %s but this host runs %s: GitLab restores only onto the same version and edition; install gitlab-%s %s (apt-get install gitlab-%s=%s-%s.0) and try again", e.Backup, e.Installed, ed, v, ed, v, ed)
}

func str(m map[string]any, key string) string {
	v, ok := m[":"+key]
	if !ok {
		v = m[key]
	}
	if v == nil {
		return ""
	}
	return strings.TrimSpace(fmt.Sprint(v))
}

func truncated(err error, got, want int64, what string) error {
	if want >= 0 && got < want || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("the %s ends after %d of %d bytes (%v): a truncated download or upload; run verify again, and if it persists take a new backup", what, got, want, err)
	}
	return fmt.Errorf("the %s is not a readable tar archive (%v)", what, err)
}

// ConfigInfo is what CheckConfig found in a configuration archive.
type ConfigInfo struct {
	BackupID    string // from its manifest
	SecretsKeys int    // gitlab_rails keys in gitlab-secrets.json
	SecretsJSON []byte // etc/gitlab/gitlab-secrets.json
	GitLabRB    []byte // etc/gitlab/gitlab.rb
}

// maxConfigFile bounds what CheckConfig reads of one file into memory (bytes).
const maxConfigFile = 16 << 20

// CheckConfig reads a configuration archive (the gzipped tar "backup run" uploads) and checks
// that it belongs to backup id (its manifest), and holds gitlab.rb and a gitlab-secrets.json
// that parses and has every RequiredSecrets key under gitlab_rails. size is the expected length
// (-1 = unknown).
func CheckConfig(r io.Reader, id string, size int64) (ConfigInfo, error) {
	var info ConfigInfo
	cr := &countReader{r: r}
	zr, err := gzip.NewReader(cr)
	if err != nil {
		return info, truncated(err, cr.n, size, "configuration archive")
	}
	tr := tar.NewReader(zr)
	var manifest []byte
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return info, truncated(err, cr.n, size, "configuration archive")
		}
		var dst *[]byte
		switch path.Clean(hdr.Name) {
		case ManifestName:
			dst = &manifest
		case "etc/gitlab/gitlab-secrets.json":
			dst = &info.SecretsJSON
		case "etc/gitlab/gitlab.rb":
			dst = &info.GitLabRB
		default:
			continue
		}
		if *dst, err = io.ReadAll(io.LimitReader(tr, maxConfigFile)); err != nil {
			return info, truncated(err, cr.n, size, "configuration archive")
		}
	}
	if _, err := io.Copy(io.Discard, zr); err != nil { // the gzip trailer (CRC)
		return info, truncated(err, cr.n, size, "configuration archive")
	}
	if size >= 0 && cr.n < size {
		return info, truncated(io.ErrUnexpectedEOF, cr.n, size, "configuration archive")
	}
	var m configManifest
	switch {
	case manifest == nil:
		return info, fmt.Errorf("the configuration archive for %s has no %s: it was not made by glbootstrap backup run", id, ManifestName)
	case json.Unmarshal(manifest, &m) != nil:
		return info, fmt.Errorf("%s of the configuration archive for %s does not parse", ManifestName, id)
	case m.BackupID != id:
		return info, fmt.Errorf("the configuration archive named for backup %s was made with backup %s: it belongs to another run (copied or renamed); its secrets may not decrypt this backup, so it is refused", id, m.BackupID)
	case info.SecretsJSON == nil:
		return info, fmt.Errorf("the configuration archive for %s has no etc/gitlab/gitlab-secrets.json: without it a restore loses CI/CD variables, 2FA and runner tokens", id)
	case info.GitLabRB == nil:
		return info, fmt.Errorf("the configuration archive for %s has no etc/gitlab/gitlab.rb", id)
	}
	info.BackupID = m.BackupID
	var secrets struct {
		GitLabRails map[string]any `json:"gitlab_rails"`
	}
	if err := json.Unmarshal(info.SecretsJSON, &secrets); err != nil {
		// Never the content: it is all secrets.
		return info, fmt.Errorf("gitlab-secrets.json in the configuration archive for %s does not parse as JSON: the archive is damaged", id)
	}
	var missing []string
	for _, k := range RequiredSecrets {
		if v, ok := secrets.GitLabRails[k]; !ok || v == nil || v == "" {
			missing = append(missing, "gitlab_rails."+k)
		}
	}
	if len(missing) > 0 {
		return info, fmt.Errorf("gitlab-secrets.json in the configuration archive for %s lacks %s: a restore with it cannot decrypt the database; it was saved before GitLab's first reconfigure, or edited", id, strings.Join(missing, ", "))
	}
	info.SecretsKeys = len(secrets.GitLabRails)
	return info, nil
}

// Report is the outcome of Verify.
type Report struct {
	Installed string
	Pair      Pair
	App       AppInfo
	Config    ConfigInfo
}

// Verify downloads backup id ("" = the newest) and its configuration archive from S3 and checks
// both (CheckApp, CheckConfig) without writing anything to the host. The report holds what was
// checked so far; the error says what is missing or wrong.
func (r *Runner) Verify(ctx context.Context, id string) (Report, error) {
	var rep Report
	var err error
	if rep.Installed, err = Installed(r.Host); err != nil {
		return rep, err
	}
	if rep.Pair, err = r.FindPair(ctx, id); err != nil {
		return rep, err
	}
	p := rep.Pair
	if p.ConfigKey == "" {
		return rep, noConfigError(p)
	}
	if rep.Config, err = r.checkConfigObject(ctx, p); err != nil {
		return rep, err
	}
	body, size, err := r.Store.Open(ctx, p.AppBucket, p.AppKey)
	if err != nil {
		return rep, err
	}
	defer body.Close()
	if size < 0 {
		size = p.AppSize
	}
	rep.App, err = CheckApp(body, p.ID, rep.Installed, size)
	return rep, err
}

func noConfigError(p Pair) error {
	newest := ""
	if p.NewestConfigID != "" {
		newest = " (the newest there is for backup " + p.NewestConfigID + ")"
	}
	return fmt.Errorf("no configuration archive %s%s in %s%s: a restore of backup %s needs the gitlab-secrets.json of the same run; pick a backup that has both (glbootstrap backup status)", p.ID, configSuffix, p.ConfigLocation, newest, p.ID)
}

func (r *Runner) checkConfigObject(ctx context.Context, p Pair) (ConfigInfo, error) {
	body, size, err := r.Store.Open(ctx, p.ConfigBucket, p.ConfigKey)
	if err != nil {
		return ConfigInfo{}, err
	}
	defer body.Close()
	if size < 0 {
		size = p.ConfigSize
	}
	return CheckConfig(body, p.ID, size)
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
