package main

// A kill between GitLab's answer to "create runner" and saving its token left a runner on
// GitLab that nobody has the token of. The next apply finds it by the marker it put in the
// runner's maintenance note and deletes it (needing read_api and manage_runner), or, with a
// create_runner-only token, says which runner to delete by hand.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

const interruptedState = `{
  "instance_id": "i-0123456789abcdef0",
  "system_id": "r_AAAAAAAAAAAA",
  "source": "",
  "token": "",
  "token_obtained_at": "0001-01-01T00:00:00Z",
  "token_expires_at": "0001-01-01T00:00:00Z",
  "url": "",
  "create_in_progress": {"description": "fargate-front", "since": "2026-12-01T00:00:00Z", "marker": "0123456789abcdef"}
}
`

func seedInterrupted(t *testing.T, w *world) (orphan, other testenv.GitLabRunner) {
	t.Helper()
	p := filepath.Join(w.root, "var/lib/glbootstrap/runner.json")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(interruptedState), 0o600); err != nil {
		t.Fatal(err)
	}
	orphan = w.stack.GitLab.AddRunner(testenv.GitLabRunner{Description: "fargate-front", RunnerType: "instance_type",
		MaintenanceNote: "Created by glbootstrap for runner manager r_AAAAAAAAAAAA on instance i-0123456789abcdef0 (request 0123456789abcdef)."})
	// Another front's runner of the same name, not yet polled: never touched.
	other = w.stack.GitLab.AddRunner(testenv.GitLabRunner{Description: "fargate-front", RunnerType: "instance_type",
		MaintenanceNote: "Created by glbootstrap for runner manager r_BBBBBBBBBBBB on instance i-0fedcba9876543210 (request fedcba9876543210)."})
	return orphan, other
}

func TestOrphanedRunnerIsDeletedOnceFound(t *testing.T) {
	t.Run("token may read and delete runners", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		w.stack.GitLab.AddAccessToken(testenv.StackAccessTokenVal, "create_runner", "read_api", "manage_runner")
		orphan, other := seedInterrupted(t, w)
		r := w.apply()
		wantCode(t, r, 0)
		wantIn(t, "stdout", r.stdout, r, "left by an interrupted apply", "created runner #")
		ids := map[int64]bool{}
		for _, rn := range w.stack.GitLab.Runners() {
			ids[rn.ID] = true
		}
		if ids[orphan.ID] || !ids[other.ID] || len(ids) != 2 {
			t.Fatalf("runners on GitLab %v: want the other front's #%d and the new one, not the orphan #%d", ids, other.ID, orphan.ID)
		}
		if st := w.read("var/lib/glbootstrap/runner.json"); strings.Contains(st, "create_in_progress") {
			t.Errorf("the intent is still recorded:\n%s", st)
		}
		if r := w.apply(); r.code != 0 || !strings.Contains(r.stdout, "0 changed") {
			t.Fatalf("second apply: %s", r)
		}
	})
	t.Run("create_runner-only token", func(t *testing.T) {
		w := newWorld(t, testenv.IMDSValues{})
		orphan, _ := seedInterrupted(t, w)
		r := w.apply()
		wantCode(t, r, 0)
		wantIn(t, "stdout", r.stdout, r, "an earlier apply was interrupted", `delete the runner "fargate-front" that never contacted GitLab`, "read_api and manage_runner")
		found := false
		for _, rn := range w.stack.GitLab.Runners() {
			found = found || rn.ID == orphan.ID
		}
		if !found {
			t.Error("the orphan was deleted without a token allowed to find it")
		}
	})
}

// TestNoRunnerCreatedWhenItsTokenCouldNotBeSaved: a link where .runner_system_id (or the state
// file) belongs is refused before GitLab creates anything.
func TestNoRunnerCreatedWhenItsTokenCouldNotBeSaved(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	outside := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "c"), filepath.Join(w.root, "etc/gitlab-runner/.runner_system_id")); err != nil {
		t.Fatal(err)
	}
	r := w.apply()
	wantCode(t, r, 1)
	wantIn(t, "output", r.stdout+r.stderr, r, "/etc/gitlab-runner/.runner_system_id exists and is not a regular file", "creates no runner")
	if n := len(w.stack.GitLab.Runners()); n != 0 {
		t.Fatalf("%d runner(s) created", n)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatal("wrote outside the root")
	}
}
