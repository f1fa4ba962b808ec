// Package pkg installs GitLab's packages (gitlab-runner, gitlab-ee, gitlab-ce) at an exact
// version from GitLab's own repositories (packages.gitlab.com, or a mirror of it), and holds them
// there so unattended upgrades cannot move them.
//
// The repository's signing key is pinned in the product (keys.go): the key file is downloaded,
// every key in it must have a pinned fingerprint, and only then is it installed as the
// repository's signed-by keyring, so apt accepts the repository's metadata only when GitLab's key
// signed it. Ensure is cheap when nothing is to do: it asks dpkg for the installed version first
// and touches neither the network nor apt when the exact version is installed and held.
//
// Every file is written and every command run through a host.Host: a plan Host records what
// would be written and run, and under a --root other than "/" no command runs.
package pkg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// DefaultBaseURL is GitLab's package server; packages.mirror replaces it, keeping the same
// layout below it (<base>/runner/gitlab-runner/debian/, <base>/gpgkey/gpg.key).
const DefaultBaseURL = "https://packages.gitlab.com"

// keyPath is where the repository key is published below the base URL, as GitLab's repository
// setup script (https://packages.gitlab.com/install/repositories/runner/gitlab-runner/script.deb.sh)
// fetches it.
const keyPath = "/gpgkey/gpg.key"

// Family is the package manager of a distribution.
type Family string

const (
	// Apt is Debian and Ubuntu.
	Apt Family = "apt"
	// Dnf is Amazon Linux 2023 and RHEL 9.
	Dnf Family = "dnf"
)

// Distro is the target's distribution as packages.gitlab.com names its repositories.
type Distro struct {
	// ID is os-release's ID: debian, ubuntu, amzn, rhel.
	ID string
	// Family is the package manager.
	Family Family
	// RepoOS is the repository's OS directory: debian, ubuntu, amazon, el.
	RepoOS string
	// Release is the apt suite (bookworm, jammy, noble) or the dnf release directory (2023, 9).
	Release string
}

// supported lists the distributions glbootstrap installs GitLab's packages on, by os-release
// ID and VERSION_ID; GitLab's repositories have these (runner docs "Supported distributions",
// https://docs.gitlab.com/runner/install/linux-repository/).
var supported = map[string]Distro{
	"debian 12":    {ID: "debian", Family: Apt, RepoOS: "debian", Release: "bookworm"},
	"debian 13":    {ID: "debian", Family: Apt, RepoOS: "debian", Release: "trixie"},
	"ubuntu 22.04": {ID: "ubuntu", Family: Apt, RepoOS: "ubuntu", Release: "jammy"},
	"ubuntu 24.04": {ID: "ubuntu", Family: Apt, RepoOS: "ubuntu", Release: "noble"},
	"amzn 2023":    {ID: "amzn", Family: Dnf, RepoOS: "amazon", Release: "2023"},
	"rhel 9":       {ID: "rhel", Family: Dnf, RepoOS: "el", Release: "9"},
}

// DetectDistro reads the target's /etc/os-release (ID, VERSION_ID) and returns its repository
// names. An unsupported distribution is an error listing the supported ones.
func DetectDistro(h *host.Host) (Distro, error) {
	b, err := h.ReadFile("/etc/os-release")
	if err != nil {
		return Distro{}, fmt.Errorf("reading /etc/os-release to choose GitLab's package repository: %w", err)
	}
	return ParseOSRelease(b)
}

// ParseOSRelease is DetectDistro on the content of os-release(5).
func ParseOSRelease(b []byte) (Distro, error) {
	vals := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		vals[k] = v
	}
	id, ver := vals["ID"], vals["VERSION_ID"]
	if id == "rhel" {
		ver, _, _ = strings.Cut(ver, ".") // 9.4 -> 9
	}
	d, ok := supported[id+" "+ver]
	if !ok {
		return Distro{}, fmt.Errorf("%s %s (from /etc/os-release) has no GitLab package repository glbootstrap knows: use Debian 12 or 13, Ubuntu 22.04 or 24.04, Amazon Linux 2023 or RHEL 9",
			orUnknown(vals["NAME"], id), orUnknown(ver, "(no VERSION_ID)"))
	}
	return d, nil
}

func orUnknown(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// Repo is one of GitLab's package repositories for one distribution.
type Repo struct {
	// Family is the package manager the repository is for.
	Family Family
	// Name names the files: /etc/apt/sources.list.d/NAME.list and /etc/apt/keyrings/NAME.gpg,
	// or /etc/yum.repos.d/NAME.repo.
	Name string
	// URL is the repository's root for the distribution, with a trailing slash:
	// https://packages.gitlab.com/runner/gitlab-runner/debian/ (apt) or
	// .../runner/gitlab-runner/amazon/2023/$basearch (dnf).
	URL string
	// Suite and Component are the apt distribution and component (bookworm, main).
	Suite, Component string
	// KeyURL is where the repository key file is downloaded: <base>/gpgkey/gpg.key.
	KeyURL string
	// Fingerprints are the keys the key file may hold (RepoKeyFingerprint); a file with any
	// other key is refused.
	Fingerprints []string
	// PackageKeyURLs and PackageFingerprints are the package signing keys rpm checks (dnf only).
	PackageKeyURLs      []string
	PackageFingerprints []string
}

// Package is a package at an exact version in the package manager's syntax: 17.9.3-1 (deb and
// rpm for gitlab-runner), 18.5.1-ee.0 (deb), 18.5.1-ee.0.el9 (rpm).
type Package struct {
	Name, Version string
}

// Request is what Ensure makes true: every package installed at its version from Repo, and held.
type Request struct {
	Repo Repo
	// Packages are installed together; the first is the one the user asked for, the others
	// need to be at the same version (gitlab-runner-helper-images).
	Packages []Package
	// AllowDowngrade lets an older version replace an installed newer one.
	AllowDowngrade bool
	// ConfigKey is the configuration key that chose the version, for messages (runner.version).
	ConfigKey string
	// UnsetEnv are variables of glbootstrap's own environment that the packages' maintainer
	// scripts read and must not see: the install runs under "env -u NAME" for each.
	UnsetEnv []string
}

// OmnibusScriptEnv are the variables of glbootstrap's own environment (user-data, an SSM Run
// Command shell, an admin's login) that GitLab Omnibus acts on when they are set, and that must
// not decide anything on a host glbootstrap configures:
//   - EXTERNAL_URL: GitLab's install page has users export it; a first install then runs
//     "gitlab-ctl reconfigure" at once, before glbootstrap's fragment is in place, whatever
//     /etc/gitlab/skip-auto-reconfigure says (omnibus-gitlab files/gitlab-ctl-commands/upgrade.rb:
//     the fresh-install branch comes before that file is looked at; postinst.erb also rewrites
//     external_url in gitlab.rb from it).
//   - GITLAB_ROOT_PASSWORD: reconfigure prefers it over gitlab_rails['initial_root_password']
//     (omnibus-gitlab files/gitlab-cookbooks/gitlab/libraries/gitlab_rails.rb), so the root
//     password would not be the SecureString gitlab.initial_root_password_parameter names.
//   - GITLAB_ROOT_EMAIL and GITLAB_SHARED_RUNNERS_REGISTRATION_TOKEN: read by GitLab's database
//     seed, which reconfigure's migrations run with the inherited environment (gitlab
//     db/fixtures/production; omnibus-gitlab recipes/database_migrations.rb).
//
// The package install runs under "env -u NAME" for each (Request.UnsetEnv), and ScrubOmnibusEnv
// removes them from glbootstrap's process before any Omnibus command (reconfigure, gitlab-backup,
// restore) runs.
var OmnibusScriptEnv = []string{"EXTERNAL_URL", "GITLAB_ROOT_PASSWORD", "GITLAB_ROOT_EMAIL", "GITLAB_SHARED_RUNNERS_REGISTRATION_TOKEN"}

// ScrubOmnibusEnv unsets OmnibusScriptEnv in this process, so no Omnibus program it starts sees
// them, and returns the names that were set (never their values), for a warning.
func ScrubOmnibusEnv() []string {
	var set []string
	for _, v := range OmnibusScriptEnv {
		if _, ok := os.LookupEnv(v); ok {
			set = append(set, v)
			os.Unsetenv(v)
		}
	}
	return set
}

// ScrubOmnibusEnvNote is the warning for the names ScrubOmnibusEnv returned, or "" for none.
func ScrubOmnibusEnvNote(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return "warning: " + strings.Join(names, ", ") + " set in glbootstrap's environment: removed before any GitLab Omnibus command runs " +
		"(the configuration decides: gitlab.url, gitlab.initial_root_password_parameter); unset them in the user-data or shell that starts glbootstrap"
}

// baseURL returns mirror without trailing slashes, or DefaultBaseURL when mirror is empty.
func baseURL(mirror string) (string, error) {
	if mirror == "" {
		return DefaultBaseURL, nil
	}
	if !strings.HasPrefix(mirror, "https://") && !strings.HasPrefix(mirror, "http://") {
		return "", fmt.Errorf("packages.mirror %q: want an http(s):// URL that serves packages.gitlab.com's layout", mirror)
	}
	return strings.TrimRight(mirror, "/"), nil
}

func newRepo(d Distro, mirror, project string) (Repo, error) {
	base, err := baseURL(mirror)
	if err != nil {
		return Repo{}, err
	}
	name := strings.ReplaceAll(project, "/", "_") // runner_gitlab-runner, as GitLab's script names it
	r := Repo{Family: d.Family, Name: name, KeyURL: base + keyPath, Fingerprints: []string{RepoKeyFingerprint}}
	switch d.Family {
	case Apt:
		r.URL = base + "/" + project + "/" + d.RepoOS + "/"
		r.Suite, r.Component = d.Release, "main"
	case Dnf:
		r.URL = base + "/" + project + "/" + d.RepoOS + "/" + d.Release + "/$basearch"
	default:
		return Repo{}, fmt.Errorf("unknown package manager %q", d.Family)
	}
	return r, nil
}

var (
	runnerVersionRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)(-\d+)?$`)
	gitlabVersionRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)(-(ee|ce)\.\d+)?$`)
)

// HelperImagesSince is the first gitlab-runner release whose package depends on
// gitlab-runner-helper-images (17.7.0; from 17.7.1 on at exactly its own version), so apt must be
// given both at the same version or it picks the newest helper images and fails: gitlab-runner's
// magefiles/packages/create.go at v17.7.0 and v17.7.1, and the runner install docs ("As of
// gitlab-runner version v17.7.1 ... you must explicitly install the required
// gitlab-runner-helper-images").
var HelperImagesSince = [3]int{17, 7, 0}

// Runner is the request for gitlab-runner at version ("17.9.3" or "17.9.3-1"; the package
// iteration defaults to 1) from GitLab's runner repository, or mirror's copy of it, for d.
// From 17.7.0 on gitlab-runner-helper-images at the same version is installed with it.
func Runner(d Distro, mirror, version string) (Request, error) {
	m := runnerVersionRE.FindStringSubmatch(version)
	if m == nil {
		return Request{}, fmt.Errorf("runner.version %q: want a gitlab-runner release such as 17.9.3 (or 17.9.3-1)", version)
	}
	if m[4] == "" {
		version += "-1"
	}
	r, err := newRepo(d, mirror, "runner/gitlab-runner")
	if err != nil {
		return Request{}, err
	}
	if d.Family == Dnf {
		r.PackageKeyURLs = []string{strings.TrimSuffix(r.KeyURL, keyPath) + "/gpgkey/runner/49F16C5CC3A0F81F.pub.gpg"}
		r.PackageFingerprints = []string{RunnerPackageKeyFingerprint}
	}
	req := Request{Repo: r, Packages: []Package{{"gitlab-runner", version}}, ConfigKey: "runner.version"}
	if !olderThan(m[1:4], HelperImagesSince) {
		req.Packages = append(req.Packages, Package{"gitlab-runner-helper-images", version})
	}
	return req, nil
}

// GitLab is the request for the Omnibus package of edition ("ee" or "ce") at version ("18.5.1"
// or "18.5.1-ee.0"; the suffix defaults to -<edition>.0, and dnf's release adds .el9 / .amazon2023)
// from GitLab's repository for d.
func GitLab(d Distro, mirror, edition, version string) (Request, error) {
	if edition != "ee" && edition != "ce" {
		return Request{}, fmt.Errorf("gitlab edition %q: want ee or ce", edition)
	}
	m := gitlabVersionRE.FindStringSubmatch(version)
	if m == nil {
		return Request{}, fmt.Errorf("gitlab.version %q: want a GitLab release such as 18.5.1 (or 18.5.1-%s.0)", version, edition)
	}
	if m[5] != "" && m[5] != edition {
		return Request{}, fmt.Errorf("gitlab.version %q is a %s release but the edition is %s", version, m[5], edition)
	}
	if m[4] == "" {
		version += "-" + edition + ".0"
	}
	r, err := newRepo(d, mirror, "gitlab/gitlab-"+edition)
	if err != nil {
		return Request{}, err
	}
	if d.Family == Dnf {
		version += dnfDist(d)
		r.PackageKeyURLs = []string{strings.TrimSuffix(r.KeyURL, keyPath) + "/gpgkey/gitlab/CB947AD886C8E8FD.pub.gpg"}
		r.PackageFingerprints = []string{OmnibusPackageKeyFingerprint}
	}
	return Request{Repo: r, Packages: []Package{{"gitlab-" + edition, version}}, ConfigKey: "gitlab.version", UnsetEnv: OmnibusScriptEnv}, nil
}

// dnfDist is the rpm release's dist suffix of the Omnibus packages (gitlab-ee-18.5.1-ee.0.el9).
func dnfDist(d Distro) string {
	if d.RepoOS == "amazon" {
		return ".amazon" + d.Release
	}
	return ".el" + d.Release
}

// olderThan compares the digits of a release with ref.
func olderThan(digits []string, ref [3]int) bool {
	for i := range 3 {
		n, _ := strconv.Atoi(digits[i])
		if n != ref[i] {
			return n < ref[i]
		}
	}
	return false
}

// WithMirrorKey returns req trusting, for the repository's metadata, only the key with
// fingerprint (packages.mirror_key_fingerprint: 40 hex digits, spaces allowed) instead of
// GitLab's RepoKeyFingerprint: a private mirror (aptly, Nexus, Artifactory) re-signs the apt
// Release files or the dnf repomd.xml with its own key and serves that public key at
// MIRROR/gpgkey/gpg.key. The package signing keys rpm checks (Repo.PackageFingerprints) stay
// GitLab's: a mirror copies the packages unchanged. An empty fingerprint returns req unchanged;
// a malformed one, or one for GitLab's own server, is an error.
func (r Request) WithMirrorKey(fingerprint string) (Request, error) {
	if fingerprint == "" {
		return r, nil
	}
	f := NormalizeFingerprint(fingerprint)
	if !fingerprintRE.MatchString(f) {
		return Request{}, fmt.Errorf("packages.mirror_key_fingerprint %q: want the 40 hex digits of the mirror's OpenPGP signing key (gpg --fingerprint)", fingerprint)
	}
	if strings.HasPrefix(r.Repo.KeyURL, DefaultBaseURL+"/") {
		return Request{}, errors.New("packages.mirror_key_fingerprint is set without packages.mirror: packages.gitlab.com is always checked against GitLab's pinned key")
	}
	r.Repo.Fingerprints = []string{f}
	return r, nil
}

// fingerprintRE is an OpenPGP v4 fingerprint as NormalizeFingerprint returns it.
var fingerprintRE = regexp.MustCompile(`^[0-9A-F]{40}$`)

// keyOwner says whose key r trusts, for messages: GitLab's (with the page that publishes it) or
// the mirror's own (packages.mirror_key_fingerprint).
func (r Repo) keyOwner() string {
	if len(r.Fingerprints) == 1 && r.Fingerprints[0] == RepoKeyFingerprint {
		return "GitLab's repository key, " + KeyDocs
	}
	return "the mirror's key, packages.mirror_key_fingerprint"
}

// Names are the packages' names, in order.
func (r Request) Names() []string {
	out := make([]string, len(r.Packages))
	for i, p := range r.Packages {
		out[i] = p.Name
	}
	return out
}
