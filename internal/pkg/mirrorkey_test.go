package pkg

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// packages.mirror_key_fingerprint: the mirror's own key replaces GitLab's repository key, for
// that mirror only; rpm's package keys stay GitLab's.
func TestWithMirrorKey(t *testing.T) {
	const rsaFpr = "57C4CFD597ABD7AE832BD45315B05D7F7627CA8C"
	spaced := "57c4 cfd5 97ab d7ae 832b  d453 15b0 5d7f 7627 ca8c"

	req, err := Runner(al2023, "https://nexus.internal/repository/gitlab", "17.9.3")
	if err != nil {
		t.Fatal(err)
	}
	same, err := req.WithMirrorKey("")
	if err != nil || !slices.Equal(same.Repo.Fingerprints, []string{RepoKeyFingerprint}) {
		t.Errorf("no mirror key: %v %v, want GitLab's key kept", same.Repo.Fingerprints, err)
	}
	got, err := req.WithMirrorKey(spaced)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Repo.Fingerprints, []string{rsaFpr}) {
		t.Errorf("Fingerprints = %v, want only the mirror's %s", got.Repo.Fingerprints, rsaFpr)
	}
	if !slices.Equal(got.Repo.PackageFingerprints, []string{RunnerPackageKeyFingerprint}) {
		t.Errorf("PackageFingerprints = %v: the package signatures rpm checks must stay GitLab's", got.Repo.PackageFingerprints)
	}
	if !slices.Equal(req.Repo.Fingerprints, []string{RepoKeyFingerprint}) {
		t.Errorf("WithMirrorKey changed the request it was called on: %v", req.Repo.Fingerprints)
	}

	for _, bad := range []string{"7627CA8C", "0x" + rsaFpr[2:], rsaFpr + "00", strings.Repeat("G", 40)} {
		if _, err := req.WithMirrorKey(bad); err == nil || !strings.Contains(err.Error(), "packages.mirror_key_fingerprint") {
			t.Errorf("WithMirrorKey(%q): %v, want it refused naming packages.mirror_key_fingerprint", bad, err)
		}
	}
	gitlab, err := Runner(bookworm, "", "17.9.3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gitlab.WithMirrorKey(rsaFpr); err == nil || !strings.Contains(err.Error(), "without packages.mirror") {
		t.Errorf("a mirror key for packages.gitlab.com: %v, want it refused", err)
	}
}

// Ensure under a --root with a re-signing mirror: its key is installed when it is the one named,
// and refused (nothing written, the message naming packages.mirror_key_fingerprint) otherwise,
// GitLab's own key included.
func TestEnsureMirrorKeyUnderRoot(t *testing.T) {
	mirror, _ := keyServer(t, "testdata/keys/rsa.asc")
	const rsaFpr = "57C4CFD597ABD7AE832BD45315B05D7F7627CA8C"
	req, err := Runner(bookworm, mirror, "17.9.3")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	other, err := req.WithMirrorKey(strings.Repeat("AB", 20))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Manager{Host: h}.Ensure(context.Background(), other)
	if err == nil || !strings.Contains(err.Error(), "refusing the repository key") || !strings.Contains(err.Error(), strings.Repeat("AB", 20)) ||
		!strings.Contains(err.Error(), "the mirror's key, packages.mirror_key_fingerprint") {
		t.Errorf("another mirror key: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("a refused mirror key left %d entries under the root", len(entries))
	}

	own, err := req.WithMirrorKey(rsaFpr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (Manager{Host: h}).Ensure(context.Background(), own); err != nil {
		t.Fatal(err)
	}
	kr, err := os.ReadFile(filepath.Join(root, "etc/apt/keyrings/runner_gitlab-runner.gpg"))
	if err != nil {
		t.Fatal(err)
	}
	if _, keys, err := ParseKeys(kr); err != nil || len(keys) != 1 || keys[0].Fingerprint != rsaFpr {
		t.Errorf("keyring: %v %+v, want the mirror's key", err, keys)
	}
}
