package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes of a run stopped by a signal: 128 + the signal's number, as a shell reports a
// process killed by it, so scripts and SSM Run Command see the same code whether glbootstrap
// stopped by itself or was killed.
const (
	ExitInterrupted = 128 + int(syscall.SIGINT)  // 130
	ExitTerminated  = 128 + int(syscall.SIGTERM) // 143
)

// Interrupt is the cancellation cause SignalContext gives its context when SIGINT or SIGTERM
// arrives. Main reads it back with context.Cause to exit 130 or 143 and say "interrupted".
type Interrupt struct{ Signal syscall.Signal }

func (i *Interrupt) Error() string { return "interrupted by " + i.Name() }

// Name is the signal's conventional name: SIGINT, SIGTERM.
func (i *Interrupt) Name() string {
	switch i.Signal {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return i.Signal.String()
}

// ExitCode is 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM.
func (i *Interrupt) ExitCode() int { return 128 + int(i.Signal) }

// SignalContext returns a context that the first SIGINT or SIGTERM cancels with an *Interrupt
// as its cause. A run then stops at the next phase boundary, or at once in a wait (driver
// download, GitLab readiness, systemd job), releases the lock and exits 130 / 143 (Main).
//
// Later signals are swallowed until stop is called: the run is already stopping, and dying in
// the middle of a step would only leave a temp file behind for the next run to remove. (Writes
// are atomic, so even SIGKILL leaves no half-written target.) stop restores the default
// handling.
func SignalContext(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				if sig, ok := s.(syscall.Signal); ok && ctx.Err() == nil {
					cancel(&Interrupt{Signal: sig})
				}
			case <-done:
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

// interruptOf returns the signal that cancelled ctx, or nil.
func interruptOf(ctx context.Context) *Interrupt {
	var in *Interrupt
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &in) {
		return in
	}
	return nil
}

// interrupted turns the error that ended a command stopped by a signal into the run's exit: the
// signal's code and a message that starts with "interrupted by SIG…" and keeps what was cut short.
func interrupted(in *Interrupt, err error) *exitError {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "interrupted "); ok {
		msg = in.Error() + " " + rest // "interrupted while following build X" said it already
	} else {
		msg = in.Error() + ": " + msg
	}
	return &exitError{code: in.ExitCode(), err: fmt.Errorf("%s\nwhat finished before the signal stays done: run the same command again to finish", msg)}
}
