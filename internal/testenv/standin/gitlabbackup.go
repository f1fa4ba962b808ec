// Package standin holds stand-ins for programs of other products that
// glbootstrap runs (Omnibus's gitlab-backup), for the tests and the demo.
// It is apart from testenv because it uses glbootstrap's own S3 client,
// whose tests use testenv.
package standin

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	"github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// Environment of the gitlab-backup stand-in.
const (
	RootEnv   = "GLB_STANDIN_ROOT"   // the GitLab root the archive goes under
	BucketEnv = "GLB_STANDIN_BUCKET" // where Omnibus would upload it
	ModeEnv   = "GLB_STANDIN_MODE"   // ok (default) | fail | noupload | noinfo (an archive without backup_information.yml)
	// CallsEnv names a file each Omnibus stand-in (gitlab-backup, gitlab-ctl, gitlab-rake)
	// appends its command line to, so a test sees the exact order of a restore.
	CallsEnv = testenv.OmnibusCallsEnv
	SizeEnv  = "GLB_STANDIN_SIZE" // archive size in bytes (default 1 MiB)
	// HoldEnv names a file: the stand-in creates FILE.started, then waits (up to a minute)
	// until FILE exists before it dumps anything, so a test can act while a backup runs.
	HoldEnv = "GLB_STANDIN_HOLD"
)

// GitLabBackup behaves like Omnibus's "gitlab-backup create CRON=1
// [DIRECTORY=d]" with backup_upload_connection set: it writes
// <unix>_<date>_18.5.1-ee_gitlab_backup.tar into /var/opt/gitlab/backups
// under $GLB_STANDIN_ROOT and uploads it to s3://$GLB_STANDIN_BUCKET/d/NAME
// through the AWS SDK (endpoints from the standard variables), like fog
// does. Mode fail exits with pg_dump's complaint; noupload is an Omnibus
// without upload settings.
func GitLabBackup(ctx context.Context, args []string) error {
	root, mode := os.Getenv(RootEnv), os.Getenv(ModeEnv)
	if err := recordCall(append([]string{"gitlab-backup"}, args...)); err != nil {
		return err
	}
	if len(args) > 0 && args[0] == "restore" {
		return gitLabRestore(root, args[1:])
	}
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: gitlab-backup create|restore [CRON=1] [DIRECTORY=d] [BACKUP=id] (stand-in)")
	}
	if hold := os.Getenv(HoldEnv); hold != "" {
		if err := os.WriteFile(hold+".started", nil, 0o644); err != nil {
			return err
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(hold); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("stand-in: %s never appeared", hold)
			}
		}
	}
	if mode == "fail" {
		fmt.Println("2026-11-30 02:00:01 UTC -- Dumping database ...")
		return fmt.Errorf("pg_dump: error: connection to server on socket \"/var/opt/gitlab/postgresql/.s.PGSQL.5432\" failed: No such file or directory")
	}
	dir := ""
	for _, a := range args[1:] {
		if v, ok := strings.CutPrefix(a, "DIRECTORY="); ok {
			dir = v + "/"
		}
	}
	now := time.Now().UTC()
	version, err := installedVersion(root)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%d_%s_%s_gitlab_backup.tar", now.Unix(), now.Format("2006_01_02"), version)
	size := 1 << 20
	fmt.Sscan(os.Getenv(SizeEnv), &size)
	p := filepath.Join(root, "var/opt/gitlab/backups", name)
	if err := writeBackupTar(p, version, now, size, mode != "noinfo"); err != nil {
		return err
	}
	fmt.Printf("2026-11-30 02:00:05 UTC -- Creating backup archive: %s ... done\n", name)
	if mode == "noupload" {
		return nil
	}
	// fog uploads to the region in backup_upload_connection: the stack's.
	cfg, err := awscfg.Load(ctx, "us-east-2")
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := s3.New(cfg).Upload(ctx, os.Getenv(BucketEnv), dir+name, f, config.MinChunkSize, s3.SSE{}); err != nil {
		return err
	}
	fmt.Printf("2026-11-30 02:00:06 UTC -- Uploading backup archive to remote storage %s ... done\n", os.Getenv(BucketEnv))
	return nil
}

// installedVersion is the version GitLab writes into a backup ("18.5.1-ee"), from the root's
// Omnibus version manifest.
func installedVersion(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "opt/gitlab/version-manifest.txt"))
	if err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pkg, v, _ := strings.Cut(first, " ")
	return strings.TrimSpace(v) + "-" + strings.TrimPrefix(pkg, "gitlab-"), nil
}

// writeBackupTar writes a GitLab backup archive as gitlab-backup lays it out (docs.gitlab.com,
// "Backup archive process": backup_information.yml, db/database.sql.gz, repositories/ with a
// bundle per repository, and a .tar.gz per file-based component): one repository bundle of size
// random bytes; info false leaves out backup_information.yml.
func writeBackupTar(p, version string, now time.Time, size int, info bool) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) error {
		hdr := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: now, Typeflag: tar.TypeReg, Uname: "git", Gname: "git"}
		if strings.HasSuffix(name, "/") {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o700, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	gz := func(data []byte) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write(data)
		_ = zw.Close()
		return b.Bytes()
	}
	emptyTar := func() []byte {
		var b bytes.Buffer
		_ = tar.NewWriter(&b).Close()
		return gz(b.Bytes())
	}
	bundle := make([]byte, size)
	_, _ = rand.Read(bundle)
	entries := []struct {
		name string
		data []byte
	}{
		{"backup_information.yml", []byte(fmt.Sprintf("---\n:db_version: '20251020093000'\n:backup_created_at: %s\n:gitlab_version: %s\n:tar_version: tar (GNU tar) 1.35\n:installation_type: gitlab-omnibus\n:skipped: ''\n:repositories_server_side: false\n",
			now.Format("2006-01-02 15:04:05.000000000 -07:00"), version))},
		{"db/", nil},
		{"db/database.sql.gz", gz([]byte("--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\nCREATE TABLE public.projects (id bigint NOT NULL, name character varying);\nCOPY public.projects (id, name) FROM stdin;\n1\tdemo\n\\.\n"))},
		{"repositories/", nil},
		{"repositories/default/", nil},
		{"repositories/default/@hashed/6b/86/6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b/", nil},
		{"repositories/default/@hashed/6b/86/6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b/001.bundle", bundle},
		{"repositories/manifests/default/@hashed/6b/86/6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b/+latest.toml", []byte("[[steps]]\nbundle_path = '001.bundle'\n")},
	}
	for _, c := range []string{"uploads", "builds", "artifacts", "pages", "lfs", "terraform_state", "registry", "packages", "ci_secure_files"} {
		entries = append(entries, struct {
			name string
			data []byte
		}{c + ".tar.gz", emptyTar()})
	}
	for _, e := range entries {
		if e.name == "backup_information.yml" && !info {
			continue
		}
		if err := add(e.name, e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// gitLabRestore behaves like "gitlab-backup restore BACKUP=id" of Omnibus: without
// GITLAB_ASSUME_YES=1 it would prompt (and, with no terminal, abort); it needs
// <id>_gitlab_backup.tar in the backup directory and refuses a backup of another GitLab
// version with GitLab's own message.
func gitLabRestore(root string, args []string) error {
	id := ""
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "BACKUP="); ok {
			id = v
		}
	}
	if id == "" {
		return fmt.Errorf("stand-in: gitlab-backup restore without BACKUP= (GitLab would pick the only archive, or ask)")
	}
	fmt.Println("2026-12-01 03:00:00 UTC -- Unpacking backup ...")
	p := filepath.Join(root, "var/opt/gitlab/backups", id+"_gitlab_backup.tar")
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("The backup file %s does not exist!", filepath.Base(p))
	}
	defer f.Close()
	installed, err := installedVersion(root)
	if err != nil {
		return err
	}
	tr := tar.NewReader(f)
	backupVersion := ""
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Name == "backup_information.yml" {
			b, _ := io.ReadAll(tr)
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, ":gitlab_version: "); ok {
					backupVersion = v
				}
			}
		}
	}
	if backupVersion != installed {
		return fmt.Errorf("GitLab version mismatch:\n  Your current GitLab version (%s) differs from the GitLab version in the backup!\n  Please switch to the following version and try again:\n  version: %s", installed, backupVersion)
	}
	if os.Getenv("GITLAB_ASSUME_YES") != "1" {
		fmt.Println("Be sure to stop Puma, Sidekiq, and any other process that\nconnects to the database before proceeding. For Omnibus\ninstalls, see the following link for more information:\nhttps://docs.gitlab.com/ee/raketasks/backup_restore.html#restore-for-omnibus-gitlab-installations\n\nBefore restoring the database, we will remove all existing\ntables to avoid future upgrade problems. Be aware that if you have\ncustom tables in the GitLab database these tables and all data will be\nremoved.\n\nDo you want to continue (yes/no)?")
		return fmt.Errorf("Quitting...")
	}
	fmt.Println("2026-12-01 03:00:01 UTC -- Restoring database ... done")
	fmt.Println("2026-12-01 03:00:02 UTC -- Restoring repositories ... done")
	fmt.Println("2026-12-01 03:00:03 UTC -- Restore task is done.")
	return nil
}

// recordCall appends argv to the file $GLB_STANDIN_CALLS names (when set).
func recordCall(argv []string) error {
	p := os.Getenv(CallsEnv)
	if p == "" {
		return nil
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	line := strings.Join(argv, " ")
	if os.Getenv("GITLAB_ASSUME_YES") != "" {
		line = "GITLAB_ASSUME_YES=" + os.Getenv("GITLAB_ASSUME_YES") + " " + line
	}
	_, err = fmt.Fprintln(f, line)
	return err
}

// WriteGitLabBackup writes an executable "gitlab-backup" into dir (a root's
// /opt/gitlab/bin, where Omnibus installs it and glbootstrap runs it from)
// that runs exe with exeArgs and then its own arguments.
func WriteGitLabBackup(dir, exe string, exeArgs ...string) error {
	quoted := []string{shellQuote(exe)}
	for _, a := range exeArgs {
		quoted = append(quoted, shellQuote(a))
	}
	script := "#!/bin/sh\n# Stand-in for Omnibus's gitlab-backup (glbootstrap tests and demo).\nexec " + strings.Join(quoted, " ") + " \"$@\"\n"
	return os.WriteFile(filepath.Join(dir, "gitlab-backup"), []byte(script), 0o755)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// SimulateReconfigure lays out what the first gitlab-ctl reconfigure leaves
// on a GitLab host and a backup needs: gitlab-secrets.json and the backup
// directory. (Under --root, reconfigure is only a reported action.)
func SimulateReconfigure(root string) error {
	if err := os.MkdirAll(filepath.Join(root, "var/opt/gitlab/backups"), 0o700); err != nil {
		return err
	}
	k := testenv.GitLabSecretsJSONKey
	// The gitlab_rails keys Omnibus's SecretsHelper generates (others: gitlab_shell, registry, ...).
	secrets := `{"gitlab_rails":{"secret_key_base":"` + k + `","db_key_base":"` + k + `","otp_key_base":"` + k +
		`","encrypted_settings_key_base":"` + k + `","openid_connect_signing_key":"-----BEGIN RSA PRIVATE KEY-----\n` + k + `\n-----END RSA PRIVATE KEY-----\n"` +
		`,"active_record_encryption_primary_key":["` + k + `"],"active_record_encryption_deterministic_key":["` + k + `"],"active_record_encryption_key_derivation_salt":"` + k + `"}` +
		`,"gitlab_shell":{"secret_token":"` + k + `"}}` + "\n"
	return os.WriteFile(filepath.Join(root, "etc/gitlab/gitlab-secrets.json"), []byte(secrets), 0o600)
}
