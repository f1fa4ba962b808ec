package image

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	cb "github.com/glbootstrap/glbootstrap/internal/aws/codebuild"
	"github.com/glbootstrap/glbootstrap/internal/codebuild"
	"github.com/glbootstrap/glbootstrap/templates/coordinator"
)

func TestCoordinatorContext(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "glbootstrap")
	os.WriteFile(bin, []byte("binary v1"), 0o755)
	a, err := CoordinatorContext(bin, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := CoordinatorContext(bin, nil)
	if a.Hash != b.Hash || !regexp.MustCompile(`^ctx-[0-9a-f]{20}$`).MatchString(a.Tag()) {
		t.Errorf("hash not stable or tag malformed: %s %s %s", a.Hash, b.Hash, a.Tag())
	}
	os.WriteFile(bin, []byte("binary v2"), 0o755)
	c, _ := CoordinatorContext(bin, nil)
	if c.Hash == a.Hash {
		t.Error("a new binary did not change the context hash")
	}

	var buf bytes.Buffer
	st, err := c.WriteZip(context.Background(), &buf)
	if err != nil || st.Files != 4 {
		t.Fatalf("zip: %+v %v", st, err)
	}
	zr, _ := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	modes := map[string]fs.FileMode{}
	for _, f := range zr.File {
		modes[f.Name] = f.Mode().Perm()
	}
	want := map[string]fs.FileMode{"Dockerfile": 0o644, "entrypoint.sh": 0o755, "sshd_config": 0o644, "glbootstrap": 0o755}
	for n, m := range want {
		if modes[n] != m {
			t.Errorf("%s mode %v, want %v (all: %v)", n, modes[n], m, modes)
		}
	}

	// The same files in a directory, for a local build.
	dir := t.TempDir()
	if err := c.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	for n, m := range want {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil || fi.Mode().Perm() != m {
			t.Errorf("WriteDir %s: %v %v, want mode %v", n, fi, err, m)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "glbootstrap")); string(b) != "binary v2" {
		t.Errorf("WriteDir glbootstrap = %q", b)
	}

	// The binary changing between hashing and upload must not push a mislabelled image.
	os.WriteFile(bin, []byte("binary v3"), 0o755)
	if _, err := c.WriteZip(context.Background(), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "changed while") {
		t.Errorf("err = %v, want a changed-file error", err)
	}
	if err := c.WriteDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Errorf("WriteDir err = %v, want a changed-file error", err)
	}
}

// What the Fargate driver needs in the image (GitLab Runner's "Autoscaling GitLab CI on AWS
// Fargate", https://docs.gitlab.com/runner/configuration/runner_autoscale_aws_fargate/).
func TestCoordinatorTemplates(t *testing.T) {
	df, _ := fs.ReadFile(coordinator.FS, "Dockerfile")
	for _, want := range []string{"openssh-server", " git ", "git-lfs", "gitlab-runner", "ca-certificates", "bash",
		"mkdir -p /run/sshd", "EXPOSE ${SSH_PORT}", "ARG SSH_PORT=22", "ARG SSH_USER=root", "ARG GITLAB_RUNNER_DOWNLOADS=https://gitlab-runner-downloads.s3.amazonaws.com", "COPY sshd_config /etc/ssh/sshd_config.d/", "COPY glbootstrap /usr/local/bin/glbootstrap", "sha256sum -c"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	ep, _ := fs.ReadFile(coordinator.FS, "entrypoint.sh")
	for _, want := range []string{"SSH_PUBLIC_KEY", "authorized_keys", `exec /usr/sbin/sshd -D -e -p "$port" "$@"`, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		if !strings.Contains(string(ep), want) {
			t.Errorf("entrypoint lacks %q", want)
		}
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		if os.Getenv("GLB_REQUIRE_TOOLS") == "1" {
			t.Fatal("no sh, and GLB_REQUIRE_TOOLS=1")
		}
		t.Skip("no sh")
	}
	if out, err := exec.Command(sh, "-n", "-c", string(ep)).CombinedOutput(); err != nil {
		t.Errorf("entrypoint.sh: %v\n%s", err, out)
	}
	// Without a key the entrypoint refuses to start sshd, naming the container the driver feeds.
	cmd := exec.Command(sh, "-c", string(ep))
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "ci-coordinator") {
		t.Errorf("entrypoint without SSH_PUBLIC_KEY: %v %s", err, out)
	}
}

// fargate.ssh.port and username reach the build as build args, in the hash (a new port is a new
// image) and in the buildspec's BUILD_ARGS; the defaults hash like no args at all.
func TestCoordinatorBuildArgs(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "glbootstrap")
	os.WriteFile(bin, []byte("binary"), 0o755)
	plain, err := CoordinatorContext(bin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defaults, _ := CoordinatorContext(bin, SSHArgs(22, "root"))
	unset, _ := CoordinatorContext(bin, SSHArgs(0, ""))
	if defaults.Hash != plain.Hash || unset.Hash != plain.Hash {
		t.Errorf("port 22 and root (or unset) changed the hash: %s %s %s", plain.Tag(), defaults.Tag(), unset.Tag())
	}
	port, _ := CoordinatorContext(bin, SSHArgs(2222, "root"))
	user, _ := CoordinatorContext(bin, SSHArgs(22, "ci"))
	if port.Hash == plain.Hash || user.Hash == plain.Hash || port.Hash == user.Hash {
		t.Errorf("a port or user change did not change the hash: %s %s %s", plain.Tag(), port.Tag(), user.Tag())
	}
	both, _ := CoordinatorContext(bin, SSHArgs(2222, "ci"))
	if got := strings.Join(both.BuildArgList(), " "); got != "SSH_PORT=2222 SSH_USER=ci" {
		t.Errorf("BuildArgList = %q", got)
	}
	for _, bad := range []map[string]string{{"SSH USER": "x"}, {"SSH_USER": "a b"}, {"SSH_USER": ""}} {
		if _, err := CoordinatorContext(bin, bad); err == nil {
			t.Errorf("CoordinatorContext accepted %v", bad)
		}
	}

	var env []cb.EnvVar
	p := &Push{Registry: fixedRegistry{}, Repository: "123456789012.dkr.ecr.us-east-1.amazonaws.com/ci",
		Build: func(_ context.Context, _ codebuild.Source, o codebuild.Options) (codebuild.Result, error) {
			env = o.Env
			return codebuild.Result{}, errors.New("stop here")
		}}
	_, _, _ = p.Ensure(context.Background(), both, false)
	found := false
	for _, e := range env {
		if e.Name == "BUILD_ARGS" && e.Value == "SSH_PORT=2222 SSH_USER=ci" {
			found = true
		}
	}
	if !found {
		t.Errorf("build env %+v lacks BUILD_ARGS", env)
	}
	// The buildspec turns BUILD_ARGS into --build-arg flags.
	if !strings.Contains(both.Buildspec, `build_args+=(--build-arg "$a")`) || !strings.Contains(both.Buildspec, `"${build_args[@]}"`) {
		t.Error("the Docker buildspec does not pass BUILD_ARGS to docker build")
	}
}

type fixedRegistry struct{}

func (fixedRegistry) Digest(context.Context, string, string) (string, bool, error) {
	return "", false, nil
}

// The image's gitlab-runner (artifacts and cache inside jobs) is the front's version: the
// Dockerfile's default GITLAB_RUNNER_VERSION is examples/runner.yaml's runner.version (what the
// runner AMI's bake installs), and another runner.version becomes the build arg.
func TestCoordinatorRunnerVersionMatchesFront(t *testing.T) {
	ex, err := os.ReadFile("../../examples/runner.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := regexp.MustCompile(`(?m)^  version: "?(\d+\.\d+\.\d+)`).FindSubmatch(ex)
	if DefaultRunnerVersion == "" || p == nil {
		t.Fatalf("version not found: Dockerfile %q, examples/runner.yaml %q", DefaultRunnerVersion, p)
	}
	if DefaultRunnerVersion != "v"+string(p[1]) {
		t.Errorf("Dockerfile GITLAB_RUNNER_VERSION %s, examples/runner.yaml runner.version %s: keep them equal", DefaultRunnerVersion, p[1])
	}
	for release, want := range map[string]string{string(p[1]): "", string(p[1]) + "-1": "", "": "", "17.9.3": "v17.9.3", "17.9.3-1": "v17.9.3"} {
		if got := RunnerVersionArgs(release)[ArgRunnerVersion]; got != want {
			t.Errorf("RunnerVersionArgs(%q) = %q, want %q", release, got, want)
		}
	}
}
