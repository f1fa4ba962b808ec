package main

// Blackbox tests of the GitLab Omnibus host role: the real binary converging a temp --root
// seeded as a baked GitLab AMI, with the config, the initial root password and the published
// private URL in the SSM stand-in.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// reconfigureLine is the reconfigure step under --root: gitlab-ctl cannot run there, so the
// state records the fragment as pending for the first apply on the live system.
const reconfigureLine = "command  /opt/gitlab/bin/gitlab-ctl reconfigure: not run"

// GitLabCtlReconfigure is the reconfigure command as a step names it.
const GitLabCtlReconfigure = "/opt/gitlab/bin/gitlab-ctl reconfigure"

// pendingLine ends reconfigureLine's summary.
const pendingLine = "recorded as pending: the first apply on the live system runs it"

// newGitLabWorld is a stack and a root seeded as a baked GitLab AMI, the GitLab config in SSM
// and no private URL published yet.
func newGitLabWorld(t *testing.T) *world {
	t.Helper()
	stack, err := testenv.StartStack(context.Background(), testenv.IMDSValues{})
	if err != nil {
		t.Fatalf("starting stand-ins: %v", err)
	}
	t.Cleanup(stack.Close)
	root := t.TempDir()
	if err := testenv.SeedGitLabRoot(root); err != nil {
		t.Fatal(err)
	}
	stack.SeedGitLabSSM()
	stack.SSM.Delete(testenv.StackPrivateURL)
	w := &world{t: t, stack: stack, root: root, env: stack.Env(os.Environ())}
	// Every line of nginx's private key is a secret of its own: run fails on any of them.
	_, key := testenv.StackTLSPair()
	for _, l := range strings.Split(key, "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			w.secret("tls key line", l)
		}
	}
	w.setGitLabConfig(stack.GitLabConfig("", ""))
	return w
}

func (w *world) setGitLabConfig(yaml string) {
	w.stack.SSM.Put(testenv.StackGitLabConfigParam, yaml, true)
}

func (w *world) gitlab(verb string, extra ...string) result {
	w.t.Helper()
	return w.run(append([]string{verb, "--role", "gitlab", "--config", "ssm:" + testenv.StackGitLabConfigParam, "--root", w.root}, extra...)...)
}

// noSecret fails when the initial root password, raw or as its Ruby literal, was printed.
func noSecret(t *testing.T, r result) {
	t.Helper()
	for _, s := range []string{testenv.StackRootPasswordVal, "demo-Root-pw"} {
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("the root password was printed:\n%s", r)
		}
	}
}

func TestGitLabApplyConvergesThenChangesNothing(t *testing.T) {
	w := newGitLabWorld(t)

	plan := w.gitlab("plan")
	if plan.code != 10 || !strings.Contains(plan.stdout, "is not the live system): GitLab was never configured") {
		t.Fatalf("plan on a fresh host: %s", plan)
	}
	// gitlab.rb is the admin's: plan says what it would do to it, and shows none of its lines.
	if !strings.Contains(plan.stdout, "/etc/gitlab/gitlab.rb: would be updated: from_file line for /etc/gitlab/glbootstrap.rb appended at the end") ||
		strings.Contains(plan.stdout, "external_url 'http://gitlab.example.com'") {
		t.Errorf("plan on a fresh host, gitlab.rb:\n%s", plan)
	}
	noSecret(t, plan)

	first := w.gitlab("apply")
	if first.code != 0 {
		t.Fatalf("first apply: %s", first)
	}
	noSecret(t, first)
	for _, want := range []string{"[gitlab] gitlab-fragment", reconfigureLine, pendingLine, "ssm:/glbootstrap/gitlab/private-url: created: https://10.0.1.20", "7 changed, 2 unchanged, 0 failed"} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("first apply output lacks %q:\n%s", want, first)
		}
	}
	if n := strings.Count(first.stdout, reconfigureLine); n != 1 {
		t.Errorf("first apply recorded %d reconfigure actions, want 1", n)
	}

	frag := w.read("etc/gitlab/glbootstrap.rb")
	for _, want := range []string{
		"external_url 'https://gitlab.example.com'",
		"nginx['listen_port'] = 443",
		"gitlab_rails['gitlab_shell_ssh_port'] = 22",
		"gitlab_rails['monitoring_whitelist'] = ['127.0.0.0/8', '::1/128', '10.0.0.0/16']",
		"gitlab_rails['time_zone'] = 'UTC'",
	} {
		if !strings.Contains(frag, want) {
			t.Errorf("fragment lacks %q:\n%s", want, frag)
		}
	}
	rb := w.read("etc/gitlab/gitlab.rb")
	if !strings.HasPrefix(rb, testenv.OmnibusGitLabRB) || !strings.HasSuffix(rb, "from_file \"/etc/gitlab/glbootstrap.rb\"\n") {
		t.Errorf("gitlab.rb: the package's lines must stay and the from_file line come last:\n%s", rb)
	}
	for p, mode := range map[string]os.FileMode{
		"etc/gitlab/glbootstrap.rb":                 0o600,
		"etc/gitlab/gitlab.rb":                      0o600,
		"var/lib/glbootstrap/gitlab.json":           0o600,
		"etc/ssh/sshd_config.d/00-glbootstrap.conf": 0o644,
		"etc/gitlab/ssl/gitlab.example.com.crt":     0o644,
		"etc/gitlab/ssl/gitlab.example.com.key":     0o600,
	} {
		if info, err := os.Stat(filepath.Join(w.root, p)); err != nil || info.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %04o", p, info, err, mode)
		}
	}
	// Under --root reconfigure did not run: the password file stays for the first live apply,
	// and the state says pending, never configured.
	if _, err := os.Stat(filepath.Join(w.root, "etc/gitlab/glbootstrap-initial-root-password.rb")); err != nil {
		t.Errorf("the initial root password file is gone although reconfigure never ran: %v", err)
	}
	var st struct {
		Configured bool   `json:"configured"`
		SHA        string `json:"fragment_sha256"`
		Pending    string `json:"reconfigure_pending_sha256"`
	}
	if err := json.Unmarshal([]byte(w.read("var/lib/glbootstrap/gitlab.json")), &st); err != nil || st.Configured || st.SHA != "" || len(st.Pending) != 64 {
		t.Errorf("state: %+v %v", st, err)
	}
	if v, _ := w.stack.SSM.Value(testenv.StackPrivateURL); v != "https://10.0.1.20" {
		t.Errorf("published private URL = %q", v)
	}
	puts := w.stack.SSM.Calls("PutParameter")

	before := w.snapshot()
	for i := 0; i < 2; i++ {
		again := w.gitlab("apply")
		if again.code != 0 || !strings.Contains(again.stdout, "0 changed, 9 unchanged, 0 failed") {
			t.Fatalf("apply #%d: %s", i+2, again)
		}
		noSecret(t, again)
	}
	if w.snapshot() != before {
		t.Error("converged applies changed the tree")
	}
	if n := w.stack.SSM.Calls("PutParameter"); n != puts {
		t.Errorf("converged applies called PutParameter %d more times", n-puts)
	}
	if r := w.gitlab("plan"); r.code != 0 {
		t.Fatalf("plan on a converged host: %s", r)
	}
}

// TestGitLabSettingChangeStaysPending: under --root a setting change updates the fragment and
// the pending record, and nothing else; the live reconfigure-once behaviour is in the system
// test (system_gitlab_test.go).
func TestGitLabSettingChangeStaysPending(t *testing.T) {
	w := newGitLabWorld(t)
	if r := w.gitlab("apply"); r.code != 0 {
		t.Fatal(r)
	}
	w.setGitLabConfig(strings.Replace(w.stack.GitLabConfig("", ""), "time_zone: UTC", "time_zone: Europe/Berlin", 1))

	plan := w.gitlab("plan")
	for _, want := range []string{"-gitlab_rails['time_zone'] = 'UTC'", "+gitlab_rails['time_zone'] = 'Europe/Berlin'", reconfigureLine, "2 to change"} {
		if !strings.Contains(plan.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	if plan.code != 10 {
		t.Fatalf("plan: %s", plan)
	}
	r := w.gitlab("apply")
	if r.code != 0 || strings.Count(r.stdout, pendingLine) != 1 || !strings.Contains(r.stdout, "2 changed, 7 unchanged") ||
		!strings.Contains(r.stdout, "file     /var/lib/glbootstrap/gitlab.json: updated") {
		t.Fatalf("apply after a setting change must record the new fragment as pending: %s", r)
	}
	if r := w.gitlab("apply"); r.code != 0 || !strings.Contains(r.stdout, "0 changed") {
		t.Fatalf("apply after that: %s", r)
	}
}

func TestGitLabAdminLinesSurvive(t *testing.T) {
	w := newGitLabWorld(t)
	if r := w.gitlab("apply"); r.code != 0 {
		t.Fatal(r)
	}
	p := filepath.Join(w.root, "etc/gitlab/gitlab.rb")
	admin := "gitlab_rails['smtp_enable'] = true # the admin's own line\n"
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(admin)
	f.Close()

	// The admin's own edit is theirs to apply: no reconfigure, nothing rewritten.
	r := w.gitlab("apply")
	if r.code != 0 || !strings.Contains(r.stdout, "0 changed") {
		t.Fatalf("apply after an admin's edit: %s", r)
	}
	if rb := w.read("etc/gitlab/gitlab.rb"); !strings.HasSuffix(rb, admin) || strings.Count(rb, `from_file "/etc/gitlab/glbootstrap.rb"`) != 1 {
		t.Fatalf("gitlab.rb after apply:\n%s", rb)
	}

	// The admin drops the from_file line: it comes back once, after their lines, and GitLab is
	// reconfigured once.
	rb := strings.Replace(w.read("etc/gitlab/gitlab.rb"), `from_file "/etc/gitlab/glbootstrap.rb"`, "", 1)
	if err := os.WriteFile(p, []byte(rb), 0o600); err != nil {
		t.Fatal(err)
	}
	r = w.gitlab("apply")
	if r.code != 0 || strings.Count(r.stdout, reconfigureLine) != 1 || !strings.Contains(r.stdout, "1 changed") {
		t.Fatalf("apply after the from_file line was removed: %s", r)
	}
	got := w.read("etc/gitlab/gitlab.rb")
	if !strings.Contains(got, admin) || !strings.HasSuffix(got, "from_file \"/etc/gitlab/glbootstrap.rb\"\n") || strings.Count(got, `from_file "/etc/gitlab/glbootstrap.rb"`) != 1 {
		t.Fatalf("gitlab.rb:\n%s", got)
	}
	if r := w.gitlab("apply"); r.code != 0 || !strings.Contains(r.stdout, "0 changed") {
		t.Fatalf("third apply: %s", r)
	}
}

func TestGitLabBadInput(t *testing.T) {
	w := newGitLabWorld(t)
	base := w.stack.GitLabConfig("", "")
	cases := []struct {
		name, old, new string
		want           []string
	}{
		{"url without https", "url: https://gitlab.example.com", "url: http://gitlab.example.com",
			[]string{`gitlab.url (line 3): must use https`}},
		{"port out of range", "ssh_port: 22", "ssh_port: 70000",
			[]string{`gitlab.ssh_port (line 6): must be in 1..65535`}},
		{"unknown edition", "edition: ee", "edition: xe",
			[]string{`gitlab.edition (line 4): unknown edition "xe": must be ee`}},
		{"null in a list", "time_zone: UTC", "time_zone: UTC\n      trusted_proxies: ['10.0.0.0/8', ~]",
			[]string{`gitlab.settings.gitlab_rails.trusted_proxies[1] (line 15): is empty (null)`}},
		{"NaN", "time_zone: UTC", "time_zone: UTC\n      ratio: .nan",
			[]string{`gitlab.settings.gitlab_rails.ratio (line 15): .nan has no Ruby literal`}},
		{"unknown root", "gitlab_rails:", "gitlab_rials:",
			[]string{`gitlab.settings.gitlab_rials (line 13): is not a gitlab.rb setting glbootstrap knows; did you mean "gitlab_rails"?`}},
		{"letsencrypt in settings", "time_zone: UTC", "time_zone: UTC\n    letsencrypt: {enable: false}",
			[]string{`gitlab.settings.letsencrypt.enable (line 15): letsencrypt['enable'] is set by glbootstrap; use gitlab.letsencrypt instead`}},
		{"tls key alone", "tls: {certificate_parameter: /glbootstrap/gitlab/tls-certificate, ", "tls: {",
			[]string{`gitlab.tls.certificate_parameter (line 9): is required with gitlab.tls.key_parameter`}},
		{"managed key", "time_zone: UTC", "gitlab_shell_ssh_port: 2222",
			[]string{`use gitlab.ssh_port instead`}},
		{"secret in settings", "time_zone: UTC", "smtp_password: hunter2",
			[]string{`gitlab.settings.gitlab_rails.smtp_password (line 14): looks like a secret`}},
	}
	before := w.snapshot()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.setGitLabConfig(replaceOnce(t, base, c.old, c.new))
			r := w.gitlab("apply")
			wantCode(t, r, 3)
			wantIn(t, "stderr", r.stderr, r, append(c.want, "nothing was changed")...)
			if v := w.run("validate", "--role", "gitlab", "--config", "ssm:"+testenv.StackGitLabConfigParam); v.code != 3 {
				t.Errorf("validate: %s", v)
			}
		})
	}
	if w.snapshot() != before {
		t.Error("an invalid configuration changed the tree")
	}
	if _, ok := w.stack.SSM.Value(testenv.StackPrivateURL); ok {
		t.Error("an invalid configuration published a private URL")
	}
}

// TestGitLabPassthroughCertificate: with TLS passthrough and no certificate (no gitlab.tls, no
// files, Let's Encrypt off) apply stops in gitlab-tls with the fixes and never reaches
// gitlab-ctl reconfigure; the admin's own files then do; a key from SSM that does not belong to
// the certificate is refused before anything is written, and never printed.
func TestGitLabPassthroughCertificate(t *testing.T) {
	w := newGitLabWorld(t)
	noTLS := replaceOnce(t, w.stack.GitLabConfig("", ""), "  tls: {certificate_parameter: /glbootstrap/gitlab/tls-certificate, key_parameter: /glbootstrap/gitlab/tls-key}\n", "")
	w.setGitLabConfig(noTLS)
	r := w.gitlab("apply")
	if r.code == 0 || strings.Contains(r.stdout, "[gitlab] reconfigure") || strings.Contains(r.stdout, GitLabCtlReconfigure) {
		t.Fatalf("apply without a certificate: %s", r)
	}
	wantIn(t, "output", r.stdout+r.stderr, r, "gitlab-tls", "/etc/gitlab/ssl/gitlab.example.com.crt and /etc/gitlab/ssl/gitlab.example.com.key are missing",
		"gitlab-ctl reconfigure was not run", "gitlab.tls.certificate_parameter", "gitlab.nlb.tls_termination: true", "gitlab.letsencrypt: true")
	if _, err := os.Stat(filepath.Join(w.root, "var/lib/glbootstrap/gitlab.json")); err == nil {
		t.Error("the state records a reconfigure although none was attempted")
	}
	// The fragment never lets Omnibus decide about Let's Encrypt.
	if frag := w.read("etc/gitlab/glbootstrap.rb"); !strings.Contains(frag, "letsencrypt['enable'] = false") {
		t.Errorf("fragment:\n%s", frag)
	}

	cert, key := testenv.StackTLSPair()
	ssl := filepath.Join(w.root, "etc/gitlab/ssl")
	if err := os.MkdirAll(ssl, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ssl, "gitlab.example.com.crt"), []byte(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ssl, "gitlab.example.com.key"), []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := w.gitlab("apply"); r.code != 0 || !strings.Contains(r.stdout, "[gitlab] gitlab-tls          unchanged") ||
		!strings.Contains(r.stdout, reconfigureLine) {
		t.Fatalf("apply with the admin's certificate files: %s", r)
	}

	// The certificate from S3 (s3://bucket/key), through the real SDK client and the S3 stand-in.
	renewedCert, renewedKey := testenv.NewTLSPair("gitlab.example.com")
	for _, l := range strings.Split(renewedKey, "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			w.secret("renewed tls key line", l)
		}
	}
	w.stack.S3.CreateBucketIn("example-certs", "us-east-2")
	w.stack.S3.PutObject("example-certs", "gitlab/gitlab.example.com.crt", []byte(renewedCert))
	w.stack.SSM.Put(testenv.StackTLSKeyParam, renewedKey, true)
	w.setGitLabConfig(strings.Replace(w.stack.GitLabConfig("", ""), "certificate_parameter: /glbootstrap/gitlab/tls-certificate", "certificate_parameter: s3://example-certs/gitlab/gitlab.example.com.crt", 1))
	if r := w.gitlab("apply"); r.code != 0 || w.read("etc/gitlab/ssl/gitlab.example.com.crt") != renewedCert || w.read("etc/gitlab/ssl/gitlab.example.com.key") != renewedKey {
		t.Fatalf("apply with the certificate in S3: %s", r)
	}

	// gitlab.tls with a key of another certificate: refused in preparation, nothing written.
	w.setGitLabConfig(w.stack.GitLabConfig("", ""))
	other := testenv.NewTLSKey()
	for _, l := range strings.Split(other, "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			w.secret("other tls key line", l)
		}
	}
	w.stack.SSM.Put(testenv.StackTLSKeyParam, other, true)
	before := w.snapshot()
	r = w.gitlab("apply")
	wantIn(t, "stderr", r.stderr, r, "SSM /glbootstrap/gitlab/tls-certificate and SSM /glbootstrap/gitlab/tls-key (gitlab.tls) do not form a pair (tls: private key does not match public key)")
	if r.code == 0 || w.snapshot() != before {
		t.Errorf("a mismatched pair changed the tree or succeeded: %s", r)
	}
}

// TestRunnerFindsPublishedPrivateURL converges a GitLab host whose private URL is the GitLab
// stand-in's, then a runner front that reads it from the published parameter.
func TestRunnerFindsPublishedPrivateURL(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	w.stack.SSM.Delete(testenv.StackPrivateURL)
	groot := t.TempDir()
	if err := testenv.SeedGitLabRoot(groot); err != nil {
		t.Fatal(err)
	}
	w.stack.SeedGitLabSSM()
	w.stack.SSM.Put(testenv.StackGitLabConfigParam, w.stack.GitLabConfig(w.stack.GitLab.URL(), ""), true)
	r := w.run("apply", "--role", "gitlab", "--config", "ssm:"+testenv.StackGitLabConfigParam, "--root", groot)
	if r.code != 0 || !strings.Contains(r.stdout, "created: "+w.stack.GitLab.URL()) {
		t.Fatalf("gitlab apply: %s", r)
	}
	if r := w.apply(); r.code != 0 {
		t.Fatalf("runner apply: %s", r)
	}
	if !strings.Contains(w.read("etc/gitlab-runner/config.toml"), `clone_url = "`+w.stack.GitLab.URL()+`"`) {
		t.Errorf("config.toml does not use the published URL:\n%s", w.read("etc/gitlab-runner/config.toml"))
	}
}
