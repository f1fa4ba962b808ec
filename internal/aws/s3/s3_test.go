package s3

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// newTestClient starts gofakes3 and builds the product client the way the agent does,
// redirected only through the SDK's standard environment variables.
func newTestClient(t *testing.T) (*testenv.S3, *Client) {
	t.Helper()
	srv := testenv.NewS3()
	t.Cleanup(srv.Close)
	testenv.SetAWSEnv(t, map[string]string{"AWS_ENDPOINT_URL_S3": srv.URL()})
	cfg, err := awscfg.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return srv, New(cfg)
}

func TestOpen(t *testing.T) {
	data := []byte("version: 1\nrole: runner\n")
	for name, tc := range map[string]struct {
		bucket, key string
		wantErr     string
		is          error
		asKey       bool   // *types.NoSuchKey in the chain
		code        string // smithy.APIError code in the chain
	}{
		"ok": {bucket: "glb-config", key: "runner/config.yaml"},
		"missing key": {
			bucket: "glb-config", key: "runner/nope.yaml",
			wantErr: "reading s3://glb-config/runner/nope.yaml: no object runner/nope.yaml in bucket glb-config: upload it (aws s3 cp FILE s3://glb-config/runner/nope.yaml) or fix the key in the config",
			is:      ErrNotFound, asKey: true, code: "NoSuchKey",
		},
		"missing bucket": {
			bucket: "glb-nope", key: "runner/config.yaml",
			wantErr: "reading s3://glb-nope/runner/config.yaml: bucket glb-nope does not exist: fix the bucket name in the config",
			is:      ErrNotFound, code: "NoSuchBucket",
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv, c := newTestClient(t)
			srv.CreateBucket("glb-config")
			srv.PutObject("glb-config", "runner/config.yaml", data)

			body, size, err := c.Open(context.Background(), tc.bucket, tc.key)
			if tc.wantErr != "" {
				if err == nil {
					body.Close()
					t.Fatal("Open succeeded, want an error")
				}
				if err.Error() != tc.wantErr {
					t.Errorf("error =\n%s\nwant\n%s", err, tc.wantErr)
				}
				if !errors.Is(err, tc.is) {
					t.Errorf("errors.Is(err, %v) = false", tc.is)
				}
				var nsk *types.NoSuchKey
				if errors.As(err, &nsk) != tc.asKey {
					t.Errorf("errors.As(*types.NoSuchKey) = %v", !tc.asKey)
				}
				var apiErr smithy.APIError
				if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tc.code {
					t.Errorf("APIError in chain = %v, want code %s", apiErr, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer body.Close()
			got, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(data) || size != int64(len(data)) {
				t.Errorf("Open = %q (size %d), want %q (size %d)", got, size, data, len(data))
			}
		})
	}
}

func TestNewPathStyleFollowsEndpointVariables(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		want bool
	}{
		"real AWS":            {env: map[string]string{}, want: false},
		"AWS_ENDPOINT_URL_S3": {env: map[string]string{"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"}, want: true},
		"AWS_ENDPOINT_URL":    {env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}, want: true},
	} {
		t.Run(name, func(t *testing.T) {
			testenv.SetAWSEnv(t, map[string]string{"AWS_ENDPOINT_URL_S3": ""})
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := awscfg.Load(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			if got := New(cfg).api.Options().UsePathStyle; got != tc.want {
				t.Errorf("UsePathStyle = %v, want %v", got, tc.want)
			}
		})
	}
}

// S3 answers 403 AccessDenied (not 404) for a missing key when s3:ListBucket is not granted;
// gofakes3 has no IAM, so a fixed answer stands in for it.
func TestOpenAccessDenied(t *testing.T) {
	deny := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>R</RequestId><HostId>H</HostId></Error>`)
	}))
	defer deny.Close()
	newTestClient(t) // for the environment
	t.Setenv("AWS_ENDPOINT_URL_S3", deny.URL)
	cfg, err := awscfg.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	c := New(cfg)

	_, _, err = c.Open(context.Background(), "glb-config", "runner/config.yaml")
	if !errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrNotFound) {
		t.Fatalf("Open error = %v, want ErrAccessDenied only", err)
	}
	want := "reading s3://glb-config/runner/config.yaml: access denied: the instance profile needs s3:GetObject on arn:aws:s3:::glb-config/runner/config.yaml (without s3:ListBucket S3 also says this when the object does not exist)"
	if err.Error() != want {
		t.Errorf("error =\n%s\nwant\n%s", err, want)
	}
}
