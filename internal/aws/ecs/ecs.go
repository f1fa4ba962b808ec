// Package ecs reads the ECS resources GitLab's Fargate driver uses (the cluster and the
// coordinator's task definition) for glbootstrap's preflight checks. Read-only: Describe* calls
// only.
package ecs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/glbootstrap/glbootstrap/internal/aws/awserr"
)

// Sentinels for callers; match them with errors.Is. The SDK's error stays in the chain.
var (
	// ErrNotFound: the cluster or task definition does not exist (or is not visible in the region).
	ErrNotFound = errors.New("ECS resource not found")
	// ErrAccessDenied: IAM refused the Describe* call (AccessDeniedException).
	ErrAccessDenied = errors.New("access to ECS denied")
)

// Client is a thin wrapper over the SDK's ECS client.
type Client struct {
	api    *ecs.Client
	region string
}

// New returns a Client for cfg (see awscfg.Load); the endpoint follows the SDK's standard
// settings, e.g. AWS_ENDPOINT_URL_ECS.
func New(cfg aws.Config) *Client {
	return &Client{api: ecs.NewFromConfig(cfg), region: cfg.Region}
}

// Cluster describes one cluster by name or ARN (DescribeClusters). A cluster ECS reports as
// MISSING is ErrNotFound; an INACTIVE (deleted) cluster is returned as is, with its Status.
func (c *Client) Cluster(ctx context.Context, name string) (types.Cluster, error) {
	out, err := c.api.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{name}})
	if err != nil {
		return types.Cluster{}, c.mapErr("ecs:DescribeClusters", "cluster "+name, err)
	}
	for _, cl := range out.Clusters {
		return cl, nil
	}
	reason := "MISSING"
	for _, f := range out.Failures {
		reason = aws.ToString(f.Reason)
	}
	return types.Cluster{}, &Error{Sentinel: ErrNotFound,
		Msg: fmt.Sprintf("ECS cluster %s does not exist in %s (%s)", name, c.region, reason)}
}

// TaskDefinition describes a task definition given as family (the latest ACTIVE revision),
// family:revision or ARN (DescribeTaskDefinition). One that does not exist is ErrNotFound.
func (c *Client) TaskDefinition(ctx context.Context, name string) (types.TaskDefinition, error) {
	out, err := c.api.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(name)})
	if err != nil {
		var ce *types.ClientException
		// ECS answers ClientException "Unable to describe task definition." for a missing one.
		if errors.As(err, &ce) && strings.Contains(strings.ToLower(ce.ErrorMessage()), "unable to describe task definition") {
			return types.TaskDefinition{}, &Error{Sentinel: ErrNotFound, Cause: err,
				Msg: fmt.Sprintf("ECS task definition %s does not exist in %s", name, c.region)}
		}
		return types.TaskDefinition{}, c.mapErr("ecs:DescribeTaskDefinition", "task definition "+name, err)
	}
	if out.TaskDefinition == nil {
		return types.TaskDefinition{}, fmt.Errorf("describing task definition %s: the answer has no task definition", name)
	}
	return *out.TaskDefinition, nil
}

// Error is a mapped ECS failure: Error() says what failed, Unwrap gives the sentinel and the
// SDK's error.
type Error = awserr.Error

func (c *Client) mapErr(action, what string, err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode() == "AccessDeniedException" || apiErr.ErrorCode() == "AccessDenied") {
		return &Error{Sentinel: ErrAccessDenied, Cause: err,
			Msg: fmt.Sprintf("reading %s: not allowed to call %s (AWS: %s)", what, action, apiErr.ErrorMessage())}
	}
	return fmt.Errorf("reading %s (%s): %w", what, action, err)
}
