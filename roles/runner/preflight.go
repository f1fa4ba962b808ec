package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/glbootstrap/glbootstrap/internal/aws/ec2"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecr"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecs"
	"github.com/glbootstrap/glbootstrap/internal/aws/iam"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/role"
)

// The preflight checks read, with read-only AWS calls, everything GitLab's Fargate driver will
// need, so a missing piece is named before the first job hangs in "prepare". Each check is a
// small function of checkInput returning one Finding; Preflight runs them in order.

// CoordinatorContainer is the container of the task definition the driver injects
// SSH_PUBLIC_KEY into and connects to (FACTS.md, the driver's README).
const CoordinatorContainer = "ci-coordinator"

// ECSReader reads the cluster and the coordinator's task definition.
type ECSReader interface {
	Cluster(ctx context.Context, name string) (ecstypes.Cluster, error)
	TaskDefinition(ctx context.Context, name string) (ecstypes.TaskDefinition, error)
}

// EC2Reader reads the network the tasks run in.
type EC2Reader interface {
	SecurityGroups(ctx context.Context, ids ...string) ([]ec2types.SecurityGroup, error)
	Subnet(ctx context.Context, id string) (ec2types.Subnet, error)
	RouteTable(ctx context.Context, subnetID, vpcID string) (ec2types.RouteTable, bool, error)
	VPCEndpoints(ctx context.Context, vpcID string) ([]ec2types.VpcEndpoint, error)
}

// ECRReader tells whether an image exists in ECR.
type ECRReader interface {
	Describe(ctx context.Context, img ecr.Image) (ecrtypes.ImageDetail, error)
}

// IAMReader finds the front's role and simulates what it may do.
type IAMReader interface {
	InstanceRole(ctx context.Context) (string, error)
	Simulate(ctx context.Context, principal, action string, resources []string) ([]iamtypes.EvaluationResult, error)
}

// AWSReaders are the read-only AWS APIs of the Fargate region the preflight checks use.
type AWSReaders struct {
	ECS ECSReader
	EC2 EC2Reader
	ECR ECRReader
	IAM IAMReader
}

// PreflightReaders returns the read-only ECS, EC2, ECR and IAM clients of region (the Fargate
// region, which may differ from the front's), sharing the AWS configuration of a.
func PreflightReaders(a role.AWS, region string) (AWSReaders, error) {
	cfg, err := a.Config(region)
	if err != nil {
		return AWSReaders{}, err
	}
	if cfg.Region == "" {
		return AWSReaders{}, errors.New("no AWS region for the preflight checks: set fargate.region")
	}
	return AWSReaders{ECS: ecs.New(cfg), EC2: ec2.New(cfg), ECR: ecr.New(cfg), IAM: iam.New(cfg)}, nil
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

// Preflight runs the preflight checks for one configuration.
type Preflight struct {
	in checkInput
}

// NewPreflight resolves what the checks need (the region, the subnet and the front's address and
// security groups: the configuration's, else the instance's, as in Prepare) without reading any
// secret, so "glbootstrap doctor" works before registration.
func NewPreflight(ctx context.Context, d Deps) (*Preflight, error) {
	f, err := resolveFacts(ctx, d, factNeeds{place: true, front: true})
	if err != nil {
		return nil, err
	}
	return newPreflight(d, f)
}

func newPreflight(d Deps, f Facts) (*Preflight, error) {
	cfg := d.Config
	region, subnet := f.Region, f.SubnetID
	if d.NewPreflight == nil {
		return nil, fmt.Errorf("no AWS clients for the preflight checks")
	}
	readers, err := d.NewPreflight(region)
	if err != nil {
		return nil, fmt.Errorf("preparing the AWS clients for the preflight checks: %w", err)
	}
	return &Preflight{in: checkInput{cfg: cfg, region: region, subnet: subnet, facts: f,
		aws: readers, host: d.Host, memo: &preflightMemo{}}}, nil
}

// preflightChecks are the checks in the order they run and print.
var preflightChecks = []struct {
	name string
	run  func(context.Context, checkInput) Finding
}{
	{"cluster", checkCluster},
	{"task-definition", checkTaskDefinition},
	{"image", checkImage},
	{"security-group", checkSecurityGroup},
	{"subnet-egress", checkEgress},
	{"capacity", checkCapacity},
	{"iam", checkIAM},
	{"driver", checkDriver},
	{"directories", checkDirectories},
}

// Run runs every check and returns one finding per check, in order.
func (p *Preflight) Run(ctx context.Context) []Finding {
	out := make([]Finding, 0, len(preflightChecks))
	for _, c := range preflightChecks {
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

// preflight is the phase: it changes nothing; warnings become step warnings and failures the
// phase's error. Under plan, local state an earlier phase would create (directories, the
// driver) is not a failure.
func (r *Role) preflight(ctx context.Context) ([]host.Step, error) {
	p, err := newPreflight(r.d, r.facts)
	if err != nil {
		return nil, err
	}
	findings := p.Run(ctx)
	var steps []host.Step
	for i, f := range findings {
		if r.d.Host.DryRun && f.Status == CheckFail && (f.Check == "directories" || f.Check == "driver") {
			f.Status, f.Problem = CheckSkip, "pending: "+f.Problem+" (an earlier phase would fix it at apply)"
			findings[i] = f
		}
		st := host.Step{Kind: "check", Target: f.Resource, Summary: f.Check + " " + string(f.Status)}
		switch f.Status {
		case CheckOK:
			st.Summary += ": " + f.Detail
		case CheckWarn:
			// The printer shows the warning on its own line; the summary stays short.
			st.Warning = f.Problem + "; fix: " + f.Fix
		default:
			st.Summary += ": " + f.Problem
		}
		steps = append(steps, st)
	}
	return steps, FailedError(findings, false)
}

// checkInput is what every check reads: the configuration, the resolved region and subnet,
// the instance's facts, the AWS readers and the host (for local state).
type checkInput struct {
	cfg    *Config
	region string
	subnet string
	facts  Facts
	aws    AWSReaders
	host   *host.Host
	memo   *preflightMemo
}

// preflightMemo keeps the task definition and subnet several checks read, so each is
// described once per run.
type preflightMemo struct {
	td       *ecstypes.TaskDefinition
	tdErr    error
	sn       *ec2types.Subnet
	snErr    error
	tdLoaded bool
	snLoaded bool
}

func (in checkInput) taskDefinition(ctx context.Context) (ecstypes.TaskDefinition, error) {
	if !in.memo.tdLoaded {
		td, err := in.aws.ECS.TaskDefinition(ctx, in.cfg.Fargate.TaskDefinition)
		in.memo.td, in.memo.tdErr, in.memo.tdLoaded = &td, err, true
	}
	return *in.memo.td, in.memo.tdErr
}

func (in checkInput) subnetInfo(ctx context.Context) (ec2types.Subnet, error) {
	if !in.memo.snLoaded {
		sn, err := in.aws.EC2.Subnet(ctx, in.subnet)
		in.memo.sn, in.memo.snErr, in.memo.snLoaded = &sn, err, true
	}
	return *in.memo.sn, in.memo.snErr
}

func isDenied(err error) bool {
	return errors.Is(err, ecs.ErrAccessDenied) || errors.Is(err, ec2.ErrAccessDenied) ||
		errors.Is(err, ecr.ErrAccessDenied) || errors.Is(err, iam.ErrAccessDenied)
}

func isNotFound(err error) bool {
	return errors.Is(err, ecs.ErrNotFound) || errors.Is(err, ec2.ErrNotFound) ||
		errors.Is(err, ecr.ErrNotFound) || errors.Is(err, iam.ErrNotFound)
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

func (fs *findings) add(problem, fix string) {
	fs.problems = append(fs.problems, problem)
	fs.fixes = append(fs.fixes, fix)
}

func (fs *findings) result(resource string, status CheckStatus, detail string) Finding {
	if len(fs.problems) == 0 {
		return Finding{Status: CheckOK, Resource: resource, Detail: detail}
	}
	return Finding{Status: status, Resource: resource, Problem: strings.Join(fs.problems, "; "), Fix: strings.Join(fs.fixes, "; ")}
}

// checkCluster: the cluster exists, is ACTIVE, and has a default capacity provider strategy of
// Fargate providers. The driver calls RunTask without a launch type, so ECS uses the cluster's
// default strategy; with none it falls back to launch type EC2, which a Fargate-only cluster
// cannot place (ECS RunTask: "If no capacityProviderStrategy or launchType is specified, the
// defaultCapacityProviderStrategy for the cluster is used").
func checkCluster(ctx context.Context, in checkInput) Finding {
	name := in.cfg.Fargate.Cluster
	res := "cluster " + name
	strategyFix := fmt.Sprintf("aws ecs put-cluster-capacity-providers --cluster %s --capacity-providers FARGATE FARGATE_SPOT --default-capacity-provider-strategy capacityProvider=FARGATE,weight=1", name)
	c, err := in.aws.ECS.Cluster(ctx, name)
	switch {
	case isNotFound(err):
		return Finding{Status: CheckFail, Resource: res, Problem: err.Error(),
			Fix: fmt.Sprintf("create it (aws ecs create-cluster --cluster-name %s --capacity-providers FARGATE FARGATE_SPOT --default-capacity-provider-strategy capacityProvider=FARGATE,weight=1) or fix fargate.cluster", name)}
	case err != nil:
		return apiFinding(res, "ecs:DescribeClusters", err)
	}
	var fs findings
	if st := aws.ToString(c.Status); st != "ACTIVE" {
		fs.add("the cluster is "+st+", not ACTIVE", "point fargate.cluster at an ACTIVE cluster")
	}
	var used []string
	for _, s := range c.DefaultCapacityProviderStrategy {
		if s.Weight == 0 && s.Base == 0 {
			continue
		}
		p := aws.ToString(s.CapacityProvider)
		used = append(used, fmt.Sprintf("%s (weight %d)", p, s.Weight))
		if p != "FARGATE" && p != "FARGATE_SPOT" {
			fs.add("its default capacity provider strategy uses "+p+", which is not a Fargate provider: the coordinator task is Fargate-only",
				strategyFix)
		}
	}
	if len(used) == 0 {
		fs.add("it has no default capacity provider strategy: GitLab's Fargate driver starts tasks without a launch type, so ECS would place them with launch type EC2 on container instances this cluster does not have",
			strategyFix)
	}
	return fs.result(res, CheckFail, "ACTIVE, default capacity provider strategy "+strings.Join(used, ", "))
}

// checkTaskDefinition: the task definition exists, is ACTIVE, Fargate-compatible with awsvpc, and
// has a container named ci-coordinator mapping the SSH port; awslogs needs an execution role.
func checkTaskDefinition(ctx context.Context, in checkInput) Finding {
	name := in.cfg.Fargate.TaskDefinition
	res := "task definition " + name
	td, err := in.taskDefinition(ctx)
	switch {
	case isNotFound(err):
		return Finding{Status: CheckFail, Resource: res, Problem: err.Error(),
			Fix: "register it (aws ecs register-task-definition) or fix fargate.task_definition (family, family:revision or ARN)"}
	case err != nil:
		return apiFinding(res, "ecs:DescribeTaskDefinition", err)
	}
	port := int32(in.cfg.Fargate.SSH.Port)
	var fs findings
	if st := string(td.Status); st != "ACTIVE" {
		fs.add("revision "+strconv.Itoa(int(td.Revision))+" is "+st+": ECS starts no new task from it",
			"point fargate.task_definition at an ACTIVE revision, or at the family alone for the latest one")
	}
	if td.NetworkMode != ecstypes.NetworkModeAwsvpc {
		fs.add(fmt.Sprintf("network mode is %q, not awsvpc (the only mode Fargate runs)", td.NetworkMode),
			"register a revision with networkMode awsvpc")
	}
	if !slices.Contains(td.Compatibilities, ecstypes.CompatibilityFargate) {
		fs.add(fmt.Sprintf("it is not Fargate-compatible (requiresCompatibilities %v)", td.RequiresCompatibilities),
			"register a revision with requiresCompatibilities FARGATE and task-level cpu and memory")
	}
	var names []string
	var coord *ecstypes.ContainerDefinition
	awslogs := false
	for i, c := range td.ContainerDefinitions {
		names = append(names, aws.ToString(c.Name))
		if aws.ToString(c.Name) == CoordinatorContainer {
			coord = &td.ContainerDefinitions[i]
		}
		if c.LogConfiguration != nil && c.LogConfiguration.LogDriver == ecstypes.LogDriverAwslogs {
			awslogs = true
		}
	}
	if coord == nil {
		fs.add(fmt.Sprintf("it has no container named %s (it has: %s): the driver injects SSH_PUBLIC_KEY only into %s, so SSH to the task never works",
			CoordinatorContainer, strings.Join(names, ", "), CoordinatorContainer),
			"name the job container "+CoordinatorContainer+" in a new revision")
	} else {
		var ports []string
		found := false
		for _, pm := range coord.PortMappings {
			p := aws.ToInt32(pm.ContainerPort)
			ports = append(ports, strconv.Itoa(int(p)))
			found = found || p == port && pm.Protocol != ecstypes.TransportProtocolUdp
		}
		if !found {
			fs.add(fmt.Sprintf("container %s maps no tcp port %d (fargate.ssh.port); it maps [%s]", CoordinatorContainer, port, strings.Join(ports, " ")),
				fmt.Sprintf("add portMappings containerPort %d to %s in a new revision", port, CoordinatorContainer))
		}
	}
	if awslogs && aws.ToString(td.ExecutionRoleArn) == "" {
		fs.add("a container logs with awslogs but the task definition has no execution role, which Fargate uses to write to CloudWatch Logs",
			"set executionRoleArn to a role with the AmazonECSTaskExecutionRolePolicy managed policy")
	}
	return fs.result(res, CheckFail, fmt.Sprintf("revision %d ACTIVE, awsvpc, FARGATE, %s maps port %d",
		td.Revision, CoordinatorContainer, port))
}

// checkImage: the ci-coordinator image exists in ECR when it is an ECR image, and the task
// definition has the execution role Fargate pulls private ECR images with.
func checkImage(ctx context.Context, in checkInput) Finding {
	td, err := in.taskDefinition(ctx)
	if err != nil {
		return skipped("image of "+CoordinatorContainer, "the task definition could not be read (see task-definition)")
	}
	var image string
	for _, c := range td.ContainerDefinitions {
		if aws.ToString(c.Name) == CoordinatorContainer {
			image = aws.ToString(c.Image)
		}
	}
	if image == "" {
		return skipped("image of "+CoordinatorContainer, "the task definition has no "+CoordinatorContainer+" container (see task-definition)")
	}
	res := "image " + image
	img, ok := ecr.ParseImage(image)
	if !ok {
		return skipped(res, "not a private ECR image: its existence is not checked")
	}
	var fs findings
	if aws.ToString(td.ExecutionRoleArn) == "" {
		fs.add("the task definition has no execution role: Fargate pulls private ECR images with it, so the task stops with CannotPullContainerError",
			"set executionRoleArn to a role with the AmazonECSTaskExecutionRolePolicy managed policy")
	}
	d, err := in.aws.ECR.Describe(ctx, img)
	switch {
	case isNotFound(err):
		fs.add(err.Error()+": the task stops with CannotPullContainerError",
			"push the coordinator image (docker push "+img.String()+") or fix the image in the task definition")
	case err != nil:
		if len(fs.problems) > 0 {
			return fs.result(res, CheckFail, "")
		}
		return apiFinding(res, "ecr:DescribeImages", err)
	}
	digest := aws.ToString(d.ImageDigest)
	if len(digest) > 19 {
		digest = digest[:19] + "…"
	}
	return fs.result(res, CheckFail, "present in ECR ("+digest+")")
}

// checkSecurityGroup: the task security group exists in the subnet's VPC and admits the SSH
// port from the front (one of its security groups, or a CIDR holding its private address), and
// the front's security groups let that traffic out.
func checkSecurityGroup(ctx context.Context, in checkInput) Finding {
	sgID := in.cfg.Fargate.SecurityGroup
	port := int32(in.cfg.Fargate.SSH.Port)
	res := "security group " + sgID
	groups, err := in.aws.EC2.SecurityGroups(ctx, sgID)
	switch {
	case isNotFound(err):
		return Finding{Status: CheckFail, Resource: res, Problem: err.Error(), Fix: "create it or fix fargate.security_group"}
	case err != nil:
		return apiFinding(res, "ec2:DescribeSecurityGroups", err)
	}
	sg := groups[0]
	var fs findings
	frontIP, _ := netip.ParseAddr(in.facts.PrivateIPv4)
	var from []string
	public := false
	for _, p := range sg.IpPermissions {
		if !coversPort(p, port) {
			continue
		}
		for _, g := range p.UserIdGroupPairs {
			if slices.Contains(in.facts.SecurityGroups, aws.ToString(g.GroupId)) {
				from = append(from, "the front's "+aws.ToString(g.GroupId))
			}
		}
		for _, r := range p.IpRanges {
			pfx, err := netip.ParsePrefix(aws.ToString(r.CidrIp))
			if err == nil && frontIP.IsValid() && pfx.Contains(frontIP) {
				from = append(from, pfx.String())
				public = public || pfx.Bits() == 0
			}
		}
	}
	ingressFix := fmt.Sprintf("aws ec2 authorize-security-group-ingress --group-id %s --protocol tcp --port %d --source-group %s",
		sgID, port, firstNonEmpty(append(slices.Clone(in.facts.SecurityGroups), "<front-sg>")...))
	switch {
	case len(from) == 0:
		fs.add(fmt.Sprintf("it does not admit tcp/%d from the front (security groups %s, address %s): the job hangs in prepare with an SSH timeout",
			port, strings.Join(in.facts.SecurityGroups, ", "), in.facts.PrivateIPv4), ingressFix)
	case in.cfg.Fargate.EnablePublicIP && public:
		fs.warnOnly = true
		fs.add(fmt.Sprintf("with enable_public_ip it admits tcp/%d from 0.0.0.0/0: every task's SSH port is open to the internet", port),
			"admit the port only from the front's security group, or set fargate.enable_public_ip: false")
	}
	if sn, err := in.subnetInfo(ctx); err == nil && aws.ToString(sn.VpcId) != aws.ToString(sg.VpcId) {
		fs.warnOnly = false
		fs.add(fmt.Sprintf("it is in %s but subnet %s is in %s: RunTask refuses a security group of another VPC", aws.ToString(sg.VpcId), in.subnet, aws.ToString(sn.VpcId)),
			"use a security group of "+aws.ToString(sn.VpcId)+" in fargate.security_group")
	}
	// The front's side: its security groups must let the connection out.
	if len(in.facts.SecurityGroups) > 0 {
		front, err := in.aws.EC2.SecurityGroups(ctx, in.facts.SecurityGroups...)
		if err == nil && !egressAllows(front, sgID, port) {
			fs.warnOnly = false
			fs.add(fmt.Sprintf("the front's security groups (%s) allow no egress to tcp/%d of %s", strings.Join(in.facts.SecurityGroups, ", "), port, sgID),
				fmt.Sprintf("aws ec2 authorize-security-group-egress --group-id %s --protocol tcp --port %d --source-group %s", in.facts.SecurityGroups[0], port, sgID))
		}
	}
	status := CheckFail
	if fs.warnOnly {
		status = CheckWarn
	}
	return fs.result(res, status, fmt.Sprintf("admits tcp/%d from %s", port, strings.Join(from, ", ")))
}

func coversPort(p ec2types.IpPermission, port int32) bool {
	proto := aws.ToString(p.IpProtocol)
	if proto == "-1" {
		return true
	}
	return (proto == "tcp" || proto == "6") && aws.ToInt32(p.FromPort) <= port && port <= aws.ToInt32(p.ToPort)
}

// egressAllows reports whether any of groups lets tcp/port out to taskSG: by group, or to any
// CIDR (glbootstrap does not know the tasks' addresses in advance, so a CIDR rule counts).
func egressAllows(groups []ec2types.SecurityGroup, taskSG string, port int32) bool {
	for _, g := range groups {
		for _, p := range g.IpPermissionsEgress {
			if !coversPort(p, port) {
				continue
			}
			if len(p.IpRanges) > 0 || len(p.PrefixListIds) > 0 {
				return true
			}
			for _, pair := range p.UserIdGroupPairs {
				if aws.ToString(pair.GroupId) == taskSG {
					return true
				}
			}
		}
	}
	return false
}

// checkEgress: the task subnet reaches ECR (api and dkr), S3 (image layers) and, when a
// container logs with awslogs, CloudWatch Logs: through a NAT gateway (private tasks), an
// internet gateway (tasks with a public IP), or VPC endpoints.
func checkEgress(ctx context.Context, in checkInput) Finding {
	res := "subnet " + in.subnet
	sn, err := in.subnetInfo(ctx)
	switch {
	case isNotFound(err):
		return Finding{Status: CheckFail, Resource: res, Problem: err.Error(), Fix: "fix fargate.subnet (default: the front's own subnet)"}
	case err != nil:
		return apiFinding(res, "ec2:DescribeSubnets", err)
	}
	vpc := aws.ToString(sn.VpcId)
	rt, _, err := in.aws.EC2.RouteTable(ctx, in.subnet, vpc)
	if err != nil {
		if isNotFound(err) {
			return Finding{Status: CheckFail, Resource: res, Problem: err.Error(), Fix: "associate a route table with a default route with the subnet"}
		}
		return apiFinding(res, "ec2:DescribeRouteTables", err)
	}
	rtID := aws.ToString(rt.RouteTableId)
	var nat, igw, other string
	for _, r := range rt.Routes {
		if aws.ToString(r.DestinationCidrBlock) != "0.0.0.0/0" || r.State == ec2types.RouteStateBlackhole {
			continue
		}
		switch gw := aws.ToString(r.GatewayId); {
		case aws.ToString(r.NatGatewayId) != "":
			nat = aws.ToString(r.NatGatewayId)
		case strings.HasPrefix(gw, "igw-"):
			igw = gw
		default:
			other = firstNonEmpty(gw, aws.ToString(r.TransitGatewayId), aws.ToString(r.NetworkInterfaceId), aws.ToString(r.InstanceId), aws.ToString(r.VpcPeeringConnectionId), "another target")
		}
	}
	publicIP := in.cfg.Fargate.EnablePublicIP
	switch {
	case !publicIP && nat != "":
		return Finding{Status: CheckOK, Resource: res, Detail: fmt.Sprintf("private tasks reach ECR, S3 and CloudWatch Logs through %s (0.0.0.0/0 in %s)", nat, rtID)}
	case publicIP && igw != "":
		return Finding{Status: CheckOK, Resource: res, Detail: fmt.Sprintf("tasks with a public IP reach ECR, S3 and CloudWatch Logs through %s (0.0.0.0/0 in %s)", igw, rtID)}
	case publicIP && nat != "":
		return Finding{Status: CheckWarn, Resource: res,
			Problem: fmt.Sprintf("enable_public_ip gives tasks a public IP, but %s routes 0.0.0.0/0 to %s: the public IP is never used for egress and cannot be reached from outside", rtID, nat),
			Fix:     "set fargate.enable_public_ip: false (private tasks through the NAT gateway), or use a subnet whose default route is an internet gateway"}
	}
	// No usable default route: only VPC endpoints can carry the traffic.
	needed := []string{"ecr.api", "ecr.dkr", "s3"}
	if td, err := in.taskDefinition(ctx); err != nil || usesAWSLogs(td) {
		needed = append(needed, "logs")
	}
	eps, err := in.aws.EC2.VPCEndpoints(ctx, vpc)
	if err != nil {
		return apiFinding(res, "ec2:DescribeVpcEndpoints", err)
	}
	var missing []string
	for _, svc := range needed {
		if !endpointCovers(eps, "com.amazonaws."+in.region+"."+svc, rtID) {
			missing = append(missing, svc)
		}
	}
	if len(missing) == 0 {
		return Finding{Status: CheckOK, Resource: res, Detail: "tasks reach " + strings.Join(needed, ", ") + " through VPC endpoints of " + vpc}
	}
	why := "no default route"
	switch {
	case igw != "":
		why = fmt.Sprintf("its default route is internet gateway %s but tasks get no public IP (enable_public_ip false)", igw)
	case other != "":
		return Finding{Status: CheckWarn, Resource: res,
			Problem: fmt.Sprintf("%s routes 0.0.0.0/0 to %s, which glbootstrap cannot follow, and %s has no VPC endpoint for %s", rtID, other, vpc, strings.Join(missing, ", ")),
			Fix:     "make sure that route reaches the internet, or add VPC endpoints for " + strings.Join(missing, ", ")}
	}
	fix := fmt.Sprintf("route 0.0.0.0/0 of %s to a NAT gateway, or add VPC endpoints for %s (s3 as a gateway endpoint on %s)", rtID, strings.Join(missing, ", "), rtID)
	if igw != "" {
		fix = "set fargate.enable_public_ip: true, or " + fix
	}
	return Finding{Status: CheckFail, Resource: res,
		Problem: fmt.Sprintf("%s and %s has no VPC endpoint for %s: tasks cannot pull the image or write logs", why, vpc, strings.Join(missing, ", ")),
		Fix:     fix}
}

func usesAWSLogs(td ecstypes.TaskDefinition) bool {
	for _, c := range td.ContainerDefinitions {
		if c.LogConfiguration != nil && c.LogConfiguration.LogDriver == ecstypes.LogDriverAwslogs {
			return true
		}
	}
	return false
}

// endpointCovers: an available endpoint for service; a gateway endpoint only for the route
// tables it is attached to, an interface endpoint only with private DNS (else the SDKs in the
// task still resolve the public name).
func endpointCovers(eps []ec2types.VpcEndpoint, service, routeTable string) bool {
	for _, ep := range eps {
		if aws.ToString(ep.ServiceName) != service || ep.State != ec2types.StateAvailable && ep.State != "available" {
			continue
		}
		switch ep.VpcEndpointType {
		case ec2types.VpcEndpointTypeGateway:
			if slices.Contains(ep.RouteTableIds, routeTable) {
				return true
			}
		default:
			if aws.ToBool(ep.PrivateDnsEnabled) {
				return true
			}
		}
	}
	return false
}

// checkCapacity: concurrent, limit, request_concurrency and the subnet's free addresses fit
// together. Every awsvpc task takes one address of the subnet for its network interface.
func checkCapacity(ctx context.Context, in checkInput) Finding {
	rc := in.cfg.Runner
	res := "subnet " + in.subnet
	jobs := rc.Concurrent
	if rc.Limit > 0 && rc.Limit < jobs {
		jobs = rc.Limit
	}
	var fs findings
	fs.warnOnly = true
	if jobs > 1 && rc.RequestConcurrency <= 1 {
		fs.add(fmt.Sprintf("runner.request_concurrency is 1 for up to %d jobs at once: the runner asks GitLab for one job at a time and jobs queue behind one another", jobs),
			"raise runner.request_concurrency (the reference setup uses 4)")
	}
	// limit above concurrent and request_concurrency above limit are the config validator's
	// warnings (with their lines); here only what it cannot see.
	if rc.Limit == 0 && rc.RequestConcurrency > jobs {
		fs.add(fmt.Sprintf("runner.request_concurrency %d is above the %d jobs the runner may run", rc.RequestConcurrency, jobs),
			fmt.Sprintf("lower runner.request_concurrency to at most %d", jobs))
	}
	sn, err := in.subnetInfo(ctx)
	free := int32(-1)
	switch {
	case err == nil:
		free = aws.ToInt32(sn.AvailableIpAddressCount)
		switch {
		case free == 0:
			fs.warnOnly = false
			fs.add("the subnet has no free address: no task can start", "free addresses in the subnet or use another one in fargate.subnet")
		case int(free) < jobs:
			fs.add(fmt.Sprintf("the subnet (%s) has %d free addresses but up to %d tasks (concurrent %d, limit %d) each take one: at full load the rest fail to start",
				aws.ToString(sn.CidrBlock), free, jobs, rc.Concurrent, rc.Limit),
				fmt.Sprintf("use a larger subnet for fargate.subnet (a /22 has 1019 usable addresses) or lower runner.concurrent to %d", free))
		}
	case isDenied(err):
		fs.add("could not check the subnet's free addresses: "+err.Error(), "allow ec2:DescribeSubnets (read-only) to the instance profile")
	case isNotFound(err):
		// subnet-egress reports it.
	default:
		fs.add("could not read the subnet: "+err.Error(), "make sure this host reaches the EC2 API")
	}
	status := CheckFail
	if fs.warnOnly {
		status = CheckWarn
	}
	return fs.result(res, status, fmt.Sprintf("concurrent %d, limit %d, request_concurrency %d, %d free addresses", rc.Concurrent, rc.Limit, rc.RequestConcurrency, free))
}

// checkIAM: the front's role may run, describe and stop tasks and pass the task definition's
// roles, asked of IAM's policy simulator (without context keys, so condition-scoped grants may
// read as denied). Without iam:GetInstanceProfile or iam:SimulatePrincipalPolicy it says it
// could not check.
func checkIAM(ctx context.Context, in checkInput) Finding {
	role, err := in.aws.IAM.InstanceRole(ctx)
	switch {
	case errors.Is(err, iam.ErrNoInstanceProfile):
		return Finding{Status: CheckFail, Resource: "instance " + in.facts.InstanceID, Problem: err.Error() + ": the driver gets no AWS credentials",
			Fix: "attach an instance profile whose role may ecs:RunTask, ecs:DescribeTasks, ecs:StopTask and iam:PassRole on the task roles"}
	case err != nil:
		return Finding{Status: CheckWarn, Resource: "instance role", Problem: "could not check: " + err.Error(),
			Fix: "allow iam:GetInstanceProfile and iam:SimulatePrincipalPolicy (read-only) to the instance profile to let glbootstrap check its role"}
	}
	res := "role " + role
	type ask struct {
		action    string
		resources []string
	}
	asks := []ask{{"ecs:DescribeTasks", []string{"*"}}, {"ecs:StopTask", []string{"*"}}}
	var passRoles []string
	if td, err := in.taskDefinition(ctx); err == nil {
		asks = append([]ask{{"ecs:RunTask", []string{aws.ToString(td.TaskDefinitionArn)}}}, asks...)
		for _, r := range []string{aws.ToString(td.TaskRoleArn), aws.ToString(td.ExecutionRoleArn)} {
			if r != "" && !slices.Contains(passRoles, r) {
				passRoles = append(passRoles, r)
			}
		}
		if len(passRoles) > 0 {
			asks = append(asks, ask{"iam:PassRole", passRoles})
		}
	} else {
		asks = append([]ask{{"ecs:RunTask", []string{"*"}}}, asks...)
	}
	var denied []string
	for _, a := range asks {
		results, err := in.aws.IAM.Simulate(ctx, role, a.action, a.resources)
		if err != nil {
			return Finding{Status: CheckWarn, Resource: res, Problem: "could not check what the role may do: " + err.Error(),
				Fix: "allow iam:SimulatePrincipalPolicy on " + role + " to the instance profile (read-only), or check by hand that it may ecs:RunTask, ecs:DescribeTasks, ecs:StopTask and iam:PassRole on the task roles"}
		}
		for _, r := range results {
			if r.EvalDecision != iamtypes.PolicyEvaluationDecisionTypeAllowed {
				denied = append(denied, fmt.Sprintf("%s on %s (%s)", aws.ToString(r.EvalActionName), aws.ToString(r.EvalResourceName), r.EvalDecision))
			}
		}
	}
	if len(denied) > 0 {
		return Finding{Status: CheckFail, Resource: res, Problem: "the role may not " + strings.Join(denied, ", ") + ": the driver's calls fail and tasks may be left running",
			Fix: "add a policy to the role allowing ecs:RunTask on the task definition, ecs:DescribeTasks and ecs:StopTask, and iam:PassRole on the task definition's roles"}
	}
	detail := "may run, describe and stop tasks"
	if len(passRoles) > 0 {
		detail += fmt.Sprintf(" and pass %d task role(s)", len(passRoles))
	}
	return Finding{Status: CheckOK, Resource: res, Detail: detail + " (IAM policy simulator)"}
}

// knownBadDriver is a driver release range with a bug that breaks jobs. Only bugs with a public
// source are listed; an empty match means "none known to glbootstrap", not "none".
type knownBadDriver struct {
	fixedIn string // first release without the bug
	problem string
	source  string
}

// knownBadDrivers: GitLab's CI/CD job token troubleshooting documents that driver 0.5.0 and
// earlier fail with "Error when persisting the task ARN. Will stop the task for cleanup" once
// GitLab issues JWT-format job tokens (driver issue #86), fixed in 0.5.1. No public source was
// found for task-leak or SSH-handshake bugs by version, so none are listed.
var knownBadDrivers = []knownBadDriver{{
	fixedIn: "v0.5.1",
	problem: `jobs fail with "Error when persisting the task ARN. Will stop the task for cleanup" when GitLab issues JWT-format CI/CD job tokens`,
	source:  "https://docs.gitlab.com/ci/jobs/ci_job_token/ (troubleshooting), gitlab-org/ci-cd/custom-executor-drivers/fargate#86",
}}

// checkDriver: the pinned driver version has no known bug, and the binary installed at
// driver.path is the pinned one.
func checkDriver(ctx context.Context, in checkInput) Finding {
	drv := in.cfg.Fargate.Driver
	res := "driver " + drv.Version
	var fs findings
	fs.warnOnly = true
	v, ok := parseVersion(drv.Version)
	if !ok {
		fs.add("cannot compare version "+drv.Version+" with the table of known-bad releases", "pin a release tag such as v0.5.1 in fargate.driver.version")
	}
	for _, b := range knownBadDrivers {
		fixed, _ := parseVersion(b.fixedIn)
		if ok && lessVersion(v, fixed) {
			fs.add(fmt.Sprintf("releases before %s: %s (%s)", b.fixedIn, b.problem, b.source),
				fmt.Sprintf("pin %s or later in fargate.driver.version with its sha256", b.fixedIn))
		}
	}
	have, err := in.host.FileSHA256(drv.Path)
	switch {
	case err != nil:
		fs.warnOnly = false
		fs.add(err.Error(), "make "+drv.Path+" readable")
	case have == "":
		fs.warnOnly = false
		fs.add(drv.Path+" is not installed", "run glbootstrap apply --role runner (the fargate-driver phase installs it)")
	case have != drv.SHA256:
		fs.warnOnly = false
		fs.add(fmt.Sprintf("%s has sha256 %s, not the pinned %s", drv.Path, have[:12], drv.SHA256[:min(12, len(drv.SHA256))]),
			"run glbootstrap apply --role runner (the fargate-driver phase replaces it)")
	}
	status := CheckFail
	if fs.warnOnly {
		status = CheckWarn
	}
	return fs.result(res, status, fmt.Sprintf("installed at %s with the pinned sha256; no known bug for this release in glbootstrap's table (%d entry, sourced bugs only)", drv.Path, len(knownBadDrivers)))
}

func parseVersion(s string) ([3]int, bool) {
	var v [3]int
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func lessVersion(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// checkDirectories: the metadata, builds and cache directories exist with the runner user as
// owner and the modes the directories phase sets (asked of the host in dry-run: nothing changes).
func checkDirectories(ctx context.Context, in checkInput) Finding {
	h := *in.host
	h.DryRun = true
	owner := host.Owner{User: in.cfg.Runner.User, Group: in.cfg.Runner.User}
	var fs findings
	var paths []string
	for _, d := range runnerDirs(in.cfg) {
		paths = append(paths, d.path)
		st, err := h.EnsureDir(d.path, fsMode(d.mode), owner)
		switch {
		case err != nil:
			fs.add(err.Error(), "install the gitlab-runner package when baking the AMI or set runner.user; move a file in the way")
		case st.Changed:
			fs.add(fmt.Sprintf("%s %s (owner %s, mode %04o)", d.path, strings.TrimPrefix(st.Summary, "would be "), in.cfg.Runner.User, d.mode),
				"run glbootstrap apply --role runner --phase directories")
		}
	}
	return fs.result(strings.Join(paths, ", "), CheckFail, "exist, owned by "+in.cfg.Runner.User)
}

type runnerDir struct {
	path string
	mode uint32
}

// runnerDirs are the directories the directories phase makes: metadata 0700 (it holds each
// task's SSH private key), builds and cache 0750.
func runnerDirs(cfg *Config) []runnerDir {
	return []runnerDir{{cfg.Fargate.MetadataDir, 0o700}, {cfg.Runner.BuildsDir, 0o750}, {cfg.Runner.CacheDir, 0o750}}
}
