package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// recorder builds phases that record their names when run.
func phases(ran *[]string, failAt string) []Phase {
	mk := func(name string, stage Stage, changed bool) Phase {
		return Phase{Name: name, Stage: stage, Run: func(context.Context) ([]host.Step, error) {
			*ran = append(*ran, name)
			if name == failAt {
				return []host.Step{{Kind: "file", Target: "/x", Changed: true}}, errors.New("disk full")
			}
			return []host.Step{{Kind: "file", Target: "/" + name, Changed: changed}}, nil
		}}
	}
	return []Phase{mk("a", Bake, true), mk("b", Boot, false), mk("c", Bake, false), mk("d", Boot, true)}
}

func TestRunSelection(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       Options
		want       string
		changed    int
		unchanged  int
		skipped    int
		usageError string
	}{
		{name: "all", opts: Options{}, want: "a b c d", changed: 2, unchanged: 2},
		{name: "only", opts: Options{Only: []string{"d", "b"}}, want: "b d", changed: 1, unchanged: 1, skipped: 2},
		{name: "skip", opts: Options{Skip: []string{"a"}}, want: "b c d", changed: 1, unchanged: 2, skipped: 1},
		{name: "unknown phase", opts: Options{Only: []string{"zz"}}, usageError: `unknown phase "zz"; phases of this role: a, b, c, d`},
		{name: "unknown skip", opts: Options{Skip: []string{"zz"}}, usageError: `unknown phase "zz"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ran []string
			rep, err := Run(context.Background(), "r", phases(&ran, ""), tc.opts)
			if tc.usageError != "" {
				if !IsUsage(err) || !strings.Contains(err.Error(), tc.usageError) || len(ran) != 0 {
					t.Fatalf("err = %v, ran %v", err, ran)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(ran, " "); got != tc.want {
				t.Errorf("ran %q, want %q", got, tc.want)
			}
			if rep.Changed != tc.changed || rep.Unchanged != tc.unchanged || rep.Skipped != tc.skipped {
				t.Errorf("report %+v", rep)
			}
		})
	}
}

func TestRunStopsAtFailureAndNamesPhase(t *testing.T) {
	var ran []string
	var seen []PhaseResult
	rep, err := Run(context.Background(), "r", phases(&ran, "b"), Options{Observe: func(r PhaseResult) { seen = append(seen, r) }})
	var pe *PhaseError
	if !errors.As(err, &pe) || pe.Phase != "b" || err.Error() != "phase b: disk full" {
		t.Fatalf("err = %v", err)
	}
	if strings.Join(ran, " ") != "a b" || rep.Failed != 1 || rep.Changed != 1 {
		t.Fatalf("ran %v report %+v", ran, rep)
	}
	if len(seen) != 2 || seen[1].Status != Failed || seen[1].Error != "disk full" {
		t.Fatalf("observed %+v", seen)
	}
}

func TestRunHonoursCancellation(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sig := errors.New("interrupted by SIGTERM")
	cancel(sig)
	var ran []string
	rep, err := Run(ctx, "r", phases(&ran, ""), Options{})
	var pe *PhaseError
	if !errors.As(err, &pe) || pe.Phase != "a" || !errors.Is(err, sig) || len(ran) != 0 {
		t.Fatalf("err=%v ran=%v", err, ran)
	}
	if err.Error() != "phase a: not started" || rep.Interrupted != "a" || rep.Skipped != 4 {
		t.Errorf("err %q, report %+v", err, rep)
	}
}

// A signal during a phase: the phase's wait returns ctx's error, the phase is reported
// interrupted (not failed), and no later phase starts.
func TestRunStopsAtThePhaseASignalCutShort(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var ran []string
	ps := phases(&ran, "")
	ps[1].Run = func(ctx context.Context) ([]host.Step, error) {
		ran = append(ran, "b")
		cancel()
		<-ctx.Done()
		return nil, fmt.Errorf("waiting for GitLab: %w", ctx.Err())
	}
	var seen []PhaseResult
	rep, err := Run(ctx, "r", ps, Options{Observe: func(r PhaseResult) { seen = append(seen, r) }})
	var pe *PhaseError
	if !errors.As(err, &pe) || pe.Phase != "b" || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if strings.Join(ran, " ") != "a b" || len(seen) != 2 || seen[1].Status != Interrupted {
		t.Fatalf("ran %v, observed %+v", ran, seen)
	}
	if rep.Interrupted != "b" || rep.Failed != 0 || rep.Changed != 1 || rep.Skipped != 2 {
		t.Errorf("report %+v", rep)
	}
}
