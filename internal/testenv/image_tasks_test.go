package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/image"
)

// glbootstrapBinary builds ./cmd/glbootstrap for the image.
func glbootstrapBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "glbootstrap")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/glbootstrap/glbootstrap/cmd/glbootstrap").CombinedOutput(); err != nil {
		t.Fatalf("building glbootstrap: %v\n%s", err, out)
	}
	return bin
}

// The image built from templates/coordinator with fargate.ssh.port 2222 and username ci: a task
// started from it serves that user on that port on the task's own address, in a bookworm
// filesystem holding the mirror's gitlab-runner 17.9.3; stopping the task ends it and removes its
// container.
func TestCoordinatorImageTask(t *testing.T) {
	var log bytes.Buffer
	bin := glbootstrapBinary(t)
	ictx, err := image.CoordinatorContext(bin, image.SSHArgs(2222, "ci"))
	if err != nil {
		t.Fatal(err)
	}
	img := BuildCoordinatorImage(t, CoordinatorImageOptions{Context: ictx, Log: &log})
	t.Logf("image %s (built %v in %s)", img.Name, img.Built, img.BuildTime)
	// A build whose RUN layer came from buildah's layer cache (same instruction and args) does not
	// download again; a cold one must have used the mirror and checked the binary.
	if img.Built && len(img.MirrorRequests) == 0 {
		t.Logf("gitlab-runner's layer came from buildah's layer cache")
	} else if img.Built {
		got := strings.Join(img.MirrorRequests, ", ")
		if !strings.Contains(got, "GET /v17.9.3/binaries/gitlab-runner-linux-amd64") || !strings.Contains(got, "GET /v17.9.3/release.sha256") {
			t.Errorf("the build did not download from the mirror: %s", got)
		}
		if !strings.Contains(log.String(), "/usr/local/bin/gitlab-runner: OK") {
			t.Errorf("the build log shows no sha256sum check of gitlab-runner:\n%s", log.String())
		}
	}
	if img.Base != "public.ecr.aws/docker/library/debian:bookworm-slim" {
		t.Errorf("base %q: want the Dockerfile's FROM default", img.Base)
	}
	if img.EnvValue("SSH_PORT") != "2222" || img.EnvValue("SSH_USER") != "ci" {
		t.Errorf("image env %v: want SSH_PORT=2222 SSH_USER=ci", img.Env)
	}
	again := BuildCoordinatorImage(t, CoordinatorImageOptions{Context: ictx})
	if again.Built || again.Name != img.Name {
		t.Errorf("the same context built again (%v) or under another name (%s)", again.Built, again.Name)
	}

	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("test CA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var taskLog bytes.Buffer
	l := &ImageLauncher{Image: img, Log: &taskLog, Command: []string{"-o", "MaxStartups=30"},
		Volumes: []string{ca + ":/etc/glb-test/ca.pem:ro"},
		Env:     map[string]string{"AWS_REGION": "us-east-1", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/test-task"}}
	const ip = "127.201.0.5"
	t0 := time.Now()
	stop, err := l.Launch(ECSLaunch{TaskARN: "arn:aws:ecs:us-east-1:123456789012:task/ci/abc123", IP: ip,
		Container: ECSContainer{Name: "ci-coordinator", Ports: []int32{2222}}, Env: map[string]string{"SSH_PUBLIC_KEY": string(pub)}})
	if err != nil {
		t.Fatalf("launch: %v\n%s", err, taskLog.String())
	}
	t.Logf("launch took %s", time.Since(t0))
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	out, err := exec.Command("ssh", "-i", key, "-p", "2222", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "ci@"+ip,
		`id -un; . /etc/os-release; echo "codename=$VERSION_CODENAME"; gitlab-runner --version | head -1; echo "$SSH_CONNECTION"; command -v glbootstrap; cat /etc/glb-test/ca.pem; echo "creds=$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI region=$AWS_REGION"`).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh: %v\n%s\ntask log:\n%s", err, out, taskLog.String())
	}
	for _, want := range []string{"ci\n", "codename=bookworm", "Version:      17.9.3", ip + " 2222", "/usr/local/bin/glbootstrap", "test CA",
		// The entrypoint hands ECS's variables to SSH sessions through /etc/environment (pam_env).
		"creds=/v2/credentials/test-task region=us-east-1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("in the task: want %q in\n%s", want, out)
		}
	}
	if !strings.Contains(taskLog.String(), "Server listening on "+ip+" port 2222") {
		t.Errorf("task log:\n%s", taskLog.String())
	}

	t0 = time.Now()
	stop()
	stopped = true
	t.Logf("stop took %s", time.Since(t0))
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "2222"), time.Second); err == nil {
		c.Close()
		t.Error("the task's sshd still listens after stop")
	}
	if out, _ := exec.Command("buildah", "containers", "--format", "{{.ContainerName}}").Output(); strings.Contains(string(out), "glb-task-abc123-") {
		t.Errorf("the task's container is left after stop:\n%s", out)
	}
	if out, _ := exec.Command("pgrep", "-f", "ListenAddress="+ip).Output(); len(out) > 0 {
		t.Errorf("processes of the task left after stop: %s", out)
	}

	// The real entrypoint decides what a task without SSH_PUBLIC_KEY does: it exits, and the
	// launch fails with its message (ECS would stop the task).
	_, err = l.Launch(ECSLaunch{TaskARN: "arn:aws:ecs:us-east-1:123456789012:task/ci/nokey", IP: "127.201.0.6",
		Container: ECSContainer{Name: "ci-coordinator", Ports: []int32{2222}}})
	if err == nil || !strings.Contains(err.Error(), "SSH_PUBLIC_KEY is empty") {
		t.Errorf("launch without a key: %v", err)
	}

	// A slow start: Launch returns at once, the port refuses connections until the delay is over.
	slow := &ImageLauncher{Image: img, StartDelay: 2 * time.Second}
	const slowIP = "127.201.0.7"
	t0 = time.Now()
	stopSlow, err := slow.Launch(ECSLaunch{TaskARN: "arn:aws:ecs:us-east-1:123456789012:task/ci/slow", IP: slowIP,
		Container: ECSContainer{Name: "ci-coordinator", Ports: []int32{2222}}, Env: map[string]string{"SSH_PUBLIC_KEY": string(pub)}})
	if err != nil {
		t.Fatal(err)
	}
	defer stopSlow()
	if c, err := net.DialTimeout("tcp", slowIP+":2222", time.Second); err == nil {
		c.Close()
		t.Error("a task with StartDelay listens at once")
	}
	for {
		c, err := net.DialTimeout("tcp", slowIP+":2222", time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Since(t0) > 30*time.Second {
			t.Fatal("the slow task never listened")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(t0); d < 2*time.Second {
		t.Errorf("listening after %s, before StartDelay", d)
	}
}
