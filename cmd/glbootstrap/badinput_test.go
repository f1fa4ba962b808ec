package main

// Blackbox tests of bad input: every case asserts the words a user needs
// (what is wrong, what to do), the exit code, that nothing under the root
// changed, and that no secret known to the test was printed.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// Names the bad-input tests add to the stack's SSM.
const (
	badRegParam   = "/glbootstrap/runner/reg"
	badRegToken   = "GR1348941-legacy-registration-token-0001"
	unknownGlrt   = "glrt-unknown-to-gitlab-000000000000"
	tokenAuth     = "  token_parameter: " + testenv.StackRunnerToken + "\n"
	regAuthTagged = "  registration_token_parameter: " + badRegParam + "\n  tags: [fargate]\n  run_untagged: false\n"
)

// lineOf is the 1-based line of the first line of doc containing sub.
func lineOf(t *testing.T, doc, sub string) int {
	t.Helper()
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, sub) {
			return i + 1
		}
	}
	t.Fatalf("%q not in the document:\n%s", sub, doc)
	return 0
}

// replaceLine replaces old (which must occur exactly once) in doc.
func replaceOnce(t *testing.T, doc, old, new string) string {
	t.Helper()
	if n := strings.Count(doc, old); n != 1 {
		t.Fatalf("%q occurs %d times in the config template", old, n)
	}
	return strings.Replace(doc, old, new, 1)
}

// wantIn fails for every word that is not in s.
func wantIn(t *testing.T, what, s string, r result, words ...string) {
	t.Helper()
	for _, w := range words {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q\n%s", what, w, r)
		}
	}
}

// wantCode fails the test at once when the exit code is not code.
func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got:\n%s", code, r)
	}
}

// leaked returns the secrets the test knows (the stack's, w.known and extra) that appear in r's
// output. w.run already fails the test on any of the stack's; extra covers values a case puts
// nowhere else.
func (w *world) leaked(r result, extra ...string) []string {
	w.t.Helper()
	known := w.secrets()
	for _, e := range append([]string{badRegToken, unknownGlrt}, extra...) {
		known = append(known, testenv.Secret{Source: "test value", Value: e})
	}
	var out []string
	for _, l := range testenv.Leaks(r.stdout+r.stderr, known) {
		out = append(out, l.Value)
	}
	return out
}

// noLeak fails when a secret appears in r's output (case 16).
func (w *world) noLeak(r result, extra ...string) {
	w.t.Helper()
	if l := w.leaked(r, extra...); len(l) > 0 {
		w.t.Errorf("secret(s) printed: %q\n%s", l, r)
	}
}

// sameTree fails when the tree differs from before, naming the lines that differ.
func (w *world) sameTree(before string) {
	w.t.Helper()
	after := w.snapshot()
	if after == before {
		return
	}
	w.t.Errorf("the root changed:\n%s", treeDiff(before, after))
}

// treeDiff lists the snapshot lines only in a (-) or only in b (+).
func treeDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// replaceGitLab swaps the stack's GitLab for one started with opts: the SSM
// parameter GitLab publishes its private URL in and the CA file in the root
// are re-pointed at it, and the stack's access token is registered on it.
func (w *world) replaceGitLab(opts testenv.GitLabOptions) *testenv.GitLab {
	w.t.Helper()
	g, err := testenv.NewGitLab(opts)
	if err != nil {
		w.t.Fatal(err)
	}
	g.AddAccessToken(testenv.StackAccessTokenVal, "create_runner")
	old := w.stack.GitLab
	w.stack.GitLab = g // Stack.Close closes it
	w.known = append(w.known, old.Secrets()...)
	old.Close()
	w.stack.SSM.Put(testenv.StackPrivateURL, g.URL(), false)
	if err := os.WriteFile(filepath.Join(w.root, testenv.StackCAFile), g.CAPEM(), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return g
}

// configToken is the token of config.toml's first [[runners]].
func (w *world) configToken() string {
	w.t.Helper()
	var cfg struct {
		Runners []struct {
			Token string `toml:"token"`
		} `toml:"runners"`
	}
	if _, err := toml.Decode(w.read("etc/gitlab-runner/config.toml"), &cfg); err != nil {
		w.t.Fatal(err)
	}
	if len(cfg.Runners) != 1 {
		w.t.Fatalf("config.toml has %d [[runners]]", len(cfg.Runners))
	}
	return cfg.Runners[0].Token
}

// preBoot converges the phases before register, so a failure in register
// can be checked against an otherwise settled tree.
func (w *world) preBoot() {
	w.t.Helper()
	if r := w.apply("--phase", "directories,fargate-driver,fargate-config"); r.code != 0 {
		w.t.Fatalf("converging the phases before register: %s", r)
	}
}

// --- invalid configuration: exit 3, nothing changed -----------------------

// invalidConfig applies doc on a fresh root and checks exit 3, the words on
// stderr, the "nothing was changed" promise and an untouched tree. plan must
// say the same.
func invalidConfig(t *testing.T, w *world, doc string, words ...string) result {
	t.Helper()
	w.setConfig(doc)
	before := w.snapshot()
	r := w.apply()
	wantCode(t, r, 3)
	wantIn(t, "stderr", r.stderr, r, words...)
	wantIn(t, "stderr", r.stderr, r, "nothing was changed")
	w.sameTree(before)
	w.noLeak(r)
	if n := w.stack.GitLab.Requests("POST", "/api/v4/user/runners") + w.stack.GitLab.Requests("POST", "/api/v4/runners/verify"); n != 0 {
		t.Errorf("an invalid configuration reached GitLab (%d requests)", n)
	}
	p := w.plan()
	if p.code != 3 {
		t.Errorf("plan with the same config: want exit 3\n%s", p)
	}
	wantIn(t, "plan stderr", p.stderr, p, words...)
	w.sameTree(before)
	return r
}

func TestBadInputUnknownKey(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	doc := w.stack.RunnerConfig(testenv.CreateAuth, "  concurent: 100\n")
	line := lineOf(t, doc, "concurent:")
	invalidConfig(t, w, doc,
		fmt.Sprintf("runner.concurent (line %d)", line), "unknown key", `did you mean "concurrent"?`)
}

func TestBadInputValidateListsEveryProblem(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	doc := w.stack.RunnerConfig(testenv.CreateAuth, "  concurent: 100\n")
	doc = replaceOnce(t, doc, "  concurrent: 200\n", "  concurrent: 0\n")
	doc = replaceOnce(t, doc, "security_group: sg-0123456789abcdef0", "security_group: sg-xyz")
	file := filepath.Join(t.TempDir(), "runner.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	r := w.run("validate", "--role", "runner", "--config", file)
	wantCode(t, r, 3)
	wantIn(t, "stderr", r.stderr, r,
		fmt.Sprintf("runner.concurent (line %d): unknown key", lineOf(t, doc, "concurent:")), `did you mean "concurrent"?`,
		fmt.Sprintf("runner.concurrent (line %d): must be > 0", lineOf(t, doc, "  concurrent: 0")),
		fmt.Sprintf(`fargate.security_group (line %d): "sg-xyz" is not a security group id`, lineOf(t, doc, "sg-xyz")),
		"has 3 problem(s)",
	)
	if n := strings.Count(r.stderr, "error: "); n != 4 { // 3 problems + the summary line
		t.Errorf("want 3 problems and a summary, got %d error lines\n%s", n, r)
	}
	if r.stdout != "" {
		t.Errorf("validate of an invalid file printed on stdout:\n%s", r)
	}

	// The same file fixed validates.
	if err := os.WriteFile(file, []byte(w.stack.RunnerConfig(testenv.CreateAuth, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := w.run("validate", "--role", "runner", "--config", file); r.code != 0 || !strings.Contains(r.stdout, "valid for role runner") {
		t.Errorf("valid file: %s", r)
	}
}

func TestBadInputMissingCluster(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	doc := replaceOnce(t, w.stack.RunnerConfig(testenv.CreateAuth, ""), "  cluster: ci-cluster\n", "")
	invalidConfig(t, w, doc, "fargate.cluster", "is required", "ECS cluster")
}

func TestBadInputConcurrentZero(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	doc := replaceOnce(t, w.stack.RunnerConfig(testenv.CreateAuth, ""), "  concurrent: 200\n", "  concurrent: 0\n")
	invalidConfig(t, w, doc, fmt.Sprintf("runner.concurrent (line %d)", lineOf(t, doc, "concurrent: 0")), "must be > 0")
}

func TestBadInputMalformedSecurityGroup(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	doc := replaceOnce(t, w.stack.RunnerConfig(testenv.CreateAuth, ""), "security_group: sg-0123456789abcdef0", "security_group: sg-xyz")
	invalidConfig(t, w, doc,
		fmt.Sprintf("fargate.security_group (line %d)", lineOf(t, doc, "sg-xyz")), `"sg-xyz" is not a security group id`, "hex digits")
}

func TestBadInputPrivateURLNotAURL(t *testing.T) {
	t.Run("in the config", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		doc := replaceOnce(t, w.stack.RunnerConfig(testenv.CreateAuth, ""),
			"private_url_parameter: /glbootstrap/gitlab/private-url", `private_url: "10.0.1.10"`)
		invalidConfig(t, w, doc,
			fmt.Sprintf("gitlab.private_url (line %d)", lineOf(t, doc, "private_url:")), `"10.0.1.10" is not a URL`, "https://10.0.1.10")
	})
	t.Run("in the SSM parameter", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		w.stack.SSM.Put(testenv.StackPrivateURL, "not a url", false)
		before := w.snapshot()
		r := w.apply()
		// The value is not in the configuration document but in a parameter
		// the GitLab host publishes: the code treats it as an environment
		// failure (1), not an invalid configuration (3). Both keep the tree.
		if r.code != 1 && r.code != 3 {
			t.Fatalf("want exit 1 or 3:\n%s", r)
		}
		t.Logf("a bad URL in %s gives exit %d", testenv.StackPrivateURL, r.code)
		wantIn(t, "stderr", r.stderr, r, testenv.StackPrivateURL, "gitlab.private_url_parameter", `"not a url"`, "is not a URL", "nothing was changed")
		w.sameTree(before)
		w.noLeak(r)
		if n := w.stack.GitLab.Requests("POST", "/api/v4/user/runners"); n != 0 {
			t.Errorf("POST /user/runners called %d times", n)
		}
	})
}

func TestBadInputMissingParameters(t *testing.T) {
	t.Run("config source", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		before := w.snapshot()
		r := w.run("apply", "--role", "runner", "--config", "ssm:/does/not/exist", "--root", w.root)
		wantCode(t, r, 3)
		wantIn(t, "stderr", r.stderr, r, "/does/not/exist", "does not exist", "put-parameter", "nothing was changed")
		w.sameTree(before)
		w.noLeak(r)
		v := w.run("validate", "--role", "runner", "--config", "ssm:/does/not/exist")
		wantCode(t, v, 3)
		wantIn(t, "validate stderr", v.stderr, v, "/does/not/exist", "does not exist")
	})
	t.Run("token_parameter", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		w.setConfig(w.stack.RunnerConfig("  token_parameter: /glbootstrap/runner/missing\n", ""))
		before := w.snapshot()
		r := w.apply()
		wantCode(t, r, 3)
		wantIn(t, "stderr", r.stderr, r, "runner.token_parameter", "/glbootstrap/runner/missing", "does not exist", "put-parameter", "nothing was changed")
		w.sameTree(before)
		w.noLeak(r)
		if n := w.stack.GitLab.Requests("POST", "/api/v4/runners/verify"); n != 0 {
			t.Errorf("GitLab was asked %d times", n)
		}
	})
}

func TestBadInputSecureStringNotDecryptable(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	w.stack.SSM.DenyDecrypt(testenv.StackCreateToken)
	before := w.snapshot()
	r := w.apply()
	if r.code == 0 {
		t.Fatalf("want a failure:\n%s", r)
	}
	if r.code != 1 {
		t.Errorf("a denied kms:Decrypt is the environment's problem: want exit 1, got %d", r.code)
	}
	wantIn(t, "stderr", r.stderr, r, testenv.StackCreateToken, "kms:Decrypt", "runner.create.access_token_parameter", "nothing was changed")
	if strings.Contains(r.stdout+r.stderr, testenv.StackAccessTokenVal) {
		t.Error("the undecryptable token's value was printed")
	}
	w.sameTree(before)
	w.noLeak(r)
}

func TestBadInputConfigReadDenied(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	w.stack.SSM.DenyRead(testenv.StackConfigParam)
	before := w.snapshot()
	r := w.apply()
	// Not an invalid configuration: the instance profile's policy is wrong.
	wantCode(t, r, 1)
	wantIn(t, "stderr", r.stderr, r, testenv.StackConfigParam, "ssm:GetParameter", "instance profile", "nothing was changed")
	w.sameTree(before)
	w.noLeak(r)
}

func TestBadInputDriverChecksumMismatch(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	if r := w.apply(); r.code != 0 {
		t.Fatal(r)
	}
	driverBefore := w.read("opt/gitlab-runner/fargate")
	before := w.snapshot()
	w.setConfig(strings.Replace(w.stack.RunnerConfig(testenv.CreateAuth, ""), w.stack.DriverSHA256, strings.Repeat("a", 64), 1))
	r := w.apply()
	wantCode(t, r, 1)
	wantIn(t, "output", r.stdout+r.stderr, r,
		"fargate-driver", "SHA-256 mismatch", w.stack.DriverSHA256, strings.Repeat("a", 64),
		"the driver already at /opt/gitlab-runner/fargate was left in place", "fargate.driver.sha256")
	if got := w.read("opt/gitlab-runner/fargate"); got != driverBefore {
		t.Error("the installed driver changed")
	}
	w.sameTree(before)
	w.noLeak(r)

	// On a fresh root nothing is installed at all.
	w2 := newWorld(t, testenv.IMDSValues{})
	w2.setConfig(strings.Replace(w2.stack.RunnerConfig(testenv.CreateAuth, ""), w2.stack.DriverSHA256, strings.Repeat("a", 64), 1))
	r = w2.apply()
	wantCode(t, r, 1)
	wantIn(t, "output", r.stdout+r.stderr, r, "SHA-256 mismatch", "nothing was installed")
	if _, err := os.Stat(filepath.Join(w2.root, "opt/gitlab-runner/fargate")); !os.IsNotExist(err) {
		t.Errorf("a driver with the wrong checksum was installed: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(w2.root, "opt/gitlab-runner"))
	for _, e := range entries {
		if e.Name() != "metadata" && e.Name() != "builds" && e.Name() != "cache" {
			t.Errorf("left behind in opt/gitlab-runner: %s", e.Name())
		}
	}
}

func TestBadInputRunnerTokenRejected(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	w.stack.SSM.Put(testenv.StackRunnerToken, unknownGlrt, true)
	w.setConfig(w.stack.RunnerConfig(tokenAuth, ""))
	w.preBoot()
	before := w.snapshot()
	r := w.apply()
	wantCode(t, r, 1)
	wantIn(t, "output", r.stdout+r.stderr, r,
		"phase register", testenv.StackRunnerToken, "rejected by GitLab", "403",
		"put its current glrt- token in "+testenv.StackRunnerToken, "run apply again")
	if _, err := os.Stat(filepath.Join(w.root, "etc/gitlab-runner/config.toml")); !os.IsNotExist(err) {
		t.Errorf("config.toml was created: %v", err)
	}
	if n := len(w.stack.GitLab.Runners()); n != 0 {
		t.Errorf("GitLab has %d runners", n)
	}
	w.sameTree(before)
	w.noLeak(r)
}

func TestBadInputLegacyRegistration(t *testing.T) {
	t.Run("disabled (410)", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		w.stack.SSM.Put(badRegParam, badRegToken, true)
		w.stack.SSM.MarkSecret(badRegParam)
		w.setConfig(w.stack.RunnerConfig(regAuthTagged, ""))
		w.preBoot()
		before := w.snapshot()
		r := w.apply()
		wantCode(t, r, 1)
		wantIn(t, "output", r.stdout+r.stderr, r, "phase register", "registration tokens are disabled", "410", "glrt-", "runner.token_parameter", "runner.create")
		wantIn(t, "stderr", r.stderr, r, "warning: runner.registration_token_parameter", "deprecated")
		if _, err := os.Stat(filepath.Join(w.root, "etc/gitlab-runner/config.toml")); !os.IsNotExist(err) {
			t.Errorf("config.toml was created: %v", err)
		}
		w.sameTree(before)
		w.noLeak(r)
	})
	t.Run("enabled", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		g := w.replaceGitLab(testenv.GitLabOptions{LegacyRegistrationToken: badRegToken})
		w.stack.SSM.Put(badRegParam, badRegToken, true)
		w.stack.SSM.MarkSecret(badRegParam)
		w.setConfig(w.stack.RunnerConfig(regAuthTagged, ""))
		r := w.apply()
		wantCode(t, r, 0)
		wantIn(t, "stdout", r.stdout, r, "registered runner #", "6 changed")
		runners := g.Runners()
		if len(runners) != 1 || !runners[0].Legacy || w.configToken() != runners[0].Token {
			t.Fatalf("want one legacy runner whose token is in config.toml, got %+v", runners)
		}
		w.noLeak(r, runners[0].Token)
		again := w.apply()
		if again.code != 0 || !strings.Contains(again.stdout, "0 changed, 7 unchanged") || len(g.Runners()) != 1 {
			t.Errorf("second apply: %s", again)
		}
		w.noLeak(again, runners[0].Token)
	})
}

func TestBadInputLimitAboveConcurrentWarns(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	doc := replaceOnce(t, w.stack.RunnerConfig(testenv.CreateAuth, ""), "  limit: 200\n", "  limit: 300\n")
	w.setConfig(doc)
	r := w.apply()
	wantCode(t, r, 0)
	wantIn(t, "output", r.stdout+r.stderr, r,
		fmt.Sprintf("warning: runner.limit (line %d)", lineOf(t, doc, "limit: 300")), "300", "200", "can never be reached")
	if strings.Contains(r.stdout, "can never be reached") {
		t.Errorf("the warning went to stdout:\n%s", r)
	}
	w.noLeak(r)
}

func TestBadInputCertificateForOtherHost(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	g := w.replaceGitLab(testenv.GitLabOptions{CertHosts: []string{"gitlab.internal"}})
	w.preBoot()
	before := w.snapshot()
	r := w.apply()
	wantCode(t, r, 1)
	wantIn(t, "output", r.stdout+r.stderr, r, "phase register", "127.0.0.1", "gitlab.internal", "private DNS name", "gitlab.private_url", "gitlab.ca_file")
	if n := g.Requests("POST", "/api/v4/user/runners"); n != 0 {
		t.Errorf("POST /user/runners called %d times", n)
	}
	w.sameTree(before)
	w.noLeak(r)
}

func TestBadInputGitLabNeverReady(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	g := w.replaceGitLab(testenv.GitLabOptions{NotReadyFor: 1 << 30})
	w.setConfig(replaceOnce(t, w.stack.RunnerConfig(testenv.CreateAuth, ""), "  ready_timeout: 20s\n", "  ready_timeout: 2s\n"))
	w.preBoot()
	before := w.snapshot()
	r := w.apply()
	wantCode(t, r, 1)
	wantIn(t, "output", r.stdout+r.stderr, r, "phase register", g.URL(), "not ready after 2s", "HTTP 503", "raise gitlab.ready_timeout")
	if n := g.Requests("POST", "/api/v4/user/runners") + g.Requests("POST", "/api/v4/runners/verify"); n != 0 {
		t.Errorf("GitLab was asked to verify or create %d times before it was ready", n)
	}
	w.sameTree(before)
	w.noLeak(r)
}

// TestGitLabBootingIsWaitedFor: GitLab still booting refuses connections (nginx not up yet);
// register waits for it within gitlab.ready_timeout, saying so, instead of failing at once.
// Under plan too, which only reads. A GitLab that never listens fails after the timeout.
func TestGitLabBootingIsWaitedFor(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	w.preBoot()
	for _, verb := range []string{"plan", "apply"} {
		g := w.replaceGitLab(testenv.GitLabOptions{ListenAfter: 2 * time.Second, NotReadyFor: 1})
		start := time.Now()
		r := map[string]func(...string) result{"plan": w.plan, "apply": w.apply}[verb]()
		wantCode(t, r, map[string]int{"plan": 10, "apply": 0}[verb])
		if err := g.Listening(); err != nil {
			t.Fatalf("the stand-in could not listen again: %v", err)
		}
		if time.Since(start) < 2*time.Second {
			t.Errorf("%s ended before GitLab listened", verb)
		}
		wantIn(t, "stderr", r.stderr, r, "is not ready (attempt 1", "connection refused", "HTTP 503")
	}
	if n := len(w.stack.GitLab.Runners()); n != 1 {
		t.Errorf("%d runners on GitLab, want the one apply created", n)
	}

	g := w.replaceGitLab(testenv.GitLabOptions{ListenAfter: time.Hour})
	w.setConfig(replaceOnce(t, w.stack.RunnerConfig(testenv.CreateAuth, ""), "  ready_timeout: 20s\n", "  ready_timeout: 2s\n"))
	r := w.apply()
	wantCode(t, r, 1)
	wantIn(t, "output", r.stdout+r.stderr, r, "phase register", g.URL(), "not ready after 2s", "connection refused", "security group", "raise gitlab.ready_timeout")
}

func TestBadInputGitLabRunnerNotInstalled(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	if r := w.apply(); r.code != 0 {
		t.Fatal(r)
	}
	if err := os.Remove(filepath.Join(w.root, "usr/bin/gitlab-runner")); err != nil {
		t.Fatal(err)
	}
	before := w.snapshot()
	r := w.apply()
	wantCode(t, r, 1)
	wantIn(t, "output", r.stdout+r.stderr, r, "phase register", "gitlab-runner is not installed", "/usr/bin/gitlab-runner", "install")
	wantIn(t, "stdout", r.stdout, r, "0 changed, 4 unchanged, 1 failed")
	w.sameTree(before)
	w.noLeak(r)
}

// TestBadInputNoRunnerCreatedForAHostThatCannotRunIt: on a stock host without gitlab-runner
// (binary or unit), apply fails before GitLab hears of it: no runner is left there that
// nothing could ever poll for.
func TestBadInputNoRunnerCreatedForAHostThatCannotRunIt(t *testing.T) {
	for _, missing := range []string{"usr/bin/gitlab-runner", "etc/systemd/system/gitlab-runner.service"} {
		t.Run(missing, func(t *testing.T) {
			w := newWorld(t, testenv.IMDSValues{})
			if err := os.Remove(filepath.Join(w.root, missing)); err != nil {
				t.Fatal(err)
			}
			r := w.apply()
			wantCode(t, r, 1)
			wantIn(t, "output", r.stdout+r.stderr, r, "phase register", "gitlab-runner", "install")
			if n := w.stack.GitLab.Requests("POST", "/api/v4/user/runners"); n != 0 || len(w.stack.GitLab.Runners()) != 0 {
				t.Errorf("a runner was created for a host that cannot run it (%d POSTs)", n)
			}
		})
	}
}

func TestBadInputTokenKeptOrReplaced(t *testing.T) {
	t.Run("valid config.toml token is kept", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		if r := w.apply(); r.code != 0 {
			t.Fatal(r)
		}
		tok := w.configToken()
		// Switch to token_parameter naming another (valid) runner: the
		// token already in config.toml still verifies and wins.
		other := w.stack.GitLab.AddRunner(testenv.GitLabRunner{Description: "other"})
		w.stack.SSM.Put(testenv.StackRunnerToken, other.Token, true)
		w.setConfig(w.stack.RunnerConfig(tokenAuth, ""))
		before := w.snapshot()
		r := w.apply()
		wantCode(t, r, 0)
		if w.configToken() != tok {
			t.Error("a valid config.toml token was replaced")
		}
		if n := w.stack.GitLab.Requests("POST", "/api/v4/user/runners"); n != 1 {
			t.Errorf("POST /user/runners called %d times", n)
		}
		w.sameTree(before)
		w.noLeak(r)
	})
	t.Run("create mode replaces a reset token once", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		if r := w.apply(); r.code != 0 {
			t.Fatal(r)
		}
		first := w.stack.GitLab.Runners()[0]
		resetTo := w.stack.GitLab.ResetToken(first.ID)
		before := w.snapshot()
		p := w.plan("--output", "json")
		wantCode(t, p, 10)
		wantIn(t, "plan stdout", p.stdout, p, "would create runner")
		w.sameTree(before)
		if n := w.stack.GitLab.Requests("POST", "/api/v4/user/runners"); n != 1 {
			t.Errorf("plan created a runner (POST /user/runners called %d times)", n)
		}
		w.noLeak(p, first.Token, resetTo)
		r := w.apply()
		wantCode(t, r, 0)
		wantIn(t, "output", r.stdout+r.stderr, r, "rejected by GitLab", "created runner #")
		runners := w.stack.GitLab.Runners()
		if len(runners) != 2 || w.stack.GitLab.Requests("POST", "/api/v4/user/runners") != 2 {
			t.Fatalf("want exactly one new runner, GitLab has %+v", runners)
		}
		if got := w.configToken(); got != runners[1].Token || got == first.Token {
			t.Error("config.toml does not hold the new runner's token")
		}
		w.noLeak(r, first.Token, resetTo)
		// and it stays converged
		again := w.apply()
		if again.code != 0 || !strings.Contains(again.stdout, "0 changed") || len(w.stack.GitLab.Runners()) != 2 {
			t.Errorf("apply after replacement: %s", again)
		}
		w.noLeak(again, first.Token, resetTo)
	})
	t.Run("token_parameter with a reset token fails and keeps config.toml", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		rn := w.stack.GitLab.AddRunner(testenv.GitLabRunner{Description: "from the UI", Tags: []string{"fargate"}})
		w.stack.SSM.Put(testenv.StackRunnerToken, rn.Token, true)
		w.setConfig(w.stack.RunnerConfig(tokenAuth, ""))
		if r := w.apply(); r.code != 0 || w.configToken() != rn.Token {
			t.Fatalf("converging with token_parameter: %s", r)
		}
		cfgBefore := w.read("etc/gitlab-runner/config.toml")
		newTok := w.stack.GitLab.ResetToken(rn.ID)
		before := w.snapshot()
		r := w.apply()
		wantCode(t, r, 1)
		wantIn(t, "output", r.stdout+r.stderr, r, "phase register", testenv.StackRunnerToken, "rejected by GitLab", "put its current glrt- token")
		if w.read("etc/gitlab-runner/config.toml") != cfgBefore {
			t.Error("config.toml changed")
		}
		if n := len(w.stack.GitLab.Runners()); n != 1 {
			t.Errorf("GitLab has %d runners", n)
		}
		w.sameTree(before)
		w.noLeak(r, rn.Token, newTok)

		// The operator puts the current token in SSM: apply recovers.
		w.stack.SSM.Put(testenv.StackRunnerToken, newTok, true)
		r = w.apply()
		wantCode(t, r, 0)
		if w.configToken() != newTok {
			t.Error("config.toml does not hold the token now in SSM")
		}
		w.noLeak(r, rn.Token, newTok)
	})
}

// A register phase that fails must not leave a half-made identity: the new
// .runner_system_id and the state that says "made on this instance" are
// written together, only once GitLab accepted a token, so a retried failing
// apply changes nothing and the run that finally succeeds creates the id once.
func TestBadInputFailedRegisterRetryChangesNothing(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	w.stack.SSM.Put(testenv.StackRunnerToken, unknownGlrt, true)
	w.setConfig(w.stack.RunnerConfig(tokenAuth, ""))
	w.preBoot()
	before := w.snapshot()
	wantCode(t, w.apply(), 1)
	w.sameTree(before)
	r := w.apply()
	wantCode(t, r, 1)
	w.sameTree(before)

	// The operator fixes the token: the id is created once and then kept.
	rn := w.stack.GitLab.AddRunner(testenv.GitLabRunner{})
	w.stack.SSM.Put(testenv.StackRunnerToken, rn.Token, true)
	r = w.apply()
	wantCode(t, r, 0)
	wantIn(t, "stdout", r.stdout, r, ".runner_system_id: created (new runner manager")
	id := w.read("etc/gitlab-runner/.runner_system_id")
	r = w.apply()
	wantCode(t, r, 0)
	if strings.Contains(r.stdout, "replaced") || w.read("etc/gitlab-runner/.runner_system_id") != id {
		t.Errorf("a later apply replaced the system id this instance made:\n%s", r)
	}
	w.noLeak(r, rn.Token)
}

// TestBadInputDriverPathHoldsAFile: a driver.path that names something that
// is not a program (a mistyped path onto a config file) is never replaced.
func TestBadInputDriverPathHoldsAFile(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	p := filepath.Join(w.root, "opt/gitlab-runner/fargate")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("precious data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := w.apply("--phase", "fargate-driver")
	wantCode(t, r, 1)
	wantIn(t, "output", r.stdout+r.stderr, r, "is not executable, so it is not an earlier driver: refusing to replace it")
	if b, _ := os.ReadFile(p); string(b) != "precious data\n" {
		t.Error("the file was replaced")
	}
}

// TestBadInputEmptyRoot: --root "$UNSET" must not converge the live system.
func TestBadInputEmptyRoot(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	r := w.run("apply", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam, "--root", "")
	wantCode(t, r, 2)
	wantIn(t, "stderr", r.stderr, r, "--root is empty")
}

// TestBadInputSSMNeverAnswers: an SSM endpoint that accepts connections and
// never answers (a broken NAT or endpoint policy) fails the run with exit 1
// and the network fix, instead of hanging the boot.
func TestBadInputSSMNeverAnswers(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, h := range held {
					h.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	for i, kv := range w.env {
		if strings.HasPrefix(kv, "AWS_ENDPOINT_URL_SSM=") {
			w.env[i] = "AWS_ENDPOINT_URL_SSM=http://" + ln.Addr().String()
		}
	}
	w.env = append(w.env, "AWS_MAX_ATTEMPTS=1") // one bounded attempt keeps the test short
	before := w.snapshot()
	start := time.Now()
	r := w.apply()
	wantCode(t, r, 1)
	wantIn(t, "stderr", r.stderr, r, "did not answer", "VPC endpoint com.amazonaws.us-east-2.ssm", "nothing was changed")
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %s", d)
	}
	w.sameTree(before)
}

// TestBadInputConfigPointsAtASecret: --config pointed at a SecureString by mistake (the initial
// root password, a multi-line key, a value YAML reads as an alias) is refused by its shape (exit
// 3) and none of it is printed, in text or JSON, by plan, apply or validate.
func TestBadInputConfigPointsAtASecret(t *testing.T) {
	w := newGitLabWorld(t)
	const (
		keyParam   = "/glbootstrap/gitlab/deploy-key"
		aliasParam = "/glbootstrap/gitlab/alias-like"
	)
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAAAAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIK\n-----END OPENSSH PRIVATE KEY-----\n"
	w.stack.SSM.Put(keyParam, key, true)
	for i, l := range strings.Split(strings.TrimSpace(key), "\n") {
		if !strings.HasPrefix(l, "-----") {
			w.secret(fmt.Sprintf("deploy key line %d", i+1), l)
		}
	}
	w.stack.SSM.Put(aliasParam, "*Alias-Looking-pw-0001", true)
	w.secret("alias-like password", "Alias-Looking-pw-0001")

	for _, tt := range []struct {
		param string
		words []string
	}{
		{testenv.StackRootPasswordParam, []string{"line 1: the configuration is a string of 23 character(s), not a YAML mapping"}},
		{keyParam, []string{"the configuration is a string of", "not a YAML mapping"}},
		{aliasParam, []string{"invalid YAML", "an alias (*name) refers to an anchor (&name) that is not defined", "it has no version: line either"}},
	} {
		for _, format := range outputFormats {
			t.Run(tt.param+"/"+format, func(t *testing.T) {
				before := w.snapshot()
				for _, verb := range []string{"plan", "apply", "validate"} {
					args := []string{verb, "--role", "gitlab", "--config", "ssm:" + tt.param}
					if verb != "validate" {
						args = append(args, "--root", w.root)
					}
					r := w.cmdIn(format, 3, args...)
					words := append(tt.words, "point --config at the glbootstrap configuration, not at a secret", "nothing read from it is shown")
					wantIn(t, verb+" stderr", r.stderr, r, words...)
					if format == "json" && verb != "validate" {
						wantIn(t, verb+" stdout", r.stdout, r, `"exit_code":3`, "not at a secret")
					}
					w.noLeak(r)
				}
				w.sameTree(before)
			})
		}
	}
}

// TestBadInputDriverPathIsAProgramOfTheFront: fargate.driver.path naming glbootstrap or
// gitlab-runner is refused by validation (exit 3); a path validation cannot recognise that is
// the running glbootstrap itself (here a copy under another name, run from inside the root) is
// refused by the fargate-driver phase, and the program is left as it was.
func TestBadInputDriverPathIsAProgramOfTheFront(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	base := w.stack.RunnerConfig(testenv.CreateAuth, "")
	for _, p := range []string{"/usr/local/bin/glbootstrap", "/usr/local/bin/gitlab-runner", "/usr/bin/gitlab-runner"} {
		t.Run(p, func(t *testing.T) {
			doc := replaceOnce(t, base, "path: /opt/gitlab-runner/fargate", "path: "+p)
			invalidConfig(t, w, doc, fmt.Sprintf("fargate.driver.path (line %d)", lineOf(t, doc, "path: "+p)),
				"installing the driver there would overwrite it", "/opt/gitlab-runner/fargate")
		})
	}

	t.Run("the running program under another name", func(t *testing.T) {
		const self = "/opt/tools/glb-under-test"
		exe := filepath.Join(w.root, self)
		if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(binary)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exe, b, 0o755); err != nil {
			t.Fatal(err)
		}
		w.setConfig(replaceOnce(t, base, "path: /opt/gitlab-runner/fargate", "path: "+self))
		before := w.snapshot()
		for _, verb := range []string{"plan", "apply"} {
			r := runExecutable(t, exe, w.env, w.secrets(), verb, "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam, "--root", w.root, "--phase", "fargate-driver")
			wantCode(t, r, 1)
			wantIn(t, verb+" output", r.stdout+r.stderr, r, "fargate-driver",
				self+" is the glbootstrap program that is running now", "would replace glbootstrap itself", "fargate.driver.path")
			w.sameTree(before)
		}
		if got, _ := os.ReadFile(exe); !bytes.Equal(got, b) {
			t.Error("the running glbootstrap was replaced")
		}
	})
}

// TestBadInputDirectoryInsideTheDriver: a runner directory under fargate.driver.path (the
// driver's own file) is refused before anything is made, for each of the three directories.
func TestBadInputDirectoryInsideTheDriver(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	base := w.stack.RunnerConfig(testenv.CreateAuth, "")
	for _, tt := range []struct{ field, key, was string }{
		{"runner.builds_dir", "builds_dir", "/opt/gitlab-runner/builds"},
		{"runner.cache_dir", "cache_dir", "/opt/gitlab-runner/cache"},
		{"fargate.metadata_dir", "metadata_dir", "/opt/gitlab-runner/metadata"},
	} {
		t.Run(tt.field, func(t *testing.T) {
			bad := tt.key + ": /opt/gitlab-runner/fargate/x"
			doc := replaceOnce(t, base, tt.key+": "+tt.was, bad)
			invalidConfig(t, w, doc, fmt.Sprintf("%s (line %d)", tt.field, lineOf(t, doc, bad)),
				`"/opt/gitlab-runner/fargate/x" is inside fargate.driver.path /opt/gitlab-runner/fargate, which is the driver's own file`)
		})
	}
}
