package testenv

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// AptRepoTools are the host programs NewAptKey and NewAptRepo run: gpg (Debian package gpg),
// dpkg-deb (dpkg) and apt-ftparchive (apt-utils).
var AptRepoTools = []string{"gpg", "gpgconf", "dpkg-deb", "apt-ftparchive"}

// AptKey is an OpenPGP signing key made for one test with gpg, in its own GNUPGHOME.
type AptKey struct {
	// Home is the GNUPGHOME holding the secret key.
	Home string
	// Fingerprint is the primary key's fingerprint, as gpg --with-colons prints it.
	Fingerprint string
	// Armored is the ASCII-armored public key (gpg --export --armor).
	Armored []byte
}

// NewAptKey makes an ed25519 signing key named uid with gpg. The key's gpg-agent is stopped
// when the test ends.
func NewAptKey(t testing.TB, uid string) *AptKey {
	t.Helper()
	// A short GNUPGHOME: gpg-agent's socket path must fit in sun_path.
	home, err := os.MkdirTemp("", "glbgpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		_ = os.RemoveAll(home)
	})
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	k := &AptKey{Home: home}
	k.gpg(t, nil, "--quick-generate-key", "--passphrase", "", uid, "ed25519", "sign", "never")
	for _, line := range strings.Split(string(k.gpg(t, nil, "--list-keys", "--with-colons", uid)), "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			k.Fingerprint = f[9]
			break
		}
	}
	if k.Fingerprint == "" {
		t.Fatalf("gpg made no key for %s", uid)
	}
	k.Armored = k.gpg(t, nil, "--export", "--armor", k.Fingerprint)
	return k
}

// gpg runs gpg in batch mode on the key's home and returns its stdout.
func (k *AptKey) gpg(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("gpg", append([]string{"--homedir", k.Home, "--batch", "--yes", "--pinentry-mode", "loopback"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// DebPackage is a binary package NewAptRepo builds with dpkg-deb.
type DebPackage struct {
	Name, Version string
	// Depends is the control file's Depends field ("" for none).
	Depends string
	// Files maps absolute paths in the package to their content; files are 0755.
	Files map[string]string
	// Postinst is the maintainer script run on configure ("" for none).
	Postinst string
	// Prerm is the maintainer script run before removal or upgrade ("" for none).
	Prerm string
	// Preinst is the maintainer script run before unpacking, with "install" or "upgrade OLD"
	// ("" for none); a non-zero exit stops dpkg before any file of the package is replaced.
	Preinst string
	// Postrm is the maintainer script run after removal, and the old version's after an
	// upgrade ("" for none).
	Postrm string
	// Conflicts and Replaces are the control file's fields of the same names ("" for none).
	Conflicts, Replaces string
	// Architecture is the control file's Architecture ("" for the host's; "all").
	Architecture string
}

// AptRepoSpec describes a repository laid out like one of packages.gitlab.com's:
// <server>/<Path>/dists/<Suite>/main/binary-<arch>/Packages and <server>/gpgkey/gpg.key.
type AptRepoSpec struct {
	// Path is the repository's directory below the server root: runner/gitlab-runner/debian.
	Path string
	// Suite is the distribution (bookworm).
	Suite string
	// SignWith signs Release and InRelease; ServeKey is the public key served at /gpgkey/gpg.key
	// (nil: SignWith's). A test of a repository signed with another key sets them apart.
	SignWith, ServeKey *AptKey
	Packages           []DebPackage
}

// AptRepo is a signed apt repository served over HTTP on 127.0.0.1.
type AptRepo struct {
	// URL is the server's root (http://127.0.0.1:PORT), what packages.mirror would be.
	URL string
	// Dir is the served directory.
	Dir string

	mu       sync.Mutex
	requests []string
}

// NewAptRepo builds the repository with the real tools (dpkg-deb for the packages,
// apt-ftparchive for Packages and Release, gpg for InRelease and Release.gpg) for the host's
// dpkg architecture and serves it until the test ends. Every request is recorded (Requests).
func NewAptRepo(t testing.TB, spec AptRepoSpec) *AptRepo {
	t.Helper()
	for _, tool := range AptRepoTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the apt repository needs %s (Debian packages gpg, dpkg, apt-utils): %v", tool, err)
		}
	}
	arch := strings.TrimSpace(string(aptRun(t, "", "dpkg", "--print-architecture")))
	r := &AptRepo{Dir: t.TempDir()}
	repo := filepath.Join(r.Dir, filepath.FromSlash(spec.Path))
	pool := filepath.Join(repo, "pool", "main")
	aptMust(t, os.MkdirAll(pool, 0o755))
	for _, p := range spec.Packages {
		buildDeb(t, p, arch, pool)
	}
	bin := filepath.Join(repo, "dists", spec.Suite, "main", "binary-"+arch)
	aptMust(t, os.MkdirAll(bin, 0o755))
	packages := aptRun(t, repo, "apt-ftparchive", "packages", "pool")
	aptMust(t, os.WriteFile(filepath.Join(bin, "Packages"), packages, 0o644))
	release := aptRun(t, repo, "apt-ftparchive",
		"-o", "APT::FTPArchive::Release::Origin=glbootstrap-test",
		"-o", "APT::FTPArchive::Release::Suite="+spec.Suite,
		"-o", "APT::FTPArchive::Release::Codename="+spec.Suite,
		"-o", "APT::FTPArchive::Release::Components=main",
		"-o", "APT::FTPArchive::Release::Architectures="+arch,
		"release", filepath.Join("dists", spec.Suite))
	dists := filepath.Join(repo, "dists", spec.Suite)
	aptMust(t, os.WriteFile(filepath.Join(dists, "Release"), release, 0o644))
	spec.SignWith.gpg(t, release, "--local-user", spec.SignWith.Fingerprint, "--clearsign", "--output", filepath.Join(dists, "InRelease"))
	spec.SignWith.gpg(t, release, "--local-user", spec.SignWith.Fingerprint, "--detach-sign", "--armor", "--output", filepath.Join(dists, "Release.gpg"))
	serve := spec.ServeKey
	if serve == nil {
		serve = spec.SignWith
	}
	aptMust(t, os.MkdirAll(filepath.Join(r.Dir, "gpgkey"), 0o755))
	aptMust(t, os.WriteFile(filepath.Join(r.Dir, "gpgkey", "gpg.key"), serve.Armored, 0o644))

	files := http.FileServer(http.Dir(r.Dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.URL.Path)
		r.mu.Unlock()
		files.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Requests returns the paths requested so far, in order.
func (r *AptRepo) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

func buildDeb(t testing.TB, p DebPackage, arch, outDir string) {
	t.Helper()
	root := t.TempDir()
	aptMust(t, os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755))
	if p.Architecture != "" {
		arch = p.Architecture
	}
	control := "Package: " + p.Name + "\nVersion: " + p.Version + "\nArchitecture: " + arch +
		"\nMaintainer: glbootstrap tests <tests@example.invalid>\nSection: admin\nPriority: optional\n"
	for _, f := range [][2]string{{"Depends", p.Depends}, {"Conflicts", p.Conflicts}, {"Replaces", p.Replaces}} {
		if f[1] != "" {
			control += f[0] + ": " + f[1] + "\n"
		}
	}
	control += "Description: " + p.Name + " stand-in for glbootstrap's package tests\n"
	aptMust(t, os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644))
	for name, script := range map[string]string{"preinst": p.Preinst, "postinst": p.Postinst, "prerm": p.Prerm, "postrm": p.Postrm} {
		if script != "" {
			aptMust(t, os.WriteFile(filepath.Join(root, "DEBIAN", name), []byte(script), 0o755))
		}
	}
	for path, content := range p.Files {
		full := filepath.Join(root, filepath.FromSlash(path))
		aptMust(t, os.MkdirAll(filepath.Dir(full), 0o755))
		aptMust(t, os.WriteFile(full, []byte(content), 0o755))
	}
	aptRun(t, "", "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root,
		filepath.Join(outDir, p.Name+"_"+p.Version+"_"+arch+".deb"))
}

func aptRun(t testing.TB, dir, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

func aptMust(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
