package testenv

import "os"

// BuildStack is every stand-in `glbootstrap codebuild run` and `image push` talk to: S3
// (gofakes3, multipart), CodeBuild, CloudWatch Logs, ECR's DescribeImages and an OCI registry
// that records pushes in the ECR stand-in.
type BuildStack struct {
	S3        *S3
	Logs      *Logs
	CodeBuild *CodeBuild
	ECR       *ECR
	Registry  *Registry
}

// BuildStackBucket is the bucket StartBuildStack creates.
const BuildStackBucket = "glbootstrap-codebuild-sources"

// BuildStackAWSSecretKey is AWS_SECRET_ACCESS_KEY in BuildStack.Env.
const BuildStackAWSSecretKey = "seeded-build-aws-secret-access-key-0001"

// Secrets returns the secrets glbootstrap is handed when it runs against the stack (see Leaks).
func (s *BuildStack) Secrets() []Secret {
	return []Secret{{Source: "AWS_SECRET_ACCESS_KEY", Value: BuildStackAWSSecretKey}}
}

// StartBuildStack starts the stand-ins, with log pages of logPage events (0: CloudWatch's
// maximum) and BuildStackBucket created. Close it when done.
func StartBuildStack(logPage int) *BuildStack {
	s := &BuildStack{S3: NewS3(), Logs: NewLogs(logPage), ECR: NewECR()}
	s.CodeBuild = NewCodeBuild(s.Logs)
	s.Registry = NewRegistry(s.ECR)
	s.S3.CreateBucket(BuildStackBucket)
	return s
}

// Close stops every stand-in.
func (s *BuildStack) Close() {
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
func (s *BuildStack) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_S3":              s.S3.URL(),
		"AWS_ENDPOINT_URL_CODEBUILD":       s.CodeBuild.URL(),
		"AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": s.Logs.URL(),
		"AWS_ENDPOINT_URL_ECR":             s.ECR.URL(),
		"AWS_ENDPOINT_URL":                 "",
		"AWS_ACCESS_KEY_ID":                "AKIDGLBOOTSTRAPTEST",
		"AWS_SECRET_ACCESS_KEY":            BuildStackAWSSecretKey,
		"AWS_SESSION_TOKEN":                "",
		"AWS_PROFILE":                      "",
		"AWS_REGION":                       "us-east-2",
		"AWS_CONFIG_FILE":                  os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE":      os.DevNull,
		"AWS_EC2_METADATA_DISABLED":        "true",
		"AWS_MAX_ATTEMPTS":                 "1",
	}
}
