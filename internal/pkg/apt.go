package pkg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// Paths of the apt definition of a repository named NAME.
const (
	aptSourcesDir = "/etc/apt/sources.list.d"
	// aptKeyringDir is where apt(8)'s sources.list(5) tells an administrator to keep keyrings
	// that no package manages, and where GitLab's own setup script puts its keyring.
	aptKeyringDir = "/etc/apt/keyrings"
	aptListsDir   = "/var/lib/apt/lists"
)

// SourcePath and KeyringPath are the files Ensure writes for r on apt.
func (r Repo) SourcePath() string  { return path.Join(aptSourcesDir, r.Name+".list") }
func (r Repo) KeyringPath() string { return path.Join(aptKeyringDir, r.Name+".gpg") }

// SourceLine is the one-line sources.list(5) entry of r, signed-by its keyring only (the key
// is trusted for this repository and no other).
func (r Repo) SourceLine() string {
	return fmt.Sprintf("deb [signed-by=%s] %s %s %s\n", r.KeyringPath(), r.URL, r.Suite, r.Component)
}

// Manager installs packages on a host with apt (Debian, Ubuntu) or dnf (Amazon Linux 2023,
// RHEL 9), as the request's repository says.
type Manager struct {
	// Host is where files are written and commands run.
	Host *host.Host
	// HTTP downloads the repository key; nil means a client with a 60 s timeout.
	HTTP *http.Client
	// Progress receives a line before each slow step (apt-get update, install); may be nil.
	Progress func(string)
}

// aptEnv runs apt and dpkg without a terminal: no debconf question, no needrestart prompt
// (Ubuntu), and a conffile changed locally keeps the local version instead of asking.
var aptEnv = []string{"env", "DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_MODE=l", "APT_LISTCHANGES_FRONTEND=none"}

// aptOpts are the options every apt-get call gets: wait for a lock held by cloud-init or
// unattended-upgrades at first boot instead of failing at once, and never prompt about a
// conffile (keep the admin's, install the package's when the admin did not change it).
var aptOpts = []string{
	"-q", "-o", "DPkg::Lock::Timeout=300",
	"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
}

// installed is what dpkg says of one package.
type installed struct {
	Version string
	// Installed is true when dpkg's status is "installed" (not config-files, half-installed...).
	Installed bool
	// Held is true when the selection is "hold" (apt-mark hold).
	Held bool
}

// UpdateCommand is the apt-get update that refreshes only r's index: the other sources are not
// fetched (cheap, and a broken third-party source cannot fail the install), and their lists are
// kept (List-Cleanup=0).
func UpdateCommand(r Repo) []string {
	return slices.Concat(aptEnv, []string{"apt-get", "update"}, aptOpts, []string{
		"-o", "Dir::Etc::sourcelist=" + r.SourcePath(),
		"-o", "Dir::Etc::sourceparts=-",
		"-o", "APT::Get::List-Cleanup=0",
	})
}

// FullUpdateCommand refreshes every source: for a stock image whose lists were emptied when
// it was built, where the packages' dependencies (git, curl) cannot be resolved otherwise.
func FullUpdateCommand() []string {
	return slices.Concat(aptEnv, []string{"apt-get", "update"}, aptOpts)
}

// InstallCommand installs the request's packages at their exact versions.
func InstallCommand(req Request) []string {
	argv := slices.Concat(aptEnv[:1], unsetEnv(req), aptEnv[1:], []string{"apt-get", "install", "-y", "--no-install-recommends"}, aptOpts)
	if req.AllowDowngrade {
		argv = append(argv, "--allow-downgrades")
	}
	for _, p := range req.Packages {
		argv = append(argv, p.Name+"="+p.Version)
	}
	return argv
}

// unsetEnv are env(1)'s options that remove req.UnsetEnv from the install's environment.
func unsetEnv(req Request) []string {
	var o []string
	for _, v := range req.UnsetEnv {
		o = append(o, "-u", v)
	}
	return o
}

// Ensure makes every package of req installed at its exact version from req.Repo and held.
//
// It asks dpkg first: when every package is at its version and held it returns one unchanged
// step and neither downloads nor runs apt. Otherwise it refuses a downgrade (unless
// req.AllowDowngrade), downloads the repository key and refuses it unless every key in it is
// pinned (nothing is written then), writes the keyring and the source list (atomically, through
// the Host), runs apt-get update for that source only, refuses a version the repository does not
// have (naming those it has), installs and holds. A plan Host stops before anything is written
// or run and says what would be. Under a --root other than "/" dpkg cannot be asked: the files
// are written and the commands reported as not run.
//
// For a dnf repository (Family Dnf) the same is done with rpm -q and the versionlock list,
// the .repo file and its two key files (repository and package signing keys, both pinned),
// dnf makecache of that repository, dnf repoquery, install (or downgrade) and versionlock.
func (m Manager) Ensure(ctx context.Context, req Request) ([]host.Step, error) {
	h := m.Host
	if len(req.Packages) == 0 {
		return nil, errors.New("no package to install")
	}
	if req.Repo.Family == Dnf {
		return m.ensureDnf(ctx, req)
	}
	main := req.Packages[0]
	st := host.Step{Kind: "package", Target: main.Name}

	have, queried, err := m.query(ctx, req.Names())
	if err != nil {
		return nil, err
	}
	var toInstall, toHold []string
	for _, p := range req.Packages {
		cur := have[p.Name]
		switch {
		case !cur.Installed || cur.Version != p.Version:
			toInstall = append(toInstall, p.Name)
		case !cur.Held:
			toHold = append(toHold, p.Name)
		}
	}
	if queried && len(toInstall) == 0 && len(toHold) == 0 {
		st.Summary = main.Version + " installed and held"
		return []host.Step{st}, nil
	}
	if queried && len(toInstall) == 0 {
		// Right version, not held: holding needs no repository and no download.
		act, _, err := h.Run(ctx, nil, "apt-mark", append([]string{"hold"}, toHold...)...)
		if err != nil {
			return nil, fmt.Errorf("holding %s: %w", strings.Join(toHold, " "), err)
		}
		st.Changed = true
		st.Summary = main.Version + " installed; held"
		if !act.Ran {
			st.Summary = act.NotRun + ": " + main.Version + " installed; hold"
		}
		return []host.Step{st}, nil
	}

	cur := have[main.Name]
	if queried && cur.Installed {
		newer, err := m.newer(ctx, cur.Version, main.Version)
		if err != nil {
			return nil, err
		}
		if newer && !req.AllowDowngrade {
			return nil, fmt.Errorf("%s %s is installed and %s is %s, older: downgrading is refused (it can break a host whose data the newer version already migrated); set %s to %s or newer, or allow the downgrade explicitly (--allow-downgrade)",
				main.Name, cur.Version, configKey(req), main.Version, configKey(req), cur.Version)
		}
	}

	keyring, err := m.fetchKey(ctx, req.Repo)
	if err != nil {
		return nil, err
	}
	// A source apt cannot update would fail every later apt-get update on the host
	// (unattended-upgrades too): when apt refuses it, the files are put back as they were.
	steps, rollback, err := writeFiles(h, []host.File{
		{Path: req.Repo.KeyringPath(), Data: keyring, Mode: 0o644},
		{Path: req.Repo.SourcePath(), Data: []byte(sourceHeader + req.Repo.SourceLine()), Mode: 0o644},
	})
	if err != nil {
		return nil, err
	}

	update := UpdateCommand(req.Repo)
	if !m.haveOtherLists(req.Repo) {
		update = FullUpdateCommand()
	}
	m.progress("apt-get update (" + req.Repo.URL + ")")
	act, out, err := h.Run(ctx, nil, update[0], update[1:]...)
	if err != nil {
		rollback("apt refused the repository")
		if unsigned(out) {
			return nil, fmt.Errorf("apt refused the repository %s: its metadata is not signed by the pinned key %s (%s); nothing was installed and its source list was removed again. A packages.mirror must serve GitLab's signed Release files unchanged, or, when it re-signs them with its own key, name that key in packages.mirror_key_fingerprint: %w",
				req.Repo.URL, strings.Join(req.Repo.Fingerprints, " or "), req.Repo.keyOwner(), err)
		}
		return nil, fmt.Errorf("apt-get update of %s failed; nothing was installed: %w", req.Repo.URL, err)
	}
	if act.Ran {
		if err := m.checkAvailable(ctx, req); err != nil {
			return nil, err
		}
	}

	var held []string
	for _, p := range req.Packages {
		if have[p.Name].Held {
			held = append(held, p.Name)
		}
	}
	if len(held) > 0 {
		// apt-get -y refuses to change a held package; it is held again below.
		if _, _, err := h.Run(ctx, nil, "apt-mark", append([]string{"unhold"}, held...)...); err != nil {
			return nil, fmt.Errorf("releasing the hold on %s: %w", strings.Join(held, " "), err)
		}
	}
	install := InstallCommand(req)
	m.progress("installing " + strings.Join(install[len(install)-len(req.Packages):], " "))
	act, _, ierr := h.Run(ctx, nil, install[0], install[1:]...)
	if ierr != nil {
		if len(held) > 0 {
			// What was held stays held: a failed install must not let it drift.
			_, _, _ = h.Run(ctx, nil, "apt-mark", append([]string{"hold"}, held...)...)
		}
		return nil, fmt.Errorf("installing %s %s: %w", main.Name, main.Version, ierr)
	}
	_, _, herr := h.Run(ctx, nil, "apt-mark", append([]string{"hold"}, req.Names()...)...)
	if herr != nil {
		return nil, fmt.Errorf("holding %s: %w", strings.Join(req.Names(), " "), herr)
	}

	if act.Ran {
		after, _, err := m.query(ctx, req.Names())
		if err != nil {
			return nil, err
		}
		for _, p := range req.Packages {
			if got := after[p.Name]; !got.Installed || got.Version != p.Version || !got.Held {
				return nil, fmt.Errorf("after apt-get install, dpkg says %s is %s (installed %t, held %t), not %s held", p.Name, orUnknown(got.Version, "absent"), got.Installed, got.Held, p.Version)
			}
		}
	}
	st.Changed = true
	what := "installed " + main.Version
	if cur.Installed {
		what += " (was " + cur.Version + ")"
	}
	if len(req.Packages) > 1 {
		what += " with " + strings.Join(req.Names()[1:], ", ")
	}
	if act.Ran {
		st.Summary = what + "; held"
	} else {
		st.Summary = act.NotRun + ": " + strings.Replace(what, "installed", "install", 1) + "; hold"
	}
	return append(steps, st), nil
}

// unsigned reports whether apt-get update's output says a repository's signature was not made
// by a key it trusts (apt 2.x: "NO_PUBKEY", "The following signatures couldn't be verified",
// "is not signed").
func unsigned(out []byte) bool {
	s := string(out)
	return strings.Contains(s, "NO_PUBKEY") || strings.Contains(s, "signatures couldn't be verified") ||
		strings.Contains(s, "is not signed") || strings.Contains(s, "signatures were invalid")
}

// writeFiles ensures files in order and returns their steps and a function that puts back what
// was there before (removing a file that was not), last file first.
func writeFiles(h *host.Host, files []host.File) ([]host.Step, func(why string), error) {
	before := make([][]byte, len(files))
	for i, f := range files {
		if b, err := h.ReadFile(f.Path); err == nil {
			before[i] = b
		}
	}
	rollback := func(why string) {
		for i := len(files) - 1; i >= 0; i-- {
			f := files[i]
			if before[i] == nil {
				_, _ = h.EnsureAbsent(f.Path, why)
			} else {
				f.Data = before[i]
				_, _ = h.EnsureFile(f)
			}
		}
	}
	var steps []host.Step
	for _, f := range files {
		s, err := h.EnsureFile(f)
		if err != nil {
			rollback("a later file could not be written")
			return nil, nil, err
		}
		steps = append(steps, s)
	}
	return steps, rollback, nil
}

const sourceHeader = "# Written by glbootstrap: GitLab's repository, trusted only with its pinned signing key.\n"

func configKey(req Request) string {
	if req.ConfigKey == "" {
		return "the version"
	}
	return req.ConfigKey
}

func (m Manager) progress(s string) {
	if m.Progress != nil {
		m.Progress(s)
	}
}

// query asks dpkg about names. queried is false when the command could not run here (a --root
// that is not the live system).
func (m Manager) query(ctx context.Context, names []string) (map[string]installed, bool, error) {
	args := append([]string{"-W", "-f=${Package}\t${Status}\t${Version}\n"}, names...)
	act, out, err := m.Host.Check(ctx, nil, "dpkg-query", args...)
	if !act.Ran {
		return map[string]installed{}, false, nil
	}
	// dpkg-query exits 1 when a name is unknown to dpkg: that package is simply not installed.
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		return nil, false, fmt.Errorf("asking dpkg which version of %s is installed: %w", strings.Join(names, " "), err)
	}
	return parseDpkgQuery(string(out)), true, nil
}

// parseDpkgQuery reads lines "NAME\tWANT OK STATUS\tVERSION" (other lines, dpkg-query's "no
// packages found matching" on the same stream, are ignored).
func parseDpkgQuery(out string) map[string]installed {
	res := map[string]installed{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			continue
		}
		status := strings.Fields(f[1])
		if len(status) != 3 {
			continue
		}
		name, _, _ := strings.Cut(f[0], ":") // a Multi-Arch name:arch
		res[name] = installed{Version: f[2], Installed: status[2] == "installed", Held: status[0] == "hold"}
	}
	return res
}

// newer reports whether version a is greater than b by dpkg's own rules.
func (m Manager) newer(ctx context.Context, a, b string) (bool, error) {
	act, _, err := m.Host.Check(ctx, nil, "dpkg", "--compare-versions", a, "gt", b)
	if !act.Ran {
		return false, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("comparing versions %s and %s with dpkg: %w", a, b, err)
	}
	return true, nil
}

// fetchKey downloads the repository key and returns it as a binary keyring when every key in
// it is pinned.
func (m Manager) fetchKey(ctx context.Context, r Repo) ([]byte, error) {
	_, bin, err := m.fetchKeyFile(ctx, r)
	return bin, err
}

// fetchKeyFile downloads r's key file and returns it as downloaded and as a binary keyring,
// when every key in it is pinned.
func (m Manager) fetchKeyFile(ctx context.Context, r Repo) (raw, bin []byte, err error) {
	c := m.HTTP
	if c == nil {
		c = &http.Client{Timeout: 60 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.KeyURL, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("repository key URL %s: %w", r.KeyURL, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("downloading the repository key %s: %w (without a route to packages.gitlab.com, set packages.mirror)", r.KeyURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("downloading the repository key %s: HTTP %s", r.KeyURL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxKeyFile+1))
	if err != nil {
		return nil, nil, fmt.Errorf("downloading the repository key %s: %w", r.KeyURL, err)
	}
	if len(data) > maxKeyFile {
		return nil, nil, fmt.Errorf("the repository key %s is larger than %d bytes: not a key file", r.KeyURL, maxKeyFile)
	}
	bin, err = CheckKeys(data, r.Fingerprints)
	if err != nil {
		return nil, nil, fmt.Errorf("refusing the repository key %s: %w; nothing was installed (the pinned key is %s; a packages.mirror must serve that same key, or the key it re-signs with, named in packages.mirror_key_fingerprint)",
			r.KeyURL, err, r.keyOwner())
	}
	return data, bin, nil
}

// haveOtherLists reports whether apt has a package index of a source other than r: a stock
// image built with empty lists has none, and r's dependencies could not be resolved.
func (m Manager) haveOtherLists(r Repo) bool {
	entries, err := m.Host.ReadDir(aptListsDir)
	if err != nil {
		return false
	}
	own := uriToFileName(r.URL)
	for _, e := range entries {
		n := e.Name()
		if strings.Contains(n, "_Packages") && !strings.HasPrefix(n, own) {
			return true
		}
	}
	return false
}

// uriToFileName is how apt names the list files of a URI (apt-pkg's URItoFileName): the URI
// without scheme, user and password, with "/" as "_".
func uriToFileName(uri string) string {
	if _, rest, ok := strings.Cut(uri, "://"); ok {
		uri = rest
	}
	if at := strings.Index(uri, "@"); at >= 0 && at < strings.Index(uri+"/", "/") {
		uri = uri[at+1:]
	}
	return strings.ReplaceAll(uri, "/", "_")
}

// checkAvailable refuses a version the repository does not have, naming those it has.
func (m Manager) checkAvailable(ctx context.Context, req Request) error {
	for _, p := range req.Packages {
		_, out, err := m.Host.Check(ctx, nil, "apt-cache", "madison", p.Name)
		if err != nil {
			return fmt.Errorf("listing the versions of %s: %w", p.Name, err)
		}
		versions := parseMadison(string(out), req.Repo.URL)
		if slices.Contains(versions, p.Version) {
			continue
		}
		if len(versions) == 0 {
			return fmt.Errorf("%s is not in the repository %s at all: check packages.mirror (it must mirror packages.gitlab.com's layout)", p.Name, req.Repo.URL)
		}
		return fmt.Errorf("%s %s is not in the repository %s, which has %s: set %s to one of them; nothing was installed",
			p.Name, p.Version, req.Repo.URL, strings.Join(versions, ", "), configKey(req))
	}
	return nil
}

// parseMadison returns the versions apt-cache madison lists from repository url
// (" gitlab-runner |   17.9.3-1 | https://packages.gitlab.com/runner/gitlab-runner/debian bookworm/main amd64 Packages").
func parseMadison(out, url string) []string {
	var vs []string
	trimmed := strings.TrimRight(url, "/")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "|")
		if len(f) != 3 {
			continue
		}
		v, src := strings.TrimSpace(f[1]), strings.TrimSpace(f[2])
		if !strings.HasPrefix(src, trimmed+" ") && !strings.HasPrefix(src, trimmed+"/ ") {
			continue
		}
		if !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	return vs
}
