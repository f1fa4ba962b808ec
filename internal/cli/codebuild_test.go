package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/buildstack"
)

func buildStack(t *testing.T) *buildstack.Stack {
	t.Helper()
	st := buildstack.Start(3)
	t.Cleanup(st.Close)
	st.CodeBuild.AddProject("images")
	for k, v := range st.Env() {
		t.Setenv(k, v)
	}
	return st
}

func srcDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The status table: exit 0 only for SUCCEEDED; every other terminal status exits 1 and says
// the status, the phase and the reason.
func TestCodeBuildRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		status, phase, code, msg string
		exit                     int
	}{
		{status: "SUCCEEDED", exit: 0},
		{status: "FAILED", phase: "BUILD", code: "COMMAND_EXECUTION_ERROR", msg: "Reason: exit status 1", exit: 1},
		{status: "FAULT", phase: "PROVISIONING", code: "CLIENT_ERROR", msg: "cannot pull build image", exit: 1},
		{status: "TIMED_OUT", phase: "BUILD", code: "BUILD_TIMED_OUT", msg: "Build has timed out.", exit: 1},
		{status: "STOPPED", phase: "BUILD", code: "BUILD_STOPPED", msg: "stopped by someone in the console", exit: 1},
	} {
		t.Run(tc.status, func(t *testing.T) {
			st := buildStack(t)
			st.CodeBuild.Script(func(testenv.StartedBuild) testenv.BuildScript {
				return testenv.BuildScript{Status: tc.status, FailPhase: tc.phase, Code: tc.code, Message: tc.msg,
					Lines: []string{"line one", "line two", "line three", "line four"}}
			})
			code, stdout, stderr := run(t, "", "codebuild", "run", "--project", "images", "--source", srcDir(t),
				"--bucket", buildstack.Bucket, "--env", "IMAGE_TAG=abc", "--poll-interval", "1ms")
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.exit, stdout, stderr)
			}
			if tc.phase != "PROVISIONING" && !strings.Contains(stdout, "line one\nline two\nline three\nline four\n") {
				t.Errorf("stdout lacks the build log:\n%s", stdout)
			}
			if tc.exit != 0 {
				want := "ended " + tc.status + " in phase " + tc.phase + ": " + tc.code + ": " + tc.msg
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr:\n%s\nwant %q", stderr, want)
				}
			}
			if got := st.CodeBuild.Builds()[0].Env["IMAGE_TAG"]; got != "abc" {
				t.Errorf("IMAGE_TAG = %q", got)
			}
		})
	}
}

func TestCodeBuildRunUsageAndAPIErrors(t *testing.T) {
	st := buildStack(t)
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		exit int
		want string
	}{
		{[]string{"--source", "x"}, ExitUsage, "--bucket, --project required"},
		{[]string{"--project", "images", "--source", "/nonexistent", "--bucket", "b"}, ExitUsage, "is not a directory"},
		{[]string{"--project", "images", "--source", empty, "--bucket", buildstack.Bucket}, ExitUsage, "has nothing to upload"},
		{[]string{"--project", "images", "--source", srcDir(t), "--bucket", "b", "--env", "NOEQUALS"}, ExitUsage, "want NAME=VALUE"},
		{[]string{"--project", "nope", "--source", srcDir(t), "--bucket", buildstack.Bucket}, ExitFailed, "Project cannot be found"},
		{[]string{"--project", "images", "--source", srcDir(t), "--bucket", "missing-bucket"}, ExitFailed, "bucket missing-bucket does not exist"},
	} {
		code, _, stderr := run(t, "", append([]string{"codebuild", "run", "--poll-interval", "1ms"}, tc.args...)...)
		if code != tc.exit || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.exit, tc.want)
		}
	}
	if n := len(st.CodeBuild.Builds()); n != 0 {
		t.Errorf("%d builds started by bad invocations", n)
	}
}

func TestCodeBuildBuildspec(t *testing.T) {
	code, out, _ := run(t, "", "codebuild", "buildspec")
	for _, want := range []string{"docker pull \"$IMAGE_REPO:latest\"", "--cache-from \"$IMAGE_REPO:latest\"",
		"docker push \"$IMAGE_REPO:$tag\"", "docker push \"$IMAGE_REPO:latest\"", "aws ecr get-login-password", "on-failure: ABORT"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("buildspec lacks %q", want)
		}
	}
}

// image push: the build stand-in "pushes" a random image under the tags the buildspec would
// push; go-containerregistry then reads what the registry holds. A second push builds nothing.
func TestImagePush(t *testing.T) {
	st := buildStack(t)
	repo := "123456789012.dkr.ecr.us-east-2.amazonaws.com/ci-coordinator"
	st.ECR.CreateRepository("ci-coordinator")
	st.CodeBuild.Script(func(b testenv.StartedBuild) testenv.BuildScript {
		return testenv.BuildScript{Lines: []string{"Successfully built"}, OnSuccess: func(b testenv.StartedBuild) error {
			_, err := st.Registry.Push(b.Env["IMAGE_REPO"], b.Env["IMAGE_TAG"], "latest")
			return err
		}}
	})
	bin := filepath.Join(t.TempDir(), "glbootstrap")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho stand-in\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"image", "push", "--repository", repo, "--project", "images", "--bucket", buildstack.Bucket,
		"--binary", bin, "--poll-interval", "1ms"}
	code, stdout, stderr := run(t, "", args...)
	if code != 0 || !strings.Contains(stdout, "pushed "+repo+":ctx-") {
		t.Fatalf("first push: exit %d\n%s\n%s", code, stdout, stderr)
	}
	b := st.CodeBuild.Builds()[0]
	tag := b.Env["IMAGE_TAG"]
	if b.Env["IMAGE_REPO"] != repo || !strings.HasPrefix(tag, "ctx-") || !strings.Contains(b.Buildspec, "--cache-from") {
		t.Errorf("build env %v, buildspec override %d bytes", b.Env, len(b.Buildspec))
	}
	hashDigest, err := st.Registry.Digest(repo, tag)
	if err != nil || hashDigest == "" {
		t.Fatalf("registry has no %s: %v", tag, err)
	}
	latest, _ := st.Registry.Digest(repo, "latest")
	if latest != hashDigest {
		t.Errorf("latest = %s, %s = %s; want the same image", latest, tag, hashDigest)
	}

	code, stdout, stderr = run(t, "", args...)
	if code != 0 || !strings.Contains(stdout, "up to date ("+tag+" = "+latest+")") {
		t.Errorf("second push: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if n := len(st.CodeBuild.Builds()); n != 1 {
		t.Errorf("%d builds; the second push must build nothing", n)
	}

	// Someone pushed another latest (a CI job): the context's image is latest again after a build.
	if _, err := st.Registry.Push(repo, "latest"); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, "", args...)
	if code != 0 || len(st.CodeBuild.Builds()) != 2 {
		t.Errorf("third push: exit %d, %d builds\n%s", code, len(st.CodeBuild.Builds()), stderr)
	}

	// A different binary is a different context: a new tag.
	os.WriteFile(bin, []byte("#!/bin/sh\necho v2\n"), 0o755)
	code, stdout, _ = run(t, "", args...)
	if code != 0 || strings.Contains(stdout, tag) || len(st.CodeBuild.Builds()) != 3 {
		t.Errorf("new binary: exit %d, %s", code, stdout)
	}

	// A build that fails never reports a push.
	st.CodeBuild.Script(func(testenv.StartedBuild) testenv.BuildScript {
		return testenv.BuildScript{Status: "FAILED", Code: "COMMAND_EXECUTION_ERROR", Message: "docker build failed"}
	})
	code, _, stderr = run(t, "", append(args, "--force")...)
	if code != ExitFailed || !strings.Contains(stderr, "ended FAILED in phase BUILD") {
		t.Errorf("failed build: exit %d\n%s", code, stderr)
	}
}
