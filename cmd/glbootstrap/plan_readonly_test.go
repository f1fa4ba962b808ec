package main

// Plan cannot act, by construction (issue 9): every role and every phase is planned against
// stand-ins that refuse, and record, any mutating request (testenv.Guard), and the root's tree
// (content, mode, owner, mtime, link targets: the lock file too) must be exactly as before.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// fullSnapshot is every path under root with its mode, owner, size, mtime (ns), link target
// and content hash.
func fullSnapshot(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		extra := ""
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			extra, _ = os.Readlink(p)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			extra = hex.EncodeToString(s[:8])
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			// A directory's mtime moves when an entry is added or removed under it: that is
			// in its listing too, so it is compared as well.
			extra = "dir"
		}
		lines = append(lines, fmt.Sprintf("%s %v %d:%d %d %d %s", rel, info.Mode(), st.Uid, st.Gid, info.Size(), info.ModTime().UnixNano(), extra))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// planReadOnly plans with args (text and JSON) while the stand-ins refuse changes, and fails
// on any refused request, a changed tree, or an exit code other than want. It returns the
// text run.
func planReadOnly(t *testing.T, w *world, g *testenv.Guard, want []int, args ...string) result {
	t.Helper()
	before := fullSnapshot(t, w.root)
	var last result
	for _, output := range []string{"text", "json"} {
		g.Arm()
		r := w.run(append(append([]string{"plan"}, args...), "--output", output)...)
		refused := g.Refused()
		g.Disarm()
		if len(refused) > 0 {
			t.Errorf("plan %s sent mutating request(s): %q\n%s", strings.Join(args, " "), refused, r)
		}
		ok := false
		for _, c := range want {
			ok = ok || r.code == c
		}
		if !ok {
			t.Errorf("plan %s (%s): exit %d, want one of %v\n%s", strings.Join(args, " "), output, r.code, want, r)
		}
		if after := fullSnapshot(t, w.root); after != before {
			t.Fatalf("plan %s changed the root:\n%s", strings.Join(args, " "), treeDiff(before, after))
		}
		if output == "text" {
			last = r
		}
	}
	return last
}

func runnerArgs(w *world, extra ...string) []string {
	return append([]string{"--role", "runner", "--config", "ssm:" + testenv.StackConfigParam, "--root", w.root}, extra...)
}

func gitlabArgs(w *world, extra ...string) []string {
	return append([]string{"--role", "gitlab", "--config", "ssm:" + testenv.StackGitLabConfigParam, "--root", w.root}, extra...)
}

// phasesOf lists a role's phases as "glbootstrap phases" prints them.
func phasesOf(t *testing.T, w *world, role string) []string {
	t.Helper()
	r := w.run("phases", "--role", role)
	if r.code != 0 {
		t.Fatal(r)
	}
	var out []string
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[1] == "bake" || f[1] == "boot") {
			out = append(out, f[0])
		}
	}
	if len(out) < 5 {
		t.Fatalf("phases --role %s listed %v:\n%s", role, out, r)
	}
	return out
}

func TestPlanRunnerChangesNothing(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	g := w.stack.GuardAll()
	phases := phasesOf(t, w, "runner")

	// A fresh root: every phase has something to do, register would create a runner.
	planReadOnly(t, w, g, []int{10}, runnerArgs(w)...)
	for _, p := range phases {
		// Alone, a later phase may fail on what an earlier one would have made (exit 1): it
		// must still change nothing.
		planReadOnly(t, w, g, []int{0, 1, 10}, runnerArgs(w, "--phase", p)...)
	}

	// A converged root that drifted: the driver is gone, fargate.toml was edited, the
	// runner's token was reset on GitLab (register would create a new runner), the config
	// changed (config.toml would change).
	if r := w.apply(); r.code != 0 {
		t.Fatal(r)
	}
	if err := os.Remove(filepath.Join(w.root, "opt/gitlab-runner/fargate")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.root, "etc/gitlab-runner/fargate.toml"), []byte("# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.stack.GitLab.ResetToken(w.stack.GitLab.Runners()[0].ID)
	w.setConfig(strings.Replace(w.stack.RunnerConfig(testenv.CreateAuth, ""), "check_interval: 3", "check_interval: 5", 1))
	r := planReadOnly(t, w, g, []int{10}, runnerArgs(w)...)
	for _, want := range []string{"would be installed", "fargate.toml: would be updated", "would create runner", "config.toml: would be updated"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("drift plan lacks %q:\n%s", want, r)
		}
	}
	for _, p := range phases {
		planReadOnly(t, w, g, []int{0, 1, 10}, runnerArgs(w, "--phase", p)...)
	}
	if n := len(w.stack.GitLab.Runners()); n != 1 {
		t.Errorf("GitLab has %d runners after the plans, want 1", n)
	}
}

func TestPlanGitLabChangesNothing(t *testing.T) {
	w := newGitLabWorld(t)
	w.stack.S3.CreateBucketIn(testenv.StackBackupBucket, "us-east-2")
	w.setGitLabConfig(w.stack.GitLabConfig("", backupSection))
	g := w.stack.GuardAll()
	phases := phasesOf(t, w, "gitlab")

	r := planReadOnly(t, w, g, []int{10}, gitlabArgs(w)...)
	for _, want := range []string{"ssm:/glbootstrap/gitlab/private-url: would be created", "[gitlab] backup-preflight    unchanged", "glbootstrap-backup.timer"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, r)
		}
	}
	for _, p := range phases {
		planReadOnly(t, w, g, []int{0, 1, 10}, gitlabArgs(w, "--phase", p)...)
	}

	// Converged, then a setting changed and the published URL moved.
	if r := w.gitlab("apply"); r.code != 0 {
		t.Fatal(r)
	}
	w.stack.SSM.Put(testenv.StackPrivateURL, "https://10.9.9.9", false)
	w.setGitLabConfig(strings.Replace(w.stack.GitLabConfig("", backupSection), "time_zone: UTC", "time_zone: Europe/Berlin", 1))
	r = planReadOnly(t, w, g, []int{10}, gitlabArgs(w)...)
	for _, want := range []string{"+gitlab_rails['time_zone'] = 'Europe/Berlin'", "would be updated: https://10.9.9.9 -> https://10.0.1.20"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("drift plan lacks %q:\n%s", want, r)
		}
	}
	for _, p := range phases {
		planReadOnly(t, w, g, []int{0, 1, 10}, gitlabArgs(w, "--phase", p)...)
	}
	if v, _ := w.stack.SSM.Value(testenv.StackPrivateURL); v != "https://10.9.9.9" {
		t.Errorf("plan published %q", v)
	}
}

// TestPlanGoesOnAfterAFailedCheck: a failed preflight is reported once, and plan still shows
// what the later phases would do, marked as after the failure; apply stops at it.
func TestPlanGoesOnAfterAFailedCheck(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	// The task security group no longer admits SSH from the front: preflight fails.
	w.stack.EC2.PutSecurityGroup(testenv.EC2SecurityGroup{ID: testenv.StackTaskSG, VPCID: "vpc-0123456789abcdef0", Name: "ci-coordinator-tasks"})
	r := w.plan()
	if r.code != 1 {
		t.Fatalf("plan: %s", r)
	}
	out := r.stdout + r.stderr
	for _, want := range []string{
		"[runner] preflight           failed",
		"fargate.toml: would be created",
		`would create runner "fargate-front"`,
		"config.toml: would be created",
		"(after the failed preflight: apply would stop there",
		"plan: 1 phase(s) failed: preflight",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, r)
		}
	}
	// The preflight's error is printed once, not again at the end.
	if n := strings.Count(out, "does not admit tcp/22 from the front"); n != 1 {
		t.Errorf("the preflight error is printed %d times:\n%s", n, r)
	}
	a := w.apply()
	if a.code != 1 || strings.Contains(a.stdout, "[runner] fargate-config") || len(w.stack.GitLab.Runners()) != 0 {
		t.Fatalf("apply must stop at the failed preflight: %s", a)
	}
}
