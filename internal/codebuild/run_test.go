package codebuild

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	cb "github.com/glbootstrap/glbootstrap/internal/aws/codebuild"
	"github.com/glbootstrap/glbootstrap/internal/aws/logs"
	"github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/buildstack"
)

// newStack starts the stand-ins and builds the product's clients against them, redirected only
// through the SDK's standard variables.
func newStack(t *testing.T, logPage int) (*buildstack.Stack, Deps) {
	t.Helper()
	st := buildstack.Start(logPage)
	t.Cleanup(st.Close)
	st.CodeBuild.AddProject("images")
	for k, v := range st.Env() {
		t.Setenv(k, v)
	}
	cfg, err := awscfg.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return st, Deps{S3: s3.New(cfg), Builds: cb.New(cfg), Logs: logs.New(cfg)}
}

func source(t *testing.T) *Dir {
	t.Helper()
	root := t.TempDir()
	write(t, root, map[string]string{"Dockerfile": "FROM scratch\n", "app/main.go": "package main\n"})
	return &Dir{Path: root}
}

func opts(out io.Writer) Options {
	return Options{Project: "images", Bucket: buildstack.Bucket, Poll: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Out: out}
}

func TestRunTerminalStatuses(t *testing.T) {
	lines := []string{"Step 1/3 : FROM scratch", "Step 2/3 : COPY . /", "Step 3/3 : CMD run", "Successfully built 0123abcd", "done"}
	for _, tc := range []struct {
		status, phase, code, msg string
		wantErr                  string
	}{
		{status: "SUCCEEDED"},
		{status: "FAILED", phase: "BUILD", code: "COMMAND_EXECUTION_ERROR", msg: "Error while executing command: docker build . Reason: exit status 1",
			wantErr: "ended FAILED in phase BUILD: COMMAND_EXECUTION_ERROR: Error while executing command: docker build . Reason: exit status 1"},
		{status: "FAULT", phase: "DOWNLOAD_SOURCE", code: "CLIENT_ERROR", msg: "NoSuchKey: The specified key does not exist",
			wantErr: "ended FAULT in phase DOWNLOAD_SOURCE: CLIENT_ERROR: NoSuchKey"},
		{status: "TIMED_OUT", phase: "BUILD", code: "BUILD_TIMED_OUT", msg: "Build has timed out.",
			wantErr: "ended TIMED_OUT in phase BUILD: BUILD_TIMED_OUT: Build has timed out."},
		{status: "FAILED", phase: "POST_BUILD", wantErr: "ended FAILED in phase POST_BUILD: FAILED"},
	} {
		t.Run(tc.status+"/"+tc.phase, func(t *testing.T) {
			st, deps := newStack(t, 2) // pages of 2 events: the follower must page with nextForwardToken
			st.CodeBuild.Script(func(testenv.StartedBuild) testenv.BuildScript {
				return testenv.BuildScript{Status: tc.status, FailPhase: tc.phase, Code: tc.code, Message: tc.msg, Lines: lines}
			})
			var out bytes.Buffer
			res, err := Run(context.Background(), deps, source(t), opts(&out))
			if tc.wantErr == "" {
				if err != nil || !res.Build.Succeeded() {
					t.Fatalf("Run = %+v, %v; want success", res.Build, err)
				}
			} else {
				var be *BuildError
				if !errors.As(err, &be) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v; want a BuildError with %q", err, tc.wantErr)
				}
				if be.Build.Status != tc.status {
					t.Errorf("status %s, want %s", be.Build.Status, tc.status)
				}
			}
			// The log arrived in order and whole, across pages.
			log := out.String()
			if tc.phase != "DOWNLOAD_SOURCE" && !strings.Contains(log, strings.Join(lines, "\n")+"\n") {
				t.Errorf("log output:\n%s\nwant the build's lines in order", log)
			}
			if !strings.Contains(log, "[Container] Entering phase") && tc.phase != "DOWNLOAD_SOURCE" {
				t.Errorf("log output misses phase lines:\n%s", log)
			}
			if st.Logs.Calls("GetLogEvents") < 3 {
				t.Errorf("GetLogEvents calls = %d; want paging", st.Logs.Calls("GetLogEvents"))
			}
			// The build got the zip we uploaded.
			b := st.CodeBuild.Builds()[0]
			if b.SourceType != "S3" || !strings.HasPrefix(b.SourceLocation, buildstack.Bucket+"/glbootstrap/codebuild/images/") ||
				!strings.HasSuffix(b.SourceLocation, ".zip") || b.SourceLocation != buildstack.Bucket+"/"+res.Key {
				t.Errorf("build source = %s %s, key %s", b.SourceType, b.SourceLocation, res.Key)
			}
		})
	}
}

func TestRunThrottlingIsRetried(t *testing.T) {
	st, deps := newStack(t, 0)
	st.CodeBuild.Script(func(testenv.StartedBuild) testenv.BuildScript {
		return testenv.BuildScript{Lines: []string{"built"}}
	})
	// AWS_MAX_ATTEMPTS=1: the SDK gives up at once, so these reach glbootstrap's own backoff.
	st.CodeBuild.Throttle("StartBuild", 2)
	st.CodeBuild.Throttle("BatchGetBuilds", 4)
	st.Logs.Throttle(3)
	var out bytes.Buffer
	var progress []string
	o := opts(&out)
	o.Progress = func(s string) { progress = append(progress, s) }
	res, err := Run(context.Background(), deps, source(t), o)
	if err != nil || !res.Build.Succeeded() {
		t.Fatalf("Run = %v, %v; want success after throttling", res.Build.Status, err)
	}
	if n := st.CodeBuild.Calls("StartBuild"); n != 3 {
		t.Errorf("StartBuild calls = %d, want 3 (2 throttled)", n)
	}
	if n := len(st.CodeBuild.Builds()); n != 1 {
		t.Errorf("%d builds started, want 1", n)
	}
	if !strings.Contains(out.String(), "built\n") {
		t.Errorf("log lost after throttling:\n%s", out.String())
	}
	if !strings.Contains(strings.Join(progress, "\n"), "throttling BatchGetBuilds") {
		t.Errorf("progress does not mention throttling: %q", progress)
	}
}

func TestRunAPIErrors(t *testing.T) {
	_, deps := newStack(t, 0)
	o := opts(nil)
	o.Project = "nope"
	_, err := Run(context.Background(), deps, source(t), o)
	if !errors.Is(err, cb.ErrNotFound) || !strings.Contains(err.Error(), "Project cannot be found") {
		t.Errorf("unknown project: err = %v", err)
	}
	o = opts(nil)
	o.Bucket = "no-such-bucket"
	_, err = Run(context.Background(), deps, source(t), o)
	if !errors.Is(err, s3.ErrNotFound) {
		t.Errorf("missing bucket: err = %v", err)
	}
}

func TestRunCancelStopsBuild(t *testing.T) {
	st, deps := newStack(t, 0)
	st.CodeBuild.Script(func(testenv.StartedBuild) testenv.BuildScript { return testenv.BuildScript{Hold: true} })
	ctx, cancel := context.WithCancel(context.Background())
	o := opts(nil)
	o.Progress = func(s string) {
		if strings.Contains(s, "phase BUILD") {
			cancel() // the CI job is cancelled mid-build (SIGTERM)
		}
	}
	_, err := Run(ctx, deps, source(t), o)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	if st.CodeBuild.Calls("StopBuild") != 1 || st.CodeBuild.Builds()[0].Status != "STOPPED" {
		t.Errorf("StopBuild calls %d, status %s; want the build stopped", st.CodeBuild.Calls("StopBuild"), st.CodeBuild.Builds()[0].Status)
	}
}

func TestRunOwnTimeoutStopsBuild(t *testing.T) {
	st, deps := newStack(t, 0)
	st.CodeBuild.Script(func(testenv.StartedBuild) testenv.BuildScript { return testenv.BuildScript{Hold: true} })
	o := opts(nil)
	o.Timeout = 300 * time.Millisecond
	_, err := Run(context.Background(), deps, source(t), o)
	if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	b := st.CodeBuild.Builds()[0]
	if b.Status != "STOPPED" || b.TimeoutMinutes != 5 {
		t.Errorf("build status %s, CodeBuild timeout %d; want STOPPED and 5 (CodeBuild's minimum)", b.Status, b.TimeoutMinutes)
	}
}

func TestRunRateLimitHint(t *testing.T) {
	st, deps := newStack(t, 0)
	st.CodeBuild.Script(func(testenv.StartedBuild) testenv.BuildScript {
		return testenv.BuildScript{Status: "FAILED", Code: "COMMAND_EXECUTION_ERROR", Message: "docker build exit status 1",
			Lines: []string{"Step 1/4 : FROM node:20", "toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}}
	})
	_, err := Run(context.Background(), deps, source(t), opts(nil))
	if err == nil || !strings.Contains(err.Error(), "Docker Hub refused a pull (toomanyrequests)") || !strings.Contains(err.Error(), "pull-through cache") {
		t.Fatalf("err = %v; want the rate-limit advice", err)
	}
}

func TestRunNoLogStream(t *testing.T) {
	st, deps := newStack(t, 0)
	st.CodeBuild.Script(func(testenv.StartedBuild) testenv.BuildScript { return testenv.BuildScript{NoLogs: true} })
	var progress []string
	o := opts(nil)
	o.Progress = func(s string) { progress = append(progress, s) }
	if _, err := Run(context.Background(), deps, source(t), o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(progress, "\n"), "wrote no CloudWatch Logs stream") {
		t.Errorf("progress = %q", progress)
	}
}

// A source of several parts goes up as a multipart upload (gofakes3 assembles it) and comes back
// byte for byte; the zip is never held whole.
func TestUploadMultipart(t *testing.T) {
	st, deps := newStack(t, 0)
	root := t.TempDir()
	big := make([]byte, 3*PartSize+12345) // random: deflate cannot shrink it below 3 parts
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(root, "blob.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	// Count the parts on the wire: gofakes3 in front of a counter, and a client pointed at it.
	var parts atomic.Int32
	s3h := st.S3.Handler() // one front: it holds the multipart uploads in progress
	counter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") != "" {
			parts.Add(1)
		}
		s3h.ServeHTTP(w, r)
	}))
	defer counter.Close()
	t.Setenv("AWS_ENDPOINT_URL_S3", counter.URL)
	cfg, err := awscfg.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	_ = deps
	zs, n, err := UploadSource(context.Background(), s3.New(cfg), buildstack.Bucket, "src/big.zip", &Dir{Path: root})
	if err != nil {
		t.Fatal(err)
	}
	if zs.Files != 1 || zs.Bytes != int64(len(big)) || n < int64(len(big)) {
		t.Errorf("stats %+v, uploaded %d", zs, n)
	}
	resp, err := http.Get(st.S3.URL() + "/" + buildstack.Bucket + "/src/big.zip")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if parts.Load() < 4 {
		t.Errorf("%d parts uploaded, want a multipart upload of at least 4", parts.Load())
	}
	if int64(len(data)) != n {
		t.Fatalf("stored %d bytes, uploaded %d", len(data), n)
	}
	got := unzip(t, data)
	if got["blob.bin"] != string(big) {
		t.Error("blob.bin differs after the round trip")
	}
}

func TestBuildTimeout(t *testing.T) {
	for d, want := range map[time.Duration]int32{0: 0, time.Minute: 5, 61 * time.Minute: 61, 61*time.Minute + time.Second: 62, 100 * time.Hour: 2160} {
		if got := buildTimeout(d); got != want {
			t.Errorf("buildTimeout(%s) = %d, want %d", d, got, want)
		}
	}
}
