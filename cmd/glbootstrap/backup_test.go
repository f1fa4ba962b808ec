package main

// Blackbox tests of the backups (issue 4): apply --role gitlab with a backup section renders the
// Omnibus upload settings and the timer once; "backup run" against gofakes3, with this test
// binary standing in for Omnibus's gitlab-backup, leaves both archives under one timestamp; every
// injected failure exits non-zero and names the step.

import (
	"crypto/rand"
	"os"
	"path/filepath"
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
	timers := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".timer") {
			timers++
		}
	}
	if timers != 1 {
		t.Errorf("%d timers, want exactly one schedule", timers)
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
