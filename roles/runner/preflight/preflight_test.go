package preflight

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	"github.com/glbootstrap/glbootstrap/internal/aws/ec2"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecr"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecs"
	"github.com/glbootstrap/glbootstrap/internal/aws/iam"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// The preflight checks run against the ECS, EC2, ECR and IAM stand-ins through the real SDK
// clients (and AWS's metadata mock for iam/info), seeded with the reference setup; each case
// changes one thing.

var (
	imdsOnce sync.Once
	imdsSrv  *testenv.IMDS
	imdsErr  error
)

// sharedIMDS starts AWS's metadata mock once for the package: only the iam check reads it.
func sharedIMDS(t *testing.T) *testenv.IMDS {
	t.Helper()
	imdsOnce.Do(func() { imdsSrv, imdsErr = testenv.StartIMDS(context.Background(), testenv.IMDSValues{}) })
	if imdsErr != nil {
		t.Skipf("AWS's metadata mock is not available: %v", imdsErr)
	}
	return imdsSrv
}

func TestMain(m *testing.M) {
	code := m.Run()
	if imdsSrv != nil {
		imdsSrv.Close()
	}
	os.Exit(code)
}

const testDriver = "#!/bin/sh\necho driver\n"

// pfWorld is one seeded set of stand-ins, the checks' input and a root.
type pfWorld struct {
	stack *testenv.Stack
	in    Input
	root  string
}

// newPFWorld seeds the stand-ins with the reference setup and an input matching the reference
// configuration (testenv.RunnerConfigTemplate), as the runner role builds it.
func newPFWorld(t *testing.T, withIMDS bool) *pfWorld {
	t.Helper()
	v := testenv.DefaultIMDSValues()
	st := &testenv.Stack{}
	st.StartFargate(v)
	t.Cleanup(func() { st.ECS.Close(); st.EC2.Close(); st.ECR.Close(); st.IAM.Close() })
	sum := sha256.Sum256([]byte(testDriver))
	in := Input{
		Region: v.Region, Subnet: v.SubnetID,
		Cluster: "ci-cluster", TaskDefinition: "ci-coordinator:1", SecurityGroup: testenv.StackTaskSG,
		SSHPort: 22,
		Runner:  Runner{Concurrent: 200, Limit: 200, RequestConcurrency: 4, User: "gitlab-runner"},
		Driver:  Driver{Version: "v0.5.1", SHA256: hex.EncodeToString(sum[:]), Path: "/opt/gitlab-runner/fargate"},
		Dirs: []Dir{{"/opt/gitlab-runner/metadata", 0o700}, {"/opt/gitlab-runner/builds", 0o750},
			{"/opt/gitlab-runner/cache", 0o750}},
		Front:   Front{InstanceID: v.InstanceID, PrivateIPv4: v.LocalIPv4, SecurityGroups: v.SecurityGroupIDs},
		Machine: Machine{InstanceType: func(context.Context) (string, error) { return v.InstanceType, nil }},
		Policy:  testPolicy(v.Region),
	}
	env := map[string]string{
		"AWS_REGION": v.Region, "AWS_MAX_ATTEMPTS": "1",
		"AWS_ENDPOINT_URL_ECS": st.ECS.URL(), "AWS_ENDPOINT_URL_EC2": st.EC2.URL(),
		"AWS_ENDPOINT_URL_ECR": st.ECR.URL(), "AWS_ENDPOINT_URL_IAM": st.IAM.URL(),
	}
	if withIMDS {
		env["AWS_EC2_METADATA_DISABLED"] = ""
		env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = sharedIMDS(t).Endpoint()
	}
	testenv.SetAWSEnv(t, env)
	root := t.TempDir()
	if err := testenv.SeedRunnerRoot(root, nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range in.Dirs {
		if err := os.MkdirAll(filepath.Join(root, d.Path), os.FileMode(d.Mode)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, d.Path), os.FileMode(d.Mode)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, in.Driver.Path), []byte(testDriver), 0o755); err != nil {
		t.Fatal(err)
	}
	return &pfWorld{stack: st, in: in, root: root}
}

// input completes the input with the AWS readers (the SDK's clients on the stand-ins) and the host.
func (w *pfWorld) input(t *testing.T) checkInput {
	t.Helper()
	awsCfg, err := awscfg.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := host.New(w.root, false)
	if err != nil {
		t.Fatal(err)
	}
	in := w.in
	in.AWS = Readers{ECS: ecs.New(awsCfg), EC2: ec2.New(awsCfg), ECR: ecr.New(awsCfg), IAM: iam.New(awsCfg)}
	in.Host = h
	return checkInput{Input: in, memo: &memo{}}
}

// pfCase changes the reference setup and says what the check must find.
type pfCase struct {
	setup   func(w *pfWorld)
	want    CheckStatus
	problem []string // substrings of Problem (or Detail when ok)
	fix     string   // substring of Fix
}

func runChecks(t *testing.T, check func(context.Context, checkInput) Finding, imds bool, cases map[string]pfCase) {
	t.Helper()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			w := newPFWorld(t, imds)
			if tc.setup != nil {
				tc.setup(w)
			}
			f := check(context.Background(), w.input(t))
			text := f.Problem + f.Detail
			if f.Status != tc.want {
				t.Fatalf("status %s, want %s: %+v", f.Status, tc.want, f)
			}
			for _, p := range tc.problem {
				if !strings.Contains(text, p) {
					t.Errorf("finding lacks %q: %+v", p, f)
				}
			}
			if !strings.Contains(f.Fix, tc.fix) {
				t.Errorf("fix lacks %q: %q", tc.fix, f.Fix)
			}
			if f.Resource == "" {
				t.Error("no resource named")
			}
			if tc.want != CheckOK && tc.want != CheckSkip && f.Fix == "" {
				t.Errorf("a %s finding without a fix: %+v", f.Status, f)
			}
		})
	}
}

func TestCheckCluster(t *testing.T) {
	runChecks(t, checkCluster, false, map[string]pfCase{
		"reference: FARGATE default strategy": {want: CheckOK, problem: []string{"ACTIVE", "FARGATE (weight 1)"}},
		"missing cluster": {
			setup: func(w *pfWorld) { w.in.Cluster = "nope" },
			want:  CheckFail, problem: []string{"ECS cluster nope does not exist in us-east-2"}, fix: "aws ecs create-cluster --cluster-name nope",
		},
		"no default capacity provider strategy": {
			setup: func(w *pfWorld) {
				w.stack.ECS.PutCluster(testenv.ECSCluster{Name: "ci-cluster", CapacityProviders: []string{"FARGATE"}})
			},
			want: CheckFail, problem: []string{"no default capacity provider strategy", "without a launch type"},
			fix: "put-cluster-capacity-providers --cluster ci-cluster",
		},
		"EC2 capacity provider": {
			setup: func(w *pfWorld) {
				w.stack.ECS.PutCluster(testenv.ECSCluster{Name: "ci-cluster", DefaultStrategy: []testenv.ECSStrategyItem{{CapacityProvider: "asg-provider", Weight: 1}}})
			},
			want: CheckFail, problem: []string{"asg-provider, which is not a Fargate provider"}, fix: "FARGATE",
		},
		"inactive": {
			setup: func(w *pfWorld) { w.stack.ECS.PutCluster(testenv.ECSCluster{Name: "ci-cluster", Status: "INACTIVE"}) },
			want:  CheckFail, problem: []string{"INACTIVE"}, fix: "ACTIVE cluster",
		},
		"denied: could not check": {
			setup: func(w *pfWorld) { w.stack.ECS.Deny("DescribeClusters") },
			want:  CheckWarn, problem: []string{"could not check", "ecs:DescribeClusters"}, fix: "allow ecs:DescribeClusters",
		},
	})
}

func TestCheckTaskDefinition(t *testing.T) {
	reg := func(td testenv.ECSTaskDefinition) func(w *pfWorld) {
		return func(w *pfWorld) { w.in.TaskDefinition = w.stack.ECS.RegisterTaskDefinition(td) }
	}
	coord := []testenv.ECSContainer{{Name: "ci-coordinator", Image: "alpine", Ports: []int32{22}}}
	runChecks(t, checkTaskDefinition, false, map[string]pfCase{
		"reference": {want: CheckOK, problem: []string{"revision 1 ACTIVE, awsvpc, FARGATE", "maps port 22"}},
		"family alone is the latest ACTIVE revision": {
			setup: func(w *pfWorld) { w.in.TaskDefinition = "ci-coordinator" },
			want:  CheckOK, problem: []string{"revision 1 ACTIVE"},
		},
		"missing": {
			setup: func(w *pfWorld) { w.in.TaskDefinition = "nope:3" },
			want:  CheckFail, problem: []string{"task definition nope:3 does not exist"}, fix: "fargate.task_definition",
		},
		"bridge network mode, EC2 only": {
			setup: reg(testenv.ECSTaskDefinition{Family: "ci-coordinator", NetworkMode: "bridge", RequiresCompatibilities: []string{"EC2"}, Containers: coord}),
			want:  CheckFail, problem: []string{`network mode is "bridge"`, "not Fargate-compatible"}, fix: "networkMode awsvpc",
		},
		"container not named ci-coordinator": {
			setup: reg(testenv.ECSTaskDefinition{Family: "ci-coordinator", NetworkMode: "awsvpc", RequiresCompatibilities: []string{"FARGATE"},
				Containers: []testenv.ECSContainer{{Name: "job", Image: "alpine", Ports: []int32{22}}}}),
			want: CheckFail, problem: []string{"no container named ci-coordinator (it has: job)", "SSH_PUBLIC_KEY"}, fix: "name the job container ci-coordinator",
		},
		"SSH port not mapped": {
			setup: reg(testenv.ECSTaskDefinition{Family: "ci-coordinator", NetworkMode: "awsvpc", RequiresCompatibilities: []string{"FARGATE"},
				Containers: []testenv.ECSContainer{{Name: "ci-coordinator", Image: "alpine", Ports: []int32{2222}}}}),
			want: CheckFail, problem: []string{"maps no tcp port 22", "[2222]"}, fix: "containerPort 22",
		},
		"awslogs without execution role": {
			setup: reg(testenv.ECSTaskDefinition{Family: "ci-coordinator", NetworkMode: "awsvpc", RequiresCompatibilities: []string{"FARGATE"},
				Containers: []testenv.ECSContainer{{Name: "ci-coordinator", Image: "alpine", Ports: []int32{22}, LogDriver: "awslogs"}}}),
			want: CheckFail, problem: []string{"awslogs", "no execution role"}, fix: "executionRoleArn",
		},
		"inactive revision": {
			setup: reg(testenv.ECSTaskDefinition{Family: "ci-coordinator", Status: "INACTIVE", NetworkMode: "awsvpc", RequiresCompatibilities: []string{"FARGATE"}, Containers: coord}),
			want:  CheckFail, problem: []string{"revision 2 is INACTIVE"}, fix: "ACTIVE revision",
		},
		"denied": {
			setup: func(w *pfWorld) { w.stack.ECS.Deny("DescribeTaskDefinition") },
			want:  CheckWarn, problem: []string{"could not check"}, fix: "ecs:DescribeTaskDefinition",
		},
	})
}

func TestCheckImage(t *testing.T) {
	runChecks(t, checkImage, false, map[string]pfCase{
		"reference: latest is in ECR": {want: CheckOK, problem: []string{"present in ECR (sha256:"}},
		"tag missing": {
			setup: func(w *pfWorld) {
				w.stack.ECR.CreateRepository("empty")
				w.in.TaskDefinition = w.stack.ECS.RegisterTaskDefinition(testenv.ECSTaskDefinition{Family: "ci-coordinator", NetworkMode: "awsvpc",
					RequiresCompatibilities: []string{"FARGATE"}, ExecutionRoleARN: testenv.StackExecutionRole,
					Containers: []testenv.ECSContainer{{Name: "ci-coordinator", Image: "123456789012.dkr.ecr.us-east-2.amazonaws.com/empty:latest", Ports: []int32{22}}}})
			},
			want: CheckFail, problem: []string{"image 123456789012.dkr.ecr.us-east-2.amazonaws.com/empty:latest does not exist", "CannotPullContainerError"},
			fix: "docker push 123456789012.dkr.ecr.us-east-2.amazonaws.com/empty:latest",
		},
		"repository missing and no execution role": {
			setup: func(w *pfWorld) {
				w.in.TaskDefinition = w.stack.ECS.RegisterTaskDefinition(testenv.ECSTaskDefinition{Family: "ci-coordinator", NetworkMode: "awsvpc",
					RequiresCompatibilities: []string{"FARGATE"},
					Containers:              []testenv.ECSContainer{{Name: "ci-coordinator", Image: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/other/coord:v2", Ports: []int32{22}}}})
			},
			want: CheckFail, problem: []string{"no execution role", "repository other/coord does not exist in registry 123456789012 (eu-west-1)"},
			fix: "executionRoleArn",
		},
		"not an ECR image": {
			setup: func(w *pfWorld) {
				w.in.TaskDefinition = w.stack.ECS.RegisterTaskDefinition(testenv.ECSTaskDefinition{Family: "ci-coordinator", NetworkMode: "awsvpc",
					RequiresCompatibilities: []string{"FARGATE"}, Containers: []testenv.ECSContainer{{Name: "ci-coordinator", Image: "registry.gitlab.com/x/coord:1", Ports: []int32{22}}}})
			},
			want: CheckSkip, problem: []string{"not a private ECR image"},
		},
		"denied": {
			setup: func(w *pfWorld) { w.stack.ECR.Deny("DescribeImages") },
			want:  CheckWarn, problem: []string{"could not check", "ecr:DescribeImages"}, fix: "allow ecr:DescribeImages",
		},
	})
}

func TestCheckSecurityGroup(t *testing.T) {
	v := testenv.DefaultIMDSValues()
	runChecks(t, checkSecurityGroup, false, map[string]pfCase{
		"reference: 22 from the front's group": {want: CheckOK, problem: []string{"admits tcp/22 from the front's " + v.SecurityGroupIDs[0]}},
		"a CIDR holding the front's address": {
			setup: func(w *pfWorld) {
				w.stack.EC2.PutSecurityGroup(testenv.EC2SecurityGroup{ID: testenv.StackTaskSG, VPCID: v.VPCID,
					Ingress: []testenv.EC2Rule{{Protocol: "tcp", FromPort: 0, ToPort: 1024, CIDRs: []string{"10.0.1.0/24"}}}})
			},
			want: CheckOK, problem: []string{"from 10.0.1.0/24"},
		},
		"no rule for the front": {
			setup: func(w *pfWorld) {
				w.stack.EC2.PutSecurityGroup(testenv.EC2SecurityGroup{ID: testenv.StackTaskSG, VPCID: v.VPCID,
					Ingress: []testenv.EC2Rule{{Protocol: "tcp", FromPort: 22, ToPort: 22, CIDRs: []string{"192.168.0.0/16"}}, {Protocol: "tcp", FromPort: 443, ToPort: 443, Groups: []string{v.SecurityGroupIDs[0]}}}})
			},
			want: CheckFail, problem: []string{"does not admit tcp/22 from the front", "SSH timeout"},
			fix: "authorize-security-group-ingress --group-id sg-0123456789abcdef0 --protocol tcp --port 22 --source-group " + v.SecurityGroupIDs[0],
		},
		"another VPC": {
			setup: func(w *pfWorld) {
				w.stack.EC2.PutSecurityGroup(testenv.EC2SecurityGroup{ID: testenv.StackTaskSG, VPCID: "vpc-0other",
					Ingress: []testenv.EC2Rule{{Protocol: "-1", Groups: []string{v.SecurityGroupIDs[0]}}}})
			},
			want: CheckFail, problem: []string{"it is in vpc-0other but subnet"}, fix: "use a security group of " + v.VPCID,
		},
		"front may not connect out": {
			setup: func(w *pfWorld) {
				w.stack.EC2.PutSecurityGroup(testenv.EC2SecurityGroup{ID: v.SecurityGroupIDs[0], VPCID: v.VPCID,
					Egress: []testenv.EC2Rule{{Protocol: "tcp", FromPort: 443, ToPort: 443, CIDRs: []string{"0.0.0.0/0"}}}})
			},
			want: CheckFail, problem: []string{"allow no egress to tcp/22"}, fix: "authorize-security-group-egress",
		},
		"public tasks open to the internet": {
			setup: func(w *pfWorld) {
				w.in.EnablePublicIP = true
				w.stack.EC2.PutSecurityGroup(testenv.EC2SecurityGroup{ID: testenv.StackTaskSG, VPCID: v.VPCID,
					Ingress: []testenv.EC2Rule{{Protocol: "tcp", FromPort: 22, ToPort: 22, CIDRs: []string{"0.0.0.0/0"}}}})
			},
			want: CheckWarn, problem: []string{"open to the internet"}, fix: "enable_public_ip: false",
		},
		"missing group": {
			setup: func(w *pfWorld) { w.in.SecurityGroup = "sg-0ffffffffffffffff" },
			want:  CheckFail, problem: []string{"InvalidGroup.NotFound"}, fix: "fargate.security_group",
		},
		"denied": {
			setup: func(w *pfWorld) { w.stack.EC2.Deny("DescribeSecurityGroups") },
			want:  CheckWarn, problem: []string{"could not check", "not allowed to call ec2:DescribeSecurityGroups", "not authorized"}, fix: "allow ec2:DescribeSecurityGroups",
		},
	})
}

func TestCheckEgress(t *testing.T) {
	v := testenv.DefaultIMDSValues()
	igwTable := func(w *pfWorld) {
		w.stack.EC2.PutRouteTable(testenv.EC2RouteTable{ID: testenv.StackRouteTable, VPCID: v.VPCID, Subnets: []string{v.SubnetID},
			Routes: []testenv.EC2Route{{Destination: "0.0.0.0/0", GatewayID: "igw-0123"}}})
	}
	noRoute := func(w *pfWorld) {
		w.stack.EC2.PutRouteTable(testenv.EC2RouteTable{ID: testenv.StackRouteTable, VPCID: v.VPCID, Subnets: []string{v.SubnetID},
			Routes: []testenv.EC2Route{{Destination: v.VPCCIDR, GatewayID: "local"}}})
	}
	endpoints := func(w *pfWorld, svcs ...string) {
		for _, s := range svcs {
			w.stack.EC2.PutVPCEndpoint(testenv.EC2VPCEndpoint{ID: "vpce-" + s, VPCID: v.VPCID, Type: "Interface", PrivateDNS: true, Service: "com.amazonaws.us-east-2." + s})
		}
	}
	runChecks(t, checkEgress, false, map[string]pfCase{
		"reference: private tasks through NAT": {want: CheckOK, problem: []string{"through " + testenv.StackNATGateway}},
		"internet gateway but no public IP": {
			setup: igwTable,
			want:  CheckFail, problem: []string{"internet gateway igw-0123 but tasks get no public IP", "no VPC endpoint for ecr.api, ecr.dkr, logs"},
			fix: "set fargate.enable_public_ip: true",
		},
		"internet gateway with public IP": {
			setup: func(w *pfWorld) { igwTable(w); w.in.EnablePublicIP = true },
			want:  CheckOK, problem: []string{"through igw-0123"},
		},
		"public IP behind NAT": {
			setup: func(w *pfWorld) { w.in.EnablePublicIP = true },
			want:  CheckWarn, problem: []string{"public IP is never used"}, fix: "enable_public_ip: false",
		},
		"no route, every VPC endpoint": {
			setup: func(w *pfWorld) { noRoute(w); endpoints(w, "ecr.api", "ecr.dkr", "logs") },
			want:  CheckOK, problem: []string{"through VPC endpoints"},
		},
		"no route, endpoints missing": {
			setup: func(w *pfWorld) { noRoute(w); endpoints(w, "ecr.api") },
			want:  CheckFail, problem: []string{"no default route", "no VPC endpoint for ecr.dkr, logs"}, fix: "route 0.0.0.0/0 of " + testenv.StackRouteTable + " to a NAT gateway",
		},
		"main route table when none is associated": {
			setup: func(w *pfWorld) {
				w.stack.EC2.PutRouteTable(testenv.EC2RouteTable{ID: testenv.StackRouteTable, VPCID: v.VPCID})
			},
			want: CheckFail, problem: []string{"no default route"}, fix: "rtb-0main00000000000",
		},
		"missing subnet": {
			setup: func(w *pfWorld) { w.in.Subnet = "subnet-0fffffffffffffff0" },
			want:  CheckFail, problem: []string{"InvalidSubnetID.NotFound"}, fix: "fargate.subnet",
		},
		"denied": {
			setup: func(w *pfWorld) { w.stack.EC2.Deny("DescribeRouteTables") },
			want:  CheckWarn, problem: []string{"could not check"}, fix: "ec2:DescribeRouteTables",
		},
	})
}

func TestCheckCapacity(t *testing.T) {
	v := testenv.DefaultIMDSValues()
	subnet := func(free int32) func(*pfWorld) {
		return func(w *pfWorld) {
			w.stack.EC2.PutSubnet(testenv.EC2Subnet{ID: v.SubnetID, VPCID: v.VPCID, CIDR: "10.0.0.0/22", AvailableIPs: free})
		}
	}
	runChecks(t, checkCapacity, false, map[string]pfCase{
		"enough addresses": {setup: subnet(1000), want: CheckOK, problem: []string{"concurrent 200, limit 200, request_concurrency 4, 1000 free addresses"}},
		"reference: fewer free addresses than concurrent": {
			want: CheckWarn, problem: []string{"187 free addresses but up to 200 tasks"}, fix: "lower runner.concurrent to 187",
		},
		"no free address": {setup: subnet(0), want: CheckFail, problem: []string{"no free address"}, fix: "fargate.subnet"},
		"request_concurrency 1 for many jobs": {
			setup: func(w *pfWorld) {
				subnet(1000)(w)
				w.in.Runner.Concurrent, w.in.Runner.Limit, w.in.Runner.RequestConcurrency = 10, 20, 1
			},
			want: CheckWarn, problem: []string{"request_concurrency is 1 for up to 10 jobs"}, fix: "raise runner.request_concurrency",
		},
		"request_concurrency above concurrent without limit": {
			setup: func(w *pfWorld) {
				subnet(1000)(w)
				w.in.Runner.Concurrent, w.in.Runner.Limit, w.in.Runner.RequestConcurrency = 2, 0, 8
			},
			want: CheckWarn, problem: []string{"request_concurrency 8 is above the 2 jobs"}, fix: "at most 2",
		},
		"denied": {
			setup: func(w *pfWorld) { w.stack.EC2.Deny("DescribeSubnets") },
			want:  CheckWarn, problem: []string{"could not check the subnet's free addresses"}, fix: "ec2:DescribeSubnets",
		},
	})
}

// testPolicy is a front policy of the reference setup's shape (the runner role's own, built from
// its configuration, is checked against the simulator's questions in roles/runner): the driver's
// statements and glbootstrap's IAM checks.
func testPolicy(region string) PolicyFunc {
	return func(_ context.Context, partition, account, roleName string, taskRoles []string) iampolicy.Policy {
		p := iampolicy.Place{Partition: partition, Account: account, Region: region}
		cluster := p.ARN("ecs", "cluster/ci-cluster")
		st := []iampolicy.Statement{
			iampolicy.Allow("RunCoordinatorTask", []string{"ecs:RunTask"}, []string{p.ARN("ecs", "task-definition/ci-coordinator:1")}).When("ArnEquals", "ecs:cluster", cluster),
			iampolicy.Allow("ManageCoordinatorTasks", []string{"ecs:DescribeTasks", "ecs:StopTask"}, []string{p.ARN("ecs", "task/ci-cluster/*")}).When("ArnEquals", "ecs:cluster", cluster),
		}
		if taskRoles == nil {
			taskRoles = []string{p.IAMRole("REPLACE-ME")}
		}
		if len(taskRoles) > 0 {
			st = append(st, iampolicy.Allow("PassTaskRoles", []string{"iam:PassRole"}, taskRoles).When("StringEquals", "iam:PassedToService", "ecs-tasks.amazonaws.com"))
		}
		st = append(st, iampolicy.Allow(iampolicy.ChecksSid+"Simulate", []string{"iam:SimulatePrincipalPolicy"}, []string{p.IAMRole(roleName)}))
		return iampolicy.New(st...)
	}
}

func TestCheckIAM(t *testing.T) {
	tasks := "arn:aws:ecs:" + testenv.DefaultIMDSValues().Region + ":123456789012:task/ci-cluster/*"
	runChecks(t, checkIAM, true, map[string]pfCase{
		"reference role": {want: CheckOK, problem: []string{"may do all 5 actions of the front's policy, including run, describe and stop tasks and pass 2 task role(s)"}},
		"may not stop tasks or pass the execution role": {
			setup: func(w *pfWorld) {
				role := "arn:aws:iam::123456789012:role/narrow"
				w.stack.IAM.AddInstanceProfile(testenv.StackInstanceProfile, role)
				w.stack.IAM.Allow(role, "ecs:RunTask")
				w.stack.IAM.Allow(role, "ecs:DescribeTasks")
				w.stack.IAM.Allow(role, "iam:PassRole", testenv.StackTaskRole)
				w.stack.IAM.Allow(role, "iam:SimulatePrincipalPolicy", role)
			},
			want: CheckFail, problem: []string{"ecs:StopTask on " + tasks + " (implicitDeny)", "iam:PassRole on " + testenv.StackExecutionRole},
			fix: "glbootstrap iam-policy --role runner",
		},
		"may not simulate itself: glbootstrap's check statement only warns": {
			setup: func(w *pfWorld) {
				role := "arn:aws:iam::123456789012:role/nosim"
				w.stack.IAM.AddInstanceProfile(testenv.StackInstanceProfile, role)
				w.stack.IAM.Allow(role, "ecs:*")
				w.stack.IAM.Allow(role, "iam:PassRole", testenv.StackTaskRole, testenv.StackExecutionRole)
			},
			want: CheckWarn, problem: []string{"glbootstrap's read-only checks may not iam:SimulatePrincipalPolicy on arn:aws:iam::123456789012:role/nosim"},
			fix: "glbootstrap iam-policy",
		},
		"task definition unreadable: the placeholder is not asked": {
			setup: func(w *pfWorld) { w.in.TaskDefinition = "missing:1" },
			want:  CheckOK, problem: []string{"may do all 4 actions"},
		},
		"SimulatePrincipalPolicy denied: could not check": {
			setup: func(w *pfWorld) { w.stack.IAM.Deny("SimulatePrincipalPolicy") },
			want:  CheckWarn, problem: []string{"could not check what the role may do", "iam:SimulatePrincipalPolicy"}, fix: "allow iam:SimulatePrincipalPolicy",
		},
		"GetInstanceProfile denied": {
			setup: func(w *pfWorld) { w.stack.IAM.Deny("GetInstanceProfile") },
			want:  CheckWarn, problem: []string{"could not check", "iam:GetInstanceProfile"}, fix: "iam:GetInstanceProfile",
		},
	})
}

// TestCheckIAMContext: the simulator is asked with each statement's condition keys as context
// entries, so a grant scoped with ecs:cluster or iam:PassedToService reads as allowed.
func TestCheckIAMContext(t *testing.T) {
	w := newPFWorld(t, true)
	if f := checkIAM(context.Background(), w.input(t)); f.Status != CheckOK {
		t.Fatalf("%+v", f)
	}
	cluster := "ecs:cluster=arn:arn:aws:ecs:" + testenv.DefaultIMDSValues().Region + ":123456789012:cluster/ci-cluster"
	for action, want := range map[string]string{
		"ecs:RunTask": cluster, "ecs:StopTask": cluster,
		"iam:PassRole":                "iam:PassedToService=string:ecs-tasks.amazonaws.com",
		"iam:SimulatePrincipalPolicy": "",
	} {
		got := strings.Join(w.stack.IAM.ContextKeys(action), " ")
		if got != want {
			t.Errorf("%s simulated with context %q, want %q", action, got, want)
		}
	}
}

func TestCheckDriver(t *testing.T) {
	runChecks(t, checkDriver, false, map[string]pfCase{
		"pinned release installed": {want: CheckOK, problem: []string{"with the pinned sha256"}},
		"release with the JWT job token bug": {
			setup: func(w *pfWorld) { w.in.Driver.Version = "v0.5.0" },
			want:  CheckWarn, problem: []string{"Error when persisting the task ARN", "fargate#86"}, fix: "pin v0.5.1 or later",
		},
		"version changed without its checksum": {
			setup: func(w *pfWorld) { w.in.Driver.Version, w.in.Driver.Recorded = "v0.5.2", "v0.5.1" },
			want:  CheckFail, problem: []string{"fargate.driver.version is v0.5.2 but fargate.driver.sha256 is the SHA-256 of the v0.5.1 binary"},
			fix: "put the SHA-256 of the v0.5.2 release in fargate.driver.sha256",
		},
		"not installed": {
			setup: func(w *pfWorld) { os.Remove(filepath.Join(w.root, w.in.Driver.Path)) },
			want:  CheckFail, problem: []string{"/opt/gitlab-runner/fargate is not installed"}, fix: "fargate-driver phase",
		},
		"another binary": {
			setup: func(w *pfWorld) {
				os.WriteFile(filepath.Join(w.root, w.in.Driver.Path), []byte("other"), 0o755)
			},
			want: CheckFail, problem: []string{"not the pinned"}, fix: "fargate-driver phase",
		},
	})
}

func TestCheckDirectories(t *testing.T) {
	runChecks(t, checkDirectories, false, map[string]pfCase{
		"made by the directories phase": {want: CheckOK, problem: []string{"owned by gitlab-runner"}},
		"missing and wrong mode": {
			setup: func(w *pfWorld) {
				os.Remove(filepath.Join(w.root, "opt/gitlab-runner/cache"))
				os.Chmod(filepath.Join(w.root, "opt/gitlab-runner/metadata"), 0o755)
			},
			want: CheckFail, problem: []string{"/opt/gitlab-runner/cache created", "/opt/gitlab-runner/metadata mode/owner fixed (was 0755)"},
			fix: "--phase directories",
		},
		"no runner user": {
			setup: func(w *pfWorld) { w.in.Runner.User = "nobody-here" },
			want:  CheckFail, problem: []string{"nobody-here"}, fix: "runner.user",
		},
	})
}

// TestCheckDirectoriesReportsOnce: a missing runner user fails every directory the same way; the
// finding says it once (and its fix once), not once per directory.
func TestCheckDirectoriesReportsOnce(t *testing.T) {
	w := newPFWorld(t, false)
	w.in.Runner.User = "nobody-here"
	f := checkDirectories(context.Background(), w.input(t))
	if f.Status != CheckFail {
		t.Fatalf("status %s, want fail: %+v", f.Status, f)
	}
	if n := strings.Count(f.Problem, "nobody-here"); n != 1 {
		t.Errorf("the missing user is named %d times, want once: %q", n, f.Problem)
	}
	if n := strings.Count(f.Fix, "runner.user"); n != 1 {
		t.Errorf("the fix is given %d times, want once: %q", n, f.Fix)
	}
}

// TestRun runs every check on the reference setup (a t3.small front): all pass but capacity,
// which warns (187 free addresses for concurrent 200); a failing check makes FailedError name the
// check, resource and fix.
func TestRun(t *testing.T) {
	w := newPFWorld(t, true)
	p := &Preflight{in: w.input(t)}
	findings := p.Run(context.Background())
	var names, warnings []string
	for _, f := range findings {
		names = append(names, f.Check)
		if f.Status == CheckWarn {
			warnings = append(warnings, f.Check)
		}
	}
	if len(findings) != Len() || strings.Join(names, " ") != "cluster task-definition image security-group subnet-egress capacity memory iam driver directories cache" ||
		strings.Join(warnings, ",") != "capacity" || FailedError(findings, false) != nil {
		t.Fatalf("findings: %+v", findings)
	}
	if err := FailedError(findings, true); err == nil || !strings.Contains(err.Error(), "[capacity]") {
		t.Errorf("strict: %v", err)
	}

	w.stack.ECS.PutCluster(testenv.ECSCluster{Name: "ci-cluster"})
	err := FailedError(New(w.input(t).Input).Run(context.Background()), false)
	if err == nil || !strings.Contains(err.Error(), "1 preflight check(s) failed") ||
		!strings.Contains(err.Error(), "[cluster] cluster ci-cluster: it has no default capacity provider strategy") ||
		!strings.Contains(err.Error(), "fix: aws ecs put-cluster-capacity-providers") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]bool{"v0.5.1": true, "0.5.0": true, "v1.2": false, "latest": false} {
		if _, ok := parseVersion(in); ok != want {
			t.Errorf("parseVersion(%q) ok = %v", in, ok)
		}
	}
	a, _ := parseVersion("v0.5.0")
	b, _ := parseVersion("v0.5.1")
	if !lessVersion(a, b) || lessVersion(b, a) || lessVersion(a, a) {
		t.Error("lessVersion")
	}
}
