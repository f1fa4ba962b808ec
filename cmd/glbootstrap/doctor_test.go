package main

import (
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// TestDoctor runs the preflight checks alone after an apply: one line per check, the reference
// setup's one warning (fewer free addresses than concurrent) with its fix, exit 0, and exit 1
// with --strict. The memory check reads the instance type from instance metadata: concurrent
// 200 fits the reference t3.small, not the seed's 1 GiB front, where it names what fits.
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
	for _, check := range []string{"cluster", "task-definition", "image", "security-group", "subnet-egress", "capacity", "memory", "iam", "driver", "directories", "cache"} {
		if !strings.Contains(r.stdout, " "+check+" ") {
			t.Errorf("no line for check %s:\n%s", check, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "warn  capacity") || !strings.Contains(r.stdout, "fixes:\n  capacity") || !strings.Contains(r.stdout, "9 ok, 1 warn, 0 fail, 1 skipped") {
		t.Errorf("doctor output:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "ok    memory          front t3.small: 200 jobs at once need about 1214 MiB") {
		t.Errorf("doctor on a t3.small: no memory line that fits:\n%s", r.stdout)
	}
	if r := w.run(append(args, "--strict")...); r.code != 1 {
		t.Errorf("doctor --strict: %s", r)
	}
	if r := w.run("doctor", "--role", "gitlab", "--config", "ssm:"+testenv.StackConfigParam); r.code != 2 || !strings.Contains(r.stderr, "doctor checks role runner only") {
		t.Errorf("doctor --role gitlab: %s", r)
	}

	small := newWorld(t, testenv.IMDSValues{InstanceType: "t3.micro"})
	if r := small.apply(); r.code != 0 || !strings.Contains(r.stdout, "memory") {
		t.Fatalf("apply on a t3.micro: %s", r)
	}
	r = small.run("doctor", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam, "--root", small.root)
	if r.code != 0 || !strings.Contains(r.stdout, "warn  memory          front t3.micro: 200 jobs at once") ||
		!strings.Contains(r.stdout, "use t3.small or larger") || !strings.Contains(r.stdout, "lower runner.concurrent (and runner.limit) to 166") ||
		!strings.Contains(r.stdout, "8 ok, 2 warn, 0 fail, 1 skipped") {
		t.Errorf("doctor on a t3.micro:\n%s", r)
	}
	if testing.Verbose() {
		t.Logf("doctor on a t3.micro:\n%s", r.stdout)
	}
}
