// Package logs reads CloudWatch Logs log streams for glbootstrap (GetLogEvents), to follow a
// CodeBuild build's output as it is written.
package logs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/smithy-go"

	"github.com/glbootstrap/glbootstrap/internal/aws/awserr"
)

// Sentinels for callers; match them with errors.Is.
var (
	// ErrNotFound: the log group or stream does not exist (yet: CodeBuild creates the stream
	// when the build starts writing).
	ErrNotFound = errors.New("log stream not found")
	// ErrAccessDenied: IAM refused logs:GetLogEvents.
	ErrAccessDenied = errors.New("access to CloudWatch Logs denied")
)

// Client is a thin wrapper over the SDK's CloudWatch Logs client.
type Client struct {
	api *cloudwatchlogs.Client
}

// New returns a Client for cfg (see awscfg.Load). The endpoint follows the SDK's standard
// settings, e.g. AWS_ENDPOINT_URL_CLOUDWATCH_LOGS.
func New(cfg aws.Config) *Client {
	return &Client{api: cloudwatchlogs.NewFromConfig(cfg)}
}

// Event is one log event.
type Event struct {
	Time    time.Time
	Message string
}

// Page reads the events of group/stream after token (GetLogEvents, startFromHead, forward).
// token "" starts at the head of the stream. It returns the events and the token to pass next
// (nextForwardToken); CloudWatch answers the same token again when there is nothing new, so a
// caller has read everything so far when next == token.
func (c *Client) Page(ctx context.Context, group, stream, token string) (events []Event, next string, err error) {
	in := &cloudwatchlogs.GetLogEventsInput{
		LogGroupName:  aws.String(group),
		LogStreamName: aws.String(stream),
		StartFromHead: aws.Bool(true),
	}
	if token != "" {
		in.NextToken = aws.String(token)
	}
	out, err := c.api.GetLogEvents(ctx, in)
	if err != nil {
		return nil, token, mapErr(group, stream, err)
	}
	for _, e := range out.Events {
		events = append(events, Event{Time: time.UnixMilli(aws.ToInt64(e.Timestamp)), Message: aws.ToString(e.Message)})
	}
	return events, aws.ToString(out.NextForwardToken), nil
}

// Error is a mapped CloudWatch Logs failure: Error() is the advice, Unwrap gives the sentinel
// and the SDK's error.
type Error = awserr.Error

func mapErr(group, stream string, err error) error {
	var nf *types.ResourceNotFoundException
	var apiErr smithy.APIError
	switch {
	case errors.As(err, &nf):
		return &Error{Sentinel: ErrNotFound, Cause: err,
			Msg: fmt.Sprintf("reading log stream %s/%s: it does not exist (yet)", group, stream)}
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "AccessDeniedException":
		return &Error{Sentinel: ErrAccessDenied, Cause: err,
			Msg: fmt.Sprintf("reading log stream %s/%s: access denied: the caller's role needs logs:GetLogEvents on the log group %s (AWS: %s)",
				group, stream, group, apiErr.ErrorMessage())}
	}
	return fmt.Errorf("reading log stream %s/%s: %w", group, stream, err)
}
