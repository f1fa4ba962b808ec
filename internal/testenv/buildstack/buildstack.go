// Package buildstack holds the stand-ins `glbootstrap codebuild run` and `image push` talk to. It
// is apart from testenv so that what imports testenv (the demo, glb-demo) does not compile and
// link go-containerregistry and what it pulls in (docker/cli's config, klauspost/compress): the
// demo never pushes an image.
package buildstack

import (
	"os"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// Stack is every stand-in `glbootstrap codebuild run` and `image push` talk to: S3 (gofakes3,
// multipart), CodeBuild, CloudWatch Logs, ECR's DescribeImages and an OCI registry that records
// pushes in the ECR stand-in.
type Stack struct {
	S3        *testenv.S3
	Logs      *testenv.Logs
	CodeBuild *testenv.CodeBuild
	ECR       *testenv.ECR
	Registry  *Registry
}

// Bucket is the bucket Start creates.
const Bucket = "glbootstrap-codebuild-sources"

// AWSSecretKey is AWS_SECRET_ACCESS_KEY in Stack.Env.
const AWSSecretKey = "seeded-build-aws-secret-access-key-0001"

// Secrets returns the secrets glbootstrap is handed when it runs against the stack (see
// testenv.Leaks).
func (s *Stack) Secrets() []testenv.Secret {
	return []testenv.Secret{{Source: "AWS_SECRET_ACCESS_KEY", Value: AWSSecretKey}}
}

// Start starts the stand-ins, with log pages of logPage events (0: CloudWatch's maximum) and
// Bucket created. Close it when done.
func Start(logPage int) *Stack {
	s := &Stack{S3: testenv.NewS3(), Logs: testenv.NewLogs(logPage), ECR: testenv.NewECR()}
	s.CodeBuild = testenv.NewCodeBuild(s.Logs)
	s.Registry = NewRegistry(s.ECR)
	s.S3.CreateBucket(Bucket)
	return s
}

// Close stops every stand-in.
func (s *Stack) Close() {
	s.S3.Close()
	s.Logs.Close()
	s.CodeBuild.Close()
	s.ECR.Close()
	s.Registry.Close()
}

// Env is the environment pointing the AWS SDK at the stack through its standard variables only,
// with static credentials, region us-east-2, no shared config and no instance metadata.
// AWS_MAX_ATTEMPTS=1 turns the SDK's own retries off so glbootstrap's throttling backoff is what
// a test sees.
func (s *Stack) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_S3":              s.S3.URL(),
		"AWS_ENDPOINT_URL_CODEBUILD":       s.CodeBuild.URL(),
		"AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": s.Logs.URL(),
		"AWS_ENDPOINT_URL_ECR":             s.ECR.URL(),
		"AWS_ENDPOINT_URL":                 "",
		"AWS_ACCESS_KEY_ID":                "AKIDGLBOOTSTRAPTEST",
		"AWS_SECRET_ACCESS_KEY":            AWSSecretKey,
		"AWS_SESSION_TOKEN":                "",
		"AWS_PROFILE":                      "",
		"AWS_REGION":                       "us-east-2",
		"AWS_CONFIG_FILE":                  os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE":      os.DevNull,
		"AWS_EC2_METADATA_DISABLED":        "true",
		"AWS_MAX_ATTEMPTS":                 "1",
	}
}
