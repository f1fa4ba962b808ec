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
	Lifecycle(ctx context.Context, bucket string) ([]s3.LifecycleRule, error)
}

// MarkerKey is the small object the preflight writes and deletes under the
// prefix.
const MarkerKey = ".glbootstrap-preflight"

// Preflight checks with the instance profile what a nightly backup will
// need, in both locations (the application archives' bucket and prefix, and
// backup.secrets' for the configuration archive): the bucket exists in region
// (backup.region or the instance's; it must be the bucket's, since Omnibus
// uploads to the region in backup_upload_connection), and a put of a marker
// object under the prefix with that location's encryption (so a KMS key the
// profile cannot use shows up now, not at 2 a.m.) and its delete both work.
// Errors name the missing permission or the region mismatch. The warnings say
// what needs a human but does not stop a backup (no lifecycle rule expires
// old archives; the secrets share the application archives' bucket).
func Preflight(ctx context.Context, store PreflightStore, b *config.Backup, region string) ([]string, error) {
	cfgBucket, cfgPrefix, cfgKMS := b.SecretsLocation()
	for _, loc := range []struct{ what, bucket, prefix, kms string }{
		{"backup bucket", b.Bucket, b.PrefixOrDefault(), b.KMSKeyID},
		{"backup.secrets bucket", cfgBucket, cfgPrefix, cfgKMS},
	} {
		if err := checkRegion(ctx, store, loc.what, loc.bucket, region); err != nil {
			return nil, err
		}
		key := loc.prefix + MarkerKey
		body := strings.NewReader("glbootstrap preflight marker; safe to delete\n")
		if _, err := store.Upload(ctx, loc.bucket, key, body, config.MinChunkSize, s3.SSE{KMSKeyID: loc.kms}); err != nil {
			msg := err.Error()
			if errors.Is(err, s3.ErrAccessDenied) && !strings.Contains(msg, "kms:") {
				msg += fmt.Sprintf(" (the instance profile needs s3:PutObject on arn:aws:s3:::%s/%s*)", loc.bucket, loc.prefix)
			}
			return nil, fmt.Errorf("writing a test object to the %s: %s", loc.what, msg)
		}
		if err := store.Delete(ctx, loc.bucket, key); err != nil {
			return nil, fmt.Errorf("deleting the test object: %w (grant s3:DeleteObject on arn:aws:s3:::%s/%s%s, or remove the object by hand)", err, loc.bucket, loc.prefix, MarkerKey)
		}
	}
	return Warnings(ctx, store, b), nil
}

func checkRegion(ctx context.Context, store PreflightStore, what, bucket, region string) error {
	got, err := store.BucketRegion(ctx, bucket)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, bucket, err)
	}
	if got != region {
		if what == "backup bucket" {
			return fmt.Errorf("backup bucket %s is in %s, not %s: set backup.region: %s, or use a bucket in %s", bucket, got, region, got, region)
		}
		return fmt.Errorf("%s %s is in %s, not %s (the backup bucket's region): use a bucket in %s for backup.secrets.bucket", what, bucket, got, region, region)
	}
	return nil
}

// LifecycleDays is the expiration the suggested lifecycle rule sets (days).
const LifecycleDays = 30

// Warnings reads the lifecycle rules of both locations and returns a warning for each prefix that
// no enabled rule expires (S3 then keeps every archive forever: backup_keep_time prunes only the
// host's copies), with the aws command that adds one; and a warning when the configuration
// archive shares the application archives' bucket (GitLab's backup docs: store the secrets apart
// from the data they decrypt). Reading nothing is a warning, never an error.
func Warnings(ctx context.Context, store PreflightStore, b *config.Backup) []string {
	var warns []string
	cfgBucket, cfgPrefix, _ := b.SecretsLocation()
	locs := []struct{ bucket, prefix string }{{b.Bucket, b.PrefixOrDefault()}}
	if cfgBucket != b.Bucket || !strings.HasPrefix(cfgPrefix, b.PrefixOrDefault()) {
		locs = append(locs, struct{ bucket, prefix string }{cfgBucket, cfgPrefix})
	}
	for _, l := range locs {
		rules, err := store.Lifecycle(ctx, l.bucket)
		if err != nil {
			warns = append(warns, fmt.Sprintf("could not read the lifecycle rules of s3://%s (%v): check by hand that old backups under %s expire", l.bucket, err, l.prefix))
			continue
		}
		if covered(rules, l.prefix) {
			continue
		}
		rule := fmt.Sprintf(`{"Rules":[{"ID":"glbootstrap-gitlab-backups","Status":"Enabled","Filter":{"Prefix":"%s"},"Expiration":{"Days":%d},"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":7}}]}`, l.prefix, LifecycleDays)
		also := ""
		if len(rules) > 0 {
			also = " (the bucket has other rules: this command replaces them all, so add theirs to it)"
		}
		warns = append(warns, fmt.Sprintf("no lifecycle rule expires s3://%s/%s: S3 keeps every backup forever (backup.keep_local prunes only this host's copies); add one%s: aws s3api put-bucket-lifecycle-configuration --bucket %s --lifecycle-configuration '%s'", l.bucket, l.prefix, also, l.bucket, rule))
	}
	if cfgBucket == b.Bucket {
		warns = append(warns, fmt.Sprintf("the configuration archive (gitlab-secrets.json) goes to the application archives' bucket %s: GitLab's backup docs say to keep it apart from the data it decrypts; set backup.secrets.bucket (and a kms_key_id) to another bucket", b.Bucket))
	}
	return warns
}

// covered reports whether an enabled, unfiltered rule with an age expiration applies to every
// object under prefix.
func covered(rules []s3.LifecycleRule, prefix string) bool {
	for _, r := range rules {
		if r.Enabled && !r.Filtered && r.ExpirationDays > 0 && strings.HasPrefix(prefix, r.Prefix) {
			return true
		}
	}
	return false
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
	cfgBucket, cfgPrefix, _ := b.SecretsLocation()
	both := "bucket"
	if cfgBucket != b.Bucket || cfgPrefix != b.PrefixOrDefault()+"config/" {
		both = "buckets"
		st.Target += " and s3://" + cfgBucket + "/" + cfgPrefix
	}
	if c.write {
		warns, err := Preflight(ctx, store, b, region)
		if err != nil {
			return st, err
		}
		st.Summary = both + " in " + region + ", instance profile may write and delete there"
		st.Warning = strings.Join(warns, "; ")
		return st, nil
	}
	for _, l := range []struct{ what, bucket string }{{"backup bucket", b.Bucket}, {"backup.secrets bucket", cfgBucket}} {
		if err := checkRegion(ctx, store, l.what, l.bucket, region); err != nil {
			return st, err
		}
	}
	st.Summary = both + " in " + region + " (the write check runs at apply: plan writes nothing, in S3 either)"
	st.Warning = strings.Join(Warnings(ctx, store, b), "; ")
	return st, nil
}
