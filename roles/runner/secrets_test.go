package runner

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

func TestFileSecretsFindsWhatConfigTOMLHolds(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, ConfigTOML)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := `concurrent = 4
[[runners]]
  name = "a"
  token = "glrt-first"
[[runners]]
  token="t1_second"
  executor = "docker"
  [runners.cache.s3]
    AccessKey = 'AKIAEXAMPLE'
    SecretKey = "with \"quotes\""
  [runners.docker]
    volumes = ["/cache"]
    auth = { password = "inline" }
[broken
  ci_job_token = "jt"
`
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	got := fileSecrets(newHost(t, root), ConfigTOML)
	want := []string{"glrt-first", "t1_second", "AKIAEXAMPLE", `with \"quotes\"`, "inline", "jt"}
	if !slices.Equal(got, want) {
		t.Errorf("fileSecrets = %q, want %q", got, want)
	}
	if got := fileSecrets(newHost(t, t.TempDir()), ConfigTOML); got != nil {
		t.Errorf("missing file: %q", got)
	}
}

func newHost(t *testing.T, root string) *host.Host {
	t.Helper()
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
