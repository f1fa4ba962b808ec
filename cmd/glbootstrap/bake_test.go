package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// bake on a runner tree as the package leaves it (unit enabled, a .runner_system_id the
// package's own start made, SSH host keys, a machine-id): the bake phases run, glbootstrap
// installs itself, the image is sealed, and no secret is read (the token parameters are denied).
func TestBakeSealsTheImage(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	w.stack.SSM.DenyRead(testenv.StackCreateToken)
	w.stack.SSM.DenyRead(testenv.StackRunnerToken)
	seed := map[string]string{
		"etc/gitlab-runner/.runner_system_id": "s_0123456789ab\n",
		"etc/gitlab-runner/config.toml":       "concurrent = 1\ncheck_interval = 0\n\n[session_server]\n  session_timeout = 1800\n",
		"etc/machine-id":                      "0123456789abcdef0123456789abcdef\n",
		"etc/ssh/ssh_host_ed25519_key":        "private\n",
		"etc/ssh/ssh_host_ed25519_key.pub":    "public\n",
		"etc/ssh/sshd_config":                 "Include /etc/ssh/sshd_config.d/*.conf\n",
	}
	for p, data := range seed {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(w.root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(w.root, p), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	wants := "etc/systemd/system/multi-user.target.wants/gitlab-runner.service"
	if err := os.MkdirAll(filepath.Dir(filepath.Join(w.root, wants)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/systemd/system/gitlab-runner.service", filepath.Join(w.root, wants)); err != nil {
		t.Fatal(err)
	}

	bake := func() result {
		return w.run("bake", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam, "--root", w.root)
	}
	r := bake()
	if r.code != 0 {
		t.Fatalf("bake: %s", r)
	}
	for _, want := range []string{"[runner] directories", "[runner] fargate-driver", "[runner] seal", "disabled offline: removed /etc/systemd/system/multi-user.target.wants/gitlab-runner.service"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("bake output lacks %q:\n%s", want, r)
		}
	}
	for _, boot := range []string{"register", "runner-config", "preflight"} {
		if strings.Contains(r.stdout, "[runner] "+boot) {
			t.Errorf("bake ran the boot phase %s:\n%s", boot, r.stdout)
		}
	}
	self, _ := os.ReadFile(binary)
	if got, err := os.ReadFile(filepath.Join(w.root, "usr/local/bin/glbootstrap")); err != nil || !bytes.Equal(got, self) {
		t.Errorf("/usr/local/bin/glbootstrap is not this glbootstrap (err %v)", err)
	}
	if info, err := os.Stat(filepath.Join(w.root, "usr/local/bin/glbootstrap")); err != nil || info.Mode().Perm() != 0o755 {
		t.Errorf("/usr/local/bin/glbootstrap: %v %v, want mode 0755", info, err)
	}
	for _, gone := range []string{"etc/gitlab-runner/.runner_system_id", "etc/gitlab-runner/config.toml", "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", wants, "var/lib/glbootstrap/runner.json"} {
		if _, err := os.Lstat(filepath.Join(w.root, gone)); err == nil {
			t.Errorf("%s is still in the image", gone)
		}
	}
	if got := w.read("etc/machine-id"); got != "" {
		t.Errorf("/etc/machine-id = %q, want empty (machine-id(5): generated at first boot)", got)
	}
	if w.read("etc/ssh/sshd_config") == "" {
		t.Error("bake removed sshd_config: only the host keys go")
	}
	if _, err := exec.LookPath("systemctl"); err == nil {
		out, _ := exec.Command("systemctl", "--root="+w.root, "is-enabled", "gitlab-runner.service").CombinedOutput()
		if got := strings.TrimSpace(string(out)); got != "disabled" {
			t.Errorf("systemctl --root is-enabled gitlab-runner.service = %q, want disabled", got)
		}
	}
	if n := len(w.stack.GitLab.Runners()); n != 0 {
		t.Errorf("bake created %d runner(s) on GitLab", n)
	}
	if r2 := bake(); r2.code != 0 || !strings.Contains(r2.stdout, "\n0 changed, 3 unchanged") {
		t.Errorf("second bake: %s", r2)
	}

	// The boot converge from the baked tree, with the secrets readable: one runner, enabled again.
	w.stack.SSM.AllowRead(testenv.StackCreateToken)
	w.stack.SSM.AllowRead(testenv.StackRunnerToken)
	if a := w.apply(); a.code != 0 {
		t.Fatalf("apply after bake: %s", a)
	}
	if _, err := os.Lstat(filepath.Join(w.root, wants)); err != nil {
		t.Errorf("apply after bake did not enable gitlab-runner again: %v", err)
	}
	if n := len(w.stack.GitLab.Runners()); n != 1 {
		t.Errorf("the boot converge left %d runners on GitLab, want 1", n)
	}

	// On the live system bake needs --yes: it seals the machine it runs on.
	if live := w.run("bake", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam); live.code != 2 || !strings.Contains(live.stderr, "--yes") {
		t.Errorf("bake without --root and --yes: %s", live)
	}

	// A front that has registered is refused: every instance would share its token.
	refused := bake()
	if refused.code != 1 || !strings.Contains(refused.stderr, "an image must not carry a runner token") || !strings.Contains(refused.stderr, "glbootstrap runner unregister") {
		t.Errorf("bake of a registered front: %s", refused)
	}
	if _, err := os.Stat(filepath.Join(w.root, "etc/gitlab-runner/.runner_system_id")); err != nil {
		t.Errorf("the refused bake changed the tree: %v", err)
	}
}

// bake of a front without gitlab-runner's unit fails: the image could not run the role.
func TestBakeRefusesAFrontWithoutTheRunner(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	if err := os.Remove(filepath.Join(w.root, "etc/systemd/system/gitlab-runner.service")); err != nil {
		t.Fatal(err)
	}
	r := w.run("bake", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam, "--root", w.root)
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "gitlab-runner.service is not installed, so an image baked now could not run the role") {
		t.Errorf("bake without gitlab-runner: %s", r)
	}
}
