package preflight

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// The front's memory, measured by BenchmarkFrontSizing (cmd/glbootstrap/frontsize_bench_test.go,
// `make bench`) on 2026-12-01, three times: the real gitlab-runner 17.9.3 and GitLab's Fargate driver
// 0.1.0 (linux/amd64) running 1, then 20 jobs at once (concurrent 1, then 20) against the ECS
// stand-in, memory summed as PSS over the runner's process tree (gitlab-runner and every driver
// process it spawns; the driver speaks SSH itself, no ssh process). Idle: 74-77 MiB. One job:
// 98-99 MiB peak (+24 MiB). Twenty jobs: 177-186 MiB peak, (peak - idle) / 20 = 5.1, 5.6 and
// 5.1 MiB per running job: the first job loads the driver's code (about 18 MiB), which the other jobs'
// driver processes share.
const (
	// runnerBaselineMiB is the idle runner (75 MiB) plus the driver's shared code (18.4 MiB).
	runnerBaselineMiB = 94.0
	// perJobMiB is what each running job adds once the driver's code is loaded (the largest of
	// the three measurements).
	perJobMiB = 5.6
)

// instanceMemoryGiB is the memory of the instance types a front commonly runs on, in GiB, from
// AWS's instance types page (https://aws.amazon.com/ec2/instance-types/, "Memory (GiB)").
// t4g, m7g and c7g are arm64 (Graviton); the rest x86_64.
var instanceMemoryGiB = map[string]float64{
	"t2.nano": 0.5, "t2.micro": 1, "t2.small": 2, "t2.medium": 4, "t2.large": 8, "t2.xlarge": 16, "t2.2xlarge": 32,
	"t3.nano": 0.5, "t3.micro": 1, "t3.small": 2, "t3.medium": 4, "t3.large": 8, "t3.xlarge": 16, "t3.2xlarge": 32,
	"t3a.nano": 0.5, "t3a.micro": 1, "t3a.small": 2, "t3a.medium": 4, "t3a.large": 8, "t3a.xlarge": 16, "t3a.2xlarge": 32,
	"t4g.nano": 0.5, "t4g.micro": 1, "t4g.small": 2, "t4g.medium": 4, "t4g.large": 8, "t4g.xlarge": 16, "t4g.2xlarge": 32,
	"m6i.large": 8, "m6i.xlarge": 16, "m6i.2xlarge": 32, "m6i.4xlarge": 64,
	"m7i.large": 8, "m7i.xlarge": 16, "m7i.2xlarge": 32, "m7i.4xlarge": 64,
	"m7g.medium": 4, "m7g.large": 8, "m7g.xlarge": 16, "m7g.2xlarge": 32, "m7g.4xlarge": 64,
	"c6i.large": 4, "c6i.xlarge": 8, "c6i.2xlarge": 16, "c6i.4xlarge": 32,
	"c7i.large": 4, "c7i.xlarge": 8, "c7i.2xlarge": 16, "c7i.4xlarge": 32,
	"c7g.medium": 2, "c7g.large": 4, "c7g.xlarge": 8, "c7g.2xlarge": 16, "c7g.4xlarge": 32,
}

// Machine tells the memory check how much memory the front has. Either may be nil.
type Machine struct {
	// InstanceType returns the front's EC2 instance type (instance metadata's instance-type).
	InstanceType func(context.Context) (string, error)
	// MemInfo returns the front's /proc/meminfo; set only when glbootstrap runs on the front
	// itself (--root /), not on a root it converges for another machine.
	MemInfo func() ([]byte, error)
}

// MemoryNeedMiB is the memory in MiB the runner front needs for jobs jobs at once: the runner's
// baseline plus jobs × the measured per-job memory.
func MemoryNeedMiB(jobs int) float64 { return runnerBaselineMiB + float64(jobs)*perJobMiB }

// JobsThatFit is how many jobs at once fit in memMiB of memory (0 when not even the idle runner
// does).
func JobsThatFit(memMiB float64) int {
	return max(0, int(math.Floor((memMiB-runnerBaselineMiB)/perJobMiB)))
}

// checkMemory: concurrent (or limit, when lower) jobs at once fit in the front's memory, at the
// measured cost of the runner and of each running job. The front's memory is its instance
// type's (from the table above), else MemTotal of /proc/meminfo when glbootstrap runs on it.
func checkMemory(ctx context.Context, in checkInput) Finding {
	rc := in.Runner
	jobs := rc.Concurrent
	if rc.Limit > 0 && rc.Limit < jobs {
		jobs = rc.Limit
	}
	need := MemoryNeedMiB(jobs)
	res := "front"
	var typ string
	var mem float64
	var source string
	var unknown []string
	if f := in.Machine.InstanceType; f != nil {
		var err error
		typ, err = f(ctx)
		switch gib, ok := instanceMemoryGiB[typ]; {
		case err != nil:
			unknown = append(unknown, "no instance type: "+err.Error())
		case ok:
			res = "front " + typ
			mem, source = gib*1024, "instance type "+typ
		default:
			res = "front " + typ
			unknown = append(unknown, "instance type "+typ+" is not in glbootstrap's table")
		}
	}
	if mem == 0 && in.Machine.MemInfo != nil {
		b, err := in.Machine.MemInfo()
		if err == nil {
			mem, err = memTotalMiB(b)
		}
		if err != nil {
			unknown = append(unknown, "/proc/meminfo: "+err.Error())
		} else {
			source = "MemTotal of /proc/meminfo"
		}
	}
	cost := fmt.Sprintf("about %.0f MiB (the runner %.0f MiB + %d × %.1f MiB per running job, measured with gitlab-runner 17.9.3 and the Fargate driver)",
		need, runnerBaselineMiB, jobs, perJobMiB)
	if mem == 0 {
		if in.Machine.MemInfo == nil {
			unknown = append(unknown, "/proc/meminfo is read only on the front itself (--root /)")
		}
		return skipped(res, fmt.Sprintf("could not tell the front's memory (%s); %d jobs at once need %s", strings.Join(unknown, "; "), jobs, cost))
	}
	fit := JobsThatFit(mem)
	if need <= mem {
		return Finding{Status: CheckOK, Resource: res,
			Detail: fmt.Sprintf("%d jobs at once need %s of %.0f MiB (%s); up to %d fit", jobs, cost, mem, source, fit)}
	}
	atLeast := fmt.Sprintf("an instance type with at least %.0f MiB", need)
	fix := "use " + atLeast
	if t := smallestFitting(typ, need); t != "" {
		fix = fmt.Sprintf("use %s or larger (%s)", t, atLeast)
	}
	if fit > 0 {
		fix += fmt.Sprintf(", or lower runner.concurrent (and runner.limit) to %d, what fits this instance", fit)
	}
	return Finding{Status: CheckWarn, Resource: res,
		Problem: fmt.Sprintf("%d jobs at once (concurrent %d, limit %d) need %s, more than the %.0f MiB of this front (%s), before what the system itself uses: at full load the kernel's OOM killer ends gitlab-runner and every running job fails",
			jobs, rc.Concurrent, rc.Limit, cost, mem, source),
		Fix: fix}
}

// smallestFitting is the instance type of the table with the least memory of at least needMiB:
// in the family of typ when it is in the table (same architecture and pricing), else in t3
// (x86_64) or t4g (arm64) by the architecture glbootstrap runs on. "" when none fits.
func smallestFitting(typ string, needMiB float64) string {
	family, _, _ := strings.Cut(typ, ".")
	if _, ok := instanceMemoryGiB[typ]; !ok {
		family = "t3"
		if runtime.GOARCH == "arm64" {
			family = "t4g"
		}
	}
	var names []string
	for name := range instanceMemoryGiB {
		if strings.HasPrefix(name, family+".") && instanceMemoryGiB[name]*1024 >= needMiB {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.SortFunc(names, func(a, b string) int {
		if d := instanceMemoryGiB[a] - instanceMemoryGiB[b]; d != 0 {
			return int(math.Copysign(1, d))
		}
		return strings.Compare(a, b)
	})
	return names[0]
}

// memTotalMiB reads MemTotal (kB) from /proc/meminfo's text, in MiB.
func memTotalMiB(meminfo []byte) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil || kb <= 0 {
				return 0, fmt.Errorf("MemTotal %q is not a size in kB", f[1])
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no MemTotal line")
}
