package main

// The GitLab role's packages phase against the real apt and dpkg: a booted Debian 12 container
// made from the stock rootfs (no GitLab) installs gitlab-ee from a signed apt repository on
// 127.0.0.1 (re-signed like a private mirror, packages.mirror_key_fingerprint) whose packages
// are testenv.OmnibusDeb: shell stand-ins for Omnibus's programs, with maintainer scripts that
// behave as omnibus-gitlab's (MIN_VERSION refusals, the backup unless skip-auto-reconfigure,
// gitlab.rb from the template, "gitlab-ctl upgrade" reconfiguring a fresh install when
// EXTERNAL_URL is set). The stand-ins record every call with who made it and whether
// EXTERNAL_URL and GITLAB_ROOT_PASSWORD were in its environment.

import (
	"context"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/nspawn"
)

// The releases of the upgrade test: gitlab-ee 18.2.8 first (a required stop), then 18.8.2 is
// refused (it crosses the 18.5 stop; its own preinst's MIN_VERSION is 18.5 too), then 18.5.1
// (MIN_VERSION 18.2) is allowed.
const (
	pkgOld     = "18.2.8"
	pkgAcross  = "18.8.2"
	pkgNext    = "18.5.1"
	leakedURL  = "http://leaked-external-url.example.com"
	leakedRoot = "Leaked-root-PW-0042"
)

func TestSystemGitLabPackageUpgrade(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: boots a systemd-nspawn container as root and runs apt in it; set GLB_SYSTEM_TEST=1 (make system-test) to run it")
	}
	rootfs := nspawn.Prerequisites(t, append([]string{"go"}, testenv.AptRepoTools...)...)
	nspawn.RequireRootfs(t, rootfs, "/usr/bin/apt-get", "/usr/bin/gpgv", "/usr/sbin/sshd")
	for _, p := range []string{"opt/gitlab", "etc/gitlab"} {
		if _, err := os.Stat(rootfs + "/" + p); err == nil {
			t.Fatalf("rootfs %s has /%s: it must stand in for a stock image", rootfs, p)
		}
	}
	begin := time.Now()
	share := staticBinaryDir(t)

	key := testenv.NewAptKey(t, "Test private mirror (re-signs packages.gitlab.com) <mirror@example.invalid>")
	repo := testenv.NewAptRepo(t, testenv.AptRepoSpec{Path: "gitlab/gitlab-ee/debian", Suite: "bookworm", SignWith: key,
		Packages: []testenv.DebPackage{testenv.OmnibusDeb("ee", pkgOld), testenv.OmnibusDeb("ee", pkgNext), testenv.OmnibusDeb("ee", pkgAcross)}})

	stack, err := testenv.StartStack(context.Background(), testenv.IMDSValues{})
	if err != nil {
		t.Fatalf("starting stand-ins: %v", err)
	}
	t.Cleanup(stack.Close)
	stack.SeedGitLabSSM()
	stack.SSM.Delete(testenv.StackPrivateURL)
	setVersion := func(v string) {
		cfg := stack.GitLabConfig("", "")
		cfg = strings.Replace(cfg, "  version: \""+testenv.StackOmnibusVersion+"\"\n", "  version: \""+v+"\"\n  ready_timeout: 30s\n", 1)
		if !strings.Contains(cfg, v) {
			t.Fatalf("could not set gitlab.version in:\n%s", cfg)
		}
		cfg += "packages:\n  mirror: " + repo.URL + "\n  mirror_key_fingerprint: " + key.Fingerprint + "\n"
		stack.SSM.Put(testenv.StackGitLabConfigParam, cfg, true)
	}
	setVersion(pkgOld)

	// GitLab's nginx for the readiness probe after each reconfigure (as in TestSystemGitLabLive).
	nginx, err := testenv.NewGitLab(testenv.GitLabOptions{Addr: "127.0.0.1:443", CertHosts: []string{"127.0.0.1"},
		MonitoringWhitelist: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatalf("the GitLab stand-in for the readiness probe must listen on 127.0.0.1:443 (the container shares this network namespace): %v; free the port", err)
	}
	t.Cleanup(nginx.Close)
	readiness := func() int { return nginx.Requests("GET", "/-/readiness") }

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sshPort := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	// apply's environment: the stand-ins' endpoints, and what GitLab's install page has users
	// export, which must decide nothing here.
	env := append(stack.Env(nil), "EXTERNAL_URL="+leakedURL, "GITLAB_ROOT_PASSWORD="+leakedRoot)
	prepared := time.Now()
	c := nspawn.Boot(t, rootfs, nspawn.BindRO(share, "/glb-test"))
	booted := time.Now()
	requireReachable(t, c, env, nginx.URL(), repo.URL)
	c.Sh(t, "install -m 0755 /glb-test/glbootstrap /usr/local/bin/glbootstrap")
	c.Write(t, liveListenConf, "# glbootstrap system test: the container shares the host's network.\nPort "+sshPort+"\nListenAddress 127.0.0.1\n")
	c.Sh(t, "systemctl start ssh.service")

	calls := func() []testenv.OmnibusDebCall {
		t.Helper()
		return testenv.ParseOmnibusDebCalls(c.Sh(t, "cat "+testenv.OmnibusDebCalls+" 2>/dev/null || true"))
	}
	dpkg := func() string {
		t.Helper()
		return strings.TrimSpace(c.Sh(t, "dpkg-query -W -f='${Status} ${Version}' gitlab-ee 2>/dev/null || true"))
	}
	apply := func(what string) result {
		t.Helper()
		r := execIn(t, c, env, what, "/usr/local/bin/glbootstrap", "apply", "--role", "gitlab", "--config", "ssm:"+testenv.StackGitLabConfigParam)
		noSecret(t, r)
		for _, v := range []string{leakedRoot, "leaked-external-url"} {
			if strings.Contains(r.stdout+r.stderr, v) {
				t.Errorf("%s printed the value of a variable of its environment (%q):\n%s", what, v, r)
			}
		}
		return r
	}
	zeroChanged := regexp.MustCompile(`(?m)^0 changed, \d+ unchanged, 0 failed`)
	// reconfigures are the gitlab-ctl reconfigure calls among cs.
	reconfigures := func(cs []testenv.OmnibusDebCall) []testenv.OmnibusDebCall {
		var out []testenv.OmnibusDebCall
		for _, c := range cs {
			if c.Command == "gitlab-ctl reconfigure" {
				out = append(out, c)
			}
		}
		return out
	}
	// ours says whether a reconfigure is glbootstrap's own, as it must be: not under a
	// maintainer script, with the fragment loaded, none of the variables in its environment.
	ours := func(c testenv.OmnibusDebCall) bool {
		return c.Script == "" && c.Parent == "glbootstrap" && c.Fragment == "yes" && c.ExternalURL == "unset" && c.RootPassword == "unset"
	}

	// Install: gitlab-ee 18.2.8 from the mirror, held; the package's own scripts do not
	// reconfigure; glbootstrap's reconfigure runs once, with its fragment, without the variables.
	first := apply("first apply (install " + pkgOld + ")")
	t.Logf("first apply:\n%s%s", first.stdout, first.stderr)
	if first.code != 0 {
		t.Fatalf("first apply: %s\ncalls: %v", first, calls())
	}
	if !strings.Contains(first.stderr+first.stdout, "warning: EXTERNAL_URL, GITLAB_ROOT_PASSWORD set in glbootstrap's environment") {
		t.Errorf("first apply: no warning naming EXTERNAL_URL and GITLAB_ROOT_PASSWORD:\n%s", first)
	}
	if !strings.Contains(first.stdout, "package  gitlab-ee: installed "+pkgOld+"-ee.0; held") {
		t.Errorf("first apply: the packages phase does not say it installed and held %s:\n%s", pkgOld, first.stdout)
	}
	if got := dpkg(); got != "hold ok installed "+pkgOld+"-ee.0" {
		t.Errorf("dpkg-query gitlab-ee: %q, want \"hold ok installed %s-ee.0\"", got, pkgOld)
	}
	if got := strings.Fields(c.Sh(t, "apt-mark showhold")); strings.Join(got, " ") != "gitlab-ee" {
		t.Errorf("apt-mark showhold: %q, want gitlab-ee", got)
	}
	installCalls := calls()
	t.Logf("Omnibus calls after the install:\n%v", installCalls)
	var upgradeRan bool
	for _, cl := range installCalls {
		if cl.Script != "" && cl.Command == "gitlab-ctl upgrade" {
			upgradeRan = true
			if cl.ExternalURL != "empty" || cl.RootPassword != "unset" {
				t.Errorf("the package's postinst ran gitlab-ctl upgrade with EXTERNAL_URL %s and GITLAB_ROOT_PASSWORD %s, want empty and unset (apt-get must run without glbootstrap's variables)",
					cl.ExternalURL, cl.RootPassword)
			}
		}
	}
	if !upgradeRan {
		t.Errorf("the package's postinst did not run gitlab-ctl upgrade: %v", installCalls)
	}
	rc := reconfigures(installCalls)
	if len(rc) != 1 || !ours(rc[0]) {
		t.Errorf("after the install: gitlab-ctl reconfigure calls %v; want exactly one, glbootstrap's (not from a maintainer script, with its fragment loaded, "+
			"without EXTERNAL_URL and GITLAB_ROOT_PASSWORD). A reconfigure from the package means it saw EXTERNAL_URL (pkg.OmnibusScriptEnv); "+
			"one of glbootstrap's with either variable means they were not scrubbed (pkg.ScrubOmnibusEnv)", rc)
	}
	rb := c.Sh(t, "cat /etc/gitlab/gitlab.rb")
	if strings.Contains(rb, "external_url") || !strings.HasSuffix(rb, liveFromFile) {
		t.Errorf("gitlab.rb: want glbootstrap's seed (no external_url: the package's template not used) ending in the from_file line:\n%s", rb)
	}
	if n := readiness(); n != 1 {
		t.Errorf("first apply: %d readiness probes, want 1", n)
	}

	second := apply("second apply")
	if second.code != 0 || !zeroChanged.MatchString(second.stdout) {
		t.Errorf("second apply: want exit 0 and 0 changed: %s", second)
	}
	if n := len(calls()); n != len(installCalls) {
		t.Errorf("second apply ran Omnibus programs: %v", calls()[len(installCalls):])
	}

	// Across a required stop: refused with the path before anything changes.
	setVersion(pkgAcross)
	downloads := func() int {
		n := 0
		for _, p := range repo.Requests() {
			if strings.HasSuffix(p, ".deb") {
				n++
			}
		}
		return n
	}
	debsBefore := downloads()
	across := apply("apply across the 18.5 stop")
	if across.code != 3 || !strings.Contains(across.stdout+across.stderr, "crosses the required upgrade stop(s) 18.5") ||
		!strings.Contains(across.stdout+across.stderr, "upgrade to 18.5.x (its latest patch release), then "+pkgAcross) {
		t.Errorf("apply with gitlab.version %s: want exit 3 naming the 18.5 stop and the path: %s", pkgAcross, across)
	}
	if got := dpkg(); got != "hold ok installed "+pkgOld+"-ee.0" {
		t.Errorf("after the refused upgrade dpkg-query gitlab-ee says %q, want %s still installed and held", got, pkgOld)
	}
	if n := downloads() - debsBefore; n != 0 {
		t.Errorf("the refused upgrade downloaded %d package(s)", n)
	}
	if n := len(calls()); n != len(installCalls) {
		t.Errorf("the refused upgrade ran Omnibus programs: %v", calls()[len(installCalls):])
	}
	// The package agrees: apt-get itself, past the hold, is stopped by its preinst's MIN_VERSION
	// before a file is replaced, and dpkg keeps the old version. apt has released the hold for
	// good though, failed install or not (why glbootstrap holds again after a failed install);
	// the test holds it again.
	out, stderr, code := c.Exec(nil, "apt-get", "install", "-y", "--allow-change-held-packages", "gitlab-ee="+pkgAcross+"-ee.0")
	if code == 0 || !strings.Contains(out+stderr, "It is required to upgrade to the latest 18.5.x version first before proceeding.") {
		t.Errorf("apt-get install gitlab-ee=%s-ee.0 over %s: want the package's preinst to refuse (exit %d):\n%s%s", pkgAcross, pkgOld, code, out, stderr)
	}
	if got := dpkg(); got != "install ok installed "+pkgOld+"-ee.0" {
		t.Errorf("after the package refused the upgrade dpkg-query gitlab-ee says %q, want %s installed, its hold released by apt", got, pkgOld)
	}
	c.Sh(t, "apt-mark hold gitlab-ee")
	if n := len(calls()); n != len(installCalls) {
		t.Errorf("the refused package upgrade ran Omnibus programs: %v", calls()[len(installCalls):])
	}

	// The next allowed release: backup first, the package, glbootstrap's reconfigure, readiness.
	setVersion(pkgNext)
	probes := readiness()
	up := apply("apply upgrading to " + pkgNext)
	t.Logf("upgrade apply:\n%s%s", up.stdout, up.stderr)
	if up.code != 0 {
		t.Fatalf("upgrade to %s: %s\ncalls: %v", pkgNext, up, calls())
	}
	upCalls := calls()[len(installCalls):]
	t.Logf("Omnibus calls during the upgrade:\n%v", upCalls)
	var order []string
	for _, cl := range upCalls {
		switch {
		case strings.HasPrefix(cl.Command, "gitlab-backup create SKIP="+"external_diffs") && cl.Script == "":
			order = append(order, "backup")
		case cl.Command == "gitlab-ctl backup-etc --no-delete-old-backups" && cl.Script == "":
			order = append(order, "backup-etc")
		case cl.Command == "gitlab-ctl upgrade" && cl.Script == "postinst":
			order = append(order, "package")
		case cl.Command == "gitlab-ctl reconfigure" && ours(cl):
			order = append(order, "reconfigure")
		case cl.Command == "gitlab-ctl reconfigure" && cl.Script == "":
			order = append(order, "reconfigure-with-"+cl.ExternalURL+"-EXTERNAL_URL-"+cl.RootPassword+"-GITLAB_ROOT_PASSWORD")
		case cl.Command == "gitlab-ctl reconfigure":
			order = append(order, "package-reconfigure")
		case cl.Script == "preinst":
			order = append(order, "package-backup")
		}
	}
	if strings.Join(order, " ") != "backup backup-etc package reconfigure" {
		t.Errorf("upgrade: Omnibus calls in the order %q, want \"backup backup-etc package reconfigure\": glbootstrap's database and /etc/gitlab backups, "+
			"the package (its preinst does nothing with skip-auto-reconfigure, its gitlab-ctl upgrade stops there), glbootstrap's reconfigure", order)
	}
	if got := dpkg(); got != "hold ok installed "+pkgNext+"-ee.0" {
		t.Errorf("after the upgrade dpkg-query gitlab-ee: %q, want \"hold ok installed %s-ee.0\"", got, pkgNext)
	}
	if got := strings.Fields(c.Sh(t, "apt-mark showhold")); strings.Join(got, " ") != "gitlab-ee" {
		t.Errorf("after the upgrade apt-mark showhold: %q", got)
	}
	if got := c.Sh(t, "head -n 1 /opt/gitlab/version-manifest.txt"); strings.TrimSpace(got) != "gitlab-ee "+pkgNext {
		t.Errorf("version manifest after the upgrade: %q", got)
	}
	if got := c.Sh(t, "ls /var/opt/gitlab/backups"); !strings.Contains(got, "_"+pkgOld+"-ee_gitlab_backup.tar") {
		t.Errorf("no database backup of %s in /var/opt/gitlab/backups: %q", pkgOld, got)
	}
	if got := c.Sh(t, "ls /etc/gitlab/config_backup"); !strings.Contains(got, "gitlab_config_") {
		t.Errorf("no backup of /etc/gitlab in /etc/gitlab/config_backup: %q", got)
	}
	bi := strings.Index(up.stdout, "gitlab-backup (database only, local)")
	pi := strings.Index(up.stdout, "package  gitlab-ee: installed "+pkgNext+"-ee.0 (was "+pkgOld+"-ee.0); held")
	ri := strings.Index(up.stdout, "gitlab-ctl reconfigure: ran: the Omnibus package was upgraded to "+pkgNext)
	if bi < 0 || pi < bi || ri < pi {
		t.Errorf("upgrade output: want the backup, then the package, then reconfigure (indexes %d %d %d):\n%s", bi, pi, ri, up.stdout)
	}
	if n := readiness(); n != probes+1 {
		t.Errorf("upgrade: %d readiness probes, want %d", n, probes+1)
	}
	if r := apply("apply after the upgrade"); r.code != 0 || !zeroChanged.MatchString(r.stdout) {
		t.Errorf("apply after the upgrade: want exit 0 and 0 changed: %s", r)
	}
	t.Logf("repository and stand-ins %s, boot %s, applies and checks %s", prepared.Sub(begin).Round(time.Millisecond),
		booted.Sub(prepared).Round(time.Millisecond), time.Since(booted).Round(time.Millisecond))
}
