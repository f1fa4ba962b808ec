package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/spf13/cobra"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecs"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
	"github.com/glbootstrap/glbootstrap/internal/role"
)

// lookupTimeout bounds the optional AWS look-ups of iam-policy (the instance identity document,
// the task definition), so a machine without metadata or credentials answers quickly.
const lookupTimeout = 10 * time.Second

// newIAMPolicyCmd is "glbootstrap iam-policy --role R --config SRC": the least-privilege IAM
// policy of the role's instance profile, as JSON on stdout, with notes on stderr about what the
// policy could not know. The runner's preflight asks IAM's simulator exactly this policy.
func newIAMPolicyCmd(e *env) *cobra.Command {
	var roleName, source, account, region, partition, instanceRole string
	var taskRoles []string
	cmd := &cobra.Command{
		Use:   "iam-policy --role ROLE --config SRC [--account ID --region REGION]",
		Short: "Print the least-privilege IAM policy (JSON) of the role's instance profile for this configuration",
		Long: "Print the IAM policy the role's instance profile needs for this configuration: the exact SSM parameters,\n" +
			"S3 objects and prefixes, ECS task definition and cluster, task roles to pass, CodeBuild project and ECR\n" +
			"repository, and, in statements whose Sid starts with " + iampolicy.ChecksSid + ", the read-only calls of glbootstrap's\n" +
			"own checks. The account and region come from --account and --region, else from this instance's identity\n" +
			"document (IMDSv2). The runner's task roles are looked up with ecs:DescribeTaskDefinition unless --task-role\n" +
			"gives them. Notes on stderr say what the policy could not know.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.checkCommon(roleName, source, "text"); err != nil {
				return err
			}
			e.unchanged = "" // reads only
			def, _ := e.roles.Find(roleName)
			if def.Policy == nil {
				return exitf(ExitUsage, "role %s has no instance profile policy", roleName)
			}
			ctx := cmd.Context()
			if region != "" && !config.ValidRegion(region) {
				return exitf(ExitUsage, "--region %q is not an AWS region such as us-east-2", region)
			}
			place, err := policyPlace(ctx, account, region, partition)
			if err != nil {
				return exitf(ExitUsage, "%v", err)
			}
			if region != "" && os.Getenv("AWS_REGION") == "" {
				// The configuration's ssm:/ or s3:// source is read in the host's region.
				_ = os.Setenv("AWS_REGION", place.Region)
			}
			clients := newAWSClients(ctx)
			doc, err := loadConfig(ctx, e, clients, roleName, source)
			if err != nil {
				return err
			}
			in := role.PolicyInput{Place: place, Source: absSource(source), InstanceRole: instanceRole, TaskRoles: lookupTaskRoles}
			if len(taskRoles) > 0 {
				for _, r := range taskRoles {
					if !strings.HasPrefix(r, "arn:") || !strings.Contains(r, ":role/") {
						return exitf(ExitUsage, "--task-role %q is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)", r)
					}
				}
				in.TaskRoles = func(context.Context, string, string) ([]string, error) { return taskRoles, nil }
			}
			d, err := def.Policy(ctx, doc, in)
			if err != nil {
				return exitf(ExitFailed, "building the policy: %v", err)
			}
			for _, n := range d.Notes {
				fmt.Fprintf(e.stderr, "note: %s\n", n)
			}
			if len(d.Policy.Statement) == 0 {
				// IAM refuses a policy without a statement; there is nothing to attach.
				return nil
			}
			if err := d.Policy.Check(); err != nil {
				return exitf(ExitFailed, "the %s policy is not valid IAM: %v (report this)", roleName, err)
			}
			out, err := d.Policy.JSON()
			if err != nil {
				return exitf(ExitFailed, "encoding the policy: %v", err)
			}
			_, err = e.stdout.Write(out)
			return err
		},
	}
	e.addRoleFlag(cmd, &roleName)
	addConfigFlag(cmd, &source)
	cmd.Flags().StringVar(&account, "account", "", "AWS account id of the host's resources (default: this instance's, from its identity document)")
	cmd.Flags().StringVar(&region, "region", "", "the host's region (default: AWS_REGION, else this instance's)")
	cmd.Flags().StringVar(&partition, "partition", "", "ARN partition: aws, aws-cn or aws-us-gov (default: the region's)")
	cmd.Flags().StringVar(&instanceRole, "instance-role", "", "name of the instance profile's role, to limit iam:SimulatePrincipalPolicy to it (default: every role of the account)")
	cmd.Flags().StringSliceVar(&taskRoles, "task-role", nil, "runner: the task definition's task and execution role ARNs (default: looked up with ecs:DescribeTaskDefinition)")
	return cmd
}

// policyPlace is the host's partition, account and region: the flags, else AWS_REGION, else this
// instance's identity document (IMDSv2), read only when a flag is missing.
func policyPlace(ctx context.Context, account, region, partition string) (iampolicy.Place, error) {
	if region == "" {
		region = firstNonEmptyEnv("AWS_REGION", "AWS_DEFAULT_REGION")
	}
	if account == "" || region == "" {
		doc, err := identityDocument(ctx)
		if err != nil {
			return iampolicy.Place{}, fmt.Errorf("give --account and --region: this machine's instance identity document could not be read (%v)", err)
		}
		if account == "" {
			account = doc.AccountID
		}
		if region == "" {
			region = doc.Region
		}
	}
	p := iampolicy.Place{Partition: partition, Region: region, Account: account}
	if p.Partition == "" {
		p.Partition = iampolicy.PartitionOf(region)
	}
	if err := p.Check(); err != nil {
		return p, err
	}
	return p, nil
}

func firstNonEmptyEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// identityDocument reads dynamic/instance-identity/document with IMDSv2 (the SDK honours
// AWS_EC2_METADATA_SERVICE_ENDPOINT and AWS_EC2_METADATA_DISABLED).
func identityDocument(ctx context.Context) (imds.InstanceIdentityDocument, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	c := imds.New(imds.Options{EnableFallback: aws.FalseTernary})
	out, err := c.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		return imds.InstanceIdentityDocument{}, err
	}
	return out.InstanceIdentityDocument, nil
}

// lookupTaskRoles reads a task definition's task and execution roles with
// ecs:DescribeTaskDefinition in region.
func lookupTaskRoles(ctx context.Context, region, taskDefinition string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	cfg, err := awscfg.Load(ctx, region)
	if err != nil {
		return nil, err
	}
	td, err := ecs.New(cfg).TaskDefinition(ctx, taskDefinition)
	if err != nil {
		return nil, err
	}
	var roles []string
	for _, r := range []string{aws.ToString(td.TaskRoleArn), aws.ToString(td.ExecutionRoleArn)} {
		if r != "" && (len(roles) == 0 || roles[0] != r) {
			roles = append(roles, r)
		}
	}
	if roles == nil {
		roles = []string{} // known: nothing to pass
	}
	return roles, nil
}
