package image

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/glbootstrap/glbootstrap/internal/aws/ecr"
)

// ECR is the production Registry: ECR's DescribeImages by tag.
type ECR struct{ Client *ecr.Client }

// Digest implements Registry. repository must be a private ECR URI
// (ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME); a missing repository is an error, a missing tag
// is found false.
func (e ECR) Digest(ctx context.Context, repository, tag string) (string, bool, error) {
	img, ok := ecr.ParseImage(repository + ":" + tag)
	if !ok {
		return "", false, fmt.Errorf("%s is not a private ECR repository URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME)", repository)
	}
	d, err := e.Client.Describe(ctx, img)
	if err != nil {
		if errors.Is(err, ecr.ErrNotFound) && !isRepoMissing(err) {
			return "", false, nil
		}
		return "", false, err
	}
	return aws.ToString(d.ImageDigest), true, nil
}

// isRepoMissing tells a missing repository (an error: nothing can be pushed there) from a
// missing tag.
func isRepoMissing(err error) bool {
	var rnf *types.RepositoryNotFoundException
	return errors.As(err, &rnf)
}
