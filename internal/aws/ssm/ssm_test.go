package ssm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	"github.com/glbootstrap/glbootstrap/internal/aws/awserr"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// newTestClient starts the SSM stand-in and builds the product client the way the agent does,
// redirected only through the SDK's standard environment variables.
func newTestClient(t *testing.T) (*testenv.SSM, *Client) {
	t.Helper()
	srv := testenv.NewSSM()
	t.Cleanup(srv.Close)
	testenv.SetAWSEnv(t, map[string]string{"AWS_ENDPOINT_URL_SSM": srv.URL()})
	cfg, err := awscfg.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return srv, New(cfg)
}

const secret = "glrt-SuperSecretToken-42"

func TestGet(t *testing.T) {
	for name, tc := range map[string]struct {
		setup      func(*testenv.SSM)
		param      string
		want       string
		wantErr    string // exact message, or prefix when it ends in "…"
		is         []error
		isNot      []error
		asNotFound bool
	}{
		"String": {
			setup: func(s *testenv.SSM) { s.Put("/glb/config", "version: 1\n", false) },
			param: "/glb/config", want: "version: 1\n",
		},
		"SecureString is decrypted": {
			setup: func(s *testenv.SSM) { s.Put("/glb/runner-token", secret, true) },
			param: "/glb/runner-token", want: secret,
		},
		"not found": {
			param:      "/glb/missing",
			wantErr:    `SSM parameter /glb/missing does not exist in us-east-2: create it with "aws ssm put-parameter --name /glb/missing --type SecureString --value ..." or fix the name in the config`,
			is:         []error{ErrNotFound},
			isNot:      []error{ErrAccessDenied},
			asNotFound: true,
		},
		"decrypt denied": {
			setup: func(s *testenv.SSM) {
				s.Put("/glb/runner-token", secret, true)
				s.DenyDecrypt("/glb/runner-token")
			},
			param:   "/glb/runner-token",
			wantErr: "cannot decrypt SecureString /glb/runner-token: the instance profile needs kms:Decrypt on the parameter's KMS key (alias/aws/ssm unless the parameter names another key) (AWS: The ciphertext refers to a customer master key…",
			is:      []error{ErrDecryptDenied, ErrAccessDenied},
			isNot:   []error{ErrNotFound},
		},
		"read denied": {
			setup: func(s *testenv.SSM) {
				s.Put("/glb/runner-token", secret, true)
				s.DenyRead("/glb/runner-token")
			},
			param:   "/glb/runner-token",
			wantErr: "the instance profile may not read /glb/runner-token: it needs ssm:GetParameter on arn:aws:ssm:us-east-2:123456789012:parameter/glb/runner-token (AWS: User: arn:aws:sts::123456789012:assumed-role/front/i-0 is not authorized…",
			is:      []error{ErrAccessDenied},
			isNot:   []error{ErrDecryptDenied, ErrNotFound},
		},
		"read denied on a name that mentions kms": {
			setup: func(s *testenv.SSM) {
				s.Put("/glb/kms-key", "x", false)
				s.DenyRead("/glb/kms-key")
			},
			param:   "/glb/kms-key",
			wantErr: "the instance profile may not read /glb/kms-key: it needs ssm:GetParameter on arn:aws:ssm:us-east-2:123456789012:parameter/glb/kms-key (AWS: …",
			is:      []error{ErrAccessDenied},
			isNot:   []error{ErrDecryptDenied},
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv, c := newTestClient(t)
			if tc.setup != nil {
				tc.setup(srv)
			}
			got, err := c.Get(context.Background(), tc.param)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Fatalf("Get = %q, want %q", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Get = %q, want an error", got)
			}
			if prefix, ok := strings.CutSuffix(tc.wantErr, "…"); ok {
				if !strings.HasPrefix(err.Error(), prefix) {
					t.Errorf("error =\n%s\nwant prefix\n%s", err, prefix)
				}
			} else if err.Error() != tc.wantErr {
				t.Errorf("error =\n%s\nwant\n%s", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the value: %s", err)
			}
			for _, s := range tc.is {
				if !errors.Is(err, s) {
					t.Errorf("errors.Is(err, %q) = false", s)
				}
			}
			for _, s := range tc.isNot {
				if errors.Is(err, s) {
					t.Errorf("errors.Is(err, %q) = true", s)
				}
			}
			var nf *types.ParameterNotFound
			if errors.As(err, &nf) != tc.asNotFound {
				t.Errorf("errors.As(*types.ParameterNotFound) = %v", !tc.asNotFound)
			}
		})
	}
}

func TestPut(t *testing.T) {
	for name, tc := range map[string]struct {
		setup       func(*testenv.SSM)
		value       string
		secure      bool
		wantChanged bool
		wantPuts    int
		wantErr     error
	}{
		"creates a missing parameter": {value: secret, secure: true, wantChanged: true, wantPuts: 1},
		"same value and type is left alone": {
			setup: func(s *testenv.SSM) { s.Put("/glb/p", secret, true) },
			value: secret, secure: true, wantChanged: false, wantPuts: 0,
		},
		"different value is overwritten": {
			setup: func(s *testenv.SSM) { s.Put("/glb/p", "old", true) },
			value: secret, secure: true, wantChanged: true, wantPuts: 1,
		},
		"String becomes SecureString": {
			setup: func(s *testenv.SSM) { s.Put("/glb/p", secret, false) },
			value: secret, secure: true, wantChanged: true, wantPuts: 1,
		},
		"read denied writes nothing": {
			setup: func(s *testenv.SSM) {
				s.Put("/glb/p", "old", true)
				s.DenyRead("/glb/p")
			},
			value: secret, secure: true, wantErr: ErrAccessDenied, wantPuts: 0,
		},
		"decrypt denied writes nothing": {
			setup: func(s *testenv.SSM) {
				s.Put("/glb/p", "old", true)
				s.DenyDecrypt("/glb/p")
			},
			value: secret, secure: true, wantErr: ErrDecryptDenied, wantPuts: 0,
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv, c := newTestClient(t)
			if tc.setup != nil {
				tc.setup(srv)
			}
			changed, err := c.Put(context.Background(), "/glb/p", tc.value, tc.secure)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Put error = %v, want %v", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks the value: %s", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if changed != tc.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			if n := srv.Calls("PutParameter"); n != tc.wantPuts {
				t.Errorf("PutParameter calls = %d, want %d", n, tc.wantPuts)
			}
			if tc.wantErr == nil {
				if v, ok := srv.Value("/glb/p"); !ok || v != tc.value {
					t.Errorf("stored value = %q, %v", v, ok)
				}
				// Converged: a second Put changes nothing.
				changed, err := c.Put(context.Background(), "/glb/p", tc.value, tc.secure)
				if err != nil || changed {
					t.Errorf("second Put = %v, %v; want unchanged", changed, err)
				}
				got, err := c.Get(context.Background(), "/glb/p")
				if err != nil || got != tc.value {
					t.Errorf("Get after Put = %q, %v", got, err)
				}
			}
		})
	}
}

// TestGetWithoutCredentials: when no credentials can be had (no instance profile, nothing in the
// environment) the error says so and what to do, not that SSM did not answer.
func TestGetWithoutCredentials(t *testing.T) {
	srv := testenv.NewSSM()
	t.Cleanup(srv.Close)
	srv.Put("/glb/config", "version: 1\n", false)
	testenv.SetAWSEnv(t, map[string]string{"AWS_ENDPOINT_URL_SSM": srv.URL(), "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
	cfg, err := awscfg.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg).Get(context.Background(), "/glb/config")
	if err == nil {
		t.Fatal("Get succeeded without credentials")
	}
	msg := err.Error()
	for _, want := range []string{"reading SSM parameter /glb/config: no AWS credentials", "instance profile", "AWS_PROFILE"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "did not answer") || strings.Contains(msg, "NAT gateway") {
		t.Errorf("error blames the network: %s", msg)
	}
	if !errors.Is(err, awserr.ErrNoCredentials) || errors.Is(err, awserr.ErrUnreachable) {
		t.Errorf("errors.Is(ErrNoCredentials) = %v, errors.Is(ErrUnreachable) = %v; want true, false", errors.Is(err, awserr.ErrNoCredentials), errors.Is(err, awserr.ErrUnreachable))
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
}
