package pkg

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/nspawn"
)

// The system test of Ensure with the real apt and dpkg: a repository laid out like
// packages.gitlab.com's, built with dpkg-deb and apt-ftparchive and signed with gpg
// (testenv.NewAptRepo), served on 127.0.0.1, and a booted Debian 12 container (sharing the
// host's network) in which testdata/pkghelper calls Ensure on its live "/". Opt-in
// (GLB_SYSTEM_TEST=1, make system-test).

type helperResult struct {
	Steps []struct {
		Kind, Target, Summary string
		Changed               bool
	} `json:"steps"`
	Planned []struct {
		Kind, Target string
	} `json:"planned"`
	Error string `json:"error"`
}

func runnerPackages(versions ...string) []testenv.DebPackage {
	var ps []testenv.DebPackage
	for _, v := range versions {
		ps = append(ps,
			// As gitlab-runner's own package since 17.7.1 (magefiles/packages/create.go): it
			// depends on the helper images at exactly its version.
			testenv.DebPackage{Name: "gitlab-runner", Version: v, Depends: "gitlab-runner-helper-images (= " + v + ")",
				Files: map[string]string{"/usr/bin/gitlab-runner": "#!/bin/sh\necho 'Version:      " + v + "'\n"}},
			testenv.DebPackage{Name: "gitlab-runner-helper-images", Version: v,
				Files: map[string]string{"/usr/lib/gitlab-runner/helper-images/VERSION": v + "\n"}},
		)
	}
	return ps
}

func TestSystemAptEnsure(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: boots a systemd-nspawn container as root and runs apt in it; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	rootfs := nspawn.Prerequisites(t, append([]string{"go"}, testenv.AptRepoTools...)...)
	nspawn.RequireRootfs(t, rootfs, "/usr/bin/apt-get", "/usr/bin/gpgv", "/usr/bin/dpkg-query")

	share := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(share, "pkghelper"), "./testdata/pkghelper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building testdata/pkghelper: %v\n%s", err, out)
	}

	start := time.Now()
	gitlabKey := testenv.NewAptKey(t, "Test GitLab B.V. (package repository signing key) <packages@example.invalid>")
	otherKey := testenv.NewAptKey(t, "Someone else <other@example.invalid>")
	good := testenv.NewAptRepo(t, testenv.AptRepoSpec{Path: "runner/gitlab-runner/debian", Suite: "bookworm",
		SignWith: gitlabKey, Packages: runnerPackages("17.9.3-1", "17.9.2-1")})
	// Signed by another key, while serving GitLab's pinned key: apt must refuse its metadata.
	forged := testenv.NewAptRepo(t, testenv.AptRepoSpec{Path: "runner/gitlab-runner/debian", Suite: "bookworm",
		SignWith: otherKey, ServeKey: gitlabKey, Packages: runnerPackages("17.9.3-1")})
	t.Logf("repositories built in %s", time.Since(start).Round(time.Millisecond))

	c := nspawn.Boot(t, rootfs, nspawn.BindRO(share, "/glb-test"))
	ensure := func(mirror, fpr, version string, extra ...string) helperResult {
		t.Helper()
		argv := append([]string{"/glb-test/pkghelper", "-mirror", mirror, "-fingerprint", fpr, "-version", version}, extra...)
		begin := time.Now()
		out, stderr, err := c.Run("", nil, argv...)
		if err != nil {
			t.Fatalf("pkghelper %s: %v\n%s%s", strings.Join(argv[1:], " "), err, out, stderr)
		}
		var res helperResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("pkghelper output %q: %v", out, err)
		}
		t.Logf("Ensure %s %s: %s; steps %+v; error %q", version, strings.Join(extra, " "), time.Since(begin).Round(time.Millisecond), res.Steps, res.Error)
		return res
	}
	status := func(name string) string {
		t.Helper()
		out, _, _ := c.Run("", nil, "dpkg-query", "-W", "-f=${Status} ${Version}", name)
		return strings.TrimSpace(out)
	}
	const list = "/etc/apt/sources.list.d/runner_gitlab-runner.list"
	const keyring = "/etc/apt/keyrings/runner_gitlab-runner.gpg"
	absent := func(what string) {
		t.Helper()
		for _, p := range []string{list, keyring} {
			if _, _, code := c.Exec(nil, "test", "-e", p); code == 0 {
				t.Errorf("%s: %s exists, want nothing written", what, p)
			}
		}
		if s := status("gitlab-runner"); strings.Contains(s, " installed ") {
			t.Errorf("%s: gitlab-runner is %q, want not installed", what, s)
		}
	}

	// Plan: says what it would write and run; writes and runs nothing.
	res := ensure(good.URL, gitlabKey.Fingerprint, "17.9.2", "-plan")
	if res.Error != "" {
		t.Fatalf("plan: %s", res.Error)
	}
	var planned []string
	for _, a := range res.Planned {
		planned = append(planned, a.Kind+" "+a.Target)
	}
	for _, want := range []string{"write " + keyring, "write " + list, "apt-get update", "apt-get install", "gitlab-runner=17.9.2-1 gitlab-runner-helper-images=17.9.2-1", "apt-mark hold gitlab-runner gitlab-runner-helper-images"} {
		if !slices.ContainsFunc(planned, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("plan: no planned action with %q in %q", want, planned)
		}
	}
	absent("after plan")

	// The served key is not the pinned one: refused before anything is written.
	res = ensure(good.URL, otherKey.Fingerprint, "17.9.2")
	if !strings.Contains(res.Error, "refusing the repository key") || !strings.Contains(res.Error, gitlabKey.Fingerprint) || !strings.Contains(res.Error, otherKey.Fingerprint) {
		t.Errorf("unpinned key: error %q, want it refused, naming the key found and the key pinned", res.Error)
	}
	absent("after an unpinned key")

	// The key is the pinned one but the repository is signed by another: apt refuses it.
	res = ensure(forged.URL, gitlabKey.Fingerprint, "17.9.3")
	if !strings.Contains(res.Error, "apt refused the repository "+forged.URL) || !strings.Contains(res.Error, "not signed by the pinned key "+gitlabKey.Fingerprint) {
		t.Errorf("forged repository: error %q, want apt's refusal of its signature", res.Error)
	}
	absent("after a forged repository") // the source list and keyring are taken back

	// A version the repository does not have: the error names those it has.
	res = ensure(good.URL, gitlabKey.Fingerprint, "17.9.9")
	if !strings.Contains(res.Error, "17.9.9-1 is not in the repository") || !strings.Contains(res.Error, "17.9.3-1, 17.9.2-1") || !strings.Contains(res.Error, "runner.version") {
		t.Errorf("missing version: error %q, want it to name 17.9.3-1, 17.9.2-1 and runner.version", res.Error)
	}
	if s := status("gitlab-runner"); strings.Contains(s, " installed ") {
		t.Errorf("missing version: gitlab-runner is %q, want not installed", s)
	}

	// Install the older version (not the newest: the helper images must be pinned with it).
	res = ensure(good.URL, gitlabKey.Fingerprint, "17.9.2")
	if res.Error != "" {
		t.Fatalf("install 17.9.2: %s", res.Error)
	}
	for _, p := range []string{"gitlab-runner", "gitlab-runner-helper-images"} {
		if s := status(p); s != "hold ok installed 17.9.2-1" {
			t.Errorf("after install: %s is %q, want \"hold ok installed 17.9.2-1\"", p, s)
		}
	}
	if out := c.Sh(t, "gitlab-runner --version"); !strings.Contains(out, "17.9.2-1") {
		t.Errorf("gitlab-runner --version = %q", out)
	}
	if got := c.Sh(t, "cat "+list); !strings.Contains(got, "deb [signed-by="+keyring+"] "+good.URL+"/runner/gitlab-runner/debian/ bookworm main") {
		t.Errorf("%s:\n%s", list, got)
	}
	// apt itself accepts the keyring glbootstrap wrote (gpg --dearmor's format) for the signature.
	if got := c.Sh(t, "gpgv --keyring "+keyring+" /var/lib/apt/lists/*runner_gitlab-runner_debian_dists_bookworm_InRelease 2>&1 || true"); !strings.Contains(got, "Good signature") {
		t.Errorf("gpgv with the installed keyring: %s", got)
	}

	// Again: nothing to do, and not one request to the repository (no apt-get update).
	before := len(good.Requests())
	res = ensure(good.URL, gitlabKey.Fingerprint, "17.9.2")
	if res.Error != "" || len(res.Steps) != 1 || res.Steps[0].Changed || res.Steps[0].Summary != "17.9.2-1 installed and held" {
		t.Errorf("second Ensure: %+v, want one unchanged step \"17.9.2-1 installed and held\"", res)
	}
	if reqs := good.Requests()[before:]; len(reqs) != 0 {
		t.Errorf("second Ensure requested %q from the repository, want nothing (no apt-get update)", reqs)
	}

	// Installed at the version but not held: held again, still without the repository.
	c.Sh(t, "apt-mark unhold gitlab-runner >/dev/null")
	res = ensure(good.URL, gitlabKey.Fingerprint, "17.9.2")
	if res.Error != "" || len(res.Steps) != 1 || !res.Steps[0].Changed || !strings.Contains(res.Steps[0].Summary, "held") {
		t.Errorf("Ensure of an unheld package: %+v", res)
	}
	if s := status("gitlab-runner"); s != "hold ok installed 17.9.2-1" {
		t.Errorf("after re-hold: %q", s)
	}
	if reqs := good.Requests()[before:]; len(reqs) != 0 {
		t.Errorf("re-hold requested %q from the repository, want nothing", reqs)
	}

	// Upgrade across the hold.
	res = ensure(good.URL, gitlabKey.Fingerprint, "17.9.3-1")
	if res.Error != "" {
		t.Fatalf("upgrade to 17.9.3: %s", res.Error)
	}
	if s := status("gitlab-runner"); s != "hold ok installed 17.9.3-1" {
		t.Errorf("after upgrade: %q", s)
	}
	if st := res.Steps[len(res.Steps)-1]; !strings.Contains(st.Summary, "(was 17.9.2-1)") {
		t.Errorf("upgrade step %+v, want it to say what was installed", st)
	}

	// Downgrade: refused, then allowed explicitly.
	res = ensure(good.URL, gitlabKey.Fingerprint, "17.9.2")
	if !strings.Contains(res.Error, "downgrading is refused") || !strings.Contains(res.Error, "17.9.3-1 is installed") {
		t.Errorf("downgrade: error %q, want it refused", res.Error)
	}
	if s := status("gitlab-runner"); s != "hold ok installed 17.9.3-1" {
		t.Errorf("after a refused downgrade: %q", s)
	}
	res = ensure(good.URL, gitlabKey.Fingerprint, "17.9.2", "-allow-downgrade")
	if res.Error != "" {
		t.Fatalf("allowed downgrade: %s", res.Error)
	}
	for _, p := range []string{"gitlab-runner", "gitlab-runner-helper-images"} {
		if s := status(p); s != "hold ok installed 17.9.2-1" {
			t.Errorf("after the allowed downgrade: %s is %q", p, s)
		}
	}
}
