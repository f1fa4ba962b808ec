// Package standin holds stand-ins for programs of other products that
// glbootstrap runs (Omnibus's gitlab-backup), for the tests and the demo.
// It is apart from testenv because it uses glbootstrap's own S3 client,
// whose tests use testenv.
package standin

import (
	"context"
	"crypto/rand"
	"fmt"
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
	ModeEnv   = "GLB_STANDIN_MODE"   // ok (default) | fail | noupload
	SizeEnv   = "GLB_STANDIN_SIZE"   // archive size in bytes (default 1 MiB)
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
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: gitlab-backup create [CRON=1] [DIRECTORY=d] (stand-in)")
	}
	root, mode := os.Getenv(RootEnv), os.Getenv(ModeEnv)
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
	name := fmt.Sprintf("%d_%s_%s-%s_gitlab_backup.tar", now.Unix(), now.Format("2006_01_02"), testenv.StackOmnibusVersion, testenv.StackOmnibusEdition)
	size := 1 << 20
	fmt.Sscan(os.Getenv(SizeEnv), &size)
	data := make([]byte, size)
	_, _ = rand.Read(data)
	p := filepath.Join(root, "var/opt/gitlab/backups", name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
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
	secrets := `{"gitlab_rails":{"secret_key_base":"` + k + `","db_key_base":"` + k + `","otp_key_base":"` + k + `"}}` + "\n"
	return os.WriteFile(filepath.Join(root, "etc/gitlab/gitlab-secrets.json"), []byte(secrets), 0o600)
}
