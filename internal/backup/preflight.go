package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/host"
)

// PreflightStore is the part of S3 the preflight uses.
type PreflightStore interface {
	BucketRegion(ctx context.Context, bucket string) (string, error)
	Upload(ctx context.Context, bucket, key string, body io.Reader, partSize int64, sse s3.SSE) (int64, error)
	Delete(ctx context.Context, bucket, key string) error
}

// MarkerKey is the small object the preflight writes and deletes under the
// prefix.
const MarkerKey = ".glbootstrap-preflight"

// Preflight checks with the instance profile what a nightly backup will
// need: the bucket exists in region (backup.region or the instance's; it
// must be the bucket's, since Omnibus uploads to the region in
// backup_upload_connection), and a put of a marker object under the prefix
// with the configured encryption (so a KMS key the profile cannot use shows
// up now, not at 2 a.m.) and its delete both work. Errors name the missing
// permission or the region mismatch.
func Preflight(ctx context.Context, store PreflightStore, b *config.Backup, region string) error {
	got, err := store.BucketRegion(ctx, b.Bucket)
	if err != nil {
		return fmt.Errorf("backup bucket %s: %w", b.Bucket, err)
	}
	if got != region {
		return fmt.Errorf("backup bucket %s is in %s, not %s: set backup.region: %s, or use a bucket in %s", b.Bucket, got, region, got, region)
	}
	prefix := b.PrefixOrDefault()
	key := prefix + MarkerKey
	body := strings.NewReader("glbootstrap preflight marker; safe to delete\n")
	if _, err := store.Upload(ctx, b.Bucket, key, body, config.MinChunkSize, s3.SSE{KMSKeyID: b.KMSKeyID}); err != nil {
		msg := err.Error()
		if errors.Is(err, s3.ErrAccessDenied) && !strings.Contains(msg, "kms:") {
			msg += fmt.Sprintf(" (the instance profile needs s3:PutObject on arn:aws:s3:::%s/%s*)", b.Bucket, prefix)
		}
		return fmt.Errorf("writing a test object to the backup bucket: %s", msg)
	}
	if err := store.Delete(ctx, b.Bucket, key); err != nil {
		return fmt.Errorf("deleting the test object: %w (grant s3:DeleteObject on arn:aws:s3:::%s/%s%s, or remove the object by hand)", err, b.Bucket, prefix, MarkerKey)
	}
	return nil
}

// Checker is the backup-preflight phase's check of the bucket, returning the step that says
// what was checked.
type Checker interface {
	Check(ctx context.Context, b *config.Backup, region string) (host.Step, error)
}

// ApplyCheck returns the full Checker (Preflight: region, then a marker written and deleted)
// on the S3 client newStore returns for the bucket's region.
func ApplyCheck(newStore func(region string) (PreflightStore, error)) Checker {
	return checker{newStore: newStore, write: true}
}

// PlanCheck returns the Checker for plan: it reads the bucket's region and writes nothing, in
// S3 either.
func PlanCheck(newStore func(region string) (PreflightStore, error)) Checker {
	return checker{newStore: newStore}
}

type checker struct {
	newStore func(region string) (PreflightStore, error)
	write    bool
}

func (c checker) Check(ctx context.Context, b *config.Backup, region string) (host.Step, error) {
	st := host.Step{Kind: "check", Target: "s3://" + b.Bucket + "/" + b.PrefixOrDefault()}
	store, err := c.newStore(region)
	if err != nil {
		return st, err
	}
	if c.write {
		if err := Preflight(ctx, store, b, region); err != nil {
			return st, err
		}
		st.Summary = "bucket in " + region + ", instance profile may write and delete there"
		return st, nil
	}
	got, err := store.BucketRegion(ctx, b.Bucket)
	if err != nil {
		return st, fmt.Errorf("backup bucket %s: %w", b.Bucket, err)
	}
	if got != region {
		return st, fmt.Errorf("backup bucket %s is in %s, not %s: set backup.region: %s", b.Bucket, got, region, got)
	}
	st.Summary = "bucket in " + region + " (the write check runs at apply: plan writes nothing, in S3 either)"
	return st, nil
}
