package config

import (
	"regexp"
	"strings"
	"time"
)

// DefaultCoordinatorTimeout bounds one coordinator image build (upload, queue, build, push).
const DefaultCoordinatorTimeout = 60 * time.Minute

// Coordinator says where the coordinator image (the one every Fargate job runs in) is kept and
// how it is built: `glbootstrap image push` and the runner phase coordinator-image build
// templates/coordinator with CodeBuild and push it as a context-hash tag and latest.
type Coordinator struct {
	// Repository is the ECR repository URI, ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME, without a
	// tag. Required. The task definition's ci-coordinator container runs REPOSITORY:latest.
	Repository string `yaml:"repository"`
	// CodeBuildProject is the CodeBuild project that builds it (privileged mode, a role that may
	// push to Repository and read Bucket). Required.
	CodeBuildProject string `yaml:"codebuild_project"`
	// Bucket is the S3 bucket the build context is uploaded to. Required.
	Bucket string `yaml:"bucket"`
	// KeyPrefix is the key prefix of uploaded contexts; default glbootstrap/codebuild.
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds one build; default 60m.
	Timeout Duration `yaml:"timeout"`
}

func coordinatorDefaults(c *Coordinator) {
	if c.Timeout == 0 {
		c.Timeout = Duration(DefaultCoordinatorTimeout)
	}
	defaultString(&c.KeyPrefix, "glbootstrap/codebuild")
}

var (
	// ECR private repository URIs (https://docs.aws.amazon.com/AmazonECR/latest/userguide/Repositories.html).
	ecrRepoRE = regexp.MustCompile(`^\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/[a-z0-9]+(?:[._/-][a-z0-9]+)*$`)
	// CodeBuild project names: 2..255 of letters, digits, - and _, starting with a letter or digit.
	codebuildProjectRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9\-_]+$`)
)

func (c checker) coordinator(co *Coordinator) {
	switch {
	case co.Repository == "":
		c.errf("coordinator.repository", "is required: the ECR repository URI, e.g. 123456789012.dkr.ecr.us-east-2.amazonaws.com/ci-coordinator")
	case strings.Contains(co.Repository[strings.LastIndex(co.Repository, "/")+1:], ":") || strings.Contains(co.Repository, "@"):
		c.errf("coordinator.repository", "must not name a tag or digest (glbootstrap pushes latest and a context-hash tag), got %q", co.Repository)
	case !ecrRepoRE.MatchString(co.Repository):
		c.errf("coordinator.repository", "must be a private ECR repository URI ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME, got %q", co.Repository)
	}
	switch {
	case co.CodeBuildProject == "":
		c.errf("coordinator.codebuild_project", "is required: the CodeBuild project that builds the image")
	case !codebuildProjectRE.MatchString(co.CodeBuildProject) || len(co.CodeBuildProject) > 255:
		c.errf("coordinator.codebuild_project", "%q is not a CodeBuild project name (letters, digits, - and _)", co.CodeBuildProject)
	}
	switch {
	case co.Bucket == "":
		c.errf("coordinator.bucket", "is required: the S3 bucket the build context is uploaded to")
	case !validBucket(co.Bucket):
		c.errf("coordinator.bucket", "%q is not an S3 bucket name", co.Bucket)
	}
	if co.Timeout < 0 || (co.Timeout > 0 && time.Duration(co.Timeout) < time.Minute) {
		c.errf("coordinator.timeout", "must be at least 1m, got %s", co.Timeout)
	}
}
