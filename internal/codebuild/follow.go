package codebuild

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cb "github.com/glbootstrap/glbootstrap/internal/aws/codebuild"
	"github.com/glbootstrap/glbootstrap/internal/aws/logs"
)

// finalDrains is how many more times the log is read after the build ended, one poll apart:
// CloudWatch Logs shows the last lines a few seconds after CodeBuild reports the status.
const finalDrains = 2

type follower struct {
	d        Deps
	o        Options
	progress func(format string, args ...any)

	token     string // nextForwardToken of the log stream
	logsOff   bool   // log reading failed for good; keep following the status
	lines     int
	hints     []string
	seenLimit bool
}

// follow polls the build until it leaves IN_PROGRESS, printing its log as it goes. Throttling
// (after the SDK's own retries) backs off exponentially and keeps following; any other error
// ends the run.
func (f *follower) follow(ctx context.Context, b cb.Build) (cb.Build, error) {
	bo := newBackoff(f.o)
	phase := ""
	announcedLogs := false
	for {
		if b.CurrentPhase != phase {
			phase = b.CurrentPhase
			f.progress("build %s: phase %s", b.ID, phase)
		}
		if b.LogGroup != "" && b.LogStream != "" && !f.logsOff {
			if !announcedLogs {
				announcedLogs = true
				link := ""
				if b.DeepLink != "" {
					link = " (" + b.DeepLink + ")"
				}
				f.progress("build log: CloudWatch Logs %s/%s%s", b.LogGroup, b.LogStream, link)
			}
			f.drain(ctx, b)
		}
		if b.Done() {
			break
		}
		wait := f.o.Poll
		for {
			if !sleep(ctx, wait) {
				return b, ctx.Err()
			}
			nb, err := f.d.Builds.Get(ctx, b.ID)
			if err == nil {
				b = nb
				bo.Reset()
				break
			}
			if ctx.Err() != nil {
				return b, ctx.Err()
			}
			if !cb.IsThrottle(err) {
				return b, err
			}
			wait = bo.NextBackOff()
			f.progress("CodeBuild is throttling BatchGetBuilds; next try in %s", wait.Round(time.Millisecond))
		}
	}
	if b.LogGroup != "" && b.LogStream != "" && !f.logsOff {
		for i := 0; i < finalDrains; i++ {
			if !sleep(ctx, f.o.Poll) {
				break
			}
			if f.drain(ctx, b) == 0 && i > 0 {
				break
			}
		}
	} else if b.LogGroup == "" {
		f.progress("build %s wrote no CloudWatch Logs stream (the project may log to S3 only)", b.ID)
	}
	f.progress("build %s ended %s", b.ID, b.Status)
	return b, nil
}

// drain prints every log event written since the last call (GetLogEvents pages, forward, until
// the same nextForwardToken comes back) and returns how many it printed. A stream that does not
// exist yet or throttling is tried again at the next poll; other errors turn log reading off
// with one warning, since the status alone decides the outcome.
func (f *follower) drain(ctx context.Context, b cb.Build) int {
	n := 0
	for pages := 0; pages < 1000; pages++ {
		events, next, err := f.d.Logs.Page(ctx, b.LogGroup, b.LogStream, f.token)
		if err != nil {
			if errors.Is(err, logs.ErrNotFound) || cb.IsThrottle(err) || ctx.Err() != nil {
				return n
			}
			f.logsOff = true
			f.progress("warning: not showing the build log any more: %v", err)
			return n
		}
		for _, e := range events {
			f.line(e.Message)
			n++
		}
		if next == "" || next == f.token {
			f.token = next
			return n
		}
		f.token = next
		if len(events) == 0 {
			// A token that moves without events: ask again at the next poll.
			return n
		}
	}
	return n
}

func (f *follower) line(msg string) {
	msg = strings.TrimRight(msg, "\r\n")
	fmt.Fprintln(f.o.Out, msg)
	f.lines++
	if !f.seenLimit && strings.Contains(strings.ToLower(msg), "toomanyrequests") {
		f.seenLimit = true
		f.hints = append(f.hints, RateLimitHint)
	}
}

// stop asks CodeBuild to stop build id, with its own short deadline since ctx may be gone.
func (f *follower) stop(id string) {
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	f.progress("stopping build %s", id)
	if _, err := f.d.Builds.Stop(ctx, id); err != nil {
		f.progress("warning: could not stop build %s: %v; stop it in the console or with aws codebuild stop-build --id %s", id, err, id)
		return
	}
	f.progress("build %s stopped", id)
}
