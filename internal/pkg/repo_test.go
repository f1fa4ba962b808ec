package pkg

import (
	"strings"
	"testing"
)

func TestParseOSRelease(t *testing.T) {
	for _, tc := range []struct {
		osRelease string
		want      Distro
		err       string
	}{
		{"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
			Distro{ID: "debian", Family: Apt, RepoOS: "debian", Release: "bookworm"}, ""},
		{"NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\n", Distro{ID: "ubuntu", Family: Apt, RepoOS: "ubuntu", Release: "jammy"}, ""},
		{"NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\n", Distro{ID: "ubuntu", Family: Apt, RepoOS: "ubuntu", Release: "noble"}, ""},
		{"NAME=\"Amazon Linux\"\nVERSION=\"2023\"\nID=\"amzn\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"2023\"\n", Distro{ID: "amzn", Family: Dnf, RepoOS: "amazon", Release: "2023"}, ""},
		{"NAME=\"Red Hat Enterprise Linux\"\nID=\"rhel\"\nVERSION_ID=\"9.4\"\n", Distro{ID: "rhel", Family: Dnf, RepoOS: "el", Release: "9"}, ""},
		{"NAME=\"Ubuntu\"\nVERSION_ID=\"20.04\"\nID=ubuntu\n", Distro{}, "Ubuntu 20.04 (from /etc/os-release) has no GitLab package repository glbootstrap knows: use Debian 12"},
		{"NAME=\"Amazon Linux\"\nID=\"amzn\"\nVERSION_ID=\"2\"\n", Distro{}, "Amazon Linux 2 (from"},
	} {
		got, err := ParseOSRelease([]byte(tc.osRelease))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseOSRelease(%q): %v, want error %q", tc.osRelease, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseOSRelease(%q) = %+v, %v; want %+v", tc.osRelease, got, err, tc.want)
		}
	}
}

var (
	bookworm = Distro{ID: "debian", Family: Apt, RepoOS: "debian", Release: "bookworm"}
	noble    = Distro{ID: "ubuntu", Family: Apt, RepoOS: "ubuntu", Release: "noble"}
	al2023   = Distro{ID: "amzn", Family: Dnf, RepoOS: "amazon", Release: "2023"}
	el9      = Distro{ID: "rhel", Family: Dnf, RepoOS: "el", Release: "9"}
)

func pkgs(r Request) string {
	var s []string
	for _, p := range r.Packages {
		s = append(s, p.Name+"="+p.Version)
	}
	return strings.Join(s, " ")
}

func TestRunnerRequest(t *testing.T) {
	for _, tc := range []struct {
		d                 Distro
		mirror, version   string
		pkgs, url, keyURL string
	}{
		{bookworm, "", "17.9.3", "gitlab-runner=17.9.3-1 gitlab-runner-helper-images=17.9.3-1",
			"https://packages.gitlab.com/runner/gitlab-runner/debian/", "https://packages.gitlab.com/gpgkey/gpg.key"},
		// The first release with the helper images package, and the one before it.
		{bookworm, "", "17.7.0", "gitlab-runner=17.7.0-1 gitlab-runner-helper-images=17.7.0-1", "", ""},
		{bookworm, "", "17.6.1-1", "gitlab-runner=17.6.1-1", "", ""},
		{noble, "http://mirror.internal:8081/repository/gitlab/", "18.5.0-2", "gitlab-runner=18.5.0-2 gitlab-runner-helper-images=18.5.0-2",
			"http://mirror.internal:8081/repository/gitlab/runner/gitlab-runner/ubuntu/", "http://mirror.internal:8081/repository/gitlab/gpgkey/gpg.key"},
		{al2023, "", "17.9.3", "gitlab-runner=17.9.3-1 gitlab-runner-helper-images=17.9.3-1",
			"https://packages.gitlab.com/runner/gitlab-runner/amazon/2023/$basearch", ""},
	} {
		r, err := Runner(tc.d, tc.mirror, tc.version)
		if err != nil {
			t.Errorf("Runner(%s, %q): %v", tc.version, tc.mirror, err)
			continue
		}
		if got := pkgs(r); got != tc.pkgs {
			t.Errorf("Runner(%s) packages %q, want %q", tc.version, got, tc.pkgs)
		}
		if tc.url != "" && r.Repo.URL != tc.url {
			t.Errorf("Runner(%s, %q) URL %q, want %q", tc.version, tc.mirror, r.Repo.URL, tc.url)
		}
		if tc.keyURL != "" && r.Repo.KeyURL != tc.keyURL {
			t.Errorf("Runner(%s, %q) key URL %q, want %q", tc.version, tc.mirror, r.Repo.KeyURL, tc.keyURL)
		}
		if len(r.Repo.Fingerprints) != 1 || r.Repo.Fingerprints[0] != RepoKeyFingerprint {
			t.Errorf("Runner pins %q, want GitLab's repository key", r.Repo.Fingerprints)
		}
		if r.ConfigKey != "runner.version" || r.Repo.Name != "runner_gitlab-runner" {
			t.Errorf("Runner: config key %q, name %q", r.ConfigKey, r.Repo.Name)
		}
	}
	for _, bad := range []struct{ mirror, version, err string }{
		{"", "v17.9.3", `runner.version "v17.9.3": want a gitlab-runner release such as 17.9.3`},
		{"", "latest", "want a gitlab-runner release"},
		{"mirror.internal", "17.9.3", `packages.mirror "mirror.internal": want an http(s):// URL`},
	} {
		if _, err := Runner(bookworm, bad.mirror, bad.version); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("Runner(%q, %q): %v, want %q", bad.mirror, bad.version, err, bad.err)
		}
	}
}

func TestGitLabRequest(t *testing.T) {
	for _, tc := range []struct {
		d                         Distro
		edition, version          string
		pkgs, url, name, pkgKeyFp string
	}{
		{bookworm, "ee", "18.5.1", "gitlab-ee=18.5.1-ee.0", "https://packages.gitlab.com/gitlab/gitlab-ee/debian/", "gitlab_gitlab-ee", ""},
		{noble, "ce", "18.5.1-ce.0", "gitlab-ce=18.5.1-ce.0", "https://packages.gitlab.com/gitlab/gitlab-ce/ubuntu/", "gitlab_gitlab-ce", ""},
		{el9, "ee", "18.5.1", "gitlab-ee=18.5.1-ee.0.el9", "https://packages.gitlab.com/gitlab/gitlab-ee/el/9/$basearch", "gitlab_gitlab-ee", OmnibusPackageKeyFingerprint},
		{al2023, "ee", "18.5.1", "gitlab-ee=18.5.1-ee.0.amazon2023", "https://packages.gitlab.com/gitlab/gitlab-ee/amazon/2023/$basearch", "gitlab_gitlab-ee", OmnibusPackageKeyFingerprint},
	} {
		r, err := GitLab(tc.d, "", tc.edition, tc.version)
		if err != nil {
			t.Errorf("GitLab(%s, %s): %v", tc.edition, tc.version, err)
			continue
		}
		if got := pkgs(r); got != tc.pkgs || r.Repo.URL != tc.url || r.Repo.Name != tc.name || r.ConfigKey != "gitlab.version" {
			t.Errorf("GitLab(%s, %s) = %q from %q (%s, %s)", tc.edition, tc.version, got, r.Repo.URL, r.Repo.Name, r.ConfigKey)
		}
		if tc.pkgKeyFp != "" && (len(r.Repo.PackageFingerprints) != 1 || r.Repo.PackageFingerprints[0] != tc.pkgKeyFp) {
			t.Errorf("GitLab(%s) package keys %q", tc.version, r.Repo.PackageFingerprints)
		}
	}
	if _, err := GitLab(bookworm, "", "ee", "18.5.1-ce.0"); err == nil || !strings.Contains(err.Error(), "is a ce release but the edition is ee") {
		t.Errorf("a ce version for ee: %v", err)
	}
	if _, err := GitLab(bookworm, "", "premium", "18.5.1"); err == nil {
		t.Error("edition premium accepted")
	}
}
