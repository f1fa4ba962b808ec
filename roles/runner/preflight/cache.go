package preflight

import (
	"context"
	"fmt"
)

// Cache is runner.cache: the bucket (empty: no distributed cache) and the region config.toml
// names as its BucketLocation.
type Cache struct{ Bucket, Region string }

// checkCache: the cache bucket exists and lives in the region the runner signs its URLs for.
// Either fault loses every job's cache (gitlab-runner only warns in the job log: "Failed to
// extract cache", an upload that fails), but fails no job, so it is a warning.
func checkCache(ctx context.Context, in checkInput) Finding {
	c := in.Cache
	if c.Bucket == "" {
		return skipped("cache", "runner.cache is not set: jobs keep no cache between tasks")
	}
	res := "bucket " + c.Bucket
	if in.AWS.S3 == nil {
		return skipped(res, "no S3 client")
	}
	got, err := in.AWS.S3.BucketRegion(ctx, c.Bucket)
	switch {
	case isNotFound(err):
		return Finding{Status: CheckWarn, Resource: res,
			Problem: fmt.Sprintf("S3 bucket %s does not exist: every job's cache download and upload fails (the jobs still run, without cache)", c.Bucket),
			Fix:     fmt.Sprintf("create it (aws s3api create-bucket --bucket %s --region %s --create-bucket-configuration LocationConstraint=%s) or fix runner.cache.bucket", c.Bucket, c.Region, c.Region)}
	case err != nil:
		return apiFinding(res, "s3:GetBucketLocation", err)
	case got != c.Region:
		return Finding{Status: CheckWarn, Resource: res,
			Problem: fmt.Sprintf("the bucket is in %s, but the runner signs its cache URLs for %s: S3 refuses them and every job's cache is lost", got, c.Region),
			Fix:     fmt.Sprintf("set runner.cache.region: %s", got)}
	}
	return Finding{Status: CheckOK, Resource: res, Detail: "exists in " + got + " (the region config.toml signs for)"}
}
