package awscfg

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
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
