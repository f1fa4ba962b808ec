// Package s3 reads objects from S3 for glbootstrap (config documents given as s3://bucket/key).
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/glbootstrap/glbootstrap/internal/aws/awserr"
)

// Sentinels for callers that map errors to exit codes; match them with errors.Is. The SDK's
// error stays in the chain (errors.As with *types.NoSuchKey, *types.NoSuchBucket, smithy.APIError).
var (
	// ErrNotFound: the bucket or the key does not exist.
	ErrNotFound = errors.New("S3 object not found")
	// ErrAccessDenied: S3 answered AccessDenied (403).
	ErrAccessDenied = errors.New("access to S3 object denied")
)

// Client is a thin wrapper over the SDK's S3 client.
type Client struct {
	api *s3.Client
}

// New returns a Client for cfg (see awscfg.Load). The endpoint follows the SDK's standard
// settings (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL). When either variable is set, or cfg has a
// BaseEndpoint, the client uses path-style addressing (http://host/bucket/key): custom S3
// endpoints such as gofakes3 or MinIO cannot serve virtual-hosted names like bucket.127.0.0.1.
// An endpoint_url set only in a shared config profile does not switch path style on.
func New(cfg aws.Config) *Client {
	pathStyle := os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != "" || cfg.BaseEndpoint != nil
	return &Client{
		api: s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.UsePathStyle = pathStyle
			// Objects uploaded without a checksum (most config files) make the SDK print
			// "Response has no supported checksum" to stderr on every read.
			o.DisableLogOutputChecksumValidationSkipped = true
		}),
	}
}

// Open starts reading s3://bucket/key (GetObject) and returns the body, which the caller must
// close, and its length in bytes (-1 when S3 does not say). Errors wrap ErrNotFound or
// ErrAccessDenied with a message naming s3://bucket/key.
func (c *Client) Open(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error) {
	out, err := c.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, 0, c.mapErr("reading", "s3:GetObject", bucket, key, err)
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return out.Body, size, nil
}

// Error is a mapped S3 failure: Error() is the advice, Unwrap gives the sentinel and the SDK's
// error.
type Error = awserr.Error

// mapErr turns an SDK error of an operation on s3://bucket/key into advice:
// verb says what was being done ("reading"), perm the IAM action it needs.
func (c *Client) mapErr(verb, perm, bucket, key string, err error) error {
	url := "s3://" + bucket + "/" + key
	var nsk *types.NoSuchKey
	var nsb *types.NoSuchBucket
	var nf *types.NotFound
	var apiErr smithy.APIError
	hasAPI := errors.As(err, &apiErr)
	switch {
	// GetObject does not model NoSuchBucket: it arrives as a generic APIError with that code.
	case errors.As(err, &nsb) || hasAPI && apiErr.ErrorCode() == "NoSuchBucket":
		return &Error{Sentinel: ErrNotFound, Cause: err,
			Msg: fmt.Sprintf("%s %s: bucket %s does not exist: fix the bucket name in the config", verb, url, bucket)}
	case errors.As(err, &nsk) || errors.As(err, &nf):
		return &Error{Sentinel: ErrNotFound, Cause: err,
			Msg: fmt.Sprintf("%s %s: no object %s in bucket %s: upload it (aws s3 cp FILE %s) or fix the key in the config", verb, url, key, bucket, url)}
	case hasAPI && (apiErr.ErrorCode() == "AccessDenied" || apiErr.ErrorCode() == "KMS.AccessDeniedException") && strings.Contains(apiErr.ErrorMessage(), "kms:"):
		return &Error{Sentinel: ErrAccessDenied, Cause: err,
			Msg: fmt.Sprintf("%s %s: the KMS key may not be used: the instance profile needs kms:GenerateDataKey and kms:Decrypt on it, and the key policy must allow the role (AWS: %s)", verb, url, apiErr.ErrorMessage())}
	case hasAPI && apiErr.ErrorCode() == "AccessDenied":
		// S3 answers 403 rather than 404 for a missing key when the caller may not list the
		// bucket, so "denied" may also mean "missing".
		return &Error{Sentinel: ErrAccessDenied, Cause: err,
			Msg: fmt.Sprintf("%s %s: access denied: the instance profile needs %s on arn:aws:s3:::%s/%s (without s3:ListBucket S3 also says this when the object does not exist)", verb, url, perm, bucket, key)}
	}
	return fmt.Errorf("%s %s: %w", verb, url, err)
}
