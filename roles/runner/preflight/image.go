package preflight

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/glbootstrap/glbootstrap/internal/aws/ecr"
)

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
	d, err := in.AWS.ECR.Describe(ctx, img)
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
