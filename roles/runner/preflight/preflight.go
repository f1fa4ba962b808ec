// Package preflight checks, with read-only AWS calls and the host's local state, everything
// GitLab's Fargate driver will need on a runner front, so a missing piece is named before the first
// job hangs in "prepare". It is the runner role's preflight phase and "glbootstrap doctor".
//
// Each check is a small function of the Input returning one Finding, in a file per family: the
// ECS cluster and task definition (ecs.go), the coordinator image (image.go), the network path
// and egress (network.go), capacity (capacity.go), the front's memory (memory.go), IAM (iam.go), the driver binary (driver.go)
// and the runner's directories (directories.go). The runner role builds the Input from its
// configuration and facts (roles/runner/preflight.go).
package preflight

import (
	"context"
	"fmt"
	"slices"
	"strings"

	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// Input is what the checks read: the runner front's settings, its instance facts, the AWS
// readers of the Fargate region and the host.
type Input struct {
	// Region and Subnet are the tasks' (fargate.region and fargate.subnet, else the front's).
	Region, Subnet string
	// Cluster, TaskDefinition and SecurityGroup are fargate.cluster, task_definition and
	// security_group.
	Cluster, TaskDefinition, SecurityGroup string
	// SSHPort is fargate.ssh.port, the port the driver connects to in the coordinator.
	SSHPort int
	// EnablePublicIP is fargate.enable_public_ip.
	EnablePublicIP bool
	// Runner is the runner section's capacity settings and user.
	Runner Runner
	// Driver is the pinned driver binary.
	Driver Driver
	// Dirs are the runner's directories, as the directories phase makes them.
	Dirs []Dir
	// Front is the runner front itself.
	Front Front
	// Machine tells the front's memory (memory.go).
	Machine Machine
	// Cache is runner.cache (zero: none).
	Cache Cache
	// Policy is the front's least-privilege policy, which the iam check asks IAM's simulator
	// about (the runner role's, as "glbootstrap iam-policy" prints it).
	Policy PolicyFunc
	// AWS are the read-only AWS APIs of Region.
	AWS Readers
	// Host holds the driver and the directories.
	Host *host.Host
}

// Runner is what the checks read of the runner section.
type Runner struct {
	Concurrent, Limit, RequestConcurrency int
	// User owns the directories.
	User string
}

// Driver is fargate.driver: the release tag, the binary's SHA-256 (lower-case hex) and where it
// is installed, and the release the fargate-driver phase recorded for that SHA-256 when it
// installed it ("" when unknown).
type Driver struct{ Version, SHA256, Path, Recorded string }

// Dir is one of the runner's directories and its permission bits.
type Dir struct {
	Path string
	Mode uint32
}

// Front is the runner front: its instance id, private address and security groups.
type Front struct {
	InstanceID, PrivateIPv4 string
	SecurityGroups          []string
}

// CheckStatus is a finding's verdict.
type CheckStatus string

// Verdicts. warn never fails an apply; "could not check" (no permission) is a warn.
const (
	CheckOK   CheckStatus = "ok"
	CheckWarn CheckStatus = "warn"
	CheckFail CheckStatus = "fail"
	CheckSkip CheckStatus = "skip" // not applicable, or a check it depends on failed
)

// Finding is one check's result.
type Finding struct {
	Check    string      `json:"check"`
	Status   CheckStatus `json:"status"`
	Resource string      `json:"resource"`
	// Problem says what is wrong (warn, fail) or why the check did not run (skip).
	Problem string `json:"problem,omitempty"`
	// Detail says what an ok check saw.
	Detail string `json:"detail,omitempty"`
	// Fix says what to do about Problem.
	Fix string `json:"fix,omitempty"`
}

// Line is the finding as one line of text: "ok    cluster  ci-cluster: ACTIVE, ...".
func (f Finding) Line() string {
	text := f.Problem
	if text == "" {
		text = f.Detail
	}
	return fmt.Sprintf("%-4s  %-15s %s: %s", f.Status, f.Check, f.Resource, text)
}

// Preflight runs the checks for one Input.
type Preflight struct {
	in checkInput
}

// New returns the checks of in; nothing is read yet.
func New(in Input) *Preflight { return &Preflight{in: checkInput{Input: in, memo: &memo{}}} }

// checks are the checks in the order they run and print.
var checks = []struct {
	name string
	run  func(context.Context, checkInput) Finding
}{
	{"cluster", checkCluster},
	{"task-definition", checkTaskDefinition},
	{"image", checkImage},
	{"security-group", checkSecurityGroup},
	{"subnet-egress", checkEgress},
	{"capacity", checkCapacity},
	{"memory", checkMemory},
	{"iam", checkIAM},
	{"driver", checkDriver},
	{"directories", checkDirectories},
	{"cache", checkCache},
}

// Len is the number of checks Run runs.
func Len() int { return len(checks) }

// Run runs every check and returns one finding per check, in order.
func (p *Preflight) Run(ctx context.Context) []Finding {
	out := make([]Finding, 0, len(checks))
	for _, c := range checks {
		f := c.run(ctx, p.in)
		f.Check = c.name
		out = append(out, f)
	}
	return out
}

// FailedError lists the failed findings with their fixes, or is nil when none failed. With
// strict, warnings count as failures too.
func FailedError(findings []Finding, strict bool) error {
	var lines []string
	for _, f := range findings {
		if f.Status == CheckFail || strict && f.Status == CheckWarn {
			lines = append(lines, fmt.Sprintf("[%s] %s: %s; fix: %s", f.Check, f.Resource, f.Problem, f.Fix))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("%d preflight check(s) failed; GitLab's Fargate driver would fail jobs:\n  %s", len(lines), strings.Join(lines, "\n  "))
}

// checkInput is what every check reads: the Input and the memo of what several checks describe.
type checkInput struct {
	Input
	memo *memo
}

// memo keeps the task definition and subnet several checks read, so each is
// described once per run.
type memo struct {
	td       *ecstypes.TaskDefinition
	tdErr    error
	sn       *ec2types.Subnet
	snErr    error
	tdLoaded bool
	snLoaded bool
}

func (in checkInput) taskDefinition(ctx context.Context) (ecstypes.TaskDefinition, error) {
	if !in.memo.tdLoaded {
		td, err := in.AWS.ECS.TaskDefinition(ctx, in.TaskDefinition)
		in.memo.td, in.memo.tdErr, in.memo.tdLoaded = &td, err, true
	}
	return *in.memo.td, in.memo.tdErr
}

func (in checkInput) subnetInfo(ctx context.Context) (ec2types.Subnet, error) {
	if !in.memo.snLoaded {
		sn, err := in.AWS.EC2.Subnet(ctx, in.Subnet)
		in.memo.sn, in.memo.snErr, in.memo.snLoaded = &sn, err, true
	}
	return *in.memo.sn, in.memo.snErr
}

// apiFinding turns an API error other than "not found" into a finding: a denied read is a
// warning that the check could not run (glbootstrap's own reads are not the driver's
// permissions); anything else fails.
func apiFinding(resource, action string, err error) Finding {
	if isDenied(err) {
		return Finding{Status: CheckWarn, Resource: resource, Problem: "could not check: " + err.Error(),
			Fix: "allow " + action + " (read-only) to the instance profile, or run glbootstrap doctor with credentials that may"}
	}
	return Finding{Status: CheckFail, Resource: resource, Problem: err.Error(),
		Fix: "make sure this host reaches the AWS API (a NAT route or VPC endpoint, valid credentials) and run again"}
}

func skipped(resource, why string) Finding {
	return Finding{Status: CheckSkip, Resource: resource, Problem: why}
}

// findings collects a check's problems; several may hold at once.
type findings struct {
	problems, fixes []string
	warnOnly        bool
}

// add records a problem and its fix, each once: the same cause met on several resources (a
// missing runner user for each directory) reads as one problem, not a repeated line.
func (fs *findings) add(problem, fix string) {
	if !slices.Contains(fs.problems, problem) {
		fs.problems = append(fs.problems, problem)
	}
	if !slices.Contains(fs.fixes, fix) {
		fs.fixes = append(fs.fixes, fix)
	}
}

func (fs *findings) result(resource string, status CheckStatus, detail string) Finding {
	if len(fs.problems) == 0 {
		return Finding{Status: CheckOK, Resource: resource, Detail: detail}
	}
	return Finding{Status: status, Resource: resource, Problem: strings.Join(fs.problems, "; "), Fix: strings.Join(fs.fixes, "; ")}
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
