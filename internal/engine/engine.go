// Package engine runs a role: an ordered list of phases, each a set of
// idempotent steps. It owns ordering, --phase / --skip-phases, timing, and
// wrapping a failure with the phase's name once (the kubeadm "phases are
// data" workflow). A phase's Stage says whether it may run at AMI bake;
// the bake runs "apply --phase" with the bake phases.
package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// Stage says when a phase may run.
type Stage string

const (
	// Bake phases run at AMI bake and at apply: packages, binaries, units.
	// They must never need secrets or leave a machine identity behind.
	Bake Stage = "bake"
	// Boot phases run only at apply: facts, secrets, registration, services.
	Boot Stage = "boot"
)

// Phase is one named unit of convergence. Run returns the steps it took (or
// would take, under plan) in order; it should return the steps made so far
// together with an error.
type Phase struct {
	Name        string // kebab-case, unique within the role
	Description string // one line, shown by "glbootstrap phases"
	Stage       Stage
	Run         func(ctx context.Context) ([]host.Step, error)
}

// Status is a phase's outcome.
type Status string

const (
	Unchanged Status = "unchanged"
	Changed   Status = "changed"
	Failed    Status = "failed"
	Skipped   Status = "skipped"
	// Interrupted is a phase cut short because the run's context was cancelled (SIGINT,
	// SIGTERM) while it ran: it did not finish, and it is not a failure of the host.
	Interrupted Status = "interrupted"
)

// PhaseResult is what one phase did.
type PhaseResult struct {
	Role     string        `json:"role"`
	Phase    string        `json:"phase"`
	Status   Status        `json:"status"`
	Steps    []host.Step   `json:"steps,omitempty"`
	Duration time.Duration `json:"-"`
	Millis   float64       `json:"duration_ms"`
	Error    string        `json:"error,omitempty"`
	// Reason says why a Skipped phase did not run (it returned NotApplicable).
	Reason string `json:"reason,omitempty"`
	// AfterFailed, under plan only, names the earlier phase that failed: apply would have
	// stopped there, so this phase's result is what it would do once that is fixed.
	AfterFailed string `json:"after_failed,omitempty"`
}

// Report sums up a run.
type Report struct {
	Role      string `json:"role"`
	Changed   int    `json:"changed"`
	Unchanged int    `json:"unchanged"`
	Failed    int    `json:"failed"`
	Skipped   int    `json:"skipped"`
	Warnings  int    `json:"warnings"`
	// Interrupted names the phase the run's context was cancelled in, or the phase that was
	// next when it was cancelled between two phases; "" when the run was not cancelled.
	Interrupted string        `json:"interrupted,omitempty"`
	Duration    time.Duration `json:"-"`
	Millis      float64       `json:"duration_ms"`
	DryRun      bool          `json:"dry_run"`
}

// Options select what runs.
type Options struct {
	// Only, when non-empty, runs just these phases (in role order).
	Only []string
	// Skip names phases not to run.
	Skip []string
	// DryRun (plan) is reported in the Report; the effects wired into the phases enforce it.
	// Under plan a failed phase does not end the run: the later phases still show what they
	// would do, marked AfterFailed, so one plan shows the whole picture.
	DryRun bool
	// Observe, when set, is called after each phase (for streaming output).
	Observe func(PhaseResult)
}

// UsageError is a bad phase selection: exit code 2.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

// PhaseError is a phase that failed; it wraps the cause with the phase name.
type PhaseError struct {
	Phase string
	Err   error
}

func (e *PhaseError) Error() string { return fmt.Sprintf("phase %s: %v", e.Phase, e.Err) }
func (e *PhaseError) Unwrap() error { return e.Err }

// Select checks that every name in opts.Only and opts.Skip is a phase of
// the role and returns the phases that will run, in role order.
func Select(phases []Phase, opts Options) ([]Phase, error) {
	names := make([]string, len(phases))
	for i, p := range phases {
		names[i] = p.Name
	}
	for _, n := range append(slices.Clone(opts.Only), opts.Skip...) {
		if n == "" {
			return nil, &UsageError{"an empty phase name in --phase or --skip-phases; phases of this role: " + strings.Join(names, ", ")}
		}
		if !slices.Contains(names, n) {
			return nil, &UsageError{fmt.Sprintf("unknown phase %q; phases of this role: %s", n, strings.Join(names, ", "))}
		}
	}
	var out []Phase
	for _, p := range phases {
		if len(opts.Only) > 0 && !slices.Contains(opts.Only, p.Name) {
			continue
		}
		if slices.Contains(opts.Skip, p.Name) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// Run runs the selected phases of role in order and stops at the first
// failure: phases before it stay applied. Under plan (opts.DryRun) it goes
// on after a failure and marks the later results AfterFailed. The returned
// error is the first *PhaseError (exit 1) or a *UsageError (exit 2).
//
// Cancelling ctx (a signal) stops the run at the next phase boundary; a
// phase that is waiting (a download, GitLab's readiness, a systemd job)
// sees ctx end and returns at once. Either way Report.Interrupted names the
// phase and the error is a *PhaseError wrapping ctx's cause; plan stops too.
func Run(ctx context.Context, role string, phases []Phase, opts Options) (Report, error) {
	rep := Report{Role: role, DryRun: opts.DryRun}
	start := time.Now()
	selected, err := Select(phases, opts)
	if err != nil {
		return rep, err
	}
	var runErr error
	failedPhase := ""
	partial := false // a phase was cut short by ctx
	for _, p := range selected {
		if ctx.Err() != nil {
			runErr = &PhaseError{Phase: p.Name, Err: notStarted{context.Cause(ctx)}}
			rep.Interrupted = p.Name
			break
		}
		t := time.Now()
		steps, err := p.Run(ctx)
		res := PhaseResult{Role: role, Phase: p.Name, Steps: steps, Duration: time.Since(t), AfterFailed: failedPhase}
		if reason, ok := notApplicable(err); ok {
			res.Millis = float64(res.Duration.Microseconds()) / 1000
			res.Status, res.Reason = Skipped, reason
			if opts.Observe != nil {
				opts.Observe(res)
			}
			continue
		}
		res.Millis = float64(res.Duration.Microseconds()) / 1000
		for _, s := range steps {
			if s.Warning != "" {
				rep.Warnings++
			}
		}
		switch {
		case err != nil && ctx.Err() != nil:
			res.Status = Interrupted
			res.Error = err.Error()
			rep.Interrupted, partial = p.Name, true
		case err != nil:
			res.Status = Failed
			res.Error = err.Error()
			rep.Failed++
		case anyChanged(steps):
			res.Status = Changed
			rep.Changed++
		default:
			res.Status = Unchanged
			rep.Unchanged++
		}
		if opts.Observe != nil {
			opts.Observe(res)
		}
		if err != nil {
			if runErr == nil {
				runErr = &PhaseError{Phase: p.Name, Err: err}
				failedPhase = p.Name
			}
			if !opts.DryRun || res.Status == Interrupted {
				break
			}
		}
	}
	rep.Skipped = len(phases) - rep.Changed - rep.Unchanged - rep.Failed
	if partial {
		rep.Skipped-- // the interrupted phase ran, part way: not skipped
	}
	rep.Duration = time.Since(start)
	rep.Millis = float64(rep.Duration.Microseconds()) / 1000
	return rep, runErr
}

// notStarted is the error of the phase that was next when ctx was cancelled; it wraps ctx's
// cause (the signal) without repeating it in the message.
type notStarted struct{ cause error }

func (n notStarted) Error() string { return "not started" }
func (n notStarted) Unwrap() error { return n.cause }

func anyChanged(steps []host.Step) bool {
	for _, s := range steps {
		if s.Changed {
			return true
		}
	}
	return false
}

// IsUsage reports whether err is a phase-selection usage error.
func IsUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}
