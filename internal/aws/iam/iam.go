// Package iam finds the front's instance role and asks IAM's policy simulator what it may do,
// for glbootstrap's preflight checks. Read-only: instance metadata, GetInstanceProfile and
// SimulatePrincipalPolicy.
package iam

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/glbootstrap/glbootstrap/internal/aws/awserr"
	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
)

// Sentinels for callers; match them with errors.Is. The SDK's error stays in the chain.
var (
	// ErrAccessDenied: IAM refused iam:GetInstanceProfile or iam:SimulatePrincipalPolicy
	// (AccessDenied).
	ErrAccessDenied = errors.New("access to IAM denied")
	// ErrNotFound: the instance profile named by instance metadata does not exist (NoSuchEntity).
	ErrNotFound = errors.New("IAM entity not found")
	// ErrNoInstanceProfile: instance metadata has no iam/info: the instance runs without an
	// instance profile, so nothing on it has AWS credentials from EC2.
	ErrNoInstanceProfile = errors.New("the instance has no instance profile")
)

// imdsTimeout bounds reading iam/info; off EC2 the metadata service does not answer.
const imdsTimeout = 5 * time.Second

// Client is a thin wrapper over the SDK's IAM client (and the instance metadata client for
// iam/info).
type Client struct {
	api  *iam.Client
	imds *imds.Client
}

// New returns a Client for cfg (see awscfg.Load); the endpoints follow the SDK's standard
// settings, e.g. AWS_ENDPOINT_URL_IAM and AWS_EC2_METADATA_SERVICE_ENDPOINT.
func New(cfg aws.Config) *Client {
	return &Client{api: iam.NewFromConfig(cfg), imds: imds.NewFromConfig(cfg)}
}

// InstanceRole returns the ARN of the role in this instance's instance profile: the profile
// from instance metadata iam/info (InstanceProfileArn), its role from iam:GetInstanceProfile.
// Errors wrap ErrNoInstanceProfile, ErrAccessDenied or ErrNotFound.
func (c *Client) InstanceRole(ctx context.Context) (string, error) {
	ictx, cancel := context.WithTimeout(ctx, imdsTimeout)
	defer cancel()
	info, err := c.imds.GetIAMInfo(ictx, &imds.GetIAMInfoInput{})
	if err != nil {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == 404 {
			return "", &Error{Sentinel: ErrNoInstanceProfile, Cause: err, Msg: "instance metadata has no iam/info: the instance has no instance profile"}
		}
		return "", fmt.Errorf("reading iam/info from instance metadata: %w", err)
	}
	profileARN := info.InstanceProfileArn
	// arn:aws:iam::ACCOUNT:instance-profile[/PATH]/NAME: the name is the last segment.
	name := profileARN[strings.LastIndex(profileARN, "/")+1:]
	out, err := c.api.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
	if err != nil {
		return "", mapErr("iam:GetInstanceProfile", "instance profile "+name, err)
	}
	if out.InstanceProfile == nil || len(out.InstanceProfile.Roles) == 0 {
		return "", &Error{Sentinel: ErrNoInstanceProfile, Msg: fmt.Sprintf("instance profile %s holds no role", profileARN)}
	}
	return aws.ToString(out.InstanceProfile.Roles[0].Arn), nil
}

// Simulate asks IAM's policy simulator whether principal (a role ARN) may perform a.Action on
// each of a.Resources (iam:SimulatePrincipalPolicy), with a.Context as the request's context
// entries (the statement's condition keys, so a condition-scoped grant reads as allowed),
// following pagination. The results carry EvalDecision allowed, implicitDeny or explicitDeny per
// resource.
func (c *Client) Simulate(ctx context.Context, principal string, a iampolicy.Ask) ([]types.EvaluationResult, error) {
	var all []types.EvaluationResult
	in := &iam.SimulatePrincipalPolicyInput{
		PolicySourceArn: aws.String(principal),
		ActionNames:     []string{a.Action},
		ResourceArns:    a.Resources,
	}
	for _, e := range a.Context {
		in.ContextEntries = append(in.ContextEntries, types.ContextEntry{
			ContextKeyName: aws.String(e.Key), ContextKeyType: types.ContextKeyTypeEnum(e.Type), ContextKeyValues: e.Values})
	}
	p := iam.NewSimulatePrincipalPolicyPaginator(c.api, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr("iam:SimulatePrincipalPolicy", "what "+principal+" may do", err)
		}
		all = append(all, out.EvaluationResults...)
	}
	return all, nil
}

// Error is a mapped IAM failure: Error() says what failed, Unwrap gives the sentinel and the
// SDK's error.
type Error = awserr.Error

func mapErr(action, what string, err error) error {
	var nse *types.NoSuchEntityException
	var apiErr smithy.APIError
	switch {
	case errors.As(err, &nse):
		return &Error{Sentinel: ErrNotFound, Cause: err, Msg: fmt.Sprintf("reading %s: it does not exist (AWS: %s)", what, nse.ErrorMessage())}
	case errors.As(err, &apiErr) && (apiErr.ErrorCode() == "AccessDenied" || apiErr.ErrorCode() == "AccessDeniedException"):
		return &Error{Sentinel: ErrAccessDenied, Cause: err,
			Msg: fmt.Sprintf("reading %s: not allowed to call %s (AWS: %s)", what, action, apiErr.ErrorMessage())}
	}
	return fmt.Errorf("reading %s (%s): %w", what, action, err)
}
