package main

// The real Fargate driver against tasks that run the coordinator image itself: built by buildah
// from templates/coordinator (the product's build context, with the build args the runner role
// derives from fargate.ssh) on a debootstrap bookworm rootfs imported under the Dockerfile's FROM
// name, gitlab-runner 17.9.3 from a local mirror of GitLab's downloads. Each task is the image's
// entrypoint in a buildah container listening on the task's own loopback address.

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/glbootstrap/glbootstrap/internal/image"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// withTaskSSH returns the runner configuration cfg with fargate.ssh set to user on port and
// fargate.task_definition to a new revision of the stand-in's family, which it registers with
// that container port; the tasks' security group admits the port. That is what a deployment with
// another SSH port needs besides the image.
func withTaskSSH(t *testing.T, w *world, cfg string, port int, user string) string {
	t.Helper()
	for old, repl := range map[string]string{
		"ssh: {username: root, port: 22}":   fmt.Sprintf("ssh: {username: %s, port: %d}", user, port),
		"task_definition: ci-coordinator:1": "task_definition: ci-coordinator:2",
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("the runner config has no %q", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	td, ok := w.stack.ECS.TaskDefinition(testenv.StackTaskFamily + ":1")
	if !ok {
		t.Fatalf("no task definition %s:1 in the stand-in", testenv.StackTaskFamily)
	}
	td.Revision = 0
	td.Containers[0].Ports = []int32{int32(port)}
	if got := w.stack.ECS.RegisterTaskDefinition(td); got != testenv.StackTaskFamily+":2" {
		t.Fatalf("registered %s, want %s:2", got, testenv.StackTaskFamily)
	}
	sg, ok := w.stack.EC2.SecurityGroup(testenv.StackTaskSG)
	if !ok {
		t.Fatalf("no security group %s in the stand-in", testenv.StackTaskSG)
	}
	for i := range sg.Ingress {
		sg.Ingress[i].FromPort, sg.Ingress[i].ToPort = int32(port), int32(port)
	}
	w.stack.EC2.PutSecurityGroup(sg)
	return cfg
}

// coordinatorImage builds (or finds already built) the coordinator image from templates/coordinator
// with this test's glbootstrap binary and the build args the runner role derives from
// fargate.ssh (port, username as fargate.toml has them).
func coordinatorImage(t *testing.T, port int, user string) *testenv.CoordinatorImage {
	t.Helper()
	ictx, err := image.CoordinatorContext(binary, image.SSHArgs(port, user))
	if err != nil {
		t.Fatal(err)
	}
	img := testenv.BuildCoordinatorImage(t, testenv.CoordinatorImageOptions{Context: ictx})
	t.Logf("coordinator image %s (built now: %v, %s)", img.Name, img.Built, img.BuildTime)
	return img
}

// newImageDriverWorld is newDriverWorld whose ECS tasks run the coordinator image, with
// fargate.ssh set to user on port (withTaskSSH) when they are not root and 22, after
// beforeApply (given the world). The image's build args come from the fargate.toml apply
// rendered.
func newImageDriverWorld(t *testing.T, port int, user string, beforeApply ...func(*world)) (*driverWorld, *testenv.ImageLauncher, *testenv.CoordinatorImage) {
	t.Helper()
	d := newDriverWorld(t, append(beforeApply, func(w *world) {
		if port != 22 || user != "root" {
			w.setConfig(withTaskSSH(t, w, w.stack.RunnerConfig(testenv.CreateAuth, ""), port, user))
		}
	})...)
	text, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	var ft struct {
		SSH struct {
			Username string
			Port     int
		}
	}
	if _, err := toml.Decode(string(text), &ft); err != nil {
		t.Fatal(err)
	}
	if ft.SSH.Port != port || ft.SSH.Username != user {
		t.Fatalf("fargate.toml [SSH] = %+v, want %s on %d", ft.SSH, user, port)
	}
	img := coordinatorImage(t, ft.SSH.Port, ft.SSH.Username)
	l := &testenv.ImageLauncher{Image: img, Log: d.sshdLog}
	d.stack.ECS.SetLauncher(l)
	return d, l, img
}

// A job's stages through the real driver in the image's task: the script runs in the image's
// bookworm filesystem, with the mirror's gitlab-runner 17.9.3, as fargate.ssh.username.
func TestRealFargateDriverInCoordinatorImage(t *testing.T) {
	d, l, _ := newImageDriverWorld(t, 22, "root")
	if r := d.stage(t, 201, "prepare"); r.code != 0 {
		t.Fatalf("prepare: %s\n%s", r, d.sshdLog)
	}
	task := d.stack.ECS.Tasks()[0]
	// The job writes a marker: it must land in the task's filesystem, not this machine's.
	marker := fmt.Sprintf("/tmp/glb-job-marker-%d", os.Getpid())
	r := d.stage(t, 201, "run", d.script(t, `set -e
. /etc/os-release
echo "codename=$VERSION_CODENAME user=$(id -un)"
gitlab-runner --version | head -1
echo "ssh=$SSH_CONNECTION"
test -f /etc/ssh/sshd_config.d/coordinator.conf && echo "image sshd config"
touch `+marker+`
`), "build_script")
	if r.code != 0 {
		t.Fatalf("run: %s\n%s", r, d.sshdLog)
	}
	for _, want := range []string{"codename=bookworm user=root", "Version:      17.9.3", task.IP + " 22", "image sshd config"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("run stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		os.Remove(marker)
		t.Errorf("the job's file %s is on this machine: the job did not run in the task's filesystem", marker)
	}
	if r := d.stage(t, 201, "cleanup"); r.code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if l.Started() != 1 {
		t.Errorf("%d task containers started, want 1", l.Started())
	}
}

// fargate.ssh.port 2222 and username ci: the image's sshd listens there and serves that user,
// who exists in the image; nothing but SSH_PUBLIC_KEY comes from the driver.
func TestRealFargateDriverInCoordinatorImageCustomSSH(t *testing.T) {
	d, _, img := newImageDriverWorld(t, 2222, "ci")
	if img.EnvValue("SSH_PORT") != "2222" || img.EnvValue("SSH_USER") != "ci" {
		t.Errorf("image env %v", img.Env)
	}
	if r := d.stage(t, 202, "prepare"); r.code != 0 {
		t.Fatalf("prepare: %s\n%s", r, d.sshdLog)
	}
	task := d.stack.ECS.Tasks()[0]
	if len(task.Env) != 1 || task.Env["SSH_PUBLIC_KEY"] == "" {
		t.Errorf("the driver set %v in the task, want only SSH_PUBLIC_KEY", task.Env)
	}
	// As that user the job clones into builds_dir and caches in cache_dir (runner defaults).
	r := d.stage(t, 202, "run", d.script(t, `echo "user=$(id -un) home=$HOME ssh=$SSH_CONNECTION"
mkdir -p /opt/gitlab-runner/builds/t3stRunn/0/group/project /opt/gitlab-runner/cache/group/project && echo "dirs writable"
`), "build_script")
	if r.code != 0 {
		t.Fatalf("run: %s\n%s", r, d.sshdLog)
	}
	if want := "user=ci home=/home/ci ssh="; !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, task.IP+" 2222") || !strings.Contains(r.stdout, "dirs writable") {
		t.Errorf("run stdout = %q, want %q over %s 2222", r.stdout, want, task.IP)
	}
	if r := d.stage(t, 202, "cleanup"); r.code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
}

// An image built for the default port while fargate.ssh.port is 2222 (what happens if the image
// is not rebuilt for the configuration): the task runs, but its sshd listens on 22 only, and the
// job fails as a system failure when the driver connects to 2222.
func TestRealFargateDriverImageBuiltForAnotherPort(t *testing.T) {
	d, _, _ := newImageDriverWorld(t, 2222, "ci")
	d.stack.ECS.SetLauncher(&testenv.ImageLauncher{Image: coordinatorImage(t, 22, "root"), Log: d.sshdLog})
	if r := d.stage(t, 203, "prepare"); r.code != 0 {
		t.Fatalf("prepare: %s\n%s", r, d.sshdLog)
	}
	task := d.stack.ECS.Tasks()[0]
	if !strings.Contains(d.sshdLog.String(), "Server listening on "+task.IP+" port 22.") {
		t.Errorf("the stale image's sshd does not listen on 22:\n%s", d.sshdLog)
	}
	r := d.stage(t, 203, "run", d.script(t, "echo should-not-run\n"), "build_script")
	if r.code != systemFailureExit || strings.Contains(r.stdout, "should-not-run") || !strings.Contains(r.stdout+r.stderr, "connection refused") {
		t.Errorf("run against an image built for port 22: want a system failure, connection refused on 2222\n%s", r)
	}
	if r := d.stage(t, 203, "cleanup"); r.code != 0 {
		t.Errorf("cleanup: %s", r)
	}
}
