// Package codebuild runs a Docker (or any) build in AWS CodeBuild for a CI job that cannot run
// Docker itself (a Fargate task): it zips a source directory straight into an S3 multipart
// upload, starts the build with that zip as its source, streams the build's CloudWatch Logs
// output as it arrives, and reports success only when the build ends SUCCEEDED. A cancelled run
// (SIGINT/SIGTERM, or its own timeout) stops the build before returning.
//
// GitLab's published codebuild.sh helper reports success whatever the build's status; this one
// never does (the helper of "Build containers with the AWS Fargate Custom Executor for GitLab
// Runner and AWS CodeBuild", https://about.gitlab.com/blog/2020/07/31/aws-fargate-codebuild-build-containers-gitlab-runner/).
package codebuild

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	cb "github.com/glbootstrap/glbootstrap/internal/aws/codebuild"
	"github.com/glbootstrap/glbootstrap/internal/aws/logs"
	"github.com/glbootstrap/glbootstrap/internal/aws/s3"
)

// Builds is the part of CodeBuild a run uses (internal/aws/codebuild.Client).
type Builds interface {
	StartBuild(ctx context.Context, s cb.Start) (cb.Build, error)
	Get(ctx context.Context, id string) (cb.Build, error)
	Stop(ctx context.Context, id string) (cb.Build, error)
}

// Logs reads a log stream page by page (internal/aws/logs.Client).
type Logs interface {
	Page(ctx context.Context, group, stream, token string) ([]logs.Event, string, error)
}

// Uploader stores a stream in S3 (internal/aws/s3.Client).
type Uploader interface {
	Upload(ctx context.Context, bucket, key string, body io.Reader, partSize int64, sse s3.SSE) (int64, error)
}

// Deps are the AWS services a run talks to.
type Deps struct {
	S3     Uploader
	Builds Builds
	Logs   Logs
}

// Defaults for Options.
const (
	DefaultKeyPrefix  = "glbootstrap/codebuild"
	DefaultPoll       = 5 * time.Second
	DefaultMaxBackoff = time.Minute
	// PartSize is the multipart part size of the source upload: with the uploader's
	// concurrency it bounds the memory a run holds (a few tens of MiB whatever the source's
	// size) and allows sources up to 10,000 parts.
	PartSize = 8 << 20
	// stopTimeout bounds the StopBuild call made after an interrupt.
	stopTimeout = 30 * time.Second
)

// Options describe one run.
type Options struct {
	Project string
	Bucket  string
	// KeyPrefix is where source zips go in Bucket: KeyPrefix/Project/<UTC time>-<random>.zip.
	// Default DefaultKeyPrefix. A lifecycle rule on the prefix keeps the bucket small.
	KeyPrefix string
	Env       []cb.EnvVar
	// Buildspec, when not empty, replaces the project's buildspec (the YAML text).
	Buildspec string
	// Timeout bounds the whole run (upload, queue, build); 0 means none. It is also passed to
	// CodeBuild (timeoutInMinutesOverride, rounded up, at least 5) so the build ends even if
	// this process is killed.
	Timeout time.Duration
	// Poll is the interval between BatchGetBuilds calls; default DefaultPoll.
	Poll time.Duration
	// MaxBackoff caps the wait after throttling; default DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Out receives the build's log lines as they arrive; nil discards them.
	Out io.Writer
	// Progress receives one line per step (uploaded, started, status changes, stopping).
	Progress func(string)
}

// Result is what a run did.
type Result struct {
	Key    string // S3 key of the source zip
	Zip    ZipStats
	Size   int64 // bytes uploaded
	Build  cb.Build
	Lines  int // log lines printed
	Hints  []string
	Upload time.Duration
}

// BuildError is a build that ended in any status other than SUCCEEDED.
type BuildError struct {
	Build cb.Build
	// Phase and Reason say where and why, from the build's phases (may be empty).
	Phase, Reason string
	// Hints are advice found in the log (Docker Hub's rate limit).
	Hints []string
}

func (e *BuildError) Error() string {
	msg := fmt.Sprintf("build %s ended %s", e.Build.ID, e.Build.Status)
	if e.Phase != "" {
		msg += " in phase " + e.Phase
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	for _, h := range e.Hints {
		msg += "\n" + h
	}
	return msg
}

// ErrInterrupted: the run was cancelled (SIGINT/SIGTERM) or hit its own timeout; the build was
// asked to stop.
var ErrInterrupted = errors.New("interrupted")

// RateLimitHint is the advice printed when the log shows Docker Hub refusing an anonymous pull.
const RateLimitHint = "Docker Hub refused a pull (toomanyrequests): CodeBuild's shared IP addresses exhaust the anonymous " +
	"pull rate limit quickly. Fix: log in to Docker Hub before the build (docker login with a token kept in " +
	"Secrets Manager or SSM, e.g. DOCKERHUB_USERNAME / DOCKERHUB_TOKEN in the provided buildspec), or pull base " +
	"images through an ECR pull-through cache rule for Docker Hub (FROM <account>.dkr.ecr.<region>.amazonaws.com/<prefix>/library/<image>), " +
	"or use the ECR Public mirror (public.ecr.aws/docker/library/<image>)."

// Run uploads src, builds it and follows the build to its end. It returns nil only when the
// build ended SUCCEEDED; otherwise a *BuildError (the build failed, faulted, timed out or was
// stopped), an error wrapping ErrInterrupted (ctx cancelled or opts.Timeout passed; the build
// was stopped), or the API error.
func Run(ctx context.Context, d Deps, src Source, o Options) (Result, error) {
	o = withDefaults(o)
	var res Result
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			o.Progress(fmt.Sprintf(format, args...))
		}
	}
	parent := ctx
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	interrupted := func(doing string) error {
		if parent.Err() != nil {
			return fmt.Errorf("%w while %s", ErrInterrupted, doing)
		}
		return fmt.Errorf("%w: timed out after %s while %s", ErrInterrupted, o.Timeout, doing)
	}

	res.Key = sourceKey(o.KeyPrefix, o.Project, time.Now())
	start := time.Now()
	stats, size, err := UploadSource(ctx, d.S3, o.Bucket, res.Key, src)
	res.Zip, res.Size, res.Upload = stats, size, time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return res, interrupted("uploading the source")
		}
		return res, err
	}
	progress("uploaded %s to s3://%s/%s: %d files, %d links, %s (%s compressed) in %s",
		src, o.Bucket, res.Key, stats.Files, stats.Symlinks, human(stats.Bytes), human(size), res.Upload.Round(time.Millisecond))

	start1 := cb.Start{Project: o.Project, Bucket: o.Bucket, Key: res.Key, Env: o.Env, Buildspec: o.Buildspec,
		TimeoutMinutes: buildTimeout(o.Timeout)}
	var b cb.Build
	bo := newBackoff(o)
	for {
		b, err = d.Builds.StartBuild(ctx, start1)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			// A StartBuild cut short may still have started a build we cannot name.
			return res, interrupted("starting the build")
		}
		if !cb.IsThrottle(err) {
			return res, err
		}
		wait := bo.NextBackOff()
		progress("CodeBuild is throttling StartBuild; retrying in %s", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			return res, interrupted("starting the build")
		}
	}
	res.Build = b
	progress("started build %s (project %s)", b.ID, o.Project)

	f := &follower{d: d, o: o, progress: progress}
	b, err = f.follow(ctx, b)
	res.Build, res.Lines, res.Hints = b, f.lines, f.hints
	if err != nil {
		if ctx.Err() != nil {
			err = interrupted(fmt.Sprintf("following build %s", b.ID))
		}
		// Never leave a build running that nobody follows: it would still push latest.
		f.stop(b.ID)
		return res, err
	}
	if !b.Succeeded() {
		be := &BuildError{Build: b, Hints: f.hints}
		if p, ok := b.FailedPhase(); ok {
			be.Phase, be.Reason = p.Type, strings.Join(p.Contexts, "; ")
			if be.Reason == "" {
				be.Reason = p.Status
			}
		} else {
			be.Phase = b.CurrentPhase
		}
		return res, be
	}
	return res, nil
}

func withDefaults(o Options) Options {
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	o.KeyPrefix = strings.Trim(o.KeyPrefix, "/")
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return o
}

// UploadSource streams src's zip into s3://bucket/key: the zip is written into a pipe that the
// multipart upload reads, so neither a temporary file nor the whole archive is ever held. It
// returns what the zip holds and the bytes stored. A zip error (empty source, vanished file)
// is returned as is, without the upload's wrapping.
func UploadSource(ctx context.Context, up Uploader, bucket, key string, src Source) (ZipStats, int64, error) {
	pr, pw := io.Pipe()
	type zipped struct {
		st  ZipStats
		err error
	}
	done := make(chan zipped, 1)
	go func() {
		st, err := src.WriteZip(ctx, pw)
		pw.CloseWithError(err) // nil closes with io.EOF: the upload completes
		done <- zipped{st, err}
	}()
	n, upErr := up.Upload(ctx, bucket, key, pr, PartSize, s3.SSE{})
	pr.CloseWithError(errUploadEnded) // unblocks the zip writer if the upload gave up first
	z := <-done
	if z.err != nil && !errors.Is(z.err, errUploadEnded) {
		return z.st, n, z.err
	}
	if upErr != nil {
		return z.st, n, upErr
	}
	return z.st, n, nil
}

var errUploadEnded = errors.New("upload ended")

func sourceKey(prefix, project string, now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%s/%s-%s.zip", prefix, project, now.UTC().Format("20060102T150405Z"), hex.EncodeToString(b[:]))
}

// buildTimeout is CodeBuild's timeoutInMinutesOverride for our own timeout: rounded up, within
// CodeBuild's 5..2160 minutes; 0 (the project's own) when there is no timeout.
func buildTimeout(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	m := int32(math.Ceil(d.Minutes()))
	return min(max(m, 5), 2160)
}

func newBackoff(o Options) *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = o.Poll
	bo.MaxInterval = o.MaxBackoff
	bo.Reset()
	return bo
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
