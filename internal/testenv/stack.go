package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"text/template"
)

// Stack is every stand-in a runner front talks to, wired and seeded the way
// the reference setup has them: instance metadata (AWS's metadata mock),
// S3 holding a driver mirror, SSM holding the config's parameters, and a
// GitLab with an access token that may create runners.
type Stack struct {
	IMDS   *IMDS
	S3     *S3
	SSM    *SSM
	GitLab *GitLab
	// ECS, EC2, ECR and IAM hold the Fargate setup the preflight checks read (SeedFargate).
	ECS *ECS
	EC2 *EC2
	ECR *ECR
	IAM *IAM

	// Driver is the stand-in driver binary served from S3, DriverSHA256
	// its checksum and DriverURL its s3:// location.
	Driver       []byte
	DriverSHA256 string
	DriverURL    string
}

// Names the stack seeds.
const (
	StackBucket         = "glbootstrap-demo-artifacts"
	StackConfigParam    = "/glbootstrap/runner/config"
	StackCreateToken    = "/glbootstrap/runner/create-token"
	StackRunnerToken    = "/glbootstrap/runner/token"
	StackPrivateURL     = "/glbootstrap/gitlab/private-url"
	StackAccessTokenVal = "glpat-demo-create-runner-0001"
	StackCAFile         = "/etc/gitlab-runner/certs/gitlab.crt"
)

// stackDriver stands in for GitLab's Fargate driver binary: the demo and
// the tests install it exactly like the real one (download, SHA-256 pin,
// 0755), but this machine cannot reach GitLab's bucket.
const stackDriver = `#!/bin/sh
# Stand-in for GitLab's AWS Fargate custom executor driver, served by the
# glbootstrap demo's local S3. On a real front this file is the driver
# release pinned in fargate.driver.
echo "fargate driver stand-in: $*" >&2
exit 1
`

// StartStack starts and seeds every stand-in. imds may be the zero value
// for the reference instance. Every secret source holds a distinct,
// recognisable value (see Secrets): the create_runner access token, a glrt-
// token for runner.token_parameter, a legacy registration token and the
// initial root password in SSM.
func StartStack(ctx context.Context, imds IMDSValues) (*Stack, error) {
	s := &Stack{}
	var err error
	if s.IMDS, err = StartIMDS(ctx, imds); err != nil {
		return nil, err
	}
	if s.GitLab, err = NewGitLab(GitLabOptions{}); err != nil {
		s.Close()
		return nil, err
	}
	s.GitLab.AddAccessToken(StackAccessTokenVal, "create_runner")
	s.S3 = NewS3()
	s.SSM = NewSSM()

	s.Driver = []byte(stackDriver)
	sum := sha256.Sum256(s.Driver)
	s.DriverSHA256 = hex.EncodeToString(sum[:])
	key := "fargate/v0.5.1/fargate-linux-" + runtime.GOARCH
	s.DriverURL = "s3://" + StackBucket + "/" + key
	s.S3.CreateBucket(StackBucket)
	s.S3.PutObject(StackBucket, key, s.Driver)

	s.SSM.Put(StackCreateToken, StackAccessTokenVal, true)
	s.SSM.Put(StackRunnerToken, StackRunnerTokenVal, true)
	s.SSM.Put(StackRegistrationToken, StackRegistrationTokenVal, true)
	s.SeedGitLabSSM()
	s.SSM.MarkSecret(StackCreateToken, StackRunnerToken, StackRegistrationToken, StackRootPasswordParam)
	s.SSM.Put(StackPrivateURL, s.GitLab.URL(), false)
	s.StartFargate(imds.withDefaults())
	return s, nil
}

// Close stops every stand-in.
func (s *Stack) Close() {
	if s.IMDS != nil {
		s.IMDS.Close()
	}
	if s.GitLab != nil {
		s.GitLab.Close()
	}
	if s.S3 != nil {
		s.S3.Close()
	}
	if s.SSM != nil {
		s.SSM.Close()
	}
	if s.ECS != nil {
		s.ECS.Close()
		s.EC2.Close()
		s.ECR.Close()
		s.IAM.Close()
	}
}

// Env is the environment that points glbootstrap at the stack, through the
// AWS SDK's standard variables only, appended to base with any AWS_
// variables of base removed (so a developer's own profile cannot leak in).
func (s *Stack) Env(base []string) []string {
	var out []string
	for _, kv := range base {
		if !strings.HasPrefix(kv, "AWS_") {
			out = append(out, kv)
		}
	}
	return append(out,
		"AWS_EC2_METADATA_SERVICE_ENDPOINT="+s.IMDS.Endpoint(),
		"AWS_ENDPOINT_URL_SSM="+s.SSM.URL(),
		"AWS_ENDPOINT_URL_S3="+s.S3.URL(),
		"AWS_ENDPOINT_URL_ECS="+s.ECS.URL(),
		"AWS_ENDPOINT_URL_EC2="+s.EC2.URL(),
		"AWS_ENDPOINT_URL_ECR="+s.ECR.URL(),
		"AWS_ENDPOINT_URL_IAM="+s.IAM.URL(),
		"AWS_ACCESS_KEY_ID=AKIDEXAMPLEDEMO",
		"AWS_SECRET_ACCESS_KEY="+StackAWSSecretKey,
		"AWS_CONFIG_FILE="+os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE="+os.DevNull,
	)
}

// RunnerConfigValues fill RunnerConfigTemplate.
type RunnerConfigValues struct {
	DriverURL, DriverSHA256 string
	// Auth is the YAML of the token lines under runner: (indented two spaces).
	Auth string
	// Extra is appended under runner: as is.
	Extra string
}

// RunnerConfigTemplate is the reference configuration (examples/runner.yaml) pointing
// at the stack.
const RunnerConfigTemplate = `version: 1
gitlab:
  url: https://gitlab.example.com
  private_url_parameter: /glbootstrap/gitlab/private-url
  ca_file: /etc/gitlab-runner/certs/gitlab.crt
  ready_timeout: 20s
runner:
  name: fargate-front
  concurrent: 200
  check_interval: 3
  limit: 200
  request_concurrency: 4
  builds_dir: /opt/gitlab-runner/builds
  cache_dir: /opt/gitlab-runner/cache
{{.Auth}}{{.Extra}}fargate:
  driver:
    version: v0.5.1
    sha256: "{{.DriverSHA256}}"
    url: {{.DriverURL}}
    path: /opt/gitlab-runner/fargate
  cluster: ci-cluster
  security_group: sg-0123456789abcdef0
  task_definition: ci-coordinator:1
  enable_public_ip: false
  metadata_dir: /opt/gitlab-runner/metadata
  ssh: {username: root, port: 22}
`

// CreateAuth is the Auth block that lets glbootstrap create the runner.
const CreateAuth = `  create:
    access_token_parameter: /glbootstrap/runner/create-token
    runner_type: instance_type
  tags: [fargate]
  run_untagged: false
`

// RunnerConfig renders the reference config for this stack with auth (one
// of CreateAuth or a token_parameter line).
func (s *Stack) RunnerConfig(auth, extra string) string {
	var b strings.Builder
	t := template.Must(template.New("cfg").Parse(RunnerConfigTemplate))
	if err := t.Execute(&b, RunnerConfigValues{DriverURL: s.DriverURL, DriverSHA256: s.DriverSHA256, Auth: auth, Extra: extra}); err != nil {
		panic(err)
	}
	return b.String()
}

// SeedRunnerRoot lays out root the way a baked runner AMI leaves it: the
// gitlab-runner user and group (mapped to the calling user, so an unprivileged
// test can own files as "gitlab-runner"), the gitlab-runner binary and its
// systemd unit as the package installs them, and the CA file that
// user-data would drop for GitLab's private certificate.
func SeedRunnerRoot(root string, caPEM []byte) error {
	u, err := user.Current()
	if err != nil {
		return err
	}
	files := map[string]string{
		"etc/passwd":            fmt.Sprintf("root:x:0:0:root:/root:/bin/bash\ngitlab-runner:x:%s:%s:GitLab Runner:/home/gitlab-runner:/bin/bash\n", u.Uid, u.Gid),
		"etc/group":             fmt.Sprintf("root:x:0:\ngitlab-runner:x:%s:\n", u.Gid),
		"usr/bin/gitlab-runner": "#!/bin/sh\n# Stand-in for the gitlab-runner package's binary in the glbootstrap demo root.\necho 'gitlab-runner stand-in' >&2\n",
		"etc/systemd/system/gitlab-runner.service": `[Unit]
Description=GitLab Runner
ConditionFileIsExecutable=/usr/bin/gitlab-runner
After=network.target

[Service]
StartLimitInterval=5
StartLimitBurst=10
ExecStart=/usr/bin/gitlab-runner "run" "--config" "/etc/gitlab-runner/config.toml" "--working-directory" "/home/gitlab-runner" "--service" "gitlab-runner" "--user" "gitlab-runner"
Restart=always
RestartSec=120
EnvironmentFile=-/etc/sysconfig/gitlab-runner

[Install]
WantedBy=multi-user.target
`,
		strings.TrimPrefix(StackCAFile, "/"): string(caPEM),
	}
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(rel, "usr/bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

// Names of the reference Fargate setup the stack seeds (the config's fargate section and the
// instance facts of DefaultIMDSValues).
const (
	StackCluster         = "ci-cluster"
	StackTaskFamily      = "ci-coordinator"
	StackTaskSG          = "sg-0123456789abcdef0"
	StackRouteTable      = "rtb-0123456789abcdef0"
	StackNATGateway      = "nat-0123456789abcdef0"
	StackCoordinatorRepo = "ci-coordinator"
	// StackInstanceProfile is the instance profile name AWS's metadata mock serves in iam/info
	// by default (its aemm-metadata-default-values.json); the IAM stand-in knows it.
	StackInstanceProfile = "baskinc-role"
	StackFrontRole       = "arn:aws:iam::" + awsAccount + ":role/glbootstrap-runner-front"
	StackTaskRole        = "arn:aws:iam::" + awsAccount + ":role/ci-coordinator-task"
	StackExecutionRole   = "arn:aws:iam::" + awsAccount + ":role/ecsTaskExecutionRole"
	// StackSubnetFreeIPs is what a /24 private subnet shared with the front, GitLab and the NAT
	// gateway's neighbours has left: 251 usable addresses minus those in use. It is fewer than
	// the reference concurrent 200 needs at full load, which the preflight checks warn about.
	StackSubnetFreeIPs = 187
)

// StartFargate starts the ECS, EC2, ECR and IAM stand-ins and seeds them with the reference
// setup for the instance v: cluster ci-cluster whose default capacity provider strategy is
// FARGATE; task definition ci-coordinator:1 (awsvpc, FARGATE, container ci-coordinator mapping
// port 22, image ci-coordinator:latest in ECR, awslogs, an execution role); the task security
// group admitting 22 from the front's security group; the front's subnet routing 0.0.0.0/0 to a
// NAT gateway, with an S3 gateway endpoint; and a front role with the front's policy
// (AllowFrontPolicy).
func (s *Stack) StartFargate(v IMDSValues) {
	s.ECS, s.EC2, s.ECR, s.IAM = NewECS(), NewEC2(), NewECR(), NewIAM()
	s.EC2.AddENISource(s.ECS) // the tasks' ENIs, for DescribeNetworkInterfaces
	frontSG := v.SecurityGroupIDs[0]

	s.ECS.PutCluster(ECSCluster{Name: StackCluster, CapacityProviders: []string{"FARGATE", "FARGATE_SPOT"},
		DefaultStrategy: []ECSStrategyItem{{CapacityProvider: "FARGATE", Weight: 1}}})
	image := fmt.Sprintf("%s.dkr.ecr.%s.amazonaws.com/%s:latest", awsAccount, v.Region, StackCoordinatorRepo)
	s.ECS.RegisterTaskDefinition(ECSTaskDefinition{Family: StackTaskFamily, NetworkMode: "awsvpc",
		RequiresCompatibilities: []string{"FARGATE"}, CPU: "1024", Memory: "2048",
		TaskRoleARN: StackTaskRole, ExecutionRoleARN: StackExecutionRole,
		Containers: []ECSContainer{{Name: "ci-coordinator", Image: image, Ports: []int32{22}, LogDriver: "awslogs"}}})
	s.ECR.PutImage(StackCoordinatorRepo, "latest")

	s.EC2.PutSecurityGroup(EC2SecurityGroup{ID: frontSG, VPCID: v.VPCID, Name: "glbootstrap-runner-front",
		Egress: []EC2Rule{{Protocol: "-1", CIDRs: []string{"0.0.0.0/0"}}}})
	s.EC2.PutSecurityGroup(EC2SecurityGroup{ID: StackTaskSG, VPCID: v.VPCID, Name: "ci-coordinator-tasks",
		Ingress: []EC2Rule{{Protocol: "tcp", FromPort: 22, ToPort: 22, Groups: []string{frontSG}}},
		Egress:  []EC2Rule{{Protocol: "-1", CIDRs: []string{"0.0.0.0/0"}}}})
	s.EC2.PutSubnet(EC2Subnet{ID: v.SubnetID, VPCID: v.VPCID, CIDR: "10.0.1.0/24", AZ: v.Region + "a", AvailableIPs: StackSubnetFreeIPs})
	s.EC2.PutRouteTable(EC2RouteTable{ID: StackRouteTable, VPCID: v.VPCID, Subnets: []string{v.SubnetID},
		Routes: []EC2Route{{Destination: v.VPCCIDR, GatewayID: "local"}, {Destination: "0.0.0.0/0", NatGatewayID: StackNATGateway}}})
	s.EC2.PutRouteTable(EC2RouteTable{ID: "rtb-0main00000000000", VPCID: v.VPCID, Main: true,
		Routes: []EC2Route{{Destination: v.VPCCIDR, GatewayID: "local"}}})
	s.EC2.PutVPCEndpoint(EC2VPCEndpoint{ID: "vpce-0s3gateway000000", VPCID: v.VPCID, Type: "Gateway",
		Service: "com.amazonaws." + v.Region + ".s3", RouteTables: []string{StackRouteTable}})

	s.IAM.AddInstanceProfile(StackInstanceProfile, StackFrontRole)
	s.AllowFrontPolicy(StackFrontRole)
}

// AllowFrontPolicy gives roleARN what `glbootstrap iam-policy --role runner` prints for the
// stack's configurations (any of its SSM parameters and objects, its cluster, task definition,
// task roles, coordinator repository, CodeBuild project and bucket), as resource patterns.
func (s *Stack) AllowFrontPolicy(roleARN string) {
	acct := awsAccount
	s.IAM.Allow(roleARN, "ssm:GetParameter", "arn:aws:ssm:*:"+acct+":parameter/glbootstrap/*")
	s.IAM.Allow(roleARN, "s3:GetObject", "arn:aws:s3:::*")
	s.IAM.Allow(roleARN, "ecs:RunTask", "arn:aws:ecs:*:"+acct+":task-definition/"+StackTaskFamily+":*")
	s.IAM.Allow(roleARN, "ecs:DescribeTasks", "arn:aws:ecs:*:"+acct+":task/"+StackCluster+"/*")
	s.IAM.Allow(roleARN, "ecs:StopTask", "arn:aws:ecs:*:"+acct+":task/"+StackCluster+"/*")
	s.IAM.Allow(roleARN, "iam:PassRole", StackTaskRole, StackExecutionRole)
	s.IAM.Allow(roleARN, "ec2:DescribeNetworkInterfaces")
	s.IAM.Allow(roleARN, "ecr:DescribeImages", "arn:aws:ecr:*:"+acct+":repository/*")
	s.IAM.Allow(roleARN, "codebuild:*", "arn:aws:codebuild:*:"+acct+":project/*")
	s.IAM.Allow(roleARN, "s3:PutObject", "arn:aws:s3:::*")
	s.IAM.Allow(roleARN, "s3:AbortMultipartUpload", "arn:aws:s3:::*")
	s.IAM.Allow(roleARN, "logs:GetLogEvents", "arn:aws:logs:*:"+acct+":log-group:/aws/codebuild/*")
	// glbootstrap's own read-only checks.
	s.IAM.Allow(roleARN, "ecs:DescribeClusters", "arn:aws:ecs:*:"+acct+":cluster/"+StackCluster)
	for _, a := range []string{"ecs:DescribeTaskDefinition", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcEndpoints"} {
		s.IAM.Allow(roleARN, a)
	}
	s.IAM.Allow(roleARN, "iam:GetInstanceProfile", "arn:aws:iam::"+acct+":instance-profile/*")
	s.IAM.Allow(roleARN, "iam:SimulatePrincipalPolicy", roleARN)
}
