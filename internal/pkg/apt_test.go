package pkg

import (
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it; review the diff):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestAptCommandsGolden records the sources.list entry and every apt command Ensure runs for
// the runner on Debian 12 and GitLab EE on Ubuntu 24.04 behind a mirror.
func TestAptCommandsGolden(t *testing.T) {
	runner, err := Runner(bookworm, "", "17.9.3")
	if err != nil {
		t.Fatal(err)
	}
	ee, err := GitLab(noble, "https://mirror.internal/gitlab", "ee", "18.5.1")
	if err != nil {
		t.Fatal(err)
	}
	ee.AllowDowngrade = true
	var b strings.Builder
	for _, r := range []Request{runner, ee} {
		b.WriteString("# " + r.Repo.SourcePath() + "\n" + r.Repo.SourceLine())
		b.WriteString("# keyring " + r.Repo.KeyringPath() + " from " + r.Repo.KeyURL + "\n")
		b.WriteString(strings.Join(UpdateCommand(r.Repo), " ") + "\n")
		b.WriteString(strings.Join(InstallCommand(r), " ") + "\n\n")
	}
	b.WriteString(strings.Join(FullUpdateCommand(), " ") + "\n")
	golden(t, "apt-commands.golden", b.String())
}

func TestParseDpkgQuery(t *testing.T) {
	out := "gitlab-runner\thold ok installed\t17.9.3-1\n" +
		"gitlab-runner-helper-images\tinstall ok installed\t17.9.3-1\n" +
		"gitlab-ee\tdeinstall ok config-files\t18.4.0-ee.0\n" +
		"dpkg-query: no packages found matching gitlab-ce\n"
	got := parseDpkgQuery(out)
	want := map[string]installed{
		"gitlab-runner":               {Version: "17.9.3-1", Installed: true, Held: true},
		"gitlab-runner-helper-images": {Version: "17.9.3-1", Installed: true},
		"gitlab-ee":                   {Version: "18.4.0-ee.0"},
	}
	if len(got) != len(want) {
		t.Errorf("parseDpkgQuery = %+v", got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %+v, want %+v", k, got[k], w)
		}
	}
}

func TestParseMadison(t *testing.T) {
	const url = "https://packages.gitlab.com/runner/gitlab-runner/debian/"
	out := ` gitlab-runner |   17.9.3-1 | https://packages.gitlab.com/runner/gitlab-runner/debian bookworm/main amd64 Packages
 gitlab-runner |   17.9.2-1 | https://packages.gitlab.com/runner/gitlab-runner/debian bookworm/main amd64 Packages
 gitlab-runner | 11.2.0+dfsg-2 | http://deb.debian.org/debian bookworm/main amd64 Packages
N: Unable to locate package nothing
`
	if got := strings.Join(parseMadison(out, url), ", "); got != "17.9.3-1, 17.9.2-1" {
		t.Errorf("parseMadison = %q, want only the repository's versions", got)
	}
}

func TestURIToFileName(t *testing.T) {
	for in, want := range map[string]string{
		"https://packages.gitlab.com/runner/gitlab-runner/debian/": "packages.gitlab.com_runner_gitlab-runner_debian_",
		"http://user:pw@mirror:8081/gitlab/":                       "mirror:8081_gitlab_",
	} {
		if got := uriToFileName(in); got != want {
			t.Errorf("uriToFileName(%q) = %q, want %q", in, got, want)
		}
	}
}

// keyServer serves file at /gpgkey/gpg.key and counts the requests.
func keyServer(t *testing.T, file string) (string, *atomic.Int32) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if !strings.HasPrefix(r.URL.Path, "/gpgkey/") {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

// TestEnsureUnderRoot runs Ensure against a --root tree (not the live system, so no command
// runs): the keyring and the source list are written when the served key is pinned, and nothing
// at all when it is not.
func TestEnsureUnderRoot(t *testing.T) {
	mirror, _ := keyServer(t, "testdata/keys/rsa.asc")
	const rsaFpr = "57C4CFD597ABD7AE832BD45315B05D7F7627CA8C"
	req, err := Runner(bookworm, mirror, "17.9.3")
	if err != nil {
		t.Fatal(err)
	}

	// Not pinned: refused, nothing written.
	root := t.TempDir()
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = Manager{Host: h}.Ensure(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "refusing the repository key "+mirror+"/gpgkey/gpg.key") || !strings.Contains(err.Error(), RepoKeyFingerprint) {
		t.Errorf("unpinned key: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("an unpinned key left %d entries under the root", len(entries))
	}

	// Pinned: written, with the binary keyring; commands not run under --root.
	req.Repo.Fingerprints = []string{rsaFpr}
	steps, err := Manager{Host: h}.Ensure(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 || !steps[0].Changed || !steps[1].Changed || !strings.HasPrefix(steps[2].Summary, "not run (--root") {
		t.Errorf("steps %+v", steps)
	}
	kr, err := os.ReadFile(filepath.Join(root, "etc/apt/keyrings/runner_gitlab-runner.gpg"))
	if err != nil {
		t.Fatal(err)
	}
	if _, keys, err := ParseKeys(kr); err != nil || len(keys) != 1 || keys[0].Fingerprint != rsaFpr || kr[0]&0x80 == 0 {
		t.Errorf("keyring: %v %+v (want gpg --dearmor's binary form)", err, keys)
	}
	list, _ := os.ReadFile(filepath.Join(root, "etc/apt/sources.list.d/runner_gitlab-runner.list"))
	if !strings.Contains(string(list), "deb [signed-by=/etc/apt/keyrings/runner_gitlab-runner.gpg] "+mirror+"/runner/gitlab-runner/debian/ bookworm main\n") {
		t.Errorf("source list:\n%s", list)
	}

	// A plan on the same tree: the files are unchanged, the commands would not run either.
	p, err := host.New(root, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	steps, err = Manager{Host: p}.Ensure(context.Background(), req)
	if err != nil || steps[0].Changed || steps[1].Changed {
		t.Errorf("plan after apply: %+v, %v", steps, err)
	}
	if got := p.Planned(); len(got) != 0 {
		t.Errorf("plan under --root recorded %+v, want nothing (no command runs under --root)", got)
	}
}

// TestDnfGolden records the .repo file and every dnf command Ensure runs for the runner on
// Amazon Linux 2023 and GitLab EE on RHEL 9 behind a mirror. Real dnf does not run in these
// tests (see the package's report): these files are what a reviewer checks against GitLab's
// script.rpm.sh.
func TestDnfGolden(t *testing.T) {
	runner, err := Runner(al2023, "", "17.9.3")
	if err != nil {
		t.Fatal(err)
	}
	ee, err := GitLab(el9, "https://mirror.internal/gitlab", "ee", "18.5.1")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range []Request{runner, ee} {
		b.WriteString("# " + r.Repo.RepoFilePath() + "\n" + r.Repo.RepoFile())
		b.WriteString("# " + r.Repo.RepoKeyPath() + " from " + r.Repo.KeyURL + " pinned " + strings.Join(r.Repo.Fingerprints, " ") + "\n")
		b.WriteString("# " + r.Repo.PackageKeyPath() + " from " + strings.Join(r.Repo.PackageKeyURLs, " ") + " pinned " + strings.Join(r.Repo.PackageFingerprints, " ") + "\n")
		for _, c := range [][]string{DnfMakecacheCommand(r.Repo), DnfAvailableCommand(r.Repo, r.Packages[0].Name),
			DnfUnlockCommand(r.Names()), DnfInstallCommand(r, false), DnfInstallCommand(r, true), DnfLockCommand(r)} {
			b.WriteString(strings.Join(c, " ") + "\n")
		}
		b.WriteString("\n")
	}
	golden(t, "dnf.golden", b.String())
}

func TestVersionlockList(t *testing.T) {
	list := []byte("# Added lock on Mon Dec  1 10:00:00 2026\ngitlab-runner-0:17.9.3-1.*\ngitlab-runner-helper-images-17.9.3-1\n")
	for _, tc := range []struct {
		p            Package
		exact, named bool
	}{
		{Package{"gitlab-runner", "17.9.3-1"}, true, true},
		{Package{"gitlab-runner", "17.9.2-1"}, false, true},
		{Package{"gitlab-runner-helper-images", "17.9.3-1"}, true, true},
		{Package{"gitlab-ee", "18.5.1-ee.0.el9"}, false, false},
	} {
		if got := locked(list, tc.p); got != tc.exact {
			t.Errorf("locked(%v) = %t", tc.p, got)
		}
		if got := lockedName(list, tc.p.Name); got != tc.named {
			t.Errorf("lockedName(%s) = %t", tc.p.Name, got)
		}
	}
	if lockedName([]byte("gitlab-runner-helper-images-0:17.9.3-1.*\n"), "gitlab-runner") {
		t.Error("a lock of gitlab-runner-helper-images counted as one of gitlab-runner")
	}
}

// TestEnsureDnfUnderRoot: for dnf, the .repo file and both key files are written as
// downloaded (ASCII armor, which rpm needs) once every key is pinned; nothing runs under --root.
func TestEnsureDnfUnderRoot(t *testing.T) {
	mirror, _ := keyServer(t, "testdata/keys/rsa.asc")
	const rsaFpr = "57C4CFD597ABD7AE832BD45315B05D7F7627CA8C"
	req, err := Runner(al2023, mirror, "17.9.3")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	req.Repo.Fingerprints = []string{rsaFpr}
	if _, err := (Manager{Host: h}).Ensure(context.Background(), req); err == nil || !strings.Contains(err.Error(), RunnerPackageKeyFingerprint) {
		t.Errorf("unpinned package key: %v, want it refused", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("a refused key left %d entries under the root", len(entries))
	}
	req.Repo.PackageFingerprints = []string{rsaFpr}
	steps, err := Manager{Host: h}.Ensure(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 4 || !strings.HasPrefix(steps[3].Summary, "not run (--root") {
		t.Errorf("steps %+v", steps)
	}
	want, _ := os.ReadFile("testdata/keys/rsa.asc")
	for _, p := range []string{req.Repo.RepoKeyPath(), req.Repo.PackageKeyPath()} {
		if got, _ := os.ReadFile(filepath.Join(root, p)); string(got) != string(want) {
			t.Errorf("%s is not the armored key as served", p)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(root, req.Repo.RepoFilePath())); string(got) != req.Repo.RepoFile() {
		t.Errorf("%s:\n%s", req.Repo.RepoFilePath(), got)
	}
}

// TestHaveOtherLists: a stock image whose apt lists were emptied when it was built gets a full
// apt-get update (the packages' dependencies come from the distribution), any other host only
// the update of GitLab's source.
func TestHaveOtherLists(t *testing.T) {
	req, err := Runner(bookworm, "", "17.9.3")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	m := Manager{Host: h}
	if m.haveOtherLists(req.Repo) {
		t.Error("no lists directory: want a full update")
	}
	lists := filepath.Join(root, "var/lib/apt/lists")
	for _, f := range []string{"lock", "deb.debian.org_debian_dists_bookworm_InRelease",
		"packages.gitlab.com_runner_gitlab-runner_debian_dists_bookworm_main_binary-amd64_Packages"} {
		if err := os.MkdirAll(lists, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lists, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if m.haveOtherLists(req.Repo) {
		t.Error("only GitLab's index and the distribution's Release files: want a full update")
	}
	if err := os.WriteFile(filepath.Join(lists, "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !m.haveOtherLists(req.Repo) {
		t.Error("the distribution's index is there: want only GitLab's source updated")
	}
}
