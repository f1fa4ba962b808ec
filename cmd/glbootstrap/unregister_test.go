package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

func (w *world) unregister(extra ...string) result {
	w.t.Helper()
	return w.run(append([]string{"runner", "unregister", "--config", "ssm:" + testenv.StackConfigParam, "--root", w.root}, extra...)...)
}

// TestUnregisterCreatedRunner: a front glbootstrap created a runner for
// deletes exactly that runner when it goes away, and a later apply creates
// a new one (never two).
func TestUnregisterCreatedRunner(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	if r := w.apply(); r.code != 0 {
		t.Fatal(r)
	}
	other := w.stack.GitLab.AddRunner(testenv.GitLabRunner{Description: "someone else's"})

	// The stack's access token has only create_runner: GitLab refuses the delete. The error is
	// printed once (with the phase; the last line points at it), quoting GitLab's answer once and
	// naming both scopes that would do, in text and JSON.
	var r result
	for _, format := range outputFormats {
		r = w.cmdIn(format, 1, "runner", "unregister", "--config", "ssm:"+testenv.StackConfigParam, "--root", w.root)
		out := r.stdout + r.stderr
		for _, once := range []string{"needs the api or manage_runner scope", "insufficient_scope", "the access token may not delete it"} {
			if n := strings.Count(out, once); n != 1 {
				t.Errorf("%s: %q printed %d times, want once:\n%s", format, once, n, r)
			}
		}
		wantIn(t, format+" stderr", r.stderr, r, "runner unregister failed (its error is printed with the phase above)")
	}
	if len(w.stack.GitLab.Runners()) != 2 {
		t.Fatal("a runner was deleted without permission")
	}
	if _, err := os.Stat(filepath.Join(w.root, "etc/gitlab-runner/config.toml")); err != nil {
		t.Fatal("config.toml removed although GitLab refused the delete")
	}

	w.stack.GitLab.AddAccessToken(testenv.StackAccessTokenVal, "create_runner", "manage_runner")
	if r := w.unregister("--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "would delete runner #1") || len(w.stack.GitLab.Runners()) != 2 {
		t.Fatalf("dry run: %s", r)
	}
	r = w.unregister()
	if r.code != 0 || !strings.Contains(r.stdout, "deleted runner #1") {
		t.Fatalf("unregister: %s", r)
	}
	left := w.stack.GitLab.Runners()
	if len(left) != 1 || left[0].ID != other.ID {
		t.Fatalf("runners left on GitLab: %+v", left)
	}
	for _, p := range []string{"etc/gitlab-runner/config.toml", "var/lib/glbootstrap/runner.json"} {
		if _, err := os.Stat(filepath.Join(w.root, p)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	if r := w.unregister(); r.code != 0 || !strings.Contains(r.stdout, "nothing to unregister") {
		t.Errorf("second unregister: %s", r)
	}
	r = w.apply()
	if r.code != 0 || len(w.stack.GitLab.Runners()) != 2 {
		t.Fatalf("apply after unregister: %s (%d runners)", r, len(w.stack.GitLab.Runners()))
	}
	if strings.Contains(r.stdout+r.stderr, testenv.StackAccessTokenVal) {
		t.Error("the access token was printed")
	}
}

// TestUnregisterSharedTokenNeedsForce: a token from SSM may be shared by
// several fronts; deleting its runner takes --force.
func TestUnregisterSharedTokenNeedsForce(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	rn := w.stack.GitLab.AddRunner(testenv.GitLabRunner{Description: "shared fargate runner"})
	w.stack.SSM.Put(testenv.StackRunnerToken, rn.Token, true)
	w.setConfig(w.stack.RunnerConfig("  token_parameter: /glbootstrap/runner/token\n", ""))
	if r := w.apply(); r.code != 0 {
		t.Fatal(r)
	}
	before := w.snapshot()
	r := w.unregister()
	if r.code != 1 || !strings.Contains(r.stdout, "--force") || !strings.Contains(r.stdout, "other fronts may share") {
		t.Fatalf("without --force: %s", r)
	}
	if len(w.stack.GitLab.Runners()) != 1 || w.snapshot() != before {
		t.Fatal("refused unregister changed something")
	}
	r = w.unregister("--force")
	if r.code != 0 || len(w.stack.GitLab.Runners()) != 0 {
		t.Fatalf("with --force: %s", r)
	}
	if strings.Contains(r.stdout+r.stderr, rn.Token) {
		t.Error("the runner token was printed")
	}
}
