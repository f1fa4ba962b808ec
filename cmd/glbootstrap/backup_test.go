package main

// Blackbox tests of the backups (issue 4): apply --role gitlab with a backup section renders the
// Omnibus upload settings and the timer once; "backup run" against gofakes3, with this test
// binary standing in for Omnibus's gitlab-backup, leaves both archives under one timestamp; every
// injected failure exits non-zero and names the step.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/standin"
)

// standInFlag makes TestMain act as gitlab-backup.
const standInFlag = "GLB_TEST_GITLAB_BACKUP_STANDIN"

const backupSection = `backup:
  bucket: example-gitlab-backups
  prefix: gitlab/
  schedule: "*-*-* 02:00:00"
  keep_local: 7d
  chunk_size: 5MiB
`

// newBackupWorld is a converged GitLab root with a backup section, the bucket in us-east-2, and
// gitlab-backup on PATH.
func newBackupWorld(t *testing.T, extra string) (*world, result) {
	t.Helper()
	w := newGitLabWorld(t)
	w.stack.S3.CreateBucketIn(testenv.StackBackupBucket, "us-east-2")
	w.setGitLabConfig(w.stack.GitLabConfig("", backupSection+extra))
	r := w.gitlab("apply")
	w.useBackupStandIn(t)
	return w, r
}

// useBackupStandIn makes the root look reconfigured by Omnibus and installs this test binary as
// Omnibus's gitlab-backup in it (/opt/gitlab/bin/gitlab-backup).
func (w *world) useBackupStandIn(t *testing.T) {
	t.Helper()
	if err := standin.SimulateReconfigure(w.root); err != nil {
		t.Fatal(err)
	}
	// Where Omnibus installs it, in the root: glbootstrap runs the tree's own gitlab-backup.
	bin := filepath.Join(w.root, "opt/gitlab/bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := standin.WriteGitLabBackup(bin, os.Args[0]); err != nil {
		t.Fatal(err)
	}
	w.env = append(w.env, standInFlag+"=1", standin.RootEnv+"="+w.root, standin.BucketEnv+"="+testenv.StackBackupBucket)
}

func (w *world) backup(verb string, extra ...string) result {
	w.t.Helper()
	return w.run(append([]string{"backup", verb, "--config", "ssm:" + testenv.StackGitLabConfigParam, "--root", w.root}, extra...)...)
}

func TestBackupApplyRendersSettingsAndTimerOnce(t *testing.T) {
	w, first := newBackupWorld(t, "")
	if first.code != 0 {
		t.Fatalf("apply: %s", first)
	}
	for _, want := range []string{"[gitlab] backup-preflight", "[gitlab] backup-timer", "glbootstrap-backup.timer: enabled offline"} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("apply output lacks %q:\n%s", want, first)
		}
	}
	frag := w.read("etc/gitlab/glbootstrap.rb")
	for _, want := range []string{
		"gitlab_rails['backup_upload_connection'] = { 'provider' => 'AWS', 'region' => 'us-east-2', 'use_iam_profile' => true }",
		"gitlab_rails['backup_upload_remote_directory'] = 'example-gitlab-backups'",
		"gitlab_rails['backup_multipart_chunk_size'] = 5242880",
		"gitlab_rails['backup_upload_storage_options'] = { 'server_side_encryption' => 'AES256' }",
		"gitlab_rails['backup_keep_time'] = 604800",
	} {
		if !strings.Contains(frag, want) {
			t.Errorf("fragment lacks %q:\n%s", want, frag)
		}
	}
	if strings.Contains(frag, "aws_access_key_id") {
		t.Error("key lines in the fragment")
	}
	timer := w.read("etc/systemd/system/glbootstrap-backup.timer")
	if !strings.Contains(timer, "OnCalendar=*-*-* 02:00:00") || !strings.Contains(timer, "Persistent=true") {
		t.Errorf("timer:\n%s", timer)
	}
	if svc := w.read("etc/systemd/system/glbootstrap-backup.service"); !strings.Contains(svc, "backup run --config ssm:/glbootstrap/gitlab/config") {
		t.Errorf("service:\n%s", svc)
	}
	if objs := w.stack.S3.Objects(testenv.StackBackupBucket, ""); len(objs) != 0 {
		t.Errorf("the preflight left objects behind: %v", objs)
	}
	before := w.snapshot()
	for i := 0; i < 3; i++ {
		if r := w.gitlab("apply"); r.code != 0 || !strings.Contains(r.stdout, "0 changed") {
			t.Fatalf("apply again: %s", r)
		}
	}
	if w.snapshot() != before {
		t.Error("repeated applies changed the tree")
	}
	// A new schedule rewrites the one timer.
	w.setGitLabConfig(w.stack.GitLabConfig("", strings.Replace(backupSection, `"*-*-* 02:00:00"`, `"*-*-* 03:30:00"`, 1)))
	if r := w.gitlab("apply"); r.code != 0 || !strings.Contains(w.read("etc/systemd/system/glbootstrap-backup.timer"), "OnCalendar=*-*-* 03:30:00") {
		t.Fatalf("schedule change: %s", r)
	}
	ents, _ := os.ReadDir(filepath.Join(w.root, "etc/systemd/system"))
	var timers []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".timer") {
			timers = append(timers, e.Name())
		}
	}
	if strings.Join(timers, " ") != "glbootstrap-backup-verify.timer glbootstrap-backup.timer" {
		t.Errorf("timers %v, want exactly the backup and the weekly verify timer", timers)
	}
	if vt := w.read("etc/systemd/system/glbootstrap-backup-verify.timer"); !strings.Contains(vt, "OnCalendar=Sun *-*-* 06:00:00") {
		t.Errorf("verify timer:\n%s", vt)
	}
	if vs := w.read("etc/systemd/system/glbootstrap-backup-verify.service"); !strings.Contains(vs, "backup verify --config ssm:/glbootstrap/gitlab/config") {
		t.Errorf("verify service:\n%s", vs)
	}
}

func TestBackupRunUploadsBothArchivesUnderOneTimestamp(t *testing.T) {
	w, r := newBackupWorld(t, "")
	if r.code != 0 {
		t.Fatal(r)
	}
	run := w.backup("run")
	if run.code != 0 {
		t.Fatalf("backup run: %s", run)
	}
	objs := w.stack.S3.Objects(testenv.StackBackupBucket, "gitlab/")
	var app, cfg string
	for k := range objs {
		switch {
		case strings.HasPrefix(k, "gitlab/config/") && strings.HasSuffix(k, "_gitlab_config.tar.gz"):
			cfg = strings.TrimSuffix(strings.TrimPrefix(k, "gitlab/config/"), "_gitlab_config.tar.gz")
		case strings.HasSuffix(k, "_gitlab_backup.tar"):
			app = strings.TrimSuffix(strings.TrimPrefix(k, "gitlab/"), "_gitlab_backup.tar")
		}
	}
	if app == "" || app != cfg {
		t.Fatalf("want both archives under one timestamp, got app %q config %q (%v)", app, cfg, objs)
	}
	if !strings.Contains(run.stdout, "backup "+app+" done") {
		t.Errorf("stdout: %s", run)
	}
	st := w.backup("status")
	if st.code != 0 || !strings.Contains(st.stdout, "success") || !strings.Contains(st.stdout, app+"_gitlab_config.tar.gz") {
		t.Errorf("status: %s", st)
	}
}

func TestBackupRunFailuresNameTheStep(t *testing.T) {
	for _, tc := range []struct {
		name, mode, step string
		setup            func(w *world)
	}{
		{name: "gitlab-backup fails", mode: "fail", step: "gitlab-backup"},
		{name: "Omnibus did not upload", mode: "noupload", step: "verify"},
		{name: "upload fails half way", step: "config-archive", setup: func(w *world) {
			big := make([]byte, 12<<20) // a multipart upload of three 5 MiB parts
			_, _ = rand.Read(big)
			if err := os.WriteFile(filepath.Join(w.root, "etc/gitlab/big.key"), big, 0o600); err != nil {
				t.Fatal(err)
			}
			w.stack.S3.FailUploadPart(2)
			w.env = append(w.env, "AWS_MAX_ATTEMPTS=2") // the SDK's own retries, kept short
		}},
		{name: "secrets missing", step: "disk-space", setup: func(w *world) {
			os.Remove(filepath.Join(w.root, "etc/gitlab/gitlab-secrets.json"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := newBackupWorld(t, "")
			if r.code != 0 {
				t.Fatal(r)
			}
			w.env = append(w.env, standin.ModeEnv+"="+tc.mode)
			if tc.setup != nil {
				tc.setup(w)
			}
			run := w.backup("run")
			if run.code != 1 || !strings.Contains(run.stderr, "backup failed at step "+tc.step+":") {
				t.Fatalf("want exit 1 naming step %s: %s", tc.step, run)
			}
			if objs := w.stack.S3.Objects(testenv.StackBackupBucket, "gitlab/config/"); len(objs) != 0 {
				t.Errorf("a config archive is in S3 after a failed run: %v", objs)
			}
			st := w.backup("status")
			if st.code != 1 || !strings.Contains(st.stdout, "failed at step "+tc.step) || strings.Contains(st.stdout, ", success") {
				t.Errorf("status after a failed run: %s", st)
			}
		})
	}
}

func TestBackupBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		setup       func(w *world)
		code        int
		want        string
	}{
		// Only systemd can judge the expression: the backup-timer phase asks it before writing.
		{name: "invalid calendar", extra: "", code: 1, want: `backup.schedule "every night" is not a valid systemd OnCalendar expression`, setup: func(w *world) {
			w.setGitLabConfig(w.stack.GitLabConfig("", strings.Replace(backupSection, `"*-*-* 02:00:00"`, `"every night"`, 1)))
		}},
		{name: "chunk below S3's minimum part size", code: 3, want: "below S3's minimum part size of 5 MiB", setup: func(w *world) {
			w.setGitLabConfig(w.stack.GitLabConfig("", strings.Replace(backupSection, "5MiB", "1MiB", 1)))
		}},
		{name: "bucket in another region", code: 1, want: "is in eu-west-1, not us-east-2: set backup.region: eu-west-1", setup: func(w *world) {
			w.stack.S3.CreateBucketIn("eu-backups", "eu-west-1")
			w.setGitLabConfig(w.stack.GitLabConfig("", strings.Replace(backupSection, "example-gitlab-backups", "eu-backups", 1)))
		}},
		{name: "KMS key the profile cannot use", code: 1, want: "kms:GenerateDataKey", setup: func(w *world) {
			w.stack.S3.DenyKMSKey("alias/not-ours")
			w.setGitLabConfig(w.stack.GitLabConfig("", backupSection+"  kms_key_id: alias/not-ours\n"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := newBackupWorld(t, "")
			if r.code != 0 {
				t.Fatal(r)
			}
			tc.setup(w)
			before := w.snapshot()
			r = w.gitlab("apply")
			if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Fatalf("want exit %d with %q: %s", tc.code, tc.want, r)
			}
			if w.snapshot() != before {
				t.Error("a refused backup configuration changed the host")
			}
		})
	}
}

// TestBackupRunTakesTheLock: while a backup runs (the gitlab-backup stand-in holds), a second
// backup and an apply exit 4 naming the running backup's PID, and change nothing; once it is
// done, apply runs.
func TestBackupRunTakesTheLock(t *testing.T) {
	w, r := newBackupWorld(t, "")
	if r.code != 0 {
		t.Fatal(r)
	}
	hold := filepath.Join(t.TempDir(), "release")
	w.env = append(w.env, standin.HoldEnv+"="+hold)
	first := make(chan result, 1)
	go func() { first <- w.backup("run") }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(hold + ".started"); err == nil {
			break
		}
		select {
		case r := <-first:
			t.Fatalf("the first backup ended before gitlab-backup ran: %s", r)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the first backup never ran gitlab-backup")
		}
	}
	// The holder's PID, as the lock file records it, is the running "glbootstrap backup run".
	b, err := os.ReadFile(filepath.Join(w.root, "run/glbootstrap.lock"))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	if cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline"); err != nil || !strings.Contains(string(cmdline), "backup\x00run") {
		t.Fatalf("lock file names PID %q, which is not the running backup (%q, %v)", pid, cmdline, err)
	}

	before := w.snapshot()
	objs := len(w.stack.S3.Objects(testenv.StackBackupBucket, ""))
	second := w.backup("run")
	if second.code != 4 || !strings.Contains(second.stderr, "another glbootstrap run holds the lock") || !strings.Contains(second.stderr, "process "+pid) {
		t.Errorf("a second backup during the first: want exit 4 naming process %s\n%s", pid, second)
	}
	apply := w.gitlab("apply")
	if apply.code != 4 || !strings.Contains(apply.stderr, "process "+pid) {
		t.Errorf("an apply during the backup: want exit 4 naming process %s\n%s", pid, apply)
	}
	w.sameTree(before)
	if n := len(w.stack.S3.Objects(testenv.StackBackupBucket, "")); n != objs {
		t.Errorf("the locked-out runs wrote to S3 (%d objects, was %d)", n, objs)
	}

	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := <-first; r.code != 0 {
		t.Fatalf("the first backup: %s", r)
	}
	if r := w.gitlab("apply"); r.code != 0 {
		t.Errorf("an apply after the backup, which released the lock: %s", r)
	}
}

// TestBackupRunsTheRootsOwnGitLabBackup: under --root, backup run never runs a gitlab-backup
// found on this machine's PATH (it would back up this machine's GitLab); without Omnibus's
// program in the root it fails and says so.
func TestBackupRunsTheRootsOwnGitLabBackup(t *testing.T) {
	w, r := newBackupWorld(t, "")
	if r.code != 0 {
		t.Fatal(r)
	}
	if err := os.Remove(filepath.Join(w.root, "opt/gitlab/bin/gitlab-backup")); err != nil {
		t.Fatal(err)
	}
	onPath := t.TempDir()
	marker := filepath.Join(t.TempDir(), "ran")
	if err := os.WriteFile(filepath.Join(onPath, "gitlab-backup"), []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, kv := range w.env {
		if strings.HasPrefix(kv, "PATH=") {
			w.env[i] = "PATH=" + onPath + ":" + strings.TrimPrefix(kv, "PATH=")
		}
	}
	r = w.backup("run")
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "Omnibus's gitlab-backup is not usable under "+w.root) {
		t.Fatalf("backup run without Omnibus in the root: %s", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("backup run ran the gitlab-backup on this machine's PATH")
	}
}

// secretsSection keeps the configuration archive in a bucket of its own.
const secretsSection = `  secrets:
    bucket: example-gitlab-secrets
    prefix: gitlab-config/
`

// newRoundTripWorld is a backup world with backup.secrets in its own bucket, the Omnibus
// stand-ins recording their calls, and one backup made; it returns the backup ID.
func newRoundTripWorld(t *testing.T, mode string) (*world, string) {
	t.Helper()
	w := newGitLabWorld(t)
	w.stack.S3.CreateBucketIn(testenv.StackBackupBucket, "us-east-2")
	w.stack.S3.CreateBucketIn("example-gitlab-secrets", "us-east-2")
	w.setGitLabConfig(w.stack.GitLabConfig("", backupSection+secretsSection))
	if r := w.gitlab("apply"); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	w.useBackupStandIn(t)
	w.env = append(w.env, standin.CallsEnv+"="+filepath.Join(t.TempDir(), "omnibus.calls"))
	if mode != "" {
		w.env = append(w.env, standin.ModeEnv+"="+mode)
	}
	run := w.backup("run")
	if run.code != 0 {
		t.Fatalf("backup run: %s", run)
	}
	var id string
	for k := range w.stack.S3.Objects("example-gitlab-secrets", "gitlab-config/") {
		id = strings.TrimSuffix(strings.TrimPrefix(k, "gitlab-config/"), "_gitlab_config.tar.gz")
	}
	if _, ok := w.stack.S3.Objects(testenv.StackBackupBucket, "gitlab/")["gitlab/"+id+"_gitlab_backup.tar"]; id == "" || !ok {
		t.Fatalf("want the pair under one ID in the two buckets: %v %v", w.stack.S3.Objects(testenv.StackBackupBucket, ""), w.stack.S3.Objects("example-gitlab-secrets", ""))
	}
	if objs := w.stack.S3.Objects(testenv.StackBackupBucket, "gitlab/config/"); len(objs) != 0 {
		t.Errorf("a configuration archive in the application bucket: %v", objs)
	}
	// The restore host: the archive only in S3 (a new instance), its own fresh secrets.
	os.RemoveAll(filepath.Join(w.root, "var/opt/gitlab/backups"))
	os.MkdirAll(filepath.Join(w.root, "var/opt/gitlab/backups"), 0o700)
	os.Remove(w.calls())
	return w, id
}

func (w *world) calls() string {
	for _, e := range w.env {
		if v, ok := strings.CutPrefix(e, standin.CallsEnv+"="); ok {
			return v
		}
	}
	return ""
}

func (w *world) callLines() []string {
	b, _ := os.ReadFile(w.calls())
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func sha12(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:12]
}

// TestBackupRoundTrip: backup run → verify → restore (the Omnibus stand-ins record the exact
// command order) → verify, with the configuration archive in its own bucket.
func TestBackupRoundTrip(t *testing.T) {
	start := time.Now()
	w, id := newRoundTripWorld(t, "")
	t.Logf("apply + backup run: %s", time.Since(start).Round(time.Millisecond))
	origSecrets := []byte(w.read("etc/gitlab/gitlab-secrets.json"))
	origRB := w.read("etc/gitlab/gitlab.rb")

	start = time.Now()
	v := w.backup("verify")
	t.Logf("verify: %s", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"backup:        " + id, "installed:     GitLab 18.5.1-ee", "GitLab 18.5.1-ee, created ", "same run (" + id + ")",
		"s3://example-gitlab-secrets/gitlab-config/" + id + "_gitlab_config.tar.gz", "result:        OK"} {
		if v.code != 0 || !strings.Contains(v.stdout, want) {
			t.Fatalf("verify: want exit 0 with %q: %s", want, v)
		}
	}

	// A new host's own secrets and gitlab.rb, which the restore replaces.
	if err := os.WriteFile(filepath.Join(w.root, "etc/gitlab/gitlab-secrets.json"), []byte(`{"gitlab_rails":{"secret_key_base":"fresh"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.root, "etc/gitlab/gitlab.rb"), []byte("external_url 'http://fresh.example.com'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := sha12([]byte(w.read("etc/gitlab/gitlab-secrets.json")))

	before := w.snapshot()
	dry := w.backup("restore", "--from", id, "--dry-run")
	if dry.code != 0 || !strings.Contains(dry.stdout, "3. GITLAB_ASSUME_YES=1 gitlab-backup restore BACKUP="+id) ||
		!strings.Contains(dry.stdout, "8. gitlab-rake gitlab:doctor:secrets") {
		t.Fatalf("restore --dry-run: %s", dry)
	}
	if w.snapshot() != before || len(w.callLines()) != 0 {
		t.Fatalf("restore --dry-run changed the host or ran %v", w.callLines())
	}

	res := w.backup("restore", "--from", id)
	if res.code != 0 || !strings.Contains(res.stdout, "backup "+id+" restored") {
		t.Fatalf("restore: %s", res)
	}
	orig := sha12(origSecrets)
	want := []string{
		"gitlab-ctl stop puma secrets=" + fresh,
		"gitlab-ctl stop sidekiq secrets=" + fresh,
		"GITLAB_ASSUME_YES=1 gitlab-backup restore BACKUP=" + id,
		"gitlab-ctl reconfigure secrets=" + orig,
		"gitlab-ctl restart secrets=" + orig,
		"gitlab-rake gitlab:check SANITIZE=true secrets=" + orig,
		"gitlab-rake gitlab:doctor:secrets secrets=" + orig,
	}
	if got := w.callLines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Omnibus calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if w.read("etc/gitlab/gitlab-secrets.json") != string(origSecrets) || w.read("etc/gitlab/gitlab.rb") != origRB {
		t.Error("gitlab-secrets.json or gitlab.rb not put back from the configuration archive")
	}
	if !strings.Contains(w.read("etc/gitlab/gitlab.rb.before-restore-"+id), "fresh.example.com") {
		t.Error("the replaced gitlab.rb was not kept")
	}
	if info, err := os.Stat(filepath.Join(w.root, "var/opt/gitlab/backups", id+"_gitlab_backup.tar")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("downloaded archive: %v %v", info, err)
	}
	if v := w.backup("verify"); v.code != 0 || !strings.Contains(v.stdout, "result:        OK") {
		t.Errorf("verify after the restore: %s", v)
	}
}

// TestBackupVerifyRestoreBadInput: each broken pair is a clear error from verify and a refused
// restore that ran nothing and changed nothing.
func TestBackupVerifyRestoreBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		setup      func(t *testing.T, w *world, id string) string // returns the ID to restore
		want       string
	}{
		{name: "tar without backup_information.yml", mode: "noinfo", want: "has no backup_information.yml"},
		{name: "secrets archive from another run", want: "was made with backup", setup: func(t *testing.T, w *world, id string) string {
			// A later backup whose configuration archive is a copy of the first run's.
			unix, rest, _ := strings.Cut(id, "_")
			n, _ := strconv.ParseInt(unix, 10, 64)
			later := strconv.FormatInt(n+60, 10) + "_" + rest
			s3 := w.stack.S3
			s3.PutObject(testenv.StackBackupBucket, "gitlab/"+later+"_gitlab_backup.tar", s3.Object(testenv.StackBackupBucket, "gitlab/"+id+"_gitlab_backup.tar"))
			s3.PutObject("example-gitlab-secrets", "gitlab-config/"+later+"_gitlab_config.tar.gz", s3.Object("example-gitlab-secrets", "gitlab-config/"+id+"_gitlab_config.tar.gz"))
			return later
		}},
		{name: "no secrets archive", want: "no configuration archive", setup: func(t *testing.T, w *world, id string) string {
			w.stack.S3.DeleteObject("example-gitlab-secrets", "gitlab-config/"+id+"_gitlab_config.tar.gz")
			return id
		}},
		{name: "version mismatch", want: "the backup was made by GitLab 18.5.1-ee but this host runs 18.6.0-ee", setup: func(t *testing.T, w *world, id string) string {
			m := filepath.Join(w.root, "opt/gitlab/version-manifest.txt")
			b, _ := os.ReadFile(m)
			if err := os.WriteFile(m, []byte(strings.Replace(string(b), "gitlab-ee 18.5.1", "gitlab-ee 18.6.0", 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			return id
		}},
		{name: "truncated download", want: "a truncated download", setup: func(t *testing.T, w *world, id string) string {
			key := "gitlab/" + id + "_gitlab_backup.tar"
			w.stack.S3.TruncateDownload(testenv.StackBackupBucket, key, w.stack.S3.Objects(testenv.StackBackupBucket, key)[key]/2)
			return id
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, id := newRoundTripWorld(t, tc.mode)
			if tc.setup != nil {
				id = tc.setup(t, w, id)
			}
			v := w.backup("verify")
			if v.code != 1 || !strings.Contains(v.stderr, tc.want) || !strings.Contains(v.stdout, "result:        FAILED: ") {
				t.Errorf("verify: want exit 1 with %q and a FAILED result line: %s", tc.want, v)
			}
			t.Logf("verify: %s", strings.TrimSpace(v.stderr))
			before := w.snapshot()
			r := w.backup("restore", "--from", id)
			t.Logf("restore: %s", strings.TrimSpace(r.stderr))
			if r.code != 1 || !strings.Contains(r.stderr, "refusing to restore") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("restore: want exit 1 refusing with %q: %s", tc.want, r)
			}
			if got := w.callLines(); len(got) != 0 {
				t.Errorf("a refused restore ran %v", got)
			}
			if w.snapshot() != before {
				t.Error("a refused restore changed the host")
			}
		})
	}
}

// TestBackupFromMustBeABackupID: --from is checked before anything is read or locked.
func TestBackupFromMustBeABackupID(t *testing.T) {
	w, _ := newRoundTripWorld(t, "")
	before := w.snapshot()
	for _, verb := range []string{"verify", "restore"} {
		r := w.backup(verb, "--from", "../../etc/passwd")
		if r.code != 2 || !strings.Contains(r.stderr, "is not a backup ID") {
			t.Errorf("%s --from ../../etc/passwd: %s", verb, r)
		}
	}
	if w.snapshot() != before {
		t.Error("a refused --from changed the host")
	}
}

// TestBackupRunPrunesLocalArchivesByAge: after a successful run, local archives older than
// keep_local go whatever GitLab version made them (Omnibus's backup_keep_time skips other
// versions'); younger ones and other files stay.
func TestBackupRunPrunesLocalArchivesByAge(t *testing.T) {
	w, r := newBackupWorld(t, "")
	if r.code != 0 {
		t.Fatal(r)
	}
	dir := filepath.Join(w.root, "var/opt/gitlab/backups")
	old := time.Now().Add(-8 * 24 * time.Hour)
	files := map[string]time.Time{
		"1790000000_2026_09_21_18.4.2-ee_gitlab_backup.tar": old,                             // older version, old: pruned
		"1790000100_2026_09_21_18.5.1-ee_gitlab_backup.tar": old,                             // same version, old: pruned
		"1796000000_2026_11_30_18.4.2-ee_gitlab_backup.tar": time.Now().Add(-24 * time.Hour), // young: kept
		"notes.txt": old, // not an archive: kept
	}
	for n, mt := range files {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	run := w.backup("run")
	if run.code != 0 || !strings.Contains(run.stderr, "removed /var/opt/gitlab/backups/1790000000_2026_09_21_18.4.2-ee_gitlab_backup.tar: older than backup.keep_local") {
		t.Fatalf("backup run: %s", run)
	}
	for n := range files {
		_, err := os.Stat(filepath.Join(dir, n))
		if gone := os.IsNotExist(err); gone != strings.HasPrefix(n, "17900") {
			t.Errorf("%s: removed=%v", n, gone)
		}
	}
}

// TestBackupPreflightWarnsWithoutLifecycleRule: apply warns with the command to run when no
// lifecycle rule expires the prefix, and when the secrets share the archives' bucket; with the
// rule in place and the secrets apart, no warning.
func TestBackupPreflightWarnsWithoutLifecycleRule(t *testing.T) {
	w, r := newBackupWorld(t, "")
	for _, want := range []string{"no lifecycle rule expires s3://example-gitlab-backups/gitlab/",
		`aws s3api put-bucket-lifecycle-configuration --bucket example-gitlab-backups --lifecycle-configuration '{"Rules":[{"ID":"glbootstrap-gitlab-backups","Status":"Enabled","Filter":{"Prefix":"gitlab/"}`,
		"goes to the application archives' bucket example-gitlab-backups"} {
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("apply: want exit 0 warning %q: %s", want, r)
		}
	}
	rule := `<LifecycleConfiguration><Rule><ID>x</ID><Filter><Prefix>gitlab</Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule></LifecycleConfiguration>`
	w.stack.S3.CreateBucketIn("example-gitlab-secrets", "us-east-2")
	w.stack.S3.SetLifecycle(testenv.StackBackupBucket, rule)
	w.stack.S3.SetLifecycle("example-gitlab-secrets", rule)
	w.setGitLabConfig(w.stack.GitLabConfig("", backupSection+secretsSection))
	r = w.gitlab("apply")
	if r.code != 0 || strings.Contains(r.stdout+r.stderr, "lifecycle") || strings.Contains(r.stdout+r.stderr, "application archives' bucket") {
		t.Errorf("apply with rules and the secrets apart: %s", r)
	}
}
