package main

// The job scenarios of issue 10 on the live front (startLiveFront: a booted container, the real
// gitlab-runner 17.9.3 installed as its package does and started over D-Bus by `glbootstrap
// apply --role runner`, the real Fargate driver installed by apply from the mirror): a job with
// an artifact and a cache, a cache hit from S3, a failing script, a task that never runs, and
// 20 jobs at once. realrunner_driver_test.go runs the same scenarios with gitlab-runner as a
// process of this test; here it is the front's service, with the unit's environment.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// imdsDropIn makes the instance profile the only AWS credentials gitlab-runner.service has, for
// the runner's cache (runner.cache: AuthenticationType iam, the manager presigns the tasks' S3
// URLs) and for the driver alike, as on a front. It comes after startLiveFront's
// 50-glb-test-aws.conf and takes its static keys away: aws-sdk-go-v2 (the runner's cache)
// prefers keys in the environment to the instance profile, so with them the presigned URLs
// would carry the driver's test key, not the front's role. The runner's SDK reaches the
// metadata mock at AWS_EC2_METADATA_SERVICE_ENDPOINT (127.0.0.1: the container shares this
// machine's network). The driver's aws-sdk-go 1.29 has no such variable and always asks
// http://169.254.169.254, over the HTTP proxy of the environment (Go's proxy rules skip only
// loopback): HTTP_PROXY is a forward proxy (imdsForwarder) that serves that address, and only
// it, from the same mock. Both programs then hold the one instance profile, and nothing in the
// unit differs from a front but the addresses.
const imdsDropIn = `# Written by glbootstrap's system test: the instance profile, from the metadata mock.
[Service]
UnsetEnvironment=AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED
Environment=AWS_EC2_METADATA_SERVICE_ENDPOINT=%s
Environment=HTTP_PROXY=%s
Environment=AWS_CONFIG_FILE=/dev/null
Environment=AWS_SHARED_CREDENTIALS_FILE=/dev/null
`

// imdsForwarder is an HTTP forward proxy that serves http://169.254.169.254/ from the metadata
// mock at endpoint and refuses every other request (recorded).
type imdsForwarder struct {
	srv     *http.Server
	url     string
	mu      sync.Mutex
	served  int
	refused []string
}

func newIMDSForwarder(t *testing.T, endpoint string) *imdsForwarder {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	f := &imdsForwarder{}
	f.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		if r.URL.Host != "169.254.169.254" {
			f.refused = append(f.refused, r.Method+" "+r.URL.String())
			f.mu.Unlock()
			http.Error(w, "this proxy serves only the instance metadata service (169.254.169.254)", http.StatusForbidden)
			return
		}
		f.served++
		f.mu.Unlock()
		r.Host = target.Host
		rp.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "http://" + ln.Addr().String()
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

func (f *imdsForwarder) counts() (int, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served, append([]string(nil), f.refused...)
}

// liveNoTaskLeft checks the tasks started since before (an index into ECS.Tasks) and the
// StopTask calls since stopsBefore: want tasks and stops, every one STOPPED, and the driver's
// metadata directory in the container empty.
func (f *liveFront) liveNoTaskLeft(what string, before, stopsBefore, wantTasks, wantStops int) {
	t, ecs := f.t, f.w.stack.ECS
	t.Helper()
	if n := len(ecs.Tasks()) - before; n != wantTasks {
		t.Errorf("after %s: %d tasks started, want %d", what, n, wantTasks)
	}
	deadline := time.Now().Add(20 * time.Second)
	for ecs.Calls("StopTask")-stopsBefore < wantStops && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := ecs.Calls("StopTask") - stopsBefore; n != wantStops {
		t.Errorf("after %s: StopTask called %d times, want %d", what, n, wantStops)
	}
	for _, task := range ecs.Tasks()[before:] {
		if task.LastStatus != "STOPPED" {
			t.Errorf("after %s: task %s is %s, want STOPPED", what, task.ARN, task.LastStatus)
		}
	}
	// The driver's cleanup deletes the task's metadata file after StopTask returns.
	var left string
	for {
		left = strings.TrimSpace(f.c.Sh(t, "ls -A /opt/gitlab-runner/metadata 2>/dev/null || true"))
		if left == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if left != "" {
		t.Errorf("after %s: /opt/gitlab-runner/metadata still holds %q", what, left)
	}
}

// The front with runner.cache and concurrent: 20, its service run by glbootstrap: a job with an
// artifact and a cache; a second job restores the cache from S3 (presigned with the instance
// profile); a failing script; a task that never runs; 20 jobs at once. Each scenario's time is
// logged.
func TestSystemRealRunnerScenarios(t *testing.T) {
	const (
		bucket = "glb-ci-cache"
		n      = 20
	)
	f := startLiveFront(t)
	w, c := f.w, f.c
	gl, ecs := w.stack.GitLab, w.stack.ECS
	if f.tasks == nil {
		t.Fatal("startLiveFront's ECS launcher is not a *testenv.ImageLauncher")
	}

	// The configuration: startLiveFront's (the mirrored driver) with runner.cache and 20 at once.
	cfg, ok := w.stack.SSM.Value(testenv.StackConfigParam)
	if !ok {
		t.Fatalf("no %s in SSM after startLiveFront", testenv.StackConfigParam)
	}
	edited := strings.NewReplacer("concurrent: 200", fmt.Sprintf("concurrent: %d", n), "limit: 200", fmt.Sprintf("limit: %d", n),
		"runner:\n", "runner:\n  cache: {bucket: "+bucket+", path: ci/cache, shared: true}\n").Replace(cfg)
	if edited == cfg || !strings.Contains(edited, "concurrent: 20\n") || !strings.Contains(edited, "limit: 20\n") {
		t.Fatalf("could not set runner.cache and concurrent/limit 20 in:\n%s", cfg)
	}
	w.setConfig(edited)

	// The instance profile for the service (imdsDropIn).
	imds := newIMDSForwarder(t, w.stack.IMDS.Endpoint())
	c.Write(t, "/etc/systemd/system/"+runnerUnit+".d/60-glb-test-imds.conf", fmt.Sprintf(imdsDropIn, w.stack.IMDS.Endpoint(), imds.url))
	c.Sh(t, "systemctl daemon-reload")
	profileKey := imdsAccessKey(t, w.stack.IMDS.Endpoint())

	start := time.Now()
	_, pid := f.firstApply()
	t.Logf("scenario apply: %s", time.Since(start).Round(time.Millisecond))
	conf := c.Sh(t, "cat /etc/gitlab-runner/config.toml")
	m := regexp.MustCompile(`BucketLocation = "([a-z0-9-]+)"`).FindStringSubmatch(conf)
	if m == nil || !strings.Contains(conf, `AuthenticationType = "iam"`) || !strings.Contains(conf, `BucketName = "`+bucket+`"`) ||
		!strings.Contains(conf, fmt.Sprintf("concurrent = %d", n)) {
		t.Fatalf("config.toml has no [runners.cache.s3] for %s with iam, or not concurrent = %d:\n%s", bucket, n, conf)
	}
	region := m[1]
	w.stack.S3.CreateBucketIn(bucket, region)
	// What the running service got (names only: no value is printed).
	if env := c.Sh(t, "tr '\\0' '\\n' < /proc/"+pid+"/environ | cut -d= -f1"); strings.Contains(env, "AWS_ACCESS_KEY_ID") ||
		strings.Contains(env, "AWS_EC2_METADATA_DISABLED") || !strings.Contains(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT") {
		t.Fatalf("%s (pid %s) has static keys, or metadata disabled, or no metadata endpoint; its variables:\n%s", runnerUnit, pid, env)
	}

	// The tasks' network: the dual-stack virtual-host S3 name gitlab-runner 17.9.3 presigns
	// (cache/s3v2) served by the S3 stand-in behind a CONNECT proxy, whose URL and CA the tasks'
	// SSH sessions get (realrunner_driver_test's taskEnv).
	s3Host := bucket + ".s3.dualstack." + region + ".amazonaws.com"
	rec := &s3Recorder{h: w.stack.S3.VirtualHostHandler()}
	taskNet, err := testenv.NewAWSProxy(map[string]http.Handler{s3Host: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(taskNet.Close)
	ca := t.TempDir() + "/task-ca.pem"
	if err := os.WriteFile(ca, taskNet.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	const inTask = "/etc/glb-test-task-ca.pem"
	f.tasks.Volumes = append(f.tasks.Volumes, ca+":"+inTask+":ro")
	f.tasks.Command = append(f.tasks.Command, "-o", fmt.Sprintf("SetEnv=HTTPS_PROXY=%s SSL_CERT_FILE=%s", taskNet.URL(), inTask))

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	wait := func(id int64) testenv.GitLabJob {
		t.Helper()
		j, err := gl.WaitJob(ctx, id)
		if err != nil {
			t.Fatalf("%v\n--- journalctl -u %s\n%s\n--- tasks\n%s", err, runnerUnit, f.journal(), f.taskLog())
		}
		return j
	}
	cached := func(name string, script ...string) testenv.JobSpec {
		return testenv.JobSpec{Name: name, Tags: []string{"fargate"}, Script: script,
			Cache: []testenv.JobCache{{Key: "deps", Paths: []string{"vendor/"}}}}
	}
	var last testenv.GitLabJob

	// 1. Prints, uploads an artifact, caches a directory.
	start = time.Now()
	first := cached("build",
		"echo hello from the live front",
		`echo "task address: ${SSH_CONNECTION#* * }"`,
		"mkdir -p out vendor",
		`echo "artifact of job $CI_JOB_ID" > out/result.txt`,
		`echo "cached by job $CI_JOB_ID" > vendor/dep.txt`)
	first.Artifacts = []testenv.JobArtifact{{Name: "result", Paths: []string{"out/"}}}
	ok1 := wait(gl.EnqueueJob(first))
	t.Logf("scenario artifact+cache: job %d %s in %s", ok1.ID, ok1.State, time.Since(start).Round(time.Millisecond))
	if ok1.State != "success" || !ok1.TraceHasLine("hello from the live front") {
		t.Fatalf("job %d = %s (%s); trace:\n%s\n--- journalctl\n%s", ok1.ID, ok1.State, ok1.FailureReason, ok1.Trace, f.journal())
	}
	f.liveNoTaskLeft("the first job", 0, 0, 1, 1)
	if tasks := ecs.Tasks(); len(tasks) == 1 {
		if want := "task address: " + tasks[0].IP + " 22"; !ok1.TraceHasLine(want) {
			t.Errorf("job %d trace does not show SSH to the task (%s):\n%s", ok1.ID, want, ok1.Trace)
		}
	}
	if len(ok1.Artifacts) != 1 {
		t.Errorf("job %d uploaded %d artifacts, want 1; trace:\n%s", ok1.ID, len(ok1.Artifacts), ok1.Trace)
	} else if a := ok1.Artifacts[0]; a.Type != "archive" || a.Format != "zip" || zipFile(t, a.Data, "out/result.txt") != fmt.Sprintf("artifact of job %d\n", ok1.ID) {
		t.Errorf("artifact: type %s, format %s, file %q, out/result.txt = %q", a.Type, a.Format, a.Filename, zipFile(t, a.Data, "out/result.txt"))
	}
	objects := w.stack.S3.Objects(bucket, "ci/cache/")
	if len(objects) != 1 {
		t.Errorf("after the first job: S3 objects %v, want one under ci/cache/ (shared: no runner/ part); trace:\n%s", objects, ok1.Trace)
	}
	for key := range objects {
		if !strings.HasPrefix(key, "ci/cache/project/1/deps") {
			t.Errorf("cache object %s, want ci/cache/project/1/deps…", key)
		}
	}

	// 2. The same cache key in a new task (its own filesystem): the cache comes from S3.
	start = time.Now()
	hit := wait(gl.EnqueueJob(cached("uses-cache", "cat vendor/dep.txt")))
	t.Logf("scenario cache hit: job %d %s in %s; %q", hit.ID, hit.State, time.Since(start).Round(time.Millisecond), traceLines(hit, "extracted cache"))
	if hit.State != "success" || !hit.TraceHasLine(fmt.Sprintf("cached by job %d", ok1.ID)) || len(traceLines(hit, "Successfully extracted cache")) != 1 {
		t.Errorf("job %d = %s (%s), want success with the first job's cached file; trace:\n%s", hit.ID, hit.State, hit.FailureReason, hit.Trace)
	}
	f.liveNoTaskLeft("the job with a cache hit", 1, 1, 1, 1)
	gets, puts := 0, 0
	for _, q := range rec.requests() {
		if q.Host != s3Host {
			t.Errorf("S3 request to %s, want %s", q.Host, s3Host)
		}
		// X-Amz-Credential: KEY/DATE/REGION/s3/aws4_request, presigned by the service on the front.
		if !strings.HasPrefix(q.Credential, profileKey+"/") || !strings.Contains(q.Credential, "/"+region+"/s3/") {
			t.Errorf("S3 %s %s signed with %q, want the instance profile's key %s in %s", q.Method, q.Path, q.Credential, profileKey, region)
		}
		switch {
		case q.Method == http.MethodGet && q.Status == http.StatusOK:
			gets++
		case q.Method == http.MethodPut && q.Status == http.StatusOK:
			puts++
		}
	}
	if gets < 1 || puts < 1 {
		t.Errorf("S3 cache requests: %d uploads, %d downloads, want at least one of each: %+v", puts, gets, rec.requests())
	}
	last = hit

	// 3. A script that exits 1: failed, as runner_system_failure with this driver (its run
	// stage exits with SYSTEM_FAILURE_EXIT_CODE; see TestRealRunnerThroughRealDriver).
	start = time.Now()
	failed := wait(gl.EnqueueJob(testenv.JobSpec{Name: "fails", Tags: []string{"fargate"}, Script: []string{"echo about to fail", "exit 1"}}))
	t.Logf("scenario exit 1: job %d %s (%s) in %s", failed.ID, failed.State, failed.FailureReason, time.Since(start).Round(time.Millisecond))
	if failed.State != "failed" || failed.FailureReason != "runner_system_failure" || !failed.TraceHasLine("about to fail") {
		t.Errorf("job %d = %s (%s), want failed as runner_system_failure (the 0.1.0 driver's known behaviour) after its output; trace:\n%s",
			failed.ID, failed.State, failed.FailureReason, failed.Trace)
	}
	f.liveNoTaskLeft("the job that fails", 2, 2, 1, 1)

	// 4. A task that never reaches RUNNING: ECS stops it. Every task the job started is named in
	// its trace and stopped twice (the driver's prepare and its cleanup stage).
	const reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref 123456789012.dkr.ecr.us-east-2.amazonaws.com/ci-coordinator:latest: not found"
	before, stops := len(ecs.Tasks()), ecs.Calls("StopTask")
	ecs.SetTaskBehaviour(testenv.ECSTaskBehaviour{NeverStart: true, StopAfter: time.Second, StoppedReason: reason})
	start = time.Now()
	never := wait(gl.EnqueueJob(testenv.JobSpec{Name: "never-runs", Tags: []string{"fargate"}, Script: []string{"echo should not run"}}))
	ecs.SetTaskBehaviour(testenv.ECSTaskBehaviour{})
	started := ecs.Tasks()[before:]
	t.Logf("scenario task never runs: job %d %s (%s) in %s, %d tasks (prepare tries); %q", never.ID, never.State, never.FailureReason,
		time.Since(start).Round(time.Millisecond), len(started), traceLines(never, "Preparation failed", "Job failed"))
	if never.State != "failed" || never.FailureReason != "runner_system_failure" || never.TraceHasLine("should not run") {
		t.Errorf("job %d = %s (%s), want failed as runner_system_failure without running the script; trace:\n%s", never.ID, never.State, never.FailureReason, never.Trace)
	}
	if len(started) == 0 {
		t.Errorf("the job that never runs started no task")
	}
	for _, task := range started {
		if !strings.Contains(string(never.Trace), task.ARN) {
			t.Errorf("the trace does not name task %s:\n%s", task.ARN, never.Trace)
		}
	}
	f.liveNoTaskLeft("a task that never runs", before, stops, len(started), 2*len(started))

	// 5. 20 jobs at once (concurrent: 20): all succeed, every task is stopped.
	before, stops = len(ecs.Tasks()), ecs.Calls("StopTask")
	var ids []int64
	start = time.Now()
	for i := range n {
		ids = append(ids, gl.EnqueueJob(testenv.JobSpec{Name: fmt.Sprintf("parallel-%d", i), Tags: []string{"fargate"},
			Script: []string{fmt.Sprintf("echo job %d in ${SSH_CONNECTION##* * }", i), "sleep 5"}}))
	}
	peak, done, sampled := 0, make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			running := 0
			for _, task := range ecs.Tasks() {
				if task.LastStatus == "RUNNING" {
					running++
				}
			}
			peak = max(peak, running)
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	for i, id := range ids {
		j := wait(id)
		if j.State != "success" || !j.TraceHasLine(fmt.Sprintf("job %d in 22", i)) {
			t.Errorf("job %d = %s (%s); trace:\n%s", j.ID, j.State, j.FailureReason, j.Trace)
		}
		last = j
	}
	close(done)
	<-sampled
	t.Logf("scenario %d jobs at once: done in %s, at most %d tasks running at once", n, time.Since(start).Round(time.Millisecond), peak)
	f.liveNoTaskLeft(fmt.Sprintf("%d jobs", n), before, stops, n, n)
	if peak < n/2 {
		t.Errorf("at most %d tasks ran at once, want at least %d of the %d jobs at once (concurrent: %d)", peak, n/2, n, n)
	}

	// The driver took the instance profile through the metadata forwarder, and asked for nothing else.
	served, refused := imds.counts()
	t.Logf("metadata forwarder: %d requests of the driver's served", served)
	if served == 0 || len(refused) > 0 {
		t.Errorf("metadata forwarder: %d requests served, refused %v; want the driver's instance profile requests only", served, refused)
	}
	if refused := taskNet.Refused(); len(refused) > 0 {
		t.Errorf("the tasks asked for %v: only %s is served", refused, s3Host)
	}
	if refused := f.proxy.Refused(); len(refused) > 0 {
		t.Errorf("the driver asked the proxy for %v: only the ECS and EC2 stand-ins are served", refused)
	}
	f.finish(last)
}
