package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	tm "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// SSE chooses server-side encryption for an upload: SSE-KMS with KMSKeyID
// when it is set, else SSE-S3 (AES256).
type SSE struct {
	KMSKeyID string
}

// Upload streams body to s3://bucket/key with the transfer manager: a
// multipart upload in parts of partSize bytes (S3 allows 5 MiB..5 GiB and at
// most 10,000 parts), or one PutObject for a body smaller than a part. Only
// partSize × concurrency bytes are buffered, whatever the body's length. A
// failed upload is aborted (no orphaned parts) and returns an error naming
// the object. It returns the number of bytes uploaded.
func (c *Client) Upload(ctx context.Context, bucket, key string, body io.Reader, partSize int64, sse SSE) (int64, error) {
	counted := &countReader{r: body}
	in := &tm.UploadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: counted,
		ServerSideEncryption: tmtypes.ServerSideEncryptionAes256}
	if sse.KMSKeyID != "" {
		in.ServerSideEncryption = tmtypes.ServerSideEncryptionAwsKms
		in.SSEKMSKeyID = aws.String(sse.KMSKeyID)
	}
	up := tm.New(c.api, func(o *tm.Options) {
		o.PartSizeBytes = partSize
		o.MultipartUploadThreshold = partSize
		o.Concurrency = 2
	})
	if _, err := up.UploadObject(ctx, in); err != nil {
		return counted.n, c.mapErr("uploading", "s3:PutObject", bucket, key, err)
	}
	return counted.n, nil
}

// Object is one S3 object as listed.
type Object struct {
	Key          string
	Size         int64 // bytes
	LastModified time.Time
}

// Head returns the size in bytes of s3://bucket/key (HeadObject).
func (c *Client) Head(ctx context.Context, bucket, key string) (int64, error) {
	out, err := c.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return 0, c.mapErr("checking", "s3:GetObject", bucket, key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// List returns the objects under prefix (ListObjectsV2, all pages), in key
// order.
func (c *Client) List(ctx context.Context, bucket, prefix string) ([]Object, error) {
	var out []Object
	p := s3.NewListObjectsV2Paginator(c.api, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, c.mapErr("listing", "s3:ListBucket", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)})
		}
	}
	return out, nil
}

// Delete removes s3://bucket/key.
func (c *Client) Delete(ctx context.Context, bucket, key string) error {
	if _, err := c.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		return c.mapErr("deleting", "s3:DeleteObject", bucket, key, err)
	}
	return nil
}

// BucketRegion returns the region the bucket lives in (GetBucketLocation;
// an empty LocationConstraint means us-east-1, per the S3 API reference).
func (c *Client) BucketRegion(ctx context.Context, bucket string) (string, error) {
	out, err := c.api.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(bucket)})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket" {
			return "", &Error{Sentinel: ErrNotFound, Cause: err,
				Msg: fmt.Sprintf("bucket %s does not exist: create it or fix backup.bucket", bucket)}
		}
		return "", c.mapErr("locating", "s3:GetBucketLocation", bucket, "", err)
	}
	loc := string(out.LocationConstraint)
	switch loc {
	case "":
		return "us-east-1", nil
	case string(types.BucketLocationConstraintEu):
		return "eu-west-1", nil
	}
	return strings.TrimSpace(loc), nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
