package main

// The fault test of issue #9 item 5: SIGKILL the whole apply (the process group, so systemctl
// dies with it) at random points of every phase of the runner role, run apply again to the end,
// and check that the host ends exactly as an uninterrupted apply leaves it, with no temp file
// left and no second runner in GitLab.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// faultRole is what the fault test needs to know of a role: how to stand it up, seed a fresh
// root for it, and check GitLab's side after each recovered run.
type faultRole struct {
	role string
	// setup returns the world (stand-ins, configuration in SSM) and seeds a root in it.
	setup func(t *testing.T) *world
	seed  func(w *world, root string) error
	// runners: the role creates one GitLab runner per host, which the test counts.
	runners bool
}

// stepEnd is the output that says step of role ended: its header line for "prepare" (from the
// start of the process: configuration from SSM, the lock, instance metadata, the role's Prepare),
// else the phase's result line.
func stepEnd(role, step string) string {
	if step == "prepare" {
		return "glbootstrap apply --role " + role + " on root "
	}
	return "[" + role + "] " + step + " "
}

// stepHit is the step a killed run was in, from what it printed: the first whose end is
// missing, or "summary" when every phase had ended.
func stepHit(role string, steps []string, stdout string) string {
	for _, s := range steps {
		if !strings.Contains(stdout, stepEnd(role, s)) {
			return s
		}
	}
	return "summary"
}

func TestKillAnywhereThenApplyConverges(t *testing.T) {
	for _, fr := range []faultRole{
		{role: "runner", setup: faultRunnerWorld, runners: true, seed: func(w *world, root string) error {
			return testenv.SeedRunnerRoot(root, w.stack.GitLab.CAPEM())
		}},
		{role: "gitlab", setup: newGitLabWorld, seed: func(_ *world, root string) error {
			return testenv.SeedGitLabRoot(root)
		}},
	} {
		t.Run(fr.role, func(t *testing.T) { killAnywhere(t, fr) })
	}
}

// faultRunnerWorld is the runner's reference world with a 4 MiB driver, so that its download,
// hash and atomic write take long enough for kills to land inside them (the stand-in driver is
// a few bytes).
func faultRunnerWorld(t *testing.T) *world {
	w := newWorld(t, testenv.IMDSValues{})
	driver := append([]byte("#!/bin/sh\necho 'fargate driver stand-in' >&2\nexit 1\n"),
		bytes.Repeat([]byte("# padding of the fault test's driver, to make the download last a little\n"), 4<<20/75)...)
	sum := sha256.Sum256(driver)
	key := "fargate/v0.5.1/fargate-big-" + runtime.GOARCH
	w.stack.S3.PutObject(testenv.StackBucket, key, driver)
	cfg := w.stack.RunnerConfig(testenv.CreateAuth, "")
	cfg = strings.Replace(cfg, w.stack.DriverURL, "s3://"+testenv.StackBucket+"/"+key, 1)
	cfg = strings.Replace(cfg, w.stack.DriverSHA256, hex.EncodeToString(sum[:]), 1)
	w.setConfig(cfg)
	// A kill can land after GitLab created the runner and before its token was saved; the next
	// apply finds that runner by its maintenance note and deletes it, which takes a token that
	// may also read (read_api) and delete (manage_runner) runners. With create_runner alone it
	// can only warn (TestOrphanedRunnerIsDeletedOnceFound).
	w.stack.GitLab.AddAccessToken(testenv.StackAccessTokenVal, "create_runner", "read_api", "manage_runner")
	return w
}

// killAnywhere kills apply of fr.role 100 times, each in a fresh root at a random point of one
// step (aiming at each step in turn), runs apply again to the end, and compares the root with
// the one an uninterrupted apply left.
func killAnywhere(t *testing.T, fr faultRole) {
	kills := 100
	if testing.Short() {
		kills = 20
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GLB_FAULT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (GLB_FAULT_SEED=%d repeats this run's kill points)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	testStart := time.Now()
	w := fr.setup(t)
	args := func(root string) []string {
		return []string{"apply", "--role", fr.role, "--config", "ssm:" + configParam(fr.role), "--root", root}
	}

	// The uninterrupted run: the tree to end with, its steps and when each ends.
	phases := w.run("phases", "--role", fr.role)
	if phases.code != 0 {
		t.Fatal(phases)
	}
	steps := []string{"prepare"}
	for _, l := range strings.Split(strings.TrimSpace(phases.stdout), "\n") {
		steps = append(steps, strings.Fields(l)[0])
	}
	ref := w.start(args(w.root)...)
	refRes, _ := ref.wait(time.Minute)
	if refRes.code != 0 {
		t.Fatalf("uninterrupted apply: %s", refRes)
	}
	want := faultTree(t, w.root)
	window := map[string]time.Duration{}
	var aims []string // the steps to aim at: all but those reported skipped, which end at once
	prev := ref.started
	for _, s := range steps {
		end := ref.out.seen(stepEnd(fr.role, s))
		if end.IsZero() {
			t.Fatalf("the uninterrupted apply did not print %q: %s", stepEnd(fr.role, s), refRes)
		}
		window[s] = end.Sub(prev)
		prev = end
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(stepEnd(fr.role, s)) + ` *skipped `).MatchString(refRes.stdout) {
			aims = append(aims, s)
		}
	}
	t.Logf("uninterrupted apply: %s; steps %v", time.Since(ref.started).Round(time.Millisecond), window)

	base := t.TempDir()
	hits := map[string]int{}
	// aim scales each step's window: a kill that lands after the step it aimed at (the test
	// reacts to a line some 100 µs after it was printed, longer than a whole fast step) halves it.
	aim := map[string]float64{}
	for _, s := range aims {
		aim[s] = 1
	}
	var tempLeft, problems []string
	missing := func() []string {
		var out []string
		for _, s := range aims {
			if hits[s] == 0 {
				out = append(out, s)
			}
		}
		return out
	}
	total := 0
	// After the planned kills, up to 50 more aim only at steps no kill has landed in yet, so a
	// slow machine cannot fail the test for want of luck.
	for i := 0; i < kills || (i < kills+50 && len(missing()) > 0); i++ {
		total = i + 1
		root := filepath.Join(base, strconv.Itoa(i))
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := fr.seed(w, root); err != nil {
			t.Fatal(err)
		}
		iw := &world{t: t, stack: w.stack, root: root, env: w.env}
		maxID := maxRunnerID(w.stack.GitLab.Runners())

		target := aims[i%len(aims)]
		if m := missing(); i >= kills {
			target = m[i%len(m)]
		}
		delay := time.Duration(rng.Float64() * aim[target] * float64(window[target]))
		// Kill delay after the step before target printed its line (after the start, for
		// prepare), from the goroutine that copies the output, without a hop to this one.
		marker := ""
		if target != "prepare" {
			marker = stepEnd(fr.role, steps[indexOf(steps, target)-1])
		}
		fired := false
		p := iw.startWith(func(p *proc, out string) {
			if !fired && marker != "" && strings.Contains(out, marker) {
				fired = true
				if delay == 0 {
					p.kill()
				} else {
					time.AfterFunc(delay, p.kill)
				}
			}
		}, args(root)...)
		if marker == "" {
			time.AfterFunc(delay, p.kill)
		}
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			p.kill()
			t.Fatalf("kill %d: the run neither ended nor was killed: %s", i, p.result())
		}
		hit := stepHit(fr.role, steps, p.out.String())
		if p.code == 0 {
			hit = "finished" // the run ended before the kill
		}
		hits[hit]++
		if indexOf(steps, hit) < 0 || indexOf(steps, hit) > indexOf(steps, target) {
			aim[target] = max(aim[target]/2, 1.0/64)
		}
		orphan := ""
		if rs := newRunners(w.stack.GitLab.Runners(), maxID); fr.runners && len(rs) > 0 && !strings.Contains(readOr(root, "var/lib/glbootstrap/runner.json"), rs[0].Token) {
			orphan = fmt.Sprintf("; GitLab had created runner #%d, whose token was not saved", rs[0].ID)
		}

		r := iw.run(args(root)...)
		what := fmt.Sprintf("kill %d (aimed at %s, %s in; hit %s%s)", i, target, delay.Round(time.Microsecond), hit, orphan)
		if r.code != 0 {
			problems = append(problems, fmt.Sprintf("%s: the next apply failed: %s", what, r))
			continue
		}
		if tmp := tempFiles(t, root); len(tmp) > 0 {
			tempLeft = append(tempLeft, fmt.Sprintf("%s: %v", what, tmp))
		}
		if diff := diffTrees(want, faultTree(t, root)); diff != "" {
			problems = append(problems, fmt.Sprintf("%s: the tree differs from an uninterrupted apply's:\n%s", what, diff))
		}
		if created := newRunners(w.stack.GitLab.Runners(), maxID); fr.runners &&
			(len(created) != 1 || !strings.Contains(readOr(root, "etc/gitlab-runner/config.toml"), `token = "`+created[0].Token+`"`)) {
			problems = append(problems, fmt.Sprintf("%s: GitLab got %d runners for this host, want exactly 1, whose token config.toml holds", what, len(created)))
		}
		_ = os.RemoveAll(root)
	}

	var table []string
	for _, s := range append(append([]string{}, steps...), "summary", "finished") {
		if hits[s] > 0 {
			table = append(table, fmt.Sprintf("%s %d", s, hits[s]))
		}
	}
	t.Logf("%d kills in %s; hits per step: %s", total, time.Since(testStart).Round(100*time.Millisecond), strings.Join(table, ", "))
	for _, s := range aims {
		if hits[s] == 0 {
			t.Errorf("no kill landed in %s (hits: %s)", s, strings.Join(table, ", "))
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
	if len(tempLeft) > 0 {
		t.Errorf("%d of %d kills left temp files (.NAME.glb-*) that the next apply did not remove, e.g.:\n%s",
			len(tempLeft), total, strings.Join(tempLeft[:min(5, len(tempLeft))], "\n"))
	}
}

func configParam(role string) string {
	if role == "gitlab" {
		return testenv.StackGitLabConfigParam
	}
	return testenv.StackConfigParam
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func maxRunnerID(rs []testenv.GitLabRunner) int64 {
	var m int64
	for _, r := range rs {
		m = max(m, r.ID)
	}
	return m
}

// newRunners are the runners with an ID above id, oldest first.
func newRunners(rs []testenv.GitLabRunner, id int64) []testenv.GitLabRunner {
	var out []testenv.GitLabRunner
	for _, r := range rs {
		if r.ID > id {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func readOr(root, rel string) string {
	b, _ := os.ReadFile(filepath.Join(root, rel))
	return string(b)
}

// What legitimately differs between two hosts converged from the same config and GitLab: the
// runner's token and GitLab's id for it, when GitLab gave the token, the runner manager's
// random system id, and when reconfigure ran. Everything else must be byte-identical.
var (
	obtainedTOML = regexp.MustCompile(`(?m)^(\s*token_obtained_at = )\S+$`)
	obtainedJSON = regexp.MustCompile(`("token_obtained_at": )"[^"]*"`)
	runnerIDJSON = regexp.MustCompile(`("runner_id": )\d+`)
	runnerIDTOML = regexp.MustCompile(`(?m)^(\s*id = )\d+$`)
	// reconfiguredJSON: when the gitlab role last ran (or recorded) gitlab-ctl reconfigure.
	reconfiguredJSON = regexp.MustCompile(`("reconfigured_at": )"[^"]*"`)
)

// faultTree describes every path under root but the temp files (reported on their own): type,
// permission bits, owner and group ids, and the content (normalized as above; a SHA-256 for
// large files) or a symlink's target. The lock file's content is the PID of the last run, a
// hint for the "locked" message, and is left out.
func faultTree(t testing.TB, root string) map[string]string {
	t.Helper()
	var state struct {
		Token    string `json:"token"`
		SystemID string `json:"system_id"`
	}
	if b, err := os.ReadFile(filepath.Join(root, "var/lib/glbootstrap/runner.json")); err == nil {
		if err := json.Unmarshal(b, &state); err != nil {
			t.Fatalf("runner.json: %v", err)
		}
	}
	tree := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if tempFile.MatchString(d.Name()) {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v uid %d gid %d", info.Mode(), st.Uid, st.Gid)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case d.Type().IsRegular() && rel != "run/glbootstrap.lock":
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if len(b) > 64<<10 {
				s := sha256.Sum256(b)
				desc += " sha256 " + hex.EncodeToString(s[:])
				break
			}
			text := string(b)
			for v, name := range map[string]string{state.Token: "<runner token>", state.SystemID: "<system id>"} {
				if v != "" {
					text = strings.ReplaceAll(text, v, name)
				}
			}
			text = obtainedTOML.ReplaceAllString(text, "${1}<time>")
			text = obtainedJSON.ReplaceAllString(text, `${1}"<time>"`)
			text = runnerIDJSON.ReplaceAllString(text, "${1}<id>")
			text = runnerIDTOML.ReplaceAllString(text, "${1}<id>")
			text = reconfiguredJSON.ReplaceAllString(text, `${1}"<time>"`)
			desc += "\n" + text
		}
		tree[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// diffTrees says which paths differ between two faultTrees, "" when none.
func diffTrees(want, got map[string]string) string {
	var out []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, "missing "+p)
		case g != w:
			out = append(out, fmt.Sprintf("%s:\n  want %s\n  got  %s", p, w, g))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			out = append(out, "extra "+p)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
