package pkg

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// Paths of the dnf definition of a repository named NAME.
const (
	dnfReposDir = "/etc/yum.repos.d"
	dnfKeyDir   = "/etc/pki/rpm-gpg"
	// versionlockList is where the versionlock plugin keeps its locks (dnf-plugins-core,
	// plugins/versionlock.conf: locklist).
	versionlockList = "/etc/dnf/plugins/versionlock.list"
)

// RepoFilePath is the .repo file Ensure writes for r on dnf.
func (r Repo) RepoFilePath() string { return path.Join(dnfReposDir, r.Name+".repo") }

// RepoKeyPath is the repository (metadata) key file; PackageKeyPath the package signing key's.
func (r Repo) RepoKeyPath() string    { return path.Join(dnfKeyDir, "RPM-GPG-KEY-"+r.Name) }
func (r Repo) PackageKeyPath() string { return path.Join(dnfKeyDir, "RPM-GPG-KEY-"+r.Name+"-packages") }

// RepoFile is r's yum.repos.d(5) file: the metadata signature (repo_gpgcheck) and each
// package's (gpgcheck) are checked against the two local key files only, which Ensure wrote
// after checking their fingerprints; the other settings are those of GitLab's script.rpm.sh,
// and skip_if_unavailable=0, so a repository dnf cannot verify is an error, not silently skipped
// (dnf's default is a distribution's choice: Debian's dnf.conf skips).
func (r Repo) RepoFile() string {
	return fmt.Sprintf(`# Written by glbootstrap: GitLab's repository, trusted only with its pinned signing keys.
[%s]
name=%s
baseurl=%s
enabled=1
repo_gpgcheck=1
gpgcheck=1
gpgkey=file://%s
       file://%s
skip_if_unavailable=0
sslverify=1
metadata_expire=300
`, r.Name, r.Name, r.URL, r.RepoKeyPath(), r.PackageKeyPath())
}

// dnfQuiet are the options of every dnf call: no prompt; with -y, a key dnf imports is one of
// the local files above (gpgkey), whose fingerprints Ensure checked.
var dnfQuiet = []string{"-y", "-q"}

// DnfMakecacheCommand refreshes r's metadata only.
func DnfMakecacheCommand(r Repo) []string {
	return slices.Concat([]string{"dnf"}, dnfQuiet, []string{"--repo=" + r.Name, "makecache"})
}

// DnfAvailableCommand lists the versions r has of name, one VERSION-RELEASE a line.
func DnfAvailableCommand(r Repo, name string) []string {
	return slices.Concat([]string{"dnf"}, dnfQuiet, []string{"--repo=" + r.Name, "repoquery", "--qf", "%{version}-%{release}", name})
}

// DnfInstallCommand installs the request's packages at their versions (downgrade when the
// installed one is newer: dnf install does not downgrade).
func DnfInstallCommand(req Request, downgrade bool) []string {
	verb := "install"
	if downgrade {
		verb = "downgrade"
	}
	var argv []string
	if u := unsetEnv(req); len(u) > 0 {
		argv = append([]string{"env"}, u...)
	}
	argv = slices.Concat(argv, []string{"dnf"}, dnfQuiet, []string{verb})
	for _, p := range req.Packages {
		argv = append(argv, p.Name+"-"+p.Version)
	}
	return argv
}

// DnfLockCommand locks the request's packages at their versions (the versionlock plugin of
// dnf-plugins-core: python3-dnf-plugin-versionlock on Amazon Linux 2023 and RHEL 9).
func DnfLockCommand(req Request) []string {
	argv := slices.Concat([]string{"dnf"}, dnfQuiet, []string{"versionlock", "add"})
	for _, p := range req.Packages {
		argv = append(argv, p.Name+"-"+p.Version)
	}
	return argv
}

// DnfUnlockCommand drops the locks of names, so another version can be installed.
func DnfUnlockCommand(names []string) []string {
	return slices.Concat([]string{"dnf"}, dnfQuiet, []string{"versionlock", "delete"}, names)
}

// ensureDnf is Ensure for dnf: rpm's installed version and the versionlock list first, then
// the keys, the .repo file, makecache of that repository, the available versions, install and
// lock. It mirrors the apt path; see Ensure.
func (m Manager) ensureDnf(ctx context.Context, req Request) ([]host.Step, error) {
	h := m.Host
	main := req.Packages[0]
	st := host.Step{Kind: "package", Target: main.Name}

	have, queried, err := m.rpmQuery(ctx, req.Names())
	if err != nil {
		return nil, err
	}
	locks, _ := h.ReadFile(versionlockList)
	var toInstall, toLock []string
	for _, p := range req.Packages {
		switch {
		case have[p.Name] != p.Version:
			toInstall = append(toInstall, p.Name)
		case !locked(locks, p):
			toLock = append(toLock, p.Name)
		}
	}
	if queried && len(toInstall) == 0 && len(toLock) == 0 {
		st.Summary = main.Version + " installed and locked"
		return []host.Step{st}, nil
	}
	if queried && len(toInstall) == 0 {
		lock := DnfLockCommand(req)
		act, _, err := h.Run(ctx, nil, lock[0], lock[1:]...)
		if err != nil {
			return nil, fmt.Errorf("locking %s (dnf versionlock; install python3-dnf-plugin-versionlock): %w", strings.Join(toLock, " "), err)
		}
		st.Changed, st.Summary = true, main.Version+" installed; locked"
		if !act.Ran {
			st.Summary = act.NotRun + ": " + main.Version + " installed; lock"
		}
		return []host.Step{st}, nil
	}

	cur := have[main.Name]
	downgrade := false
	if queried && cur != "" {
		cmp, err := m.rpmVercmp(ctx, cur, main.Version)
		if err != nil {
			return nil, err
		}
		if downgrade = cmp > 0; downgrade && !req.AllowDowngrade {
			return nil, fmt.Errorf("%s %s is installed and %s is %s, older: downgrading is refused (it can break a host whose data the newer version already migrated); set %s to %s or newer, or allow the downgrade explicitly (--allow-downgrade)",
				main.Name, cur, configKey(req), main.Version, configKey(req), cur)
		}
	}

	// dnf hands a gpgkey file to rpm as ASCII armor (dnf.yum.misc.procgpgkey): the checked file
	// is kept as downloaded.
	repoKey, err := m.armoredKey(ctx, req.Repo)
	if err != nil {
		return nil, err
	}
	var pkgKeys []byte
	for _, u := range req.Repo.PackageKeyURLs {
		k, err := m.armoredKey(ctx, Repo{KeyURL: u, Fingerprints: req.Repo.PackageFingerprints})
		if err != nil {
			return nil, err
		}
		pkgKeys = append(pkgKeys, k...)
	}
	// A repository dnf cannot verify (skip_if_unavailable=0) would fail every later dnf run on
	// the host: when dnf refuses it, the files are put back as they were.
	steps, rollback, err := writeFiles(h, []host.File{
		{Path: req.Repo.RepoKeyPath(), Data: repoKey, Mode: 0o644},
		{Path: req.Repo.PackageKeyPath(), Data: pkgKeys, Mode: 0o644},
		{Path: req.Repo.RepoFilePath(), Data: []byte(req.Repo.RepoFile()), Mode: 0o644},
	})
	if err != nil {
		return nil, err
	}

	mc := DnfMakecacheCommand(req.Repo)
	m.progress("dnf makecache (" + req.Repo.URL + ")")
	act, _, err := h.Run(ctx, nil, mc[0], mc[1:]...)
	if err != nil {
		rollback("dnf refused the repository")
		return nil, fmt.Errorf("dnf makecache of %s failed (its metadata must be signed by the pinned key %s, %s); nothing was installed and its .repo file was removed again: %w",
			req.Repo.URL, strings.Join(req.Repo.Fingerprints, " or "), req.Repo.keyOwner(), err)
	}
	if act.Ran {
		for _, p := range req.Packages {
			q := DnfAvailableCommand(req.Repo, p.Name)
			_, out, err := h.Check(ctx, nil, q[0], q[1:]...)
			if err != nil {
				return nil, fmt.Errorf("listing the versions of %s: %w", p.Name, err)
			}
			vs := parseRepoquery(string(out))
			if !slices.Contains(vs, p.Version) {
				slices.Reverse(vs) // newest first, like apt-cache madison
				return nil, fmt.Errorf("%s %s is not in the repository %s, which has %s: set %s to one of them; nothing was installed",
					p.Name, p.Version, req.Repo.URL, orUnknown(strings.Join(vs, ", "), "no version of it"), configKey(req))
			}
		}
	}
	var wasLocked []string
	for _, p := range req.Packages {
		if lockedName(locks, p.Name) {
			wasLocked = append(wasLocked, p.Name)
		}
	}
	if len(wasLocked) > 0 {
		un := DnfUnlockCommand(wasLocked)
		if _, _, err := h.Run(ctx, nil, un[0], un[1:]...); err != nil {
			return nil, fmt.Errorf("releasing the version lock of %s: %w", strings.Join(wasLocked, " "), err)
		}
	}
	inst := DnfInstallCommand(req, downgrade)
	m.progress("installing " + strings.Join(inst[len(inst)-len(req.Packages):], " "))
	act, _, ierr := h.Run(ctx, nil, inst[0], inst[1:]...)
	if ierr != nil {
		if len(wasLocked) > 0 {
			// What was locked stays locked at the version installed: a failed install must not
			// let it drift.
			relock := slices.Concat([]string{"dnf"}, dnfQuiet, []string{"versionlock", "add"}, wasLocked)
			_, _, _ = h.Run(ctx, nil, relock[0], relock[1:]...)
		}
		return nil, fmt.Errorf("installing %s %s: %w", main.Name, main.Version, ierr)
	}
	lock := DnfLockCommand(req)
	_, _, lerr := h.Run(ctx, nil, lock[0], lock[1:]...)
	if lerr != nil {
		return nil, fmt.Errorf("locking %s (dnf versionlock; install python3-dnf-plugin-versionlock): %w", strings.Join(req.Names(), " "), lerr)
	}
	st.Changed = true
	what := "installed " + main.Version
	if cur != "" {
		what += " (was " + cur + ")"
	}
	if len(req.Packages) > 1 {
		what += " with " + strings.Join(req.Names()[1:], ", ")
	}
	st.Summary = what + "; locked"
	if !act.Ran {
		st.Summary = act.NotRun + ": " + strings.Replace(what, "installed", "install", 1) + "; lock"
	}
	return append(steps, st), nil
}

// rpmQuery returns VERSION-RELEASE of each installed name ("" when not installed).
func (m Manager) rpmQuery(ctx context.Context, names []string) (map[string]string, bool, error) {
	args := append([]string{"-q", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\n"}, names...)
	act, out, err := m.Host.Check(ctx, nil, "rpm", args...)
	if !act.Ran {
		return map[string]string{}, false, nil
	}
	// rpm -q exits with the number of names not installed, and says so on the same stream.
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, false, fmt.Errorf("asking rpm which version of %s is installed: %w", strings.Join(names, " "), err)
	}
	res := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if n, v, ok := strings.Cut(line, "\t"); ok {
			res[n] = v
		}
	}
	return res, true, nil
}

// rpmVercmp compares two VERSION-RELEASE strings by rpm's own rules: -1, 0 or 1.
func (m Manager) rpmVercmp(ctx context.Context, a, b string) (int, error) {
	expr := fmt.Sprintf(`%%{lua: print(rpm.vercmp(%q, %q))}`, a, b)
	act, out, err := m.Host.Check(ctx, nil, "rpm", "--eval", expr)
	if !act.Ran {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("comparing versions %s and %s with rpm: %w", a, b, err)
	}
	switch strings.TrimSpace(string(out)) {
	case "-1":
		return -1, nil
	case "0":
		return 0, nil
	case "1":
		return 1, nil
	}
	return 0, fmt.Errorf("comparing versions %s and %s with rpm: unexpected %q", a, b, out)
}

// locked reports whether the versionlock list holds p at exactly its version
// ("gitlab-runner-0:17.9.3-1.*", as dnf versionlock add writes it).
func locked(list []byte, p Package) bool {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(p.Name) + `-(\d+:)?` + regexp.QuoteMeta(p.Version) + `(\.\*)?$`)
	for _, l := range strings.Split(string(list), "\n") {
		if re.MatchString(strings.TrimSpace(l)) {
			return true
		}
	}
	return false
}

// lockedName reports whether the versionlock list holds any version of name.
func lockedName(list []byte, name string) bool {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `-(\d+:)?\d`)
	for _, l := range strings.Split(string(list), "\n") {
		if re.MatchString(strings.TrimSpace(l)) {
			return true
		}
	}
	return false
}

// armoredKey downloads r's key file, checks it and returns it as downloaded, which must be
// ASCII-armored.
func (m Manager) armoredKey(ctx context.Context, r Repo) ([]byte, error) {
	raw, _, err := m.fetchKeyFile(ctx, r)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(raw), "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
		return nil, fmt.Errorf("the key %s is not ASCII-armored, which rpm needs: serve the file as packages.gitlab.com does", r.KeyURL)
	}
	return raw, nil
}

var rpmEVR = regexp.MustCompile(`^[0-9][A-Za-z0-9._+~^]*-[A-Za-z0-9._+~^]+$`)

// parseRepoquery keeps the VERSION-RELEASE lines of dnf repoquery's output (dnf's warnings,
// "Unable to detect release version", come on the same stream).
func parseRepoquery(out string) []string {
	var vs []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); rpmEVR.MatchString(l) && !slices.Contains(vs, l) {
			vs = append(vs, l)
		}
	}
	return vs
}
