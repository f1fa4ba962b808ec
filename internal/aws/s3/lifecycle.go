package s3

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// LifecycleRule is the part of a bucket lifecycle rule that says whether it expires objects
// under a prefix.
type LifecycleRule struct {
	ID      string
	Enabled bool
	// Prefix is the rule's filter prefix ("" = the whole bucket); a rule filtering on tags or
	// object sizes has Filtered set and applies to only some objects.
	Prefix   string
	Filtered bool
	// ExpirationDays is Expiration.Days (0 = no age expiration).
	ExpirationDays int32
}

// Lifecycle returns the bucket's lifecycle rules (GetBucketLifecycleConfiguration). A bucket
// without a configuration (S3 answers 404 NoSuchLifecycleConfiguration) has none: nil, nil.
// Errors wrap ErrAccessDenied (s3:GetLifecycleConfiguration) or ErrNotFound (no bucket).
func (c *Client) Lifecycle(ctx context.Context, bucket string) ([]LifecycleRule, error) {
	out, err := c.api.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(bucket)})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchLifecycleConfiguration" {
			return nil, nil
		}
		return nil, c.mapErr("reading the lifecycle rules of", "s3:GetLifecycleConfiguration", bucket, "", err)
	}
	var rules []LifecycleRule
	for _, r := range out.Rules {
		lr := LifecycleRule{ID: aws.ToString(r.ID), Enabled: r.Status == "Enabled"}
		if r.Prefix != nil { // the deprecated top-level prefix
			lr.Prefix = *r.Prefix
		}
		if f := r.Filter; f != nil {
			switch {
			case f.Prefix != nil:
				lr.Prefix = *f.Prefix
			case f.And != nil:
				lr.Prefix, lr.Filtered = aws.ToString(f.And.Prefix), true
			case f.Tag != nil || f.ObjectSizeGreaterThan != nil || f.ObjectSizeLessThan != nil:
				lr.Filtered = true
			}
		}
		if r.Expiration != nil && r.Expiration.Days != nil {
			lr.ExpirationDays = *r.Expiration.Days
		}
		rules = append(rules, lr)
	}
	return rules, nil
}
