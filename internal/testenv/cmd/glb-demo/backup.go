package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/standin"
)

// standInArg makes glb-demo act as Omnibus's gitlab-backup (see standin.GitLabBackup).
const standInArg = "gitlab-backup-stand-in"

// demoBackupSection is the GitLab host's backup section in the demo.
const demoBackupSection = `backup:
  bucket: example-gitlab-backups
  prefix: gitlab/
  schedule: "*-*-* 02:00:00"
  keep_local: 7d
  chunk_size: 128MiB
  secrets:
    bucket: example-gitlab-secrets
    prefix: gitlab/
`

// demoBackup runs what glbootstrap-backup.service runs at 2 a.m. on the
// GitLab host: "glbootstrap backup run", with glb-demo itself standing in
// for Omnibus's gitlab-backup (writes an archive and uploads it the way
// Omnibus does), then "backup status" and a listing of the bucket.
func demoBackup(ctx context.Context, stack *testenv.Stack, sandbox, bin string, env []string) error {
	root := filepath.Join(sandbox, "gitlab")
	if err := standin.SimulateReconfigure(root); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// Omnibus's gitlab-backup, where the package installs it in the GitLab root: glbootstrap
	// runs the tree's own program.
	dir := filepath.Join(root, "opt/gitlab/bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := standin.WriteGitLabBackup(dir, self, standInArg); err != nil {
		return err
	}
	env = append(append([]string(nil), env...), standin.RootEnv+"="+root, standin.BucketEnv+"="+testenv.StackBackupBucket)
	run := func(want int, args ...string) error {
		fmt.Printf("\n$ glbootstrap %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err := noSecret(stack, args, out.String()); err != nil {
			return err
		}
		fmt.Print(indent(out.String()))
		code := 0
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			code = xe.ExitCode()
		} else if err != nil {
			return err
		}
		fmt.Printf("  (exit %d)\n", code)
		if code != want {
			return fmt.Errorf("glbootstrap %s exited %d, want %d", strings.Join(args[:2], " "), code, want)
		}
		return nil
	}
	args := []string{"--config", "ssm:" + testenv.StackGitLabConfigParam, "--root", root}
	section("GitLab host: the nightly backup (what glbootstrap-backup.timer starts), against gofakes3")
	start := time.Now()
	if err := run(0, append([]string{"backup", "run"}, args...)...); err != nil {
		return err
	}
	took := time.Since(start)
	if err := run(0, append([]string{"backup", "status"}, args...)...); err != nil {
		return err
	}
	section("GitLab host: the weekly check that the newest backup restores (glbootstrap-backup-verify.timer)")
	start = time.Now()
	if err := run(0, append([]string{"backup", "verify"}, args...)...); err != nil {
		return err
	}
	fmt.Printf("\n  times for the demo data: backup run %s, backup verify %s (each including the process start)\n",
		took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, b := range []string{testenv.StackBackupBucket, "example-gitlab-secrets"} {
		fmt.Printf("\n  s3://%s now holds:\n", b)
		for k, size := range stack.S3.Objects(b, "") {
			fmt.Printf("    %-80s %9d bytes\n", k, size)
		}
	}
	return nil
}
