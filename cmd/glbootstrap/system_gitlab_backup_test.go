package main

// The backup round trip on a live system (issue 12): inside a booted Debian 12 container
// prepared as a GitLab host (the Omnibus stand-ins of internal/testenv recording every call,
// glb-demo standing in for gitlab-backup), apply installs the backup and weekly verify timers,
// then "backup run" → "backup verify" (as systemd runs it, from glbootstrap-backup-verify.service)
// → "backup restore" on a host whose archive is gone and whose secrets changed → "backup verify".

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/nspawn"
	"github.com/glbootstrap/glbootstrap/internal/testenv/standin"
)

func TestSystemGitLabBackupRoundTrip(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: boots a systemd-nspawn container as root; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	rootfs := nspawn.Prerequisites(t, "go")
	nspawn.RequireRootfs(t, rootfs)
	share := staticBinaryDir(t)
	// glb-demo doubles as Omnibus's gitlab-backup (standin.GitLabBackup), built static for the container.
	build := exec.Command("go", "build", "-o", filepath.Join(share, "glb-demo"), "../../internal/testenv/cmd/glb-demo")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building glb-demo: %v\n%s", err, out)
	}

	stack, err := testenv.StartStack(context.Background(), testenv.IMDSValues{})
	if err != nil {
		t.Fatalf("starting stand-ins: %v", err)
	}
	t.Cleanup(stack.Close)
	stack.SeedGitLabSSM()
	stack.SSM.Delete(testenv.StackPrivateURL)
	stack.S3.CreateBucketIn(testenv.StackBackupBucket, "us-east-2")
	stack.S3.CreateBucketIn("example-gitlab-secrets", "us-east-2")
	cfg := stack.GitLabConfig("", backupSection+secretsSection)
	cfg = strings.Replace(cfg, "  ssh_port: 22\n", "  ssh_port: 22\n  ready_timeout: 30s\n", 1)
	stack.SSM.Put(testenv.StackGitLabConfigParam, cfg, true)
	nginx, err := testenv.NewGitLab(testenv.GitLabOptions{Addr: "127.0.0.1:443", CertHosts: []string{"127.0.0.1"}, MonitoringWhitelist: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatalf("the GitLab stand-in for the readiness probe must listen on 127.0.0.1:443: %v; free the port", err)
	}
	t.Cleanup(nginx.Close)

	seed := t.TempDir()
	if err := testenv.SeedGitLabRoot(seed); err != nil {
		t.Fatal(err)
	}
	if err := standin.SimulateReconfigure(seed); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"opt/gitlab/version-manifest.txt", "etc/gitlab/gitlab.rb", "etc/gitlab/gitlab-secrets.json", "opt/gitlab/bin/gitlab-ctl", "opt/gitlab/bin/gitlab-rake"} {
		b, err := os.ReadFile(filepath.Join(seed, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(share, filepath.Base(f)), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const calls = "/var/lib/glb-test/omnibus.calls"
	env := append(stack.Env(nil), standin.RootEnv+"=/", standin.BucketEnv+"="+testenv.StackBackupBucket, standin.CallsEnv+"="+calls)

	c := nspawn.Boot(t, rootfs, nspawn.BindRO(share, "/glb-test"))
	requireReachable(t, c, env, nginx.URL())
	c.Sh(t, "install -D -m 0644 /glb-test/version-manifest.txt /opt/gitlab/version-manifest.txt"+
		" && install -d -m 0775 /etc/gitlab /var/lib/glb-test && install -d -m 0700 /var/opt/gitlab/backups"+
		" && install -m 0600 /glb-test/gitlab.rb /glb-test/gitlab-secrets.json /etc/gitlab/"+
		" && install -D -m 0755 /glb-test/gitlab-ctl /opt/gitlab/bin/gitlab-ctl && install -m 0755 /glb-test/gitlab-rake /opt/gitlab/bin/gitlab-rake"+
		" && install -m 0755 /glb-test/glb-demo /opt/gitlab/bin/glb-demo"+
		" && printf '#!/bin/sh\\nexec /opt/gitlab/bin/glb-demo gitlab-backup-stand-in \"$@\"\\n' > /opt/gitlab/bin/gitlab-backup && chmod 0755 /opt/gitlab/bin/gitlab-backup"+
		" && install -m 0755 /glb-test/glbootstrap /usr/local/bin/glbootstrap"+
		"")
	// sshd running as on the AMI (the sshd phase checks and reloads it), on a free loopback port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sshPort := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	c.Write(t, liveListenConf, "# glbootstrap system test: the container shares the host's network.\nPort "+sshPort+"\nListenAddress 127.0.0.1\n")
	c.Sh(t, "systemctl start ssh.service")
	glb := func(what string, args ...string) result {
		t.Helper()
		start := time.Now()
		stdout, stderr, code := c.Exec(env, append([]string{"/usr/local/bin/glbootstrap"}, args...)...)
		r := result{code: code, stdout: stdout, stderr: stderr}
		t.Logf("%s: exit %d in %s", what, code, time.Since(start).Round(time.Millisecond))
		noSecret(t, r)
		return r
	}
	src := []string{"--config", "ssm:" + testenv.StackGitLabConfigParam}

	if r := glb("apply", append([]string{"apply", "--role", "gitlab"}, src...)...); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	for _, u := range []string{"glbootstrap-backup.timer", "glbootstrap-backup-verify.timer"} {
		if got := c.Systemctl("is-active", u); got != "active" {
			t.Errorf("%s is %q after apply, want active", u, got)
		}
	}
	run := glb("backup run", append([]string{"backup", "run"}, src...)...)
	if run.code != 0 {
		t.Fatalf("backup run: %s", run)
	}
	id := ""
	for k := range stack.S3.Objects("example-gitlab-secrets", "gitlab-config/") {
		id = strings.TrimSuffix(strings.TrimPrefix(k, "gitlab-config/"), "_gitlab_config.tar.gz")
	}
	if id == "" || !strings.Contains(run.stdout, "backup "+id+" done") {
		t.Fatalf("no pair in S3 after backup run: %s", run)
	}

	// The weekly check as systemd runs it: the unit, with the stand-ins' endpoints in the
	// manager's environment.
	c.Sh(t, "systemctl set-environment "+strings.Join(quoteAll(stack.Env(nil)), " "))
	c.Sh(t, "systemctl start glbootstrap-backup-verify.service || true")
	if got := c.Show(t, "glbootstrap-backup-verify.service", "Result"); got != "success" {
		t.Errorf("glbootstrap-backup-verify.service Result=%s\n%s", got, c.Sh(t, "journalctl -u glbootstrap-backup-verify --no-pager -o cat"))
	} else if j := c.Sh(t, "journalctl --sync; journalctl -u glbootstrap-backup-verify --no-pager -o cat"); !strings.Contains(j, "result:        OK: backup "+id) {
		t.Errorf("verify service journal lacks the OK line:\n%s", j)
	}

	// The restore host: no local archive, its own secrets.
	c.Sh(t, "rm -f /var/opt/gitlab/backups/*.tar "+calls+" && echo '{\"gitlab_rails\":{\"secret_key_base\":\"fresh\"}}' > /etc/gitlab/gitlab-secrets.json")
	res := glb("backup restore", append([]string{"backup", "restore", "--from", id}, src...)...)
	if res.code != 0 {
		t.Fatalf("restore: %s", res)
	}
	got := strings.Split(strings.TrimSpace(c.Sh(t, "cat "+calls)), "\n")
	var order []string
	for _, l := range got {
		order = append(order, strings.Split(l, " secrets=")[0])
	}
	want := []string{"gitlab-ctl stop puma", "gitlab-ctl stop sidekiq", "GITLAB_ASSUME_YES=1 gitlab-backup restore BACKUP=" + id,
		"gitlab-ctl reconfigure", "gitlab-ctl restart", "gitlab-rake gitlab:check SANITIZE=true", "gitlab-rake gitlab:doctor:secrets"}
	if strings.Join(order, "\n") != strings.Join(want, "\n") {
		t.Errorf("Omnibus calls in the container:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	orig, _ := os.ReadFile(filepath.Join(seed, "etc/gitlab/gitlab-secrets.json"))
	if c.Sh(t, "cat /etc/gitlab/gitlab-secrets.json") != string(orig) {
		t.Error("gitlab-secrets.json not put back")
	}
	if owner := strings.TrimSpace(c.Sh(t, "stat -c %U:%a /var/opt/gitlab/backups/"+id+"_gitlab_backup.tar")); owner != "root:600" && owner != "git:600" {
		t.Errorf("downloaded archive owner:mode %s", owner)
	}
	if v := glb("backup verify", append([]string{"backup", "verify"}, src...)...); v.code != 0 || !strings.Contains(v.stdout, "result:        OK") {
		t.Errorf("verify after the restore: %s", v)
	}
}

func quoteAll(env []string) []string {
	out := make([]string, len(env))
	for i, e := range env {
		out[i] = "'" + strings.ReplaceAll(e, "'", `'\''`) + "'"
	}
	return out
}
