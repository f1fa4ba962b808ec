package testenv

import (
	"path/filepath"
	"testing"
)

// SetAWSEnv points the AWS SDK of the calling test at stand-ins through the SDK's standard
// variables only (t.Setenv, so they are restored after the test): static test credentials,
// region us-east-2, no shared config or credentials file from the machine, no instance
// metadata, no endpoint or retry settings left over from the environment; then the given
// variables on top (for example AWS_ENDPOINT_URL_SSM, or AWS_MAX_ATTEMPTS "1").
func SetAWSEnv(t testing.TB, vars map[string]string) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	env := map[string]string{
		"AWS_CONFIG_FILE":                     none, // keep the machine's ~/.aws out of the test
		"AWS_SHARED_CREDENTIALS_FILE":         none,
		"AWS_PROFILE":                         "",
		"AWS_ACCESS_KEY_ID":                   "AKIDGLBOOTSTRAPTEST",
		"AWS_SECRET_ACCESS_KEY":               "glbootstrap-test-secret",
		"AWS_SESSION_TOKEN":                   "",
		"AWS_REGION":                          "us-east-2",
		"AWS_EC2_METADATA_DISABLED":           "true",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT":   "",
		"AWS_ENDPOINT_URL":                    "",
		"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "",
		"AWS_MAX_ATTEMPTS":                    "",
		"AWS_RETRY_MODE":                      "",
	}
	for k, v := range vars {
		env[k] = v
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}
