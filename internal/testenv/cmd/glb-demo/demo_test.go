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

// buildDemo builds glb-demo into dir and returns its path.
func buildDemo(t *testing.T, dir string) string {
	t.Helper()
	demo := filepath.Join(dir, "glb-demo")
	if out, err := exec.Command("go", "build", "-o", demo, ".").CombinedOutput(); err != nil {
		t.Fatalf("building glb-demo: %v\n%s", err, out)
	}
	return demo
}

// runDemo runs the demo with bin as glbootstrap and returns its exit error and whole output.
func runDemo(t *testing.T, demo, bin string) (error, string) {
	t.Helper()
	cmd := exec.Command(demo, "-bin", bin, "-sandbox", filepath.Join(t.TempDir(), "sandbox"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd.Run(), out.String()
}

// TestDemoPrintsNoSecret runs "make demo" (glb-demo with a fresh glbootstrap build) and scans
// all it prints, glbootstrap's output (text and JSON) and the files it shows, for every secret
// the stand-ins are seeded with. The demo itself checks each glbootstrap run against every
// secret of its stack, the runner tokens GitLab handed out included, and fails on one.
func TestDemoPrintsNoSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the whole demo")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "glbootstrap")
	if out, err := exec.Command("go", "build", "-o", bin, "../../../../cmd/glbootstrap").CombinedOutput(); err != nil {
		t.Fatalf("building glbootstrap: %v\n%s", err, out)
	}
	err, out := runDemo(t, buildDemo(t, dir), bin)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"--output json", "backup run", "backup verify", "result:        OK: backup ", "doctor", "gitlab.rb: would be updated: from_file line"} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo output lacks %q: the scan below would not cover it", want)
		}
	}
	for _, l := range testenv.Leaks(out, testenv.SeededSecrets()) {
		t.Errorf("the demo printed a secret (%s: %q)", l.Source, l.Value)
	}
}

// TestDemoFailsOnALeak: a glbootstrap that prints a secret fails the demo, which names the
// source and not the value.
func TestDemoFailsOnALeak(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "glbootstrap")
	leaky := "#!/bin/sh\necho 'diff: +token = \"" + testenv.StackAccessTokenVal + "\"'\nexit 10\n"
	if err := os.WriteFile(bin, []byte(leaky), 0o755); err != nil {
		t.Fatal(err)
	}
	err, out := runDemo(t, buildDemo(t, dir), bin)
	if err == nil || !strings.Contains(out, "printed a secret (SSM "+testenv.StackCreateToken+")") {
		t.Fatalf("demo with a leaking glbootstrap: %v\n%s", err, out)
	}
	if strings.Contains(out, testenv.StackAccessTokenVal) {
		t.Errorf("the demo's failure shows the secret:\n%s", out)
	}
}
