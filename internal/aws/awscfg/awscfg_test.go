package awscfg

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func isolate(t *testing.T, env map[string]string) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_PROFILE": "",
		"AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_MAX_ATTEMPTS": "", "AWS_RETRY_MODE": "",
	} {
		t.Setenv(k, v)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func TestLoad(t *testing.T) {
	for name, tc := range map[string]struct {
		env          map[string]string
		region       string
		wantRegion   string
		wantErr      error
		wantAttempts int
	}{
		"region from environment":      {env: map[string]string{"AWS_REGION": "eu-west-3"}, wantRegion: "eu-west-3", wantAttempts: maxAttempts},
		"argument overrides env":       {env: map[string]string{"AWS_REGION": "eu-west-3"}, region: "us-east-2", wantRegion: "us-east-2", wantAttempts: maxAttempts},
		"no region anywhere":           {wantErr: ErrNoRegion},
		"AWS_MAX_ATTEMPTS is honoured": {env: map[string]string{"AWS_MAX_ATTEMPTS": "2"}, region: "us-east-2", wantRegion: "us-east-2", wantAttempts: 2},
	} {
		t.Run(name, func(t *testing.T) {
			isolate(t, tc.env)
			cfg, err := Load(context.Background(), tc.region)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Load error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if cfg.Region != tc.wantRegion {
				t.Errorf("Region = %q, want %q", cfg.Region, tc.wantRegion)
			}
			// With AWS_MAX_ATTEMPTS the SDK leaves Retryer nil and each client builds its own
			// from RetryMaxAttempts.
			got := cfg.RetryMaxAttempts
			if cfg.Retryer != nil {
				got = cfg.Retryer().MaxAttempts()
			}
			if got != tc.wantAttempts {
				t.Errorf("MaxAttempts = %d, want %d", got, tc.wantAttempts)
			}
		})
	}
}

// fakeIMDS answers the instance profile's credential paths. With v2 the token PUT succeeds and
// every GET must carry the token; without it the PUT is refused with 403 (as a proxy or an
// instance with the token endpoint blocked answers) and GETs are answered without a token, as
// IMDSv1 does. tokenless counts the GETs that came without a token.
func fakeIMDS(t *testing.T, v2 bool, tokenless *atomic.Int32) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
			if !v2 {
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			fmt.Fprint(w, "tok")
			return
		}
		if r.Header.Get("X-Aws-Ec2-Metadata-Token") == "" {
			tokenless.Add(1)
		} else if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "tok" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/latest/meta-data/iam/security-credentials/":
			fmt.Fprint(w, "front")
		case "/latest/meta-data/iam/security-credentials/front":
			fmt.Fprintf(w, `{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"AKIDEXAMPLE","SecretAccessKey":"secret","Token":"t","Expiration":%q}`,
				time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestInstanceProfileIMDSv2Only: the instance profile's credentials are read with IMDSv2 only,
// as every other metadata read of glbootstrap: a refused token PUT is an error, never a
// tokenless IMDSv1 request (and the SDK's "falling back to IMDSv1" warning).
func TestInstanceProfileIMDSv2Only(t *testing.T) {
	for name, v2 := range map[string]bool{"IMDSv2 answers": true, "token refused": false} {
		t.Run(name, func(t *testing.T) {
			var tokenless atomic.Int32
			isolate(t, map[string]string{
				"AWS_REGION": "us-east-2", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
				"AWS_EC2_METADATA_DISABLED": "", "AWS_EC2_METADATA_V1_DISABLED": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
				"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_WEB_IDENTITY_TOKEN_FILE": "",
				"AWS_EC2_METADATA_SERVICE_ENDPOINT": fakeIMDS(t, v2, &tokenless),
			})
			cfg, err := Load(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			creds, err := cfg.Credentials.Retrieve(context.Background())
			if v2 && (err != nil || creds.AccessKeyID != "AKIDEXAMPLE") {
				t.Fatalf("Retrieve = %+v, %v; want the instance profile's credentials", creds, err)
			}
			if !v2 && err == nil {
				t.Fatalf("Retrieve = %+v with the token refused: want an error, not IMDSv1", creds)
			}
			if n := tokenless.Load(); n != 0 {
				t.Errorf("%d metadata requests without an IMDSv2 token", n)
			}
		})
	}
}
