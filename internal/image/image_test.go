package image

import (
	"archive/zip"
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/templates/coordinator"
)

func TestCoordinatorContext(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "glbootstrap")
	os.WriteFile(bin, []byte("binary v1"), 0o755)
	a, err := CoordinatorContext(bin)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := CoordinatorContext(bin)
	if a.Hash != b.Hash || !regexp.MustCompile(`^ctx-[0-9a-f]{20}$`).MatchString(a.Tag()) {
		t.Errorf("hash not stable or tag malformed: %s %s %s", a.Hash, b.Hash, a.Tag())
	}
	os.WriteFile(bin, []byte("binary v2"), 0o755)
	c, _ := CoordinatorContext(bin)
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

	// The binary changing between hashing and upload must not push a mislabelled image.
	os.WriteFile(bin, []byte("binary v3"), 0o755)
	if _, err := c.WriteZip(context.Background(), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "changed while") {
		t.Errorf("err = %v, want a changed-file error", err)
	}
}

// What the Fargate driver needs in the image (GitLab Runner's "Autoscaling GitLab CI on AWS
// Fargate", https://docs.gitlab.com/runner/configuration/runner_autoscale_aws_fargate/).
func TestCoordinatorTemplates(t *testing.T) {
	df, _ := fs.ReadFile(coordinator.FS, "Dockerfile")
	for _, want := range []string{"openssh-server", " git ", "git-lfs", "gitlab-runner", "ca-certificates", "bash",
		"mkdir -p /run/sshd", "EXPOSE 22", "COPY sshd_config /etc/ssh/sshd_config.d/", "COPY glbootstrap /usr/local/bin/glbootstrap", "sha256sum -c"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	ep, _ := fs.ReadFile(coordinator.FS, "entrypoint.sh")
	for _, want := range []string{"SSH_PUBLIC_KEY", "authorized_keys", "exec /usr/sbin/sshd -D", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
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
