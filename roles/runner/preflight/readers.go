package preflight

import (
	"context"
	"errors"

	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/glbootstrap/glbootstrap/internal/aws/ec2"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecr"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecs"
	"github.com/glbootstrap/glbootstrap/internal/aws/iam"
	"github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
	"github.com/glbootstrap/glbootstrap/internal/role"
)

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
	Simulate(ctx context.Context, principal string, ask iampolicy.Ask) ([]iamtypes.EvaluationResult, error)
}

// S3Reader tells where a bucket lives (GetBucketLocation; errors wrap s3.ErrNotFound for a
// missing bucket, s3.ErrAccessDenied).
type S3Reader interface {
	BucketRegion(ctx context.Context, bucket string) (string, error)
}

// Readers are the read-only AWS APIs of the Fargate region the preflight checks use.
type Readers struct {
	ECS ECSReader
	EC2 EC2Reader
	ECR ECRReader
	IAM IAMReader
	// S3 may be nil: the cache check is then skipped.
	S3 S3Reader
}

// ReadersFor returns the read-only ECS, EC2, ECR and IAM clients of region (the Fargate region,
// which may differ from the front's), sharing the AWS configuration of a.
func ReadersFor(a role.AWS, region string) (Readers, error) {
	cfg, err := a.Config(region)
	if err != nil {
		return Readers{}, err
	}
	if cfg.Region == "" {
		return Readers{}, errors.New("no AWS region for the preflight checks: set fargate.region")
	}
	return Readers{ECS: ecs.New(cfg), EC2: ec2.New(cfg), ECR: ecr.New(cfg), IAM: iam.New(cfg), S3: s3.New(cfg)}, nil
}

func isDenied(err error) bool {
	return errors.Is(err, ecs.ErrAccessDenied) || errors.Is(err, ec2.ErrAccessDenied) ||
		errors.Is(err, ecr.ErrAccessDenied) || errors.Is(err, iam.ErrAccessDenied) || errors.Is(err, s3.ErrAccessDenied)
}

func isNotFound(err error) bool {
	return errors.Is(err, ecs.ErrNotFound) || errors.Is(err, ec2.ErrNotFound) ||
		errors.Is(err, ecr.ErrNotFound) || errors.Is(err, iam.ErrNotFound) || errors.Is(err, s3.ErrNotFound)
}
