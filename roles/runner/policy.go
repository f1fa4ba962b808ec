package runner

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
	"github.com/glbootstrap/glbootstrap/internal/role"
)

// The runner front's instance profile. Every AWS call the front makes at runtime is granted here
// and nothing else: glbootstrap's apply (the configuration and the secrets from SSM, the driver
// from an s3:// mirror, the coordinator image through CodeBuild and ECR), GitLab's Fargate driver
// (RunTask, DescribeTasks, StopTask, PassRole, and DescribeNetworkInterfaces with public IPs;
// see ../shared/consumers/README.md for the calls the real driver makes) and, in statements whose
// Sid starts with iampolicy.ChecksSid, the read-only calls of glbootstrap's own preflight checks.
// The preflight asks IAM's simulator exactly these statements (preflight/iam.go).
//
// Actions, resource types and condition keys: Service Authorization Reference,
// ECS https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerservice.html
// (RunTask on task-definition/FAMILY:REVISION with ecs:cluster; DescribeTasks and StopTask on
// task/CLUSTER/ID with ecs:cluster; DescribeClusters on cluster/NAME; DescribeTaskDefinition on
// "*" only), IAM https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
// (PassRole with iam:PassedToService), EC2 https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
// (Describe* on "*" only), ECR https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html
// (repository/NAME), CodeBuild https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscodebuild.html
// (project/NAME), CloudWatch Logs https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatchlogs.html
// (GetLogEvents on the log group's streams).

// PolicyFacts are what the runner's policy reads besides its configuration.
type PolicyFacts struct {
	// Place is the front's partition, account and region (its SSM parameters, the coordinator's
	// CodeBuild project and bucket).
	Place iampolicy.Place
	// FargateRegion is the tasks' region: fargate.region, else the front's.
	FargateRegion string
	// Source is the --config value (ssm:/NAME and s3://BUCKET/KEY are read at every apply).
	Source string
	// InstanceRole is the front role's name ("" when unknown).
	InstanceRole string
	// TaskRoles are the task definition's task and execution role ARNs; nil when unknown (a
	// placeholder is printed and a note says so), empty when it has none.
	TaskRoles []string
}

// policy is the runner front's least-privilege policy for cfg (valid, defaults filled).
func policy(cfg *Config, f PolicyFacts) iampolicy.Document {
	p := f.Place
	fp := p.In(f.FargateRegion)
	if cfg.Fargate != nil && strings.HasPrefix(cfg.Fargate.Cluster, "arn:") {
		// The cluster's ARN places the tasks and the task definition: its partition, region
		// and account.
		if parts := strings.SplitN(cfg.Fargate.Cluster, ":", 6); len(parts) == 6 {
			fp = iampolicy.Place{Partition: parts[1], Region: parts[3], Account: parts[4]}
		}
	}
	var st []iampolicy.Statement
	var notes []string

	params := []string{}
	objects := []string{}
	if name, ok := strings.CutPrefix(f.Source, "ssm:"); ok {
		params = append(params, p.SSMParameter(name))
	}
	if b, k, ok := s3Source(f.Source); ok {
		objects = append(objects, p.S3Object(b, k))
	}
	if cfg.GitLab.PrivateURLParameter != "" {
		params = append(params, p.SSMParameter(cfg.GitLab.PrivateURLParameter))
	}
	if r := cfg.Runner; r != nil {
		for _, name := range []string{r.TokenParameter, r.RegistrationTokenParameter} {
			if name != "" {
				params = append(params, p.SSMParameter(name))
			}
		}
		if r.Create != nil {
			params = append(params, p.SSMParameter(r.Create.AccessTokenParameter))
		}
	}
	if len(params) > 0 {
		st = append(st, iampolicy.Allow("ReadParameters", []string{"ssm:GetParameter"}, params))
		notes = append(notes, ssmKMSNote)
	}
	if cfg.Fargate != nil {
		if b, k, ok := s3Source(cfg.Fargate.Driver.URL); ok {
			objects = append(objects, p.S3Object(b, k))
		}
	}
	if len(objects) > 0 {
		st = append(st, iampolicy.Allow("ReadObjects", []string{"s3:GetObject"}, objects))
	}

	if fg := cfg.Fargate; fg != nil {
		cluster := clusterARN(fp, fg.Cluster)
		st = append(st,
			iampolicy.Allow("RunCoordinatorTask", []string{"ecs:RunTask"}, []string{taskDefinitionARN(fp, fg.TaskDefinition)}).
				When("ArnEquals", "ecs:cluster", cluster),
			iampolicy.Allow("ManageCoordinatorTasks", []string{"ecs:DescribeTasks", "ecs:StopTask"},
				[]string{fp.ARN("ecs", "task/"+afterLast(fg.Cluster, "/")+"/*")}).
				When("ArnEquals", "ecs:cluster", cluster))
		roles := f.TaskRoles
		if roles == nil {
			roles = []string{p.IAMRole("REPLACE-WITH-THE-ROLES-OF-TASK-DEFINITION-" + familyOf(fg.TaskDefinition))}
			notes = append(notes, fmt.Sprintf("the task and execution roles of task definition %s could not be looked up: "+
				"replace the placeholder in PassTaskRoles with them (aws ecs describe-task-definition --task-definition %s --query 'taskDefinition.[taskRoleArn,executionRoleArn]'), "+
				"or run iam-policy where AWS credentials may ecs:DescribeTaskDefinition, or give --task-role", fg.TaskDefinition, fg.TaskDefinition))
		}
		if len(roles) > 0 { // none: the task definition has neither a task nor an execution role
			st = append(st, iampolicy.Allow("PassTaskRoles", []string{"iam:PassRole"}, roles).
				When("StringEquals", "iam:PassedToService", "ecs-tasks.amazonaws.com"))
		}
		if fg.EnablePublicIP {
			// The driver reads the task's public address from its network interface.
			st = append(st, iampolicy.Allow("FindTaskPublicIP", []string{"ec2:DescribeNetworkInterfaces"}, []string{"*"}))
		}
	}

	if co := cfg.Coordinator; co != nil {
		repo := ecrRepositoryARN(p, co.Repository)
		st = append(st,
			iampolicy.Allow("CoordinatorImage", []string{"ecr:DescribeImages"}, []string{repo}),
			iampolicy.Allow("CoordinatorBuild", []string{"codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"},
				[]string{p.ARN("codebuild", "project/"+co.CodeBuildProject)}),
			// internal/codebuild uploads the context as KeyPrefix/Project/<time>-<random>.zip.
			iampolicy.Allow("CoordinatorBuildSource", []string{"s3:AbortMultipartUpload", "s3:PutObject"},
				[]string{p.S3Object(co.Bucket, strings.Trim(co.KeyPrefix, "/")+"/"+co.CodeBuildProject+"/*")}),
			// CodeBuild's default log group is /aws/codebuild/<project>; GROUP:* covers the group
			// and its streams ("Overview of managing access permissions to your CloudWatch Logs
			// resources": the ARN with the trailing :* is the one for IAM policies,
			// https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/iam-access-control-overview-cwl.html).
			iampolicy.Allow("CoordinatorBuildLogs", []string{"logs:GetLogEvents"},
				[]string{p.ARN("logs", "log-group:/aws/codebuild/"+co.CodeBuildProject+":*")}))
		notes = append(notes, fmt.Sprintf("CoordinatorBuildLogs assumes project %s logs to its default CloudWatch Logs group /aws/codebuild/%s; with another group, grant logs:GetLogEvents on it instead (without it the build's output is not shown, the build still runs)", co.CodeBuildProject, co.CodeBuildProject))
	}
	st = append(st, cacheStatements(cfg, p)...)

	if fg := cfg.Fargate; fg != nil {
		st = append(st,
			iampolicy.Allow(iampolicy.ChecksSid+"Cluster", []string{"ecs:DescribeClusters"}, []string{clusterARN(fp, fg.Cluster)}),
			iampolicy.Allow(iampolicy.ChecksSid+"Describe", []string{"ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups",
				"ec2:DescribeSubnets", "ec2:DescribeVpcEndpoints", "ecs:DescribeTaskDefinition"}, []string{"*"}))
	}
	roleName := f.InstanceRole
	if roleName == "" {
		roleName = "*"
		notes = append(notes, "GlbootstrapChecksIAM lets the front simulate every role of the account (read-only) because its own role's name is not known here: give --instance-role NAME to narrow it")
	}
	st = append(st, iampolicy.Allow(iampolicy.ChecksSid+"IAM", []string{"iam:GetInstanceProfile"}, []string{p.IAMInstanceProfile("*")}),
		iampolicy.Allow(iampolicy.ChecksSid+"Simulate", []string{"iam:SimulatePrincipalPolicy"}, []string{p.IAMRole(roleName)}))
	if cfg.Coordinator == nil {
		notes = append(notes, "without a coordinator section the preflight's image check may not read the coordinator image in ECR (it warns); grant ecr:DescribeImages on its repository to let it")
	}
	return iampolicy.Document{Policy: iampolicy.New(st...), Notes: notes}
}

// cacheStatements grant runner.cache's S3 objects: the front presigns the tasks' cache URLs
// (GET to extract, PUT to archive) with its instance profile, so the profile itself must be
// allowed both. gitlab-runner keys the objects under Path (runner/<runner>/project/<id>/<key>,
// or project/<id>/<key> when Shared: cache/s3v2 and docs.gitlab.com/runner/configuration/
// advanced-configuration/#the-runnerscache-section).
func cacheStatements(cfg *Config, p iampolicy.Place) []iampolicy.Statement {
	c := cfg.Runner.Cache
	if c == nil || c.Bucket == "" {
		return nil
	}
	prefix := strings.Trim(c.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	return []iampolicy.Statement{iampolicy.Allow("RunnerCache", []string{"s3:GetObject", "s3:PutObject"}, []string{p.S3Object(c.Bucket, prefix+"*")})}
}

// ssmKMSNote says how SecureStrings are decrypted: the configuration names no KMS key.
const ssmKMSNote = "no kms:Decrypt is granted for the SecureString parameters: the AWS managed key aws/ssm " +
	"already lets every principal of the account decrypt through SSM " +
	"(https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-restrict-decryption.html); " +
	"if they are encrypted with a customer managed key, add kms:Decrypt on that key"

// s3Source splits s3://BUCKET/KEY.
func s3Source(src string) (bucket, key string, ok bool) {
	if !strings.HasPrefix(src, "s3://") {
		return "", "", false
	}
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return "", "", false
	}
	return u.Host, strings.TrimPrefix(u.Path, "/"), true
}

// clusterARN is fargate.cluster as an ARN: arn:P:ecs:R:A:cluster/NAME.
func clusterARN(p iampolicy.Place, cluster string) string {
	if strings.HasPrefix(cluster, "arn:") {
		return cluster
	}
	return p.ARN("ecs", "cluster/"+cluster)
}

// taskDefinitionARN is what RunTask is allowed on: the configured revision when
// fargate.task_definition names one, else every revision of the family (the driver runs the
// latest active one).
func taskDefinitionARN(p iampolicy.Place, td string) string {
	if strings.HasPrefix(td, "arn:") {
		return td
	}
	if strings.Contains(td, ":") {
		return p.ARN("ecs", "task-definition/"+td)
	}
	return p.ARN("ecs", "task-definition/"+td+":*")
}

// ecrRepositoryARN is arn:P:ecr:R:A:repository/NAME of a repository URI
// ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME, whose account and region it keeps.
func ecrRepositoryARN(p iampolicy.Place, uri string) string {
	host, name, _ := strings.Cut(uri, "/")
	labels := strings.Split(host, ".")
	if len(labels) >= 4 {
		p = iampolicy.Place{Account: labels[0], Region: labels[3]}
	}
	return p.ARN("ecr", "repository/"+name)
}

// Policy is role.Definition's Policy: the front's region is Place's; the tasks' is
// fargate.region, else the front's. The task definition's roles are looked up with in.TaskRoles.
func Policy(ctx context.Context, doc config.Document, in role.PolicyInput) (iampolicy.Document, error) {
	cfg := doc.(*Config)
	f := PolicyFacts{Place: in.Place, FargateRegion: cfg.Fargate.Region, Source: in.Source, InstanceRole: in.InstanceRole}
	var lookupErr error
	if in.TaskRoles != nil {
		f.TaskRoles, lookupErr = in.TaskRoles(ctx, in.Place.In(cfg.Fargate.Region).Region, cfg.Fargate.TaskDefinition)
	}
	doc2 := policy(cfg, f)
	if lookupErr != nil {
		doc2.Notes = append(doc2.Notes, "looking up the task definition's roles: "+lookupErr.Error())
	}
	return doc2, nil
}
