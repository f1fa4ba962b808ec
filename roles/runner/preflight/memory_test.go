package preflight

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// TestCheckMemory: concurrent (or a lower limit) × the measured per-job memory plus the runner's
// baseline against the front's memory, from its instance type, else the live host's
// /proc/meminfo; a front too small names the smallest type of its family that fits and the
// concurrent that fits it.
func TestCheckMemory(t *testing.T) {
	typ := func(s string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return s, nil }
	}
	noIMDS := func(context.Context) (string, error) {
		return "", errors.New("instance metadata (IMDSv2) is not reachable at http://169.254.169.254")
	}
	meminfo := func(s string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(s), nil } }
	fallback := "t3.small"
	if runtime.GOARCH == "arm64" {
		fallback = "t4g.small"
	}
	for name, tc := range map[string]struct {
		runner  Runner
		machine Machine
		want    CheckStatus
		res     string
		text    []string // substrings of Problem, or Detail when ok
		fix     []string
	}{
		"seed: concurrent 200 on a t2.micro": {
			runner: Runner{Concurrent: 200, Limit: 200}, machine: Machine{InstanceType: typ("t2.micro")},
			want: CheckWarn, res: "front t2.micro",
			text: []string{"200 jobs at once (concurrent 200, limit 200) need about 1214 MiB", "94 MiB + 200 × 5.6 MiB", "1024 MiB of this front (instance type t2.micro)", "OOM killer"},
			fix:  []string{"use t2.small or larger (an instance type with at least 1214 MiB)", "lower runner.concurrent (and runner.limit) to 166, what fits this instance"},
		},
		"reference: concurrent 200 on a t3.small": {
			runner: Runner{Concurrent: 200, Limit: 200}, machine: Machine{InstanceType: typ("t3.small")},
			want: CheckOK, res: "front t3.small", text: []string{"200 jobs at once need about 1214 MiB", "of 2048 MiB (instance type t3.small); up to 348 fit"},
		},
		"limit below concurrent counts": {
			runner: Runner{Concurrent: 200, Limit: 100}, machine: Machine{InstanceType: typ("t3.micro")},
			want: CheckOK, res: "front t3.micro", text: []string{"100 jobs at once need about 654 MiB", "of 1024 MiB"},
		},
		"arm64 family stays arm64": {
			runner: Runner{Concurrent: 100}, machine: Machine{InstanceType: typ("t4g.nano")},
			want: CheckWarn, res: "front t4g.nano", text: []string{"need about 654 MiB", "512 MiB of this front"},
			fix: []string{"use t4g.micro or larger", "to 74, what fits"},
		},
		"c7g.medium: 2 GiB": {
			runner: Runner{Concurrent: 400}, machine: Machine{InstanceType: typ("c7g.medium")},
			want: CheckWarn, text: []string{"need about 2334 MiB", "2048 MiB"}, fix: []string{"use c7g.large or larger", "to 348"},
		},
		"nothing in the family is large enough": {
			runner: Runner{Concurrent: 10000}, machine: Machine{InstanceType: typ("t3.nano")},
			want: CheckWarn, fix: []string{"use an instance type with at least 56094 MiB", "to 74"},
		},
		"type not in the table, live host: MemTotal": {
			runner: Runner{Concurrent: 200}, machine: Machine{InstanceType: typ("m4.xlarge"), MemInfo: meminfo("MemTotal:       16384000 kB\nMemFree:  1 kB\n")},
			want: CheckOK, res: "front m4.xlarge", text: []string{"of 16000 MiB (MemTotal of /proc/meminfo)"},
		},
		"off EC2, live host too small: suggests the default family": {
			runner: Runner{Concurrent: 200}, machine: Machine{InstanceType: noIMDS, MemInfo: meminfo("MemTotal:         983040 kB\n")},
			want: CheckWarn, res: "front", text: []string{"960 MiB of this front (MemTotal of /proc/meminfo)"},
			fix: []string{"use " + fallback + " or larger", "to 154, what fits"},
		},
		"type not in the table, another root": {
			runner: Runner{Concurrent: 200}, machine: Machine{InstanceType: typ("m4.xlarge")},
			want: CheckSkip, res: "front m4.xlarge",
			text: []string{"could not tell the front's memory (instance type m4.xlarge is not in glbootstrap's table; /proc/meminfo is read only on the front itself (--root /))", "200 jobs at once need about 1214 MiB"},
		},
		"off EC2, another root": {
			runner: Runner{Concurrent: 20}, machine: Machine{InstanceType: noIMDS},
			want: CheckSkip, res: "front", text: []string{"no instance type: instance metadata (IMDSv2) is not reachable", "20 jobs at once need about 206 MiB"},
		},
		"unreadable meminfo": {
			runner: Runner{Concurrent: 20}, machine: Machine{MemInfo: meminfo("MemFree: 1 kB\n")},
			want: CheckSkip, text: []string{"/proc/meminfo: no MemTotal line"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := checkMemory(context.Background(), checkInput{Input: Input{Runner: tc.runner, Machine: tc.machine}, memo: &memo{}})
			text := f.Problem + f.Detail
			if f.Status != tc.want || tc.res != "" && f.Resource != tc.res {
				t.Errorf("status %s resource %q, want %s %q: %+v", f.Status, f.Resource, tc.want, tc.res, f)
			}
			for _, s := range tc.text {
				if !strings.Contains(text, s) {
					t.Errorf("text lacks %q:\n%s", s, text)
				}
			}
			for _, s := range tc.fix {
				if !strings.Contains(f.Fix, s) {
					t.Errorf("fix lacks %q:\n%s", s, f.Fix)
				}
			}
			if tc.want == CheckOK && (f.Problem != "" || f.Fix != "") || tc.want != CheckOK && f.Detail != "" {
				t.Errorf("finding mixes ok and problem fields: %+v", f)
			}
		})
	}
}

// TestMemoryFigures: the per-job and baseline figures reproduce the measurement they come from
// (BenchmarkFrontSizing: 98-99 MiB with one job, 177-186 MiB with twenty) within the rounding
// the constants carry, and never under it by more than a MiB.
func TestMemoryFigures(t *testing.T) {
	for jobs, measured := range map[int]float64{1: 99.0, 20: 186.0} {
		need := MemoryNeedMiB(jobs)
		if need < measured-1 || need > measured+25 {
			t.Errorf("%d jobs: the check assumes %.1f MiB, measured %.1f MiB", jobs, need, measured)
		}
	}
	if got := JobsThatFit(1024); got != 166 {
		t.Errorf("JobsThatFit(1 GiB) = %d", got)
	}
	if got := JobsThatFit(50); got != 0 {
		t.Errorf("JobsThatFit(50 MiB) = %d", got)
	}
}
