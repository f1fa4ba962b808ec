package main

import (
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// TestPlanOnFreshRootWritesNothing: plan on a never-converged host lists
// every change, creates no runner on GitLab, writes nothing, and exits 10.
func TestPlanOnFreshRootWritesNothing(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	before := w.snapshot()
	r := w.plan()
	if r.code != 10 {
		t.Fatalf("plan: %s", r)
	}
	for _, want := range []string{
		"would be created", // directories and files
		"would be installed v0.5.1",
		`would create runner "fargate-front"`,
		"file     /etc/gitlab-runner/config.toml: would be created",
		"would be enabled offline",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan output lacks %q:\n%s", want, r.stdout)
		}
	}
	if w.snapshot() != before {
		t.Error("plan wrote to the root")
	}
	if n := len(w.stack.GitLab.Runners()); n != 0 {
		t.Errorf("plan created %d runner(s) on GitLab", n)
	}
	if n := w.stack.GitLab.Requests("POST", "/api/v4/user/runners"); n != 0 {
		t.Errorf("plan called POST /user/runners %d times", n)
	}
}

// TestBakePhasesNeedNoSecrets: an AMI bake runs the bake phases only and
// may have no access to the runner's secrets or to GitLab.
func TestBakePhasesNeedNoSecrets(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	w.stack.SSM.Delete(testenv.StackCreateToken)
	w.stack.SSM.Delete(testenv.StackPrivateURL)
	r := w.apply("--phase", "directories,fargate-driver")
	if r.code != 0 || !strings.Contains(r.stdout, "2 changed") {
		t.Fatalf("bake phases: %s", r)
	}
	// A boot phase still needs them, and says which is missing.
	r = w.apply("--phase", "register")
	if r.code != 3 || !strings.Contains(r.stderr, "does not exist") {
		t.Fatalf("register without its parameters: %s", r)
	}
}
