package main

// Front sizing from measurement: the real gitlab-runner 17.9.3 runs N jobs at once through the
// real Fargate driver against the ECS stand-in (tasks are real sshd processes on this machine),
// while the front's memory is sampled: gitlab-runner and every process it spawns (the driver's
// stages, and any ssh it would start), walked from /proc. The figures feed
// roles/runner/preflight's memory check (perJobMemoryMiB, runnerBaselineMiB).
//
// The measurement needs a *testing.T (the driver world's helpers take one), so
// BenchmarkFrontSizing runs TestFrontSizing in a child test binary and reports what it wrote:
//
//	make bench    (or: go test -run '^$' -bench FrontSizing ./cmd/glbootstrap/)

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// frontSizing is one run's figures. Memory is in MiB, times in seconds.
type frontSizing struct {
	Jobs int `json:"jobs"`
	// Overlap is how many job scripts were waiting at the same moment (from the times they
	// printed): the premise of the per-job figure is Overlap == Jobs.
	Overlap int `json:"overlap"`
	// Baseline is the runner alone, polling, before any job; Peak the largest sample while the
	// jobs ran. PSS is the sizing figure (see treeMemory); RSS sums shared pages once per process.
	BaselinePSS, BaselineRSS float64
	PeakPSS, PeakRSS         float64
	PerJobPSS, PerJobRSS     float64
	// PeakProcs is the number of processes in the runner's tree at the PSS peak, by name.
	PeakProcs map[string]int
	// Overhead is, per job, from POST /jobs/request handing it out to the first line its script
	// printed (a timestamp taken in the task): config, prepare (RunTask, waiting for RUNNING,
	// SSH), and the runner's own stages before the user script. Median and max over the jobs.
	OverheadMedian, OverheadMax float64
	Wall                        float64
}

// sizingScript prints when it starts, then waits until release exists (the stand-in's tasks are
// sshd processes on this machine, so they see the test's files) or two minutes have passed, and
// prints when it ends: every job of a run holds its task until all N have started. The task's
// clock is this machine's.
func sizingScript(release string) []string {
	return []string{
		`echo "glb-sizing-start $(date +%s.%N)"`,
		fmt.Sprintf("for i in $(seq 600); do [ -e %s ] && break; sleep 0.2; done", release),
		`echo "glb-sizing-end $(date +%s.%N)"`,
	}
}

var sizingMark = regexp.MustCompile(`glb-sizing-(start|end) ([0-9]+\.[0-9]+)`)

// TestFrontSizing measures the front for each N of GLB_FRONT_SIZING_JOBS ("1,20"), writing the
// figures as JSON lines to GLB_FRONT_SIZING_OUT when set. Skipped without GLB_FRONT_SIZING_JOBS:
// it takes about a minute per N and is run by BenchmarkFrontSizing (make bench).
func TestFrontSizing(t *testing.T) {
	spec := os.Getenv("GLB_FRONT_SIZING_JOBS")
	if spec == "" {
		t.Skip("set GLB_FRONT_SIZING_JOBS=1,20 to measure the front (make bench runs it through BenchmarkFrontSizing)")
	}
	var out *os.File
	if p := os.Getenv("GLB_FRONT_SIZING_OUT"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out = f
	}
	for _, s := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			t.Fatalf("GLB_FRONT_SIZING_JOBS=%q: want a comma-separated list of job counts >= 1", spec)
		}
		t.Run(fmt.Sprintf("jobs=%d", n), func(t *testing.T) {
			fs := measureFront(t, n)
			t.Logf("%d jobs: overlap %d, baseline %.1f MiB PSS (%.1f RSS), peak %.1f MiB PSS (%.1f RSS), per job %.2f MiB PSS (%.2f RSS), overhead median %.2f s max %.2f s, processes at peak %v",
				fs.Jobs, fs.Overlap, fs.BaselinePSS, fs.BaselineRSS, fs.PeakPSS, fs.PeakRSS, fs.PerJobPSS, fs.PerJobRSS, fs.OverheadMedian, fs.OverheadMax, fs.PeakProcs)
			if out != nil && !t.Failed() {
				b, _ := json.Marshal(fs)
				if _, err := out.Write(append(b, '\n')); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// measureFront converges a front with concurrent and limit n, runs the real runner with the real
// driver, and runs n sleeping jobs at once while sampling the runner's process tree.
func measureFront(t *testing.T, n int) frontSizing {
	bin := t.TempDir()
	var runnerBin string
	d := newDriverWorld(t, func(w *world) {
		p := consumer(t, gitlabRunnerXZ, gitlabRunnerSHA256, bin, "gitlab-runner")
		runnerBin = filepath.Join(w.root, "usr/bin/gitlab-runner")
		if err := os.Rename(p, runnerBin); err != nil {
			t.Fatal(err)
		}
		cfg := w.stack.RunnerConfig(testenv.CreateAuth, "")
		for old, repl := range map[string]string{
			"  concurrent: 200\n":        fmt.Sprintf("  concurrent: %d\n", n),
			"  limit: 200\n":             fmt.Sprintf("  limit: %d\n", n),
			"  request_concurrency: 4\n": fmt.Sprintf("  request_concurrency: %d\n", min(4, n)),
		} {
			if !strings.Contains(cfg, old) {
				t.Fatalf("the reference runner config has no %q", old)
			}
			cfg = strings.Replace(cfg, old, repl, 1)
		}
		w.setConfig(cfg)
	})
	gl := d.stack.GitLab
	cfgPath, env, workDir := sizingRunnerConfig(t, d)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, runnerBin, "run", "--config", cfgPath, "--working-directory", workDir)
	run.Env = env
	stop, runnerLog := startRunner(t, run)
	defer stop()
	pid := run.Process.Pid

	// Idle: wait for the runner to poll GitLab twice, then sample it for two seconds.
	for len(gl.JobRequests()) < 2 {
		if ctx.Err() != nil {
			t.Fatalf("gitlab-runner never asked for a job\n%s", runnerLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var idle []treeSample
	for i := 0; i < 20; i++ {
		if s, err := treeMemory(pid); err == nil {
			idle = append(idle, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(idle) == 0 {
		t.Fatalf("could not read the memory of gitlab-runner (pid %d) from /proc", pid)
	}
	var basePSS, baseRSS int64
	for _, s := range idle {
		basePSS += s.pss
		baseRSS += s.rss
	}
	basePSS /= int64(len(idle))
	baseRSS /= int64(len(idle))

	// Busy: n jobs, each holding its task until all have started, sampled every 100 ms until
	// all are finished.
	release := filepath.Join(t.TempDir(), "release")
	start := time.Now()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = gl.EnqueueJob(testenv.JobSpec{Name: fmt.Sprintf("sizing-%d", i), Tags: []string{"fargate"}, Script: sizingScript(release)})
	}
	var (
		mu          sync.Mutex
		peak        treeSample
		peakRSS     int64
		maxDrivers  int
		sampling    = make(chan struct{})
		samplerDone = make(chan struct{})
	)
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if s, err := treeMemory(pid); err == nil {
				mu.Lock()
				if s.pss > peak.pss {
					peak = s
				}
				peakRSS = max(peakRSS, s.rss)
				maxDrivers = max(maxDrivers, s.names["fargate"])
				mu.Unlock()
			}
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
		}
	}()
	// Every script has printed its start line (the runner sends the trace every 3 s): let the
	// sampler see them all running for two seconds more, then release them.
	for started := 0; started < n; {
		started = 0
		for _, id := range ids {
			if j, _ := gl.Job(id); sizingMark.Match(j.Trace) || j.Finished() {
				started++
			}
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	jobs := make([]testenv.GitLabJob, n)
	for i, id := range ids {
		j, err := gl.WaitJob(ctx, id)
		if err != nil {
			close(sampling)
			t.Fatalf("%v\n--- gitlab-runner run\n%s", err, runnerLog())
		}
		jobs[i] = j
	}
	wall := time.Since(start)
	close(sampling)
	<-samplerDone

	var overheads []float64
	var starts, ends []float64
	for _, j := range jobs {
		if j.State != "success" {
			t.Errorf("job %d = %s (%s); trace:\n%s", j.ID, j.State, j.FailureReason, j.Trace)
			continue
		}
		var st, en float64
		for _, m := range sizingMark.FindAllStringSubmatch(string(j.Trace), -1) {
			v, _ := strconv.ParseFloat(m[2], 64)
			if m[1] == "start" {
				st = v
			} else {
				en = v
			}
		}
		if st == 0 || en == 0 || j.HandedOut.IsZero() {
			t.Errorf("job %d: no start/end line in its trace, or never handed out (%v):\n%s", j.ID, j.HandedOut, j.Trace)
			continue
		}
		overheads = append(overheads, st-float64(j.HandedOut.UnixNano())/1e9)
		starts, ends = append(starts, st), append(ends, en)
	}
	if t.Failed() {
		t.FailNow()
	}
	overlap := 0
	for _, s := range starts {
		k := 0
		for i := range starts {
			if starts[i] <= s && s < ends[i] {
				k++
			}
		}
		overlap = max(overlap, k)
	}
	// The driver's processes are named after its binary (fargate, the path config.toml gives).
	if maxDrivers < n {
		t.Errorf("at most %d driver processes ran at once under gitlab-runner, want %d (one per running job); at the peak: %v", maxDrivers, n, peak.names)
	}
	if overlap != n {
		t.Errorf("only %d of %d job scripts ran at the same moment: the per-job figure assumes all did", overlap, n)
	}
	slices.Sort(overheads)
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	return frontSizing{
		Jobs: n, Overlap: overlap,
		BaselinePSS: mib(basePSS), BaselineRSS: mib(baseRSS),
		PeakPSS: mib(peak.pss), PeakRSS: mib(peakRSS),
		PerJobPSS: mib(peak.pss-basePSS) / float64(n), PerJobRSS: mib(peakRSS-baseRSS) / float64(n),
		PeakProcs:      peak.names,
		OverheadMedian: overheads[len(overheads)/2], OverheadMax: overheads[len(overheads)-1],
		Wall: wall.Seconds(),
	}
}

// sizingRunnerConfig writes config.toml as apply converged it with every absolute path under the
// root, the real driver where its *_exec lines point and the driver's fargate.toml; it returns
// that file, the runner's environment and its working directory.
func sizingRunnerConfig(t *testing.T, d *driverWorld) (cfgPath string, env []string, workDir string) {
	t.Helper()
	w := d.world
	product := w.read("etc/gitlab-runner/config.toml")
	execs := execLine.FindAllStringSubmatch(product, -1)
	if len(execs) != 4 {
		t.Fatalf("config.toml has %d custom *_exec lines, want 4:\n%s", len(execs), product)
	}
	drv, err := os.ReadFile(d.driver)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.root, execs[0][1]), drv, 0o755); err != nil {
		t.Fatal(err)
	}
	mapped := quotedAbsPath.ReplaceAllString(product, `"`+w.root+`$1"`)
	ftoml := `"` + filepath.Join(w.root, "etc/gitlab-runner/fargate.toml") + `"`
	mapped = strings.ReplaceAll(mapped, ftoml, `"`+d.config+`"`)
	cfgPath = filepath.Join(w.root, "etc/gitlab-runner/config.sizing.toml")
	if err := os.WriteFile(cfgPath, []byte(mapped), 0o600); err != nil {
		t.Fatal(err)
	}
	workDir = t.TempDir()
	env = []string{"HOME=" + workDir}
	for _, kv := range d.env {
		if !strings.HasPrefix(kv, "BUILD_FAILURE_") && !strings.HasPrefix(kv, "SYSTEM_FAILURE_") && !strings.HasPrefix(kv, "CUSTOM_ENV_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return cfgPath, env, workDir
}

// treeSample is the memory of a process and its descendants, in bytes.
type treeSample struct {
	pss, rss int64
	names    map[string]int
}

// treeMemory sums Pss and Rss (/proc/PID/smaps_rollup, kB) over root and every descendant
// (parent links from /proc/PID/stat). PSS is the sizing figure: the driver is one executable
// run as several processes per job, and RSS counts its shared text in every one of them, so a
// sum of RSS overstates what the tree holds; PSS charges each shared page once, split among the
// processes mapping it. A process that exits while it is read is left out.
func treeMemory(root int) (treeSample, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return treeSample{}, err
	}
	children := map[int][]int{}
	names := map[int]string{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
		names[pid] = s[open+1 : end]
	}
	if _, ok := names[root]; !ok {
		return treeSample{}, fmt.Errorf("process %d is gone", root)
	}
	out := treeSample{names: map[string]int{}}
	for todo := []int{root}; len(todo) > 0; {
		pid := todo[0]
		todo = append(todo[1:], children[pid]...)
		pss, rss, err := rollup(pid)
		if err != nil {
			continue
		}
		out.pss += pss
		out.rss += rss
		out.names[names[pid]]++
	}
	return out, nil
}

// rollup reads Pss and Rss of one process from /proc/PID/smaps_rollup, in bytes.
func rollup(pid int) (pss, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Pss:":
			pss = v << 10
		case "Rss:":
			rss = v << 10
		}
	}
	return pss, rss, sc.Err()
}

// BenchmarkFrontSizing runs TestFrontSizing for 1 and 20 jobs at once (concurrent 1 and 20) in
// a child test binary and reports its figures: MiB/job (PSS, and RSS) is (peak - idle) / jobs,
// baseline-MiB the idle runner, s/job the median time from hand-out to the script's first line.
// It prints a short table of them. Skipped when the child skipped (no consumers, not root).
func BenchmarkFrontSizing(b *testing.B) {
	var rows []frontSizing
	for _, n := range []int{1, 20} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			var fs frontSizing
			for i := 0; i < b.N; i++ {
				fs = runFrontSizing(b, n)
			}
			b.ReportMetric(fs.PerJobPSS, "MiB/job")
			b.ReportMetric(fs.PerJobRSS, "RSS-MiB/job")
			b.ReportMetric(fs.BaselinePSS, "baseline-MiB")
			b.ReportMetric(fs.PeakPSS, "peak-MiB")
			b.ReportMetric(fs.OverheadMedian, "s/job")
			rows = append(rows, fs)
		})
	}
	if len(rows) == 0 {
		return
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "\nfront sizing (gitlab-runner 17.9.3 + Fargate driver 0.1.0 tree, PSS; RSS in parentheses):\n")
	fmt.Fprintf(&tb, "%5s %9s %16s %16s %16s %12s %12s\n", "jobs", "overlap", "idle MiB", "peak MiB", "MiB/job", "s/job med", "s/job max")
	for _, r := range rows {
		fmt.Fprintf(&tb, "%5d %9d %7.1f (%6.1f) %7.1f (%6.1f) %7.2f (%6.2f) %12.2f %12.2f\n",
			r.Jobs, r.Overlap, r.BaselinePSS, r.BaselineRSS, r.PeakPSS, r.PeakRSS, r.PerJobPSS, r.PerJobRSS, r.OverheadMedian, r.OverheadMax)
	}
	fmt.Print(tb.String())
}

// runFrontSizing runs TestFrontSizing for n jobs in a child process of this test binary and
// returns what it wrote.
func runFrontSizing(b *testing.B, n int) frontSizing {
	b.Helper()
	outFile := filepath.Join(b.TempDir(), "sizing.json")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFrontSizing$", "-test.count", "1", "-test.v", "-test.timeout", "10m")
	cmd.Env = append(os.Environ(), "GLB_FRONT_SIZING_JOBS="+strconv.Itoa(n), "GLB_FRONT_SIZING_OUT="+outFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("TestFrontSizing (%d jobs): %v\n%s", n, err, out)
	}
	data, _ := os.ReadFile(outFile)
	if len(bytes.TrimSpace(data)) == 0 {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "SKIP") || strings.Contains(l, "unavailable") || strings.Contains(l, "run the test as root") {
				b.Skipf("TestFrontSizing skipped: %s", strings.TrimSpace(string(out)))
			}
		}
		b.Fatalf("TestFrontSizing (%d jobs) wrote no figures:\n%s", n, out)
	}
	var fs frontSizing
	if err := json.Unmarshal(bytes.TrimSpace(data), &fs); err != nil {
		b.Fatalf("TestFrontSizing figures: %v", err)
	}
	return fs
}
