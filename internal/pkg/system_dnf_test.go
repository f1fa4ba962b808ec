package pkg

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// The system test of Ensure with the real dnf and rpm (Debian's dnf 4 and rpm 4.18): a
// repository laid out like packages.gitlab.com's Amazon Linux 2023 one, built with rpmbuild,
// rpmsign and createrepo_c, its repomd.xml signed with gpg, served on 127.0.0.1; testdata/pkghelper
// runs chrooted into an overlay of this host's own root (a private mount namespace: every write
// lands in a scratch upper directory), told the distribution is Amazon Linux 2023. Opt-in
// (GLB_SYSTEM_TEST=1) like the apt test.

// overlayRoot is a throwaway root: this host's "/" below a scratch upper directory.
type overlayRoot struct{ dir string }

func newOverlayRoot(t *testing.T) overlayRoot {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "glb-dnf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return overlayRoot{dir}
}

// run runs argv chrooted into the overlay, in a mount namespace of its own, with the
// network of the test (127.0.0.1 is the test's); it returns stdout and stderr.
func (o overlayRoot) run(t *testing.T, argv ...string) (string, string, error) {
	t.Helper()
	script := `set -e
m="$1"; shift
mount -t overlay overlay -o "lowerdir=/,upperdir=$GLB_OV/upper,workdir=$GLB_OV/work" "$m"
mount --rbind /proc "$m/proc"; mount --rbind /dev "$m/dev"; mount -t tmpfs tmpfs "$m/tmp"
exec chroot "$m" "$@"`
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", filepath.Join(o.dir, "merged")}, argv...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "GLB_OV=" + o.dir}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func rpmPackages(versions ...string) []testenv.RpmPackage {
	var ps []testenv.RpmPackage
	for _, v := range versions {
		ps = append(ps,
			testenv.RpmPackage{Name: "gitlab-runner", Version: v, Release: "1", Requires: "gitlab-runner-helper-images = " + v + "-1",
				Files: map[string]string{"/usr/bin/gitlab-runner": "#!/bin/sh\necho 'Version:      " + v + "'\n"}},
			testenv.RpmPackage{Name: "gitlab-runner-helper-images", Version: v, Release: "1",
				Files: map[string]string{"/usr/lib/gitlab-runner/helper-images/VERSION": v + "\n"}},
		)
	}
	return ps
}

func TestSystemDnfEnsure(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: runs dnf as root in an overlay of this host; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	if os.Geteuid() != 0 {
		t.Fatal("GLB_SYSTEM_TEST=1 needs root: the dnf test mounts an overlay")
	}
	for _, tool := range append([]string{"go", "unshare", "dnf", "rpm"}, testenv.RpmRepoTools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the dnf system test needs %s (Debian packages dnf, dnf-plugins-core, rpm, createrepo-c, gpg, util-linux): %v", tool, err)
		}
	}
	share := t.TempDir()
	bin := filepath.Join(share, "pkghelper")
	build := exec.Command("go", "build", "-o", bin, "./testdata/pkghelper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building testdata/pkghelper: %v\n%s", err, out)
	}

	start := time.Now()
	repoKey := testenv.NewAptKey(t, "Test GitLab B.V. (package repository signing key) <packages@example.invalid>")
	pkgKey := testenv.NewAptKey(t, "Test GitLab, Inc. <support@example.invalid>")
	otherKey := testenv.NewAptKey(t, "Someone else <other@example.invalid>")
	const pkgKeyPath = "gpgkey/runner/49F16C5CC3A0F81F.pub.gpg"
	// $basearch is x86_64 on this host: the noarch packages are served under that name too.
	good := testenv.NewRpmRepo(t, testenv.RpmRepoSpec{Path: "runner/gitlab-runner/amazon/2023/" + hostBasearch(t),
		MetadataKey: repoKey, PackageKey: pkgKey, PackageKeyPath: pkgKeyPath, Packages: rpmPackages("17.9.3", "17.9.2")})
	// Packages signed by another key than the pinned package key, metadata properly signed.
	badPkgs := testenv.NewRpmRepo(t, testenv.RpmRepoSpec{Path: "runner/gitlab-runner/amazon/2023/" + hostBasearch(t),
		MetadataKey: repoKey, PackageKey: otherKey, PackageKeyPath: pkgKeyPath, Packages: rpmPackages("17.9.3")})
	forgedPkgs := testenv.NewRpmRepo(t, testenv.RpmRepoSpec{Path: "runner/gitlab-runner/amazon/2023/" + hostBasearch(t),
		MetadataKey: repoKey, PackageKey: otherKey, ServePackageKey: pkgKey, PackageKeyPath: pkgKeyPath, Packages: rpmPackages("17.9.3")})
	forgedMeta := testenv.NewRpmRepo(t, testenv.RpmRepoSpec{Path: "runner/gitlab-runner/amazon/2023/" + hostBasearch(t),
		MetadataKey: otherKey, ServeMetadataKey: repoKey, PackageKey: pkgKey, PackageKeyPath: pkgKeyPath, Packages: rpmPackages("17.9.3")})
	t.Logf("rpm repositories built in %s", time.Since(start).Round(time.Millisecond))

	root := newOverlayRoot(t)
	// The helper binary is copied into the root's upper layer.
	if err := os.MkdirAll(filepath.Join(root.dir, "upper", "glb-test"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(bin)
	if err := os.WriteFile(filepath.Join(root.dir, "upper", "glb-test", "pkghelper"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	// Debian's dnf-plugins-core enables the "local" plugin, whose _dnf_local repository has no
	// key; Amazon Linux 2023 has no such plugin.
	if err := os.MkdirAll(filepath.Join(root.dir, "upper", "etc", "dnf", "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root.dir, "upper", "etc", "dnf", "plugins", "local.conf"), []byte("[main]\nenabled = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const al2023 = "NAME=\"Amazon Linux\"\nID=\"amzn\"\nVERSION_ID=\"2023\"\n"
	ensure := func(mirror, pkgFpr, version string, extra ...string) helperResult {
		t.Helper()
		argv := append([]string{"/glb-test/pkghelper", "-os-release", al2023, "-mirror", mirror, "-fingerprint", repoKey.Fingerprint,
			"-package-fingerprint", pkgFpr, "-version", version}, extra...)
		begin := time.Now()
		out, stderr, err := root.run(t, argv...)
		if err != nil {
			t.Fatalf("pkghelper %s: %v\n%s%s", strings.Join(argv[5:], " "), err, out, stderr)
		}
		var res helperResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("pkghelper output %q: %v\n%s", out, err, stderr)
		}
		t.Logf("Ensure %s %s: %s; steps %+v; error %q", version, strings.Join(extra, " "), time.Since(begin).Round(time.Millisecond), res.Steps, res.Error)
		return res
	}
	rpmQ := func(name string) string {
		t.Helper()
		out, _, _ := root.run(t, "rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", name)
		return strings.TrimSpace(out)
	}

	// The package key served is not the pinned one: refused before anything is written.
	res := ensure(badPkgs.URL, pkgKey.Fingerprint, "17.9.3")
	if !strings.Contains(res.Error, "refusing the repository key "+badPkgs.URL+"/"+pkgKeyPath) {
		t.Errorf("unpinned package key: error %q, want it refused", res.Error)
	}
	if out, _, _ := root.run(t, "ls", "/etc/yum.repos.d"); strings.Contains(out, "runner_gitlab-runner") {
		t.Errorf("an unpinned package key left a .repo file: %s", out)
	}
	// The pinned package key is served, but the packages were signed by another: rpm refuses.
	res = ensure(forgedPkgs.URL, pkgKey.Fingerprint, "17.9.3")
	if !strings.Contains(res.Error, "installing gitlab-runner 17.9.3-1") || !strings.Contains(res.Error, "Public key for gitlab-runner-17.9.3-1.noarch.rpm is not installed") {
		t.Errorf("packages signed by another key: error %q, want rpm's signature check to refuse the install", res.Error)
	}
	if v := rpmQ("gitlab-runner"); !strings.Contains(v, "not installed") {
		t.Errorf("packages signed by another key: rpm -q says %q", v)
	}
	// Metadata signed by another key than the pinned repository key: dnf refuses the repository.
	res = ensure(forgedMeta.URL, pkgKey.Fingerprint, "17.9.3")
	if !strings.Contains(res.Error, "dnf makecache of "+forgedMeta.URL) || !strings.Contains(res.Error, "repomd.xml GPG signature verification error") {
		t.Errorf("metadata signed by another key: error %q, want makecache refused for the signature", res.Error)
	}
	// The .repo file is put back as it was (the previous run's, for the other server).
	if out, _, _ := root.run(t, "cat", "/etc/yum.repos.d/runner_gitlab-runner.repo"); strings.Contains(out, forgedMeta.URL) || !strings.Contains(out, forgedPkgs.URL) {
		t.Errorf("a refused repository's .repo file was not put back:\n%s", out)
	}
	if v := rpmQ("gitlab-runner"); !strings.Contains(v, "not installed") {
		t.Errorf("metadata signed by another key: rpm -q says %q", v)
	}

	res = ensure(good.URL, pkgKey.Fingerprint, "17.9.9")
	if !strings.Contains(res.Error, "17.9.9-1 is not in the repository") || !strings.Contains(res.Error, "17.9.3-1, 17.9.2-1") {
		t.Errorf("missing version: %q", res.Error)
	}

	res = ensure(good.URL, pkgKey.Fingerprint, "17.9.2")
	if res.Error != "" {
		t.Fatalf("install 17.9.2: %s", res.Error)
	}
	for _, p := range []string{"gitlab-runner", "gitlab-runner-helper-images"} {
		if v := rpmQ(p); v != "17.9.2-1" {
			t.Errorf("after install: %s is %q", p, v)
		}
	}
	locks, _, _ := root.run(t, "cat", versionlockList)
	if !locked([]byte(locks), Package{"gitlab-runner", "17.9.2-1"}) || !locked([]byte(locks), Package{"gitlab-runner-helper-images", "17.9.2-1"}) {
		t.Errorf("after install, %s:\n%s", versionlockList, locks)
	}

	before := len(good.Requests())
	res = ensure(good.URL, pkgKey.Fingerprint, "17.9.2")
	if res.Error != "" || len(res.Steps) != 1 || res.Steps[0].Changed {
		t.Errorf("second Ensure: %+v", res)
	}
	if reqs := good.Requests()[before:]; len(reqs) != 0 {
		t.Errorf("second Ensure requested %q", reqs)
	}

	res = ensure(good.URL, pkgKey.Fingerprint, "17.9.3")
	if res.Error != "" || rpmQ("gitlab-runner") != "17.9.3-1" {
		t.Fatalf("upgrade across the lock: %q, rpm says %s", res.Error, rpmQ("gitlab-runner"))
	}
	res = ensure(good.URL, pkgKey.Fingerprint, "17.9.2")
	if !strings.Contains(res.Error, "downgrading is refused") {
		t.Errorf("downgrade: %q", res.Error)
	}
	res = ensure(good.URL, pkgKey.Fingerprint, "17.9.2", "-allow-downgrade")
	if res.Error != "" || rpmQ("gitlab-runner") != "17.9.2-1" || rpmQ("gitlab-runner-helper-images") != "17.9.2-1" {
		t.Errorf("allowed downgrade: %q; rpm says %s", res.Error, rpmQ("gitlab-runner"))
	}
}

func hostBasearch(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("uname", "-m").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
