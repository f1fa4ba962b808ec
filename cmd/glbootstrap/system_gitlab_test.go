package main

// The system test of the GitLab role on a live system: the real binary runs
// "apply --role gitlab" with root "/" inside a booted Debian 12 container
// (internal/testenv/nspawn) prepared as a baked GitLab AMI, so the live code
// paths run: gitlab-ctl reconfigure (a stand-in that records its calls), the
// readiness wait on https://127.0.0.1/-/readiness, the backup timer enabled
// and started over D-Bus, the sshd drop-in checked with the real sshd -t and
// ssh.service reloaded. The container shares the host's network namespace:
// the stand-ins this test process serves on 127.0.0.1 (SSM, S3, IMDS, and a
// GitLab stand-in on 127.0.0.1:443 for the readiness probe) are reachable
// from inside, and the container's sshd listens on a loopback port of its own.

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/nspawn"
)

// Paths in the container.
const (
	liveGitLabCtl   = "/opt/gitlab/bin/gitlab-ctl"
	liveCtlCalls    = "/var/lib/glb-test/gitlab-ctl.calls"
	liveCtlFail     = "/etc/glb-test/fail-reconfigure"
	liveDropIn      = "/etc/ssh/sshd_config.d/00-glbootstrap.conf"
	liveListenConf  = "/etc/ssh/sshd_config.d/10-glb-test-listen.conf"
	liveBackupTimer = "glbootstrap-backup.timer"
	liveStateFile   = "/var/lib/glbootstrap/gitlab.json"
	livePassword    = "/etc/gitlab/glbootstrap-initial-root-password.rb"
	liveFromFile    = "from_file \"/etc/gitlab/glbootstrap.rb\"\n"
	liveBrokenSSHD  = "GlbTestNotAnOption yes"
	liveCtlFatal    = "FATAL: RuntimeError: ruby_block[wait for postgresql to start] (postgresql::enable line 80) had an error"
)

// standInGitLabCtl is Omnibus's gitlab-ctl in the container: it records each
// invocation (its arguments, and whether the initial root password file was
// there, as it must be for the first reconfigure) and succeeds, or, while
// liveCtlFail exists, fails a reconfigure the way a Chef run does: many lines
// of output, the error last, exit 1.
const standInGitLabCtl = `#!/bin/sh
# Stand-in for Omnibus's gitlab-ctl (glbootstrap system test).
pw=no
[ -e ` + livePassword + ` ] && pw=yes
echo "$* password-file=$pw" >> ` + liveCtlCalls + `
if [ "$1" = reconfigure ] && [ -e ` + liveCtlFail + ` ]; then
  i=1
  while [ $i -le 30 ]; do echo "Recipe: gitlab::step-$i"; i=$((i+1)); done
  echo "` + liveCtlFatal + `"
  exit 1
fi
echo "gitlab Reconfigured!"
`

// liveGitLabConfig is the stack's GitLab config with the backup section, a
// short readiness timeout (the probe is answered at once but one 503), the
// given time zone and, when gitUser is set, Omnibus's git user.
func liveGitLabConfig(stack *testenv.Stack, timeZone, gitUser string) string {
	cfg := stack.GitLabConfig("", backupSection)
	cfg = strings.Replace(cfg, "  ssh_port: 22\n", "  ssh_port: 22\n  ready_timeout: 30s\n", 1)
	cfg = strings.Replace(cfg, "time_zone: UTC", "time_zone: "+timeZone, 1)
	if gitUser != "" {
		cfg = strings.Replace(cfg, "  settings:\n", "  settings:\n    user:\n      username: "+gitUser+"\n", 1)
	}
	return cfg
}

// TestSystemGitLabLive converges a booted container into a GitLab host:
// first apply, a converged apply, a changed setting, a base sshd_config that
// sshd -t rejects, and a gitlab-ctl reconfigure that fails.
func TestSystemGitLabLive(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: boots a systemd-nspawn container as root; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	rootfs := nspawn.Prerequisites(t, "go")
	nspawn.RequireRootfs(t, rootfs, "/usr/sbin/sshd", "/usr/bin/ssh")
	begin := time.Now()

	share := staticBinaryDir(t)

	// The stand-ins: the GitLab config, the initial root password and no
	// private URL in SSM; the backup bucket in us-east-2 (the IMDS region).
	stack, err := testenv.StartStack(context.Background(), testenv.IMDSValues{})
	if err != nil {
		t.Fatalf("starting stand-ins: %v", err)
	}
	t.Cleanup(stack.Close)
	stack.SeedGitLabSSM()
	stack.SSM.Delete(testenv.StackPrivateURL)
	stack.S3.CreateBucketIn(testenv.StackBackupBucket, "us-east-2")
	setConfig := func(timeZone, gitUser string) {
		stack.SSM.Put(testenv.StackGitLabConfigParam, liveGitLabConfig(stack, timeZone, gitUser), true)
	}
	setConfig("UTC", "")

	// GitLab's nginx as the role's readiness probe sees it after a
	// reconfigure: https://127.0.0.1:443/-/readiness (roles/gitlab/ready.go,
	// which does not verify the certificate on loopback), whitelisted for
	// loopback only, starting up (503) for the first probe.
	nginx, err := testenv.NewGitLab(testenv.GitLabOptions{Addr: "127.0.0.1:443", CertHosts: []string{"127.0.0.1"},
		NotReadyFor: 1, MonitoringWhitelist: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatalf("the GitLab stand-in for the readiness probe must listen on 127.0.0.1:443, the address apply probes after a reconfigure "+
			"(the container shares this network namespace): %v; free the port", err)
	}
	t.Cleanup(nginx.Close)
	readiness := func() int { return nginx.Requests("GET", "/-/readiness") }

	// The baked AMI's Omnibus files, as SeedGitLabRoot lays them out.
	seed := t.TempDir()
	if err := testenv.SeedGitLabRoot(seed); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"opt/gitlab/version-manifest.txt", "etc/gitlab/gitlab.rb"} {
		b, err := os.ReadFile(filepath.Join(seed, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(share, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A loopback port for the container's sshd (which runs in the host's
	// network namespace, where 22 may be taken).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sshPort := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	env := stack.Env(nil)

	prepared := time.Now()
	c := nspawn.Boot(t, rootfs, nspawn.BindRO(share, "/glb-test"))
	booted := time.Now()

	requireReachable(t, c, env, nginx.URL())

	// What the AMI bake leaves: Omnibus (manifest, gitlab-ctl, gitlab.rb),
	// glbootstrap, and sshd running with Debian's configuration (here on a
	// loopback port).
	c.Sh(t, "install -D -m 0644 /glb-test/version-manifest.txt /opt/gitlab/version-manifest.txt"+
		" && install -d -m 0775 /etc/gitlab && install -m 0600 /glb-test/gitlab.rb /etc/gitlab/gitlab.rb"+
		" && install -d /opt/gitlab/bin /var/lib/glb-test /etc/glb-test"+
		" && install -m 0755 /glb-test/glbootstrap /usr/local/bin/glbootstrap")
	c.Write(t, liveGitLabCtl, standInGitLabCtl)
	c.Sh(t, "chmod 0755 "+liveGitLabCtl)
	c.Write(t, liveListenConf, "# glbootstrap system test: the container shares the host's network.\nPort "+sshPort+"\nListenAddress 127.0.0.1\n")
	c.Sh(t, "systemctl start ssh.service")
	if got := c.Systemctl("is-active", "ssh.service"); got != "active" {
		t.Fatalf("ssh.service: %q after systemctl start, want active\n%s", got, c.Sh(t, "journalctl -u ssh.service --no-pager || true"))
	}
	sshPID := c.Show(t, "ssh.service", "MainPID")
	// What a client is offered: the live sshd's authentication methods.
	offered := func() string {
		t.Helper()
		_, stderr, _ := c.Exec(nil, "ssh", "-p", sshPort, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "git@127.0.0.1", "true")
		m := regexp.MustCompile(`Permission denied \(([^)]*)\)`).FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("ssh to the container's sshd: no \"Permission denied (methods)\":\n%s", stderr)
		}
		return m[1]
	}
	if got := offered(); !strings.Contains(got, "password") {
		t.Fatalf("before apply, sshd offers %q; want Debian's default with password", got)
	}
	// "Reloaded" lines of ssh.service in the journal; sshd logs its SIGHUP.
	// The journal is written asynchronously, so wait up to 3 s for the count to reach want.
	reloads := func(want int) int {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			n := strings.Count(c.Sh(t, "journalctl --sync; journalctl -u ssh.service --no-pager -o cat"), "Received SIGHUP; restarting.")
			if n == want || time.Now().After(deadline) {
				return n
			}
		}
	}
	calls := func() []string {
		t.Helper()
		out := strings.TrimSpace(c.Sh(t, "cat "+liveCtlCalls+" 2>/dev/null || true"))
		if out == "" {
			return nil
		}
		return strings.Split(out, "\n")
	}
	dropIn := func() string {
		t.Helper()
		return c.Sh(t, "cat "+liveDropIn)
	}
	state := func() (st struct {
		Configured bool   `json:"configured"`
		SHA        string `json:"fragment_sha256"`
	}) {
		t.Helper()
		if err := json.Unmarshal([]byte(c.Sh(t, "cat "+liveStateFile)), &st); err != nil {
			t.Fatalf("%s: %v", liveStateFile, err)
		}
		return st
	}

	apply := func(what string, extra ...string) result {
		t.Helper()
		r := execIn(t, c, env, what, append([]string{"/usr/local/bin/glbootstrap", "apply", "--role", "gitlab", "--config", "ssm:" + testenv.StackGitLabConfigParam}, extra...)...)
		noSecret(t, r)
		return r
	}
	phase := func(name, status string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^\[gitlab\] ` + regexp.QuoteMeta(name) + ` +` + status + ` `)
	}
	zeroChanged := regexp.MustCompile(`(?m)^0 changed, \d+ unchanged, 0 failed`)
	wantOut := func(what string, r result, wants ...string) {
		t.Helper()
		for _, want := range wants {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s: output lacks %q:\n%s", what, want, r)
			}
		}
	}

	// First apply: everything, live.
	first := apply("first apply")
	if first.code != 0 {
		t.Fatalf("first apply: %s", first)
	}
	t.Logf("first apply:\n%s", first.stdout)
	wantOut("first apply", first,
		"glbootstrap apply --role gitlab on the live system",
		"gitlab-ctl reconfigure: ran: GitLab was never configured",
		"/-/readiness: ready after",
		liveBackupTimer+": enabled",
		liveBackupTimer+": started",
		"ssh.service: reloaded",
		"ssm:/glbootstrap/gitlab/private-url: created: https://10.0.1.20",
	)
	// The progress of the wait: one 503 while GitLab starts.
	if !strings.Contains(first.stderr, "GitLab is not ready yet (attempt 1, 0s elapsed): HTTP 503") {
		t.Errorf("first apply: stderr does not show the readiness wait:\n%s", first.stderr)
	}
	if !phase("backup-preflight", "unchanged").MatchString(first.stdout) {
		t.Errorf("first apply: backup-preflight (a check) not unchanged:\n%s", first)
	}
	for _, p := range []string{"gitlab-fragment", "gitlab-rb-include", "root-password", "reconfigure", "backup-timer", "sshd", "publish-private-url"} {
		if !phase(p, "changed").MatchString(first.stdout) {
			t.Errorf("first apply: phase %s not changed:\n%s", p, first)
		}
	}
	if got := calls(); len(got) != 1 || got[0] != "reconfigure password-file=yes" {
		t.Errorf("first apply: gitlab-ctl calls %q, want one \"reconfigure\" with the initial root password file in place", got)
	}
	if n := readiness(); n != 2 {
		t.Errorf("first apply: %d readiness probes, want 2 (a 503 while starting, then 200)", n)
	}
	if got := strings.TrimSpace(c.Sh(t, "stat -c '%a %U:%G' /etc/gitlab/glbootstrap.rb")); got != "600 root:root" {
		t.Errorf("/etc/gitlab/glbootstrap.rb: %q, want 600 root:root", got)
	}
	if frag := c.Sh(t, "cat /etc/gitlab/glbootstrap.rb"); !strings.Contains(frag, "gitlab_rails['time_zone'] = 'UTC'") ||
		!strings.Contains(frag, "gitlab_rails['backup_upload_remote_directory'] = '"+testenv.StackBackupBucket+"'") {
		t.Errorf("fragment:\n%s", frag)
	}
	if rb := c.Sh(t, "cat /etc/gitlab/gitlab.rb"); !strings.HasPrefix(rb, testenv.OmnibusGitLabRB) || !strings.HasSuffix(rb, liveFromFile) ||
		strings.Count(rb, liveFromFile) != 1 {
		t.Errorf("gitlab.rb: the package's lines must stay and the from_file line come last, once:\n%s", rb)
	}
	c.Sh(t, "test ! -e "+livePassword)
	if st := state(); !st.Configured || len(st.SHA) != 64 {
		t.Errorf("state after the first apply: %+v", st)
	}
	if v, _ := stack.SSM.Value(testenv.StackPrivateURL); v != "https://10.0.1.20" {
		t.Errorf("published private URL = %q", v)
	}
	if objs := stack.S3.Objects(testenv.StackBackupBucket, ""); len(objs) != 0 {
		t.Errorf("backup-preflight left objects in the bucket: %v", objs)
	}

	// sshd: the drop-in, what sshd makes of it, and the running sshd reloaded.
	firstDropIn := dropIn()
	if !strings.Contains(firstDropIn, "AllowUsers git\n") {
		t.Errorf("drop-in:\n%s", firstDropIn)
	}
	if got := strings.TrimSpace(c.Sh(t, "stat -c '%a %U' "+liveDropIn)); got != "644 root" {
		t.Errorf("%s: %q, want 644 root", liveDropIn, got)
	}
	effective := c.Sh(t, "sshd -T")
	for _, want := range []string{"passwordauthentication no", "permitrootlogin no", "kbdinteractiveauthentication no", "allowusers git", "permittty no"} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(effective) {
			t.Errorf("sshd -T lacks %q", want)
		}
	}
	if n := reloads(1); n != 1 {
		t.Errorf("ssh.service was reloaded %d times by the first apply, want 1\n%s", n, c.Sh(t, "journalctl -u ssh.service --no-pager"))
	}
	if got := c.Show(t, "ssh.service", "MainPID"); got != sshPID {
		t.Errorf("ssh.service MainPID %s -> %s: want a reload, not a restart", sshPID, got)
	}
	if got := offered(); got != "publickey" {
		t.Errorf("after apply the running sshd offers %q, want only publickey", got)
	}

	// The backup timer: enabled and started over D-Bus, with the schedule.
	if got := c.Systemctl("is-enabled", liveBackupTimer); got != "enabled" {
		t.Errorf("is-enabled %s = %q, want enabled", liveBackupTimer, got)
	}
	if got := c.Systemctl("is-active", liveBackupTimer); got != "active" {
		t.Errorf("is-active %s = %q, want active", liveBackupTimer, got)
	}
	if got := c.Show(t, liveBackupTimer, "TimersCalendar"); !strings.Contains(got, "OnCalendar=*-*-* 02:00:00") {
		t.Errorf("%s TimersCalendar = %q, want the 02:00 schedule", liveBackupTimer, got)
	}
	if got := c.Show(t, "glbootstrap-backup.service", "ExecStart"); !strings.Contains(got, "/usr/local/bin/glbootstrap backup run --config ssm:"+testenv.StackGitLabConfigParam) {
		t.Errorf("glbootstrap-backup.service ExecStart = %q", got)
	}
	if got := c.Systemctl("is-active", "glbootstrap-backup.service"); got != "inactive" {
		t.Errorf("glbootstrap-backup.service is %q right after apply, want inactive (the timer runs it at night)", got)
	}

	// Converged: nothing changes, nothing runs.
	timerSince := c.Show(t, liveBackupTimer, "ActiveEnterTimestampMonotonic")
	second := apply("second apply")
	if second.code != 0 || !zeroChanged.MatchString(second.stdout) || !strings.Contains(second.stdout, "0 failed") {
		t.Errorf("second apply: want exit 0 and \"0 changed\": %s", second)
	}
	if !phase("reconfigure", "unchanged").MatchString(second.stdout) || !strings.Contains(second.stdout, liveBackupTimer+": running") {
		t.Errorf("second apply: want reconfigure unchanged and the timer running: %s", second)
	}
	if n := len(calls()); n != 1 {
		t.Errorf("second apply: gitlab-ctl invoked %d times in all, want still 1", n)
	}
	if n := readiness(); n != 2 {
		t.Errorf("second apply probed readiness: %d probes in all, want still 2", n)
	}
	if n := reloads(1); n != 1 {
		t.Errorf("second apply reloaded ssh.service (%d reloads in all)", n)
	}
	if got := c.Show(t, liveBackupTimer, "ActiveEnterTimestampMonotonic"); got != timerSince {
		t.Errorf("second apply restarted %s", liveBackupTimer)
	}

	// The same as JSON lines (for SSM Run Command), which also list the
	// unchanged steps: the live preflight wrote and deleted its marker in the
	// us-east-2 bucket again.
	asJSON := apply("converged apply -o json", "-o", "json")
	if asJSON.code != 0 {
		t.Errorf("converged apply -o json: %s", asJSON)
	}
	var preflight, summary bool
	for _, line := range strings.Split(strings.TrimSpace(asJSON.stdout), "\n") {
		var rec struct {
			Type    string `json:"type"`
			Phase   string `json:"phase"`
			Status  string `json:"status"`
			Changed *int   `json:"changed"`
			Steps   []struct {
				Target, Summary string
			} `json:"steps"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("converged apply -o json: %q: %v", line, err)
			continue
		}
		switch {
		case rec.Phase == "backup-preflight":
			preflight = rec.Status == "unchanged" && len(rec.Steps) == 1 &&
				rec.Steps[0].Target == "s3://"+testenv.StackBackupBucket+"/gitlab/" &&
				rec.Steps[0].Summary == "bucket in us-east-2, instance profile may write and delete there"
		case rec.Type == "summary":
			summary = rec.Changed != nil && *rec.Changed == 0
		}
	}
	if !preflight || !summary {
		t.Errorf("converged apply -o json: want backup-preflight's live write check and 0 changed:\n%s", asJSON)
	}
	if objs := stack.S3.Objects(testenv.StackBackupBucket, ""); len(objs) != 0 {
		t.Errorf("backup-preflight left objects in the bucket: %v", objs)
	}
	if n := len(calls()); n != 1 {
		t.Errorf("converged apply -o json ran gitlab-ctl (%d calls in all)", n)
	}

	// One setting changed in SSM: exactly one more reconfigure, no sshd reload.
	setConfig("Europe/Berlin", "")
	changed := apply("apply after a setting change")
	if changed.code != 0 || strings.Count(changed.stdout, "gitlab-ctl reconfigure: ran: the managed fragment changed") != 1 {
		t.Errorf("apply after a setting change: want exit 0 and one reconfigure: %s", changed)
	}
	if !phase("gitlab-fragment", "changed").MatchString(changed.stdout) || !phase("sshd", "unchanged").MatchString(changed.stdout) {
		t.Errorf("apply after a setting change: want gitlab-fragment changed, sshd unchanged: %s", changed)
	}
	if got := calls(); len(got) != 2 || got[1] != "reconfigure password-file=no" {
		t.Errorf("after a setting change: gitlab-ctl calls %q, want a second \"reconfigure\", without the password file", got)
	}
	if n := readiness(); n != 3 {
		t.Errorf("after a setting change: %d readiness probes in all, want 3", n)
	}
	if !strings.Contains(c.Sh(t, "cat /etc/gitlab/glbootstrap.rb"), "gitlab_rails['time_zone'] = 'Europe/Berlin'") {
		t.Error("the fragment does not have the new time zone")
	}
	if r := apply("apply after that"); r.code != 0 || !zeroChanged.MatchString(r.stdout) || len(calls()) != 2 {
		t.Errorf("apply after the change: want exit 0, 0 changed, no reconfigure: %s", r)
	}

	// A renewed certificate in SSM: written (the key 0600), nginx reloaded with gitlab-ctl hup
	// nginx, no reconfigure (it would not reload nginx for new file contents).
	cert2, key2 := testenv.NewTLSPair("gitlab.example.com")
	stack.SSM.Put(testenv.StackTLSCertParam, cert2, true)
	stack.SSM.Put(testenv.StackTLSKeyParam, key2, true)
	renewed := apply("apply after a certificate renewal")
	if renewed.code != 0 || !phase("gitlab-tls", "changed").MatchString(renewed.stdout) || !phase("reconfigure", "unchanged").MatchString(renewed.stdout) {
		t.Errorf("apply after a certificate renewal: want gitlab-tls changed, reconfigure unchanged: %s", renewed)
	}
	if got := calls(); len(got) != 3 || got[2] != "hup nginx password-file=no" {
		t.Errorf("after a certificate renewal: gitlab-ctl calls %q, want a third \"hup nginx\"", got)
	}
	if got := c.Sh(t, "stat -c %a /etc/gitlab/ssl/gitlab.example.com.key /etc/gitlab/ssl/gitlab.example.com.crt"); got != "600\n644\n" && got != "600\n644" {
		t.Errorf("certificate file modes: %q", got)
	}
	if r := apply("apply after the renewal"); r.code != 0 || !zeroChanged.MatchString(r.stdout) || len(calls()) != 3 {
		t.Errorf("apply after the renewal: want exit 0, 0 changed, no gitlab-ctl: %s", r)
	}

	// A base sshd_config broken while the drop-in stays the same: sshd -t runs on every apply
	// and reports it, the drop-in left as it is.
	c.Sh(t, "echo '"+liveBrokenSSHD+"' >> /etc/ssh/sshd_config")
	same := apply("apply with a broken sshd_config, drop-in unchanged")
	if same.code != 1 || !phase("sshd", "failed").MatchString(same.stdout) {
		t.Errorf("apply with a broken sshd_config and the same drop-in: want exit 1 and the sshd phase failed: %s", same)
	}
	wantOut("apply with a broken sshd_config, drop-in unchanged", same,
		"sshd -t rejects this host's sshd configuration",
		"Bad configuration option: "+strings.Fields(liveBrokenSSHD)[0],
	)
	if got := dropIn(); got != firstDropIn {
		t.Errorf("the drop-in changed although only sshd_config broke:\n%s", got)
	}
	c.Sh(t, "sed -i '/^"+liveBrokenSSHD+"$/d' /etc/ssh/sshd_config")

	// A base sshd_config that sshd -t rejects, and a new git user (so the
	// drop-in changes): the sshd phase fails with sshd's words and the old
	// drop-in stays as it was; once sshd_config is fixed, the new one goes in.
	c.Sh(t, "echo '"+liveBrokenSSHD+"' >> /etc/ssh/sshd_config")
	setConfig("Europe/Berlin", "gitlab")
	broken := apply("apply with a broken sshd_config")
	t.Logf("apply with a broken sshd_config:\n%s", broken.stdout)
	if broken.code != 1 || !phase("sshd", "failed").MatchString(broken.stdout) {
		t.Errorf("apply with a broken sshd_config: want exit 1 and the sshd phase failed: %s", broken)
	}
	wantOut("apply with a broken sshd_config", broken,
		"sshd -t rejected the new "+liveDropIn+", so the old one stays in place",
		"Bad configuration option: "+strings.Fields(liveBrokenSSHD)[0],
	)
	if got := dropIn(); got != firstDropIn {
		t.Errorf("the drop-in changed although sshd -t failed:\n%s", got)
	}
	if got := strings.Fields(c.Sh(t, "ls -A /etc/ssh/sshd_config.d")); strings.Join(got, " ") != "00-glbootstrap.conf 10-glb-test-listen.conf" {
		t.Errorf("sshd_config.d after the failed check: %q, want no temp file left", got)
	}
	if n := reloads(1); n != 1 {
		t.Errorf("ssh.service reloaded after a failed check (%d reloads in all)", n)
	}
	ctlAfterBroken := len(calls())
	if ctlAfterBroken != 4 {
		t.Errorf("the new git user changed the fragment: want a third reconfigure (after the hup), have %d calls", ctlAfterBroken)
	}
	c.Sh(t, "sed -i '/^"+liveBrokenSSHD+"$/d' /etc/ssh/sshd_config")
	fixed := apply("apply after fixing sshd_config")
	if fixed.code != 0 || !phase("sshd", "changed").MatchString(fixed.stdout) || !strings.Contains(fixed.stdout, "ssh.service: reloaded") {
		t.Errorf("apply after fixing sshd_config: want exit 0, the drop-in installed and sshd reloaded: %s", fixed)
	}
	if got := dropIn(); !strings.Contains(got, "AllowUsers gitlab\n") {
		t.Errorf("drop-in after the fix:\n%s", got)
	}
	if n := len(calls()); n != ctlAfterBroken {
		t.Errorf("apply after fixing sshd_config ran gitlab-ctl again (%d calls, want %d)", n, ctlAfterBroken)
	}
	if n := reloads(2); n != 2 {
		t.Errorf("ssh.service reloads in all: %d, want 2", n)
	}
	if !regexp.MustCompile(`(?m)^allowusers gitlab$`).MatchString(c.Sh(t, "sshd -T")) {
		t.Error("sshd -T: allowusers is not gitlab after the fix")
	}

	// gitlab-ctl reconfigure fails: the phase fails with the tail of its
	// output, the state forgets the fragment, and the next apply (with
	// nothing else changed) reconfigures again.
	c.Sh(t, "touch "+liveCtlFail)
	setConfig("Asia/Tokyo", "gitlab")
	probes := readiness()
	failed := apply("apply with a failing gitlab-ctl reconfigure")
	t.Logf("apply with a failing gitlab-ctl reconfigure:\n%s", failed.stdout)
	if failed.code != 1 || !phase("reconfigure", "failed").MatchString(failed.stdout) {
		t.Errorf("failing reconfigure: want exit 1 and the reconfigure phase failed: %s", failed)
	}
	wantOut("failing reconfigure", failed,
		"gitlab-ctl reconfigure failed; fix the cause",
		liveCtlFatal,
		"Recipe: gitlab::step-30",
		"Recipe: gitlab::step-12\n",
	)
	if strings.Contains(failed.stdout+failed.stderr, "Recipe: gitlab::step-11\n") {
		t.Errorf("failing reconfigure: more than the tail of the output was printed: %s", failed)
	}
	if n := len(calls()); n != ctlAfterBroken+1 {
		t.Errorf("failing reconfigure: %d gitlab-ctl calls, want %d", n, ctlAfterBroken+1)
	}
	if n := readiness(); n != probes {
		t.Errorf("readiness was probed after a failed reconfigure")
	}
	if st := state(); !st.Configured || st.SHA != "" {
		t.Errorf("state after a failed reconfigure: %+v, want configured with no fragment hash", st)
	}
	c.Sh(t, "rm "+liveCtlFail)
	retry := apply("apply after the reconfigure failure")
	if retry.code != 0 || strings.Count(retry.stdout, "gitlab-ctl reconfigure: ran: the managed fragment changed") != 1 ||
		!phase("gitlab-fragment", "unchanged").MatchString(retry.stdout) {
		t.Errorf("apply after the failure: want exit 0 and reconfigure again with the fragment already in place: %s", retry)
	}
	if got := calls(); len(got) != ctlAfterBroken+2 || got[len(got)-1] != "reconfigure password-file=no" {
		t.Errorf("after the retry: gitlab-ctl calls %q", got)
	}
	if n := readiness(); n != probes+1 {
		t.Errorf("after the retry: %d readiness probes, want %d", n, probes+1)
	}
	if st := state(); !st.Configured || len(st.SHA) != 64 {
		t.Errorf("state after the retry: %+v", st)
	}
	if r := apply("last apply"); r.code != 0 || !zeroChanged.MatchString(r.stdout) || len(calls()) != ctlAfterBroken+2 {
		t.Errorf("last apply: want exit 0, 0 changed, no reconfigure: %s", r)
	}
	if got := c.Systemctl("is-active", liveBackupTimer); got != "active" {
		t.Errorf("%s at the end: %q", liveBackupTimer, got)
	}

	// backup.region names another region than the bucket's, along with a
	// setting change: backup-preflight fails on the live S3 check before
	// anything else is touched, and says where the bucket is.
	wrong := strings.Replace(liveGitLabConfig(stack, "Europe/Paris", "gitlab"), "  bucket: "+testenv.StackBackupBucket+"\n",
		"  bucket: "+testenv.StackBackupBucket+"\n  region: eu-west-1\n", 1)
	if !strings.Contains(wrong, "region: eu-west-1") {
		t.Fatalf("could not set backup.region in:\n%s", wrong)
	}
	stack.SSM.Put(testenv.StackGitLabConfigParam, wrong, true)
	moved := apply("apply with backup.region not the bucket's")
	if moved.code != 1 || !phase("backup-preflight", "failed").MatchString(moved.stdout) ||
		!strings.Contains(moved.stdout, "us-east-2") || !strings.Contains(moved.stdout, "eu-west-1") ||
		strings.Contains(moved.stdout, "[gitlab] gitlab-fragment") {
		t.Errorf("apply with backup.region eu-west-1: want exit 1 in backup-preflight, naming both regions, and no later phase: %s", moved)
	}
	if strings.Contains(c.Sh(t, "cat /etc/gitlab/glbootstrap.rb"), "Europe/Paris") || len(calls()) != ctlAfterBroken+2 {
		t.Error("a failed backup-preflight let the fragment change or gitlab-ctl run")
	}
	t.Logf("build and stand-ins %s, boot %s, setup, applies and checks %s", prepared.Sub(begin).Round(time.Millisecond),
		booted.Sub(prepared).Round(time.Millisecond), time.Since(booted).Round(time.Millisecond))
}
