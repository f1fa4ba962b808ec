// Package ecr checks that a container image exists in Amazon ECR, for glbootstrap's preflight
// checks of the coordinator image. Read-only: DescribeImages only.
package ecr

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/smithy-go"

	"github.com/glbootstrap/glbootstrap/internal/aws/awserr"
)

// Sentinels for callers; match them with errors.Is. The SDK's error stays in the chain.
var (
	// ErrNotFound: the repository or the image does not exist (RepositoryNotFoundException,
	// ImageNotFoundException).
	ErrNotFound = errors.New("ECR image not found")
	// ErrAccessDenied: IAM refused ecr:DescribeImages (AccessDeniedException).
	ErrAccessDenied = errors.New("access to ECR denied")
)

// Image is an image reference in a private ECR registry.
type Image struct {
	Registry   string // the registry's (account's) 12-digit id
	Region     string // the registry's region, e.g. us-east-2
	Repository string // repository name, may contain slashes
	Tag        string // "latest" when the reference names neither a tag nor a digest
	Digest     string // sha256:…, when the reference pins one
}

func (i Image) String() string {
	s := i.Registry + ".dkr.ecr." + i.Region + ".amazonaws.com/" + i.Repository
	if i.Digest != "" {
		return s + "@" + i.Digest
	}
	return s + ":" + i.Tag
}

// ecrImageRE matches private ECR image references: ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]/REPO[:TAG][@DIGEST]
// (https://docs.aws.amazon.com/AmazonECR/latest/userguide/docker-pull-ecr-image.html).
var ecrImageRE = regexp.MustCompile(`^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([a-z0-9][a-z0-9._/-]*?)(?::([\w][\w.-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?$`)

// ParseImage reads an image reference; ok is false when it is not in a private ECR registry
// (Docker Hub, ECR Public, another registry).
func ParseImage(ref string) (img Image, ok bool) {
	m := ecrImageRE.FindStringSubmatch(ref)
	if m == nil {
		return Image{}, false
	}
	img = Image{Registry: m[1], Region: m[2], Repository: m[3], Tag: m[4], Digest: m[5]}
	if img.Tag == "" && img.Digest == "" {
		img.Tag = "latest"
	}
	return img, true
}

// Client is a thin wrapper over the SDK's ECR client.
type Client struct {
	api *ecr.Client
}

// New returns a Client for cfg (see awscfg.Load); the endpoint follows the SDK's standard
// settings, e.g. AWS_ENDPOINT_URL_ECR. Each call goes to the image's own region.
func New(cfg aws.Config) *Client {
	return &Client{api: ecr.NewFromConfig(cfg)}
}

// Describe returns what ECR knows of img (DescribeImages by digest when it has one, else by
// tag). A missing repository or image is ErrNotFound.
func (c *Client) Describe(ctx context.Context, img Image) (types.ImageDetail, error) {
	id := types.ImageIdentifier{}
	if img.Digest != "" {
		id.ImageDigest = aws.String(img.Digest)
	} else {
		id.ImageTag = aws.String(img.Tag)
	}
	out, err := c.api.DescribeImages(ctx, &ecr.DescribeImagesInput{
		RegistryId:     aws.String(img.Registry),
		RepositoryName: aws.String(img.Repository),
		ImageIds:       []types.ImageIdentifier{id},
	}, func(o *ecr.Options) { o.Region = img.Region })
	if err != nil {
		return types.ImageDetail{}, mapErr(img, err)
	}
	if len(out.ImageDetails) == 0 {
		return types.ImageDetail{}, &Error{Sentinel: ErrNotFound, Msg: fmt.Sprintf("image %s does not exist", img)}
	}
	return out.ImageDetails[0], nil
}

// Error is a mapped ECR failure: Error() says what failed, Unwrap gives the sentinel and the
// SDK's error.
type Error = awserr.Error

func mapErr(img Image, err error) error {
	var rnf *types.RepositoryNotFoundException
	var inf *types.ImageNotFoundException
	var apiErr smithy.APIError
	switch {
	case errors.As(err, &rnf):
		return &Error{Sentinel: ErrNotFound, Cause: err,
			Msg: fmt.Sprintf("repository %s does not exist in registry %s (%s)", img.Repository, img.Registry, img.Region)}
	case errors.As(err, &inf):
		return &Error{Sentinel: ErrNotFound, Cause: err,
			Msg: fmt.Sprintf("image %s does not exist: repository %s has no such tag or digest", img, img.Repository)}
	case errors.As(err, &apiErr) && (apiErr.ErrorCode() == "AccessDeniedException" || apiErr.ErrorCode() == "AccessDenied"):
		return &Error{Sentinel: ErrAccessDenied, Cause: err,
			Msg: fmt.Sprintf("reading image %s: not allowed to call ecr:DescribeImages (AWS: %s)", img, apiErr.ErrorMessage())}
	}
	return fmt.Errorf("reading image %s (ecr:DescribeImages): %w", img, err)
}
