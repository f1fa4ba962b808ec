package preflight

import (
	"context"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	"github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// runner.cache's bucket, read with the SDK's S3 client from the S3 stand-in: it exists in the
// region config.toml signs for, or the check warns (jobs run on, without cache).
func TestCheckCache(t *testing.T) {
	for name, tc := range map[string]struct {
		cache   Cache
		want    CheckStatus
		problem string
		fix     string
	}{
		"no cache":        {Cache{}, CheckSkip, "runner.cache is not set", ""},
		"bucket in place": {Cache{"ci-cache", "us-east-2"}, CheckOK, "exists in us-east-2", ""},
		"missing bucket": {Cache{"nope-cache", "us-east-2"}, CheckWarn, "S3 bucket nope-cache does not exist",
			"aws s3api create-bucket --bucket nope-cache --region us-east-2"},
		"other region": {Cache{"ci-cache", "eu-west-1"}, CheckWarn, "the bucket is in us-east-2, but the runner signs its cache URLs for eu-west-1",
			"set runner.cache.region: us-east-2"},
	} {
		t.Run(name, func(t *testing.T) {
			w := newPFWorld(t, false)
			st := testenv.NewS3()
			t.Cleanup(st.Close)
			st.CreateBucketIn("ci-cache", "us-east-2")
			t.Setenv("AWS_ENDPOINT_URL_S3", st.URL())
			in := w.input(t)
			cfg, err := awscfg.Load(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			in.AWS.S3 = s3.New(cfg)
			in.Cache = tc.cache
			f := checkCache(context.Background(), in)
			if f.Status != tc.want || !strings.Contains(f.Problem+f.Detail, tc.problem) || !strings.Contains(f.Fix, tc.fix) || f.Resource == "" {
				t.Errorf("finding %+v, want %s with %q, fix %q", f, tc.want, tc.problem, tc.fix)
			}
		})
	}
}
