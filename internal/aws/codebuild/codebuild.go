// Package codebuild starts, reads and stops AWS CodeBuild builds for glbootstrap (StartBuild,
// BatchGetBuilds, StopBuild). Errors are mapped to what the operator must do; throttling is left
// recognisable (IsThrottle) so a caller that polls can back off instead of failing.
package codebuild

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/codebuild"
	"github.com/aws/aws-sdk-go-v2/service/codebuild/types"
	"github.com/aws/smithy-go"

	"github.com/glbootstrap/glbootstrap/internal/aws/awserr"
)

// Sentinels for callers; match them with errors.Is. The SDK's error stays in the chain.
var (
	// ErrNotFound: the project (StartBuild) or the build (BatchGetBuilds, StopBuild) does not exist.
	ErrNotFound = errors.New("CodeBuild resource not found")
	// ErrAccessDenied: IAM refused the call.
	ErrAccessDenied = errors.New("access to CodeBuild denied")
)

// Build statuses (BatchGetBuilds buildStatus). Only SUCCEEDED is success.
const (
	StatusInProgress = string(types.StatusTypeInProgress)
	StatusSucceeded  = string(types.StatusTypeSucceeded)
	StatusFailed     = string(types.StatusTypeFailed)
	StatusFault      = string(types.StatusTypeFault)
	StatusTimedOut   = string(types.StatusTypeTimedOut)
	StatusStopped    = string(types.StatusTypeStopped)
)

// Client is a thin wrapper over the SDK's CodeBuild client.
type Client struct {
	api    *codebuild.Client
	region string
}

// New returns a Client for cfg (see awscfg.Load). The endpoint follows the SDK's standard
// settings, e.g. AWS_ENDPOINT_URL_CODEBUILD.
func New(cfg aws.Config) *Client {
	return &Client{api: codebuild.NewFromConfig(cfg), region: cfg.Region}
}

// Start describes one StartBuild call.
type Start struct {
	Project string
	// Bucket and Key locate the source zip; they become sourceTypeOverride S3 and
	// sourceLocationOverride bucket/key.
	Bucket, Key string
	// Env are environmentVariablesOverride, all PLAINTEXT, in order.
	Env []EnvVar
	// Buildspec, when not empty, is buildspecOverride (the YAML text itself).
	Buildspec string
	// TimeoutMinutes, when > 0, is timeoutInMinutesOverride (CodeBuild allows 5..2160).
	TimeoutMinutes int32
}

// EnvVar is one build environment variable.
type EnvVar struct{ Name, Value string }

// Build is what glbootstrap reads of a build (BatchGetBuilds).
type Build struct {
	ID     string
	Number int64
	// Status is buildStatus: IN_PROGRESS, SUCCEEDED, FAILED, FAULT, TIMED_OUT or STOPPED.
	Status string
	// CurrentPhase is currentPhase (SUBMITTED, QUEUED, PROVISIONING, DOWNLOAD_SOURCE, INSTALL,
	// PRE_BUILD, BUILD, POST_BUILD, UPLOAD_ARTIFACTS, FINALIZING, COMPLETED).
	CurrentPhase string
	Phases       []Phase
	// LogGroup and LogStream are logs.groupName and logs.streamName: where CloudWatch Logs holds
	// the build's output. Empty until the build is provisioned, or when the project logs to S3
	// only.
	LogGroup, LogStream string
	// DeepLink is the console URL of the logs, when CodeBuild gives one.
	DeepLink string
	Complete bool
}

// Phase is one entry of a build's phases.
type Phase struct {
	Type, Status string
	Duration     time.Duration
	// Contexts are the phase's statusCode: message pairs, e.g. "COMMAND_EXECUTION_ERROR: Error
	// while executing command: docker build .... Reason: exit status 1".
	Contexts []string
}

// Done reports whether the build has left IN_PROGRESS.
func (b Build) Done() bool { return b.Status != "" && b.Status != StatusInProgress }

// Succeeded reports whether the build ended SUCCEEDED, the only status that is success.
func (b Build) Succeeded() bool { return b.Status == StatusSucceeded }

// FailedPhase returns the last phase whose status is neither SUCCEEDED nor IN_PROGRESS (where the
// build went wrong) and whether there is one.
func (b Build) FailedPhase() (Phase, bool) {
	for i := len(b.Phases) - 1; i >= 0; i-- {
		p := b.Phases[i]
		if p.Status != "" && p.Status != StatusSucceeded && p.Status != StatusInProgress {
			return p, true
		}
	}
	return Phase{}, false
}

// StartBuild starts a build of s.Project from s3://s.Bucket/s.Key and returns it as StartBuild
// answers (IN_PROGRESS, usually without logs yet).
func (c *Client) StartBuild(ctx context.Context, s Start) (Build, error) {
	in := &codebuild.StartBuildInput{
		ProjectName:            aws.String(s.Project),
		SourceTypeOverride:     types.SourceTypeS3,
		SourceLocationOverride: aws.String(s.Bucket + "/" + s.Key),
	}
	for _, e := range s.Env {
		in.EnvironmentVariablesOverride = append(in.EnvironmentVariablesOverride, types.EnvironmentVariable{
			Name: aws.String(e.Name), Value: aws.String(e.Value), Type: types.EnvironmentVariableTypePlaintext,
		})
	}
	if s.Buildspec != "" {
		in.BuildspecOverride = aws.String(s.Buildspec)
	}
	if s.TimeoutMinutes > 0 {
		in.TimeoutInMinutesOverride = aws.Int32(s.TimeoutMinutes)
	}
	out, err := c.api.StartBuild(ctx, in)
	if err != nil {
		return Build{}, c.mapErr("starting a build of CodeBuild project "+s.Project, "codebuild:StartBuild", s.Project, err)
	}
	if out.Build == nil {
		return Build{}, fmt.Errorf("starting a build of CodeBuild project %s: the answer has no build", s.Project)
	}
	return fromSDK(out.Build), nil
}

// Get reads build id (BatchGetBuilds). A build CodeBuild does not know is ErrNotFound.
func (c *Client) Get(ctx context.Context, id string) (Build, error) {
	out, err := c.api.BatchGetBuilds(ctx, &codebuild.BatchGetBuildsInput{Ids: []string{id}})
	if err != nil {
		return Build{}, c.mapErr("reading CodeBuild build "+id, "codebuild:BatchGetBuilds", projectOf(id), err)
	}
	for _, b := range out.Builds {
		if aws.ToString(b.Id) == id || aws.ToString(b.Arn) == id {
			return fromSDK(&b), nil
		}
	}
	return Build{}, fmt.Errorf("reading CodeBuild build %s: %w", id, ErrNotFound)
}

// Stop stops build id (StopBuild) and returns it as CodeBuild answers; stopping takes effect
// asynchronously (the status becomes STOPPED later).
func (c *Client) Stop(ctx context.Context, id string) (Build, error) {
	out, err := c.api.StopBuild(ctx, &codebuild.StopBuildInput{Id: aws.String(id)})
	if err != nil {
		return Build{}, c.mapErr("stopping CodeBuild build "+id, "codebuild:StopBuild", projectOf(id), err)
	}
	if out.Build == nil {
		return Build{ID: id}, nil
	}
	return fromSDK(out.Build), nil
}

// IsThrottle reports whether err is AWS throttling (ThrottlingException and its kin), after the
// SDK's own retries gave up.
func IsThrottle(err error) bool {
	return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
}

// projectOf is the project part of a build id (project:uuid).
func projectOf(id string) string {
	for i := 0; i < len(id); i++ {
		if id[i] == ':' {
			return id[:i]
		}
	}
	return id
}

func fromSDK(b *types.Build) Build {
	out := Build{
		ID:           aws.ToString(b.Id),
		Number:       aws.ToInt64(b.BuildNumber),
		Status:       string(b.BuildStatus),
		CurrentPhase: aws.ToString(b.CurrentPhase),
		Complete:     b.BuildComplete,
	}
	if l := b.Logs; l != nil {
		out.LogGroup, out.LogStream, out.DeepLink = aws.ToString(l.GroupName), aws.ToString(l.StreamName), aws.ToString(l.DeepLink)
	}
	for _, p := range b.Phases {
		ph := Phase{Type: string(p.PhaseType), Status: string(p.PhaseStatus),
			Duration: time.Duration(aws.ToInt64(p.DurationInSeconds)) * time.Second}
		for _, c := range p.Contexts {
			code, msg := aws.ToString(c.StatusCode), aws.ToString(c.Message)
			switch {
			case code == "" && msg == "":
				continue
			case code == "":
				ph.Contexts = append(ph.Contexts, msg)
			case msg == "":
				ph.Contexts = append(ph.Contexts, code)
			default:
				ph.Contexts = append(ph.Contexts, code+": "+msg)
			}
		}
		out.Phases = append(out.Phases, ph)
	}
	return out
}

// Error is a mapped CodeBuild failure: Error() is the advice, Unwrap gives the sentinel and the
// SDK's error.
type Error = awserr.Error

func (c *Client) mapErr(doing, action, project string, err error) error {
	var nf *types.ResourceNotFoundException
	var apiErr smithy.APIError
	switch {
	case errors.As(err, &nf):
		return &Error{Sentinel: ErrNotFound, Cause: err,
			Msg: fmt.Sprintf("%s: %s: check the project name (aws codebuild list-projects --region %s)", doing, nf.ErrorMessage(), c.region)}
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "AccessDeniedException":
		return &Error{Sentinel: ErrAccessDenied, Cause: err,
			Msg: fmt.Sprintf("%s: access denied: the caller's role needs %s on arn:aws:codebuild:%s:<account-id>:project/%s (AWS: %s)",
				doing, action, c.region, project, apiErr.ErrorMessage())}
	}
	return fmt.Errorf("%s: %w", doing, err)
}
