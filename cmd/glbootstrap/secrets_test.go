package main

// Secrets never reach the output. Every run of the binary in these tests already passes through
// failOnLeak (world.run), against stand-ins seeded with a distinct secret in every source; the
// test here makes sure each command walks the paths that handle secrets, in each output format.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/buildstack"
	"github.com/glbootstrap/glbootstrap/internal/testenv/standin"
)

// outputFormats are the --output values of the commands that have the flag.
var outputFormats = []string{"text", "json"}

// inFormat runs args through run, with --output json when format is json. A command without
// --output (it prints text only) is run again without it, and the test notes that.
func inFormat(t testing.TB, format string, want int, run func(args ...string) result, args ...string) result {
	t.Helper()
	var r result
	if format == "json" {
		r = run(append(args, "--output", "json")...)
		if r.code == 2 && strings.Contains(r.stderr, "unknown flag: --output") {
			t.Logf("%s has no --output: text only", commandOf(args))
			format = "text"
		}
	}
	if format == "text" {
		r = run(args...)
	}
	if r.code != want {
		t.Errorf("glbootstrap %s (%s): want exit %d\n%s", strings.Join(args, " "), format, want, r)
	}
	return r
}

// commandOf is the command words of args ("backup run"), without flags and their values.
func commandOf(args []string) string {
	for i, a := range args {
		if strings.HasPrefix(a, "-") {
			return strings.Join(args[:i], " ")
		}
	}
	return strings.Join(args, " ")
}

func (w *world) cmdIn(format string, want int, args ...string) result {
	w.t.Helper()
	return inFormat(w.t, format, want, w.run, args...)
}

// adminConfigTOML is a config.toml an admin wrote by hand before glbootstrap took the front over:
// the runner whose token glbootstrap keeps, a second runner and S3 cache credentials, whose
// secrets glbootstrap never knows.
func adminConfigTOML(kept, other string) string {
	return `concurrent = 4
check_interval = 0

[[runners]]
  name = "registered by hand"
  url = "https://gitlab.example.com"
  token = "` + kept + `"
  executor = "shell"

[[runners]]
  name = "another runner"
  url = "https://gitlab.example.com"
  token = "` + other + `"
  executor = "docker"
  [runners.cache]
    Type = "s3"
    [runners.cache.s3]
      AccessKey = "AKIAADMINCACHE000001"
      SecretKey = "` + adminCacheSecret + `"
`
}

const adminCacheSecret = "seeded-admin-cache-secret-key-0001"

// TestNoCommandPrintsASecret runs every command (apply, plan, validate, doctor, runner
// unregister, backup run and status, codebuild run and buildspec, image push) in text and JSON
// on hosts whose every secret source holds a distinct seeded value, through the paths where
// secrets are read, written, replaced and reported in errors. world.run fails the test when
// any of them, in any spelling, is in stdout or stderr.
func TestNoCommandPrintsASecret(t *testing.T) {
	for _, format := range outputFormats {
		t.Run(format, func(t *testing.T) {
			t.Run("runner", func(t *testing.T) { runnerSecrets(t, format) })
			t.Run("gitlab", func(t *testing.T) { gitlabSecrets(t, format) })
			t.Run("codebuild", func(t *testing.T) { codebuildSecrets(t, format) })
		})
	}
}

func runnerSecrets(t *testing.T, format string) {
	w := newWorld(t, testenv.IMDSValues{})
	w.secret("config.toml cache SecretKey", adminCacheSecret)
	cfg := []string{"--role", "runner", "--config", "ssm:" + testenv.StackConfigParam}
	root := []string{"--root", w.root}
	with := func(verb string, extra ...string) []string {
		return append(append(append([]string{verb}, cfg...), root...), extra...)
	}

	// The front was registered by hand: glbootstrap keeps that runner's token and rewrites
	// config.toml, dropping the other runner and the cache credentials.
	kept := w.stack.GitLab.AddRunner(testenv.GitLabRunner{Description: "registered by hand"})
	other := w.stack.GitLab.AddRunner(testenv.GitLabRunner{Description: "another runner"})
	p := filepath.Join(w.root, "etc/gitlab-runner/config.toml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(adminConfigTOML(kept.Token, other.Token)), 0o600); err != nil {
		t.Fatal(err)
	}

	w.cmdIn(format, 0, append([]string{"validate"}, cfg...)...)
	for _, verb := range []string{"plan", "apply"} {
		// The diff of config.toml is shown: its new lines with the token masked, none of the
		// old file's own lines (another runner's section, the admin's additions).
		r := w.cmdIn(format, map[string]int{"plan": 10, "apply": 0}[verb], with(verb)...)
		if !strings.Contains(r.stdout, "[MASKED]") || !strings.Contains(r.stdout, "not shown: this file holds secrets") || strings.Contains(r.stdout, "another runner") {
			t.Errorf("%s: no masked diff of the admin's config.toml:\n%s", verb, r)
		}
	}
	w.cmdIn(format, 0, with("plan")...)
	w.cmdIn(format, 0, with("doctor")...)

	// GitLab resets the token: the one in config.toml and the state file stops verifying, and
	// glbootstrap creates a runner, replacing both files' tokens.
	w.stack.GitLab.ResetToken(kept.ID)
	w.cmdIn(format, 10, with("plan")...)
	w.cmdIn(format, 0, with("apply")...)

	// runner.token_parameter, with every token GitLab knows reset: the seeded glrt- token and
	// the ones in config.toml and the state file are rejected, and the error names the parameter.
	resetAll := func() {
		for _, rn := range w.stack.GitLab.Runners() {
			w.stack.GitLab.ResetToken(rn.ID)
		}
	}
	w.setConfig(w.stack.RunnerConfig(tokenAuth, ""))
	resetAll()
	w.cmdIn(format, 1, with("apply")...)

	// A legacy registration token on a GitLab that refuses them (410).
	legacy := "  registration_token_parameter: " + testenv.StackRegistrationToken + "\n  tags: [fargate]\n  run_untagged: false\n"
	w.setConfig(w.stack.RunnerConfig(legacy, ""))
	w.cmdIn(format, 1, with("apply")...)

	// Back to runner.create: a new runner replaces the rejected tokens in both files.
	w.setConfig(w.stack.RunnerConfig(testenv.CreateAuth, ""))
	w.cmdIn(format, 0, with("apply")...)

	// The front goes away.
	unregister := []string{"runner", "unregister", "--config", "ssm:" + testenv.StackConfigParam, "--root", w.root}
	w.cmdIn(format, 1, unregister...) // the access token may not delete runners
	w.stack.GitLab.AddAccessToken(testenv.StackAccessTokenVal, "create_runner", "manage_runner")
	w.cmdIn(format, 0, append(unregister, "--dry-run")...)
	w.cmdIn(format, 0, unregister...)

	// A GitLab that still takes registration tokens hands out a t1_ token; unregister deletes
	// the runner with it.
	w.replaceGitLab(testenv.GitLabOptions{LegacyRegistrationToken: testenv.StackRegistrationTokenVal})
	w.setConfig(w.stack.RunnerConfig(legacy, ""))
	w.cmdIn(format, 0, with("apply")...)
	w.cmdIn(format, 0, with("plan")...)
	w.cmdIn(format, 0, unregister...)
	if n := len(w.stack.GitLab.Runners()); n != 0 {
		t.Errorf("%d runners left after unregister", n)
	}
}

func gitlabSecrets(t *testing.T, format string) {
	w := newGitLabWorld(t)
	w.stack.S3.CreateBucketIn(testenv.StackBackupBucket, "us-east-2")
	w.setGitLabConfig(w.stack.GitLabConfig("", backupSection))
	cfg := []string{"--role", "gitlab", "--config", "ssm:" + testenv.StackGitLabConfigParam}
	with := func(verb string) []string { return append(append([]string{verb}, cfg...), "--root", w.root) }

	w.cmdIn(format, 0, append([]string{"validate"}, cfg...)...)
	w.cmdIn(format, 10, with("plan")...)
	w.cmdIn(format, 0, with("apply")...) // writes the root password file, reconfigures, removes it
	w.cmdIn(format, 0, with("apply")...)

	// The admin removes the from_file line: it comes back, and nothing of gitlab.rb is shown.
	rb := filepath.Join(w.root, "etc/gitlab/gitlab.rb")
	b, err := os.ReadFile(rb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rb, bytes.Replace(b, []byte(`from_file "/etc/gitlab/glbootstrap.rb"`), nil, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	w.cmdIn(format, 10, with("plan")...)
	w.cmdIn(format, 0, with("apply")...)

	// The nightly backup archives /etc/gitlab (gitlab.rb, gitlab-secrets.json), and fails.
	w.useBackupStandIn(t)
	backup := func(verb string) []string {
		return []string{"backup", verb, "--config", "ssm:" + testenv.StackGitLabConfigParam, "--root", w.root}
	}
	w.cmdIn(format, 0, backup("run")...)
	w.cmdIn(format, 0, backup("status")...)
	w.env = append(w.env, standin.ModeEnv+"=fail")
	w.cmdIn(format, 1, backup("run")...)
	w.cmdIn(format, 1, backup("status")...)
}

func codebuildSecrets(t *testing.T, format string) {
	st := buildstack.Start(0)
	t.Cleanup(st.Close)
	st.CodeBuild.AddProject("images")
	repo := "123456789012.dkr.ecr.us-east-2.amazonaws.com/ci-coordinator"
	st.ECR.CreateRepository("ci-coordinator")
	st.CodeBuild.Script(func(b testenv.StartedBuild) testenv.BuildScript {
		return testenv.BuildScript{Lines: []string{"Step 1/2 : FROM scratch", "Successfully built"}, OnSuccess: func(b testenv.StartedBuild) error {
			if b.Env["IMAGE_REPO"] == "" {
				return nil // codebuild run: nothing to push
			}
			_, err := st.Registry.Push(b.Env["IMAGE_REPO"], b.Env["IMAGE_TAG"], "latest")
			return err
		}}
	})
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := os.Environ()[:0:0]
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	for k, v := range st.Env() {
		env = append(env, k+"="+v)
	}
	run := func(args ...string) result { return runBinary(t, env, st.Secrets(), args...) }
	inFormat(t, format, 0, run, "codebuild", "buildspec")
	inFormat(t, format, 0, run, "codebuild", "run", "--project", "images", "--source", src, "--bucket", buildstack.Bucket, "--poll-interval", "5ms")
	inFormat(t, format, 0, run, "image", "push", "--repository", repo, "--project", "images", "--bucket", buildstack.Bucket,
		"--binary", binary, "--poll-interval", "5ms")
}
