package main

import (
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// TestDoctor runs the preflight checks alone after an apply: one line per check, the reference
// setup's one warning (fewer free addresses than concurrent) with its fix, exit 0, and exit 1
// with --strict.
func TestDoctor(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	if r := w.apply(); r.code != 0 {
		t.Fatal(r)
	}
	args := []string{"doctor", "--role", "runner", "--config", "ssm:" + testenv.StackConfigParam, "--root", w.root}
	r := w.run(args...)
	if r.code != 0 {
		t.Fatalf("doctor: %s", r)
	}
	for _, check := range []string{"cluster", "task-definition", "image", "security-group", "subnet-egress", "capacity", "iam", "driver", "directories", "cache"} {
		if !strings.Contains(r.stdout, " "+check+" ") {
			t.Errorf("no line for check %s:\n%s", check, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "warn  capacity") || !strings.Contains(r.stdout, "fixes:\n  capacity") || !strings.Contains(r.stdout, "8 ok, 1 warn, 0 fail, 1 skipped") {
		t.Errorf("doctor output:\n%s", r.stdout)
	}
	if r := w.run(append(args, "--strict")...); r.code != 1 {
		t.Errorf("doctor --strict: %s", r)
	}
	if r := w.run("doctor", "--role", "gitlab", "--config", "ssm:"+testenv.StackConfigParam); r.code != 2 || !strings.Contains(r.stderr, "doctor checks role runner only") {
		t.Errorf("doctor --role gitlab: %s", r)
	}
}
