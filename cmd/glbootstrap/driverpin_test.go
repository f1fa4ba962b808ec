package main

import (
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// TestDriverVersionWithoutItsChecksum: after an apply, a configuration that changes
// fargate.driver.version but keeps the SHA-256 of the installed release is refused before
// anything changes (exit 3, both keys named), and doctor fails the driver check instead of
// claiming the new release.
func TestDriverVersionWithoutItsChecksum(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	if r := w.apply(); r.code != 0 {
		t.Fatal(r)
	}
	w.setConfig(strings.Replace(w.stack.RunnerConfig(testenv.CreateAuth, ""), "version: v0.5.1", "version: v0.5.2", 1))
	before := w.snapshot()
	const both = "fargate.driver.version is v0.5.2 but fargate.driver.sha256 is the SHA-256 of the v0.5.1 binary"
	for _, r := range []result{w.plan(), w.apply()} {
		if r.code != 3 || !strings.Contains(r.stderr, both) || !strings.Contains(r.stderr, "nothing was changed") {
			t.Errorf("want exit 3 naming both keys: %s", r)
		}
	}
	if w.snapshot() != before {
		t.Error("the refused run changed the host")
	}
	r := w.run("doctor", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam, "--root", w.root)
	if r.code != 1 || !strings.Contains(r.stdout, "fail  driver") || !strings.Contains(r.stdout, both) {
		t.Errorf("doctor: %s", r)
	}
}
