package main

// Blackbox tests of GitLab upgrades (issue 11): gitlab.version changed on a root seeded with
// Omnibus 18.5.1. Under --root no package manager runs, so the install step says "not run";
// the backup runs (as "backup run --root" does, with the tree's gitlab-backup stand-in) and
// reconfigure is recorded as due although the fragment did not change.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/standin"
)

func setGitLabVersion(w *world, extra, version string) {
	cfg := w.stack.GitLabConfig("", extra)
	if !strings.Contains(cfg, `version: "`+testenv.StackOmnibusVersion+`"`) {
		w.t.Fatalf("the stack's GitLab config does not pin %s:\n%s", testenv.StackOmnibusVersion, cfg)
	}
	w.setGitLabConfig(strings.Replace(cfg, `version: "`+testenv.StackOmnibusVersion+`"`, `version: "`+version+`"`, 1))
}

func TestGitLabUpgradeAcrossStopRefused(t *testing.T) {
	w := newGitLabWorld(t)
	if r := w.gitlab("apply"); r.code != 0 {
		t.Fatal(r)
	}
	before := w.snapshot()
	setGitLabVersion(w, "", "18.9.1")
	for _, verb := range []string{"plan", "apply"} {
		r := w.gitlab(verb)
		want := "gitlab.version 18.9.1 cannot be reached from the installed GitLab 18.5.1 in one upgrade"
		path := "upgrade to 18.8.x (its latest patch release), then 18.9.1"
		if r.code != 3 || !strings.Contains(r.stdout+r.stderr, want) || !strings.Contains(r.stdout+r.stderr, path) ||
			!strings.Contains(r.stdout+r.stderr, "https://docs.gitlab.com/update/upgrade_paths/") {
			t.Errorf("%s across the 18.8 stop: want exit 3 with the path: %s", verb, r)
		}
	}
	setGitLabVersion(w, "", "18.5.0")
	if r := w.gitlab("apply"); r.code != 3 || !strings.Contains(r.stdout+r.stderr, "cannot be downgraded") {
		t.Errorf("downgrade: %s", r)
	}
	if w.snapshot() != before {
		t.Error("a refused upgrade changed the tree")
	}
}

func TestGitLabUpgradeOrder(t *testing.T) {
	w, first := newBackupWorld(t, "")
	if first.code != 0 {
		t.Fatalf("apply: %s", first)
	}
	// As after the first live apply: the pending fragment applied, so only the upgrade makes
	// reconfigure due.
	var cur map[string]any
	if err := json.Unmarshal([]byte(w.read("var/lib/glbootstrap/gitlab.json")), &cur); err != nil {
		t.Fatal(err)
	}
	cur["configured"], cur["fragment_sha256"] = true, cur["reconfigure_pending_sha256"]
	delete(cur, "reconfigure_pending_sha256")
	b, _ := json.Marshal(cur)
	if err := os.WriteFile(filepath.Join(w.root, "var/lib/glbootstrap/gitlab.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(w.root, "etc/gitlab/glbootstrap-initial-root-password.rb")); err != nil {
		t.Fatal(err)
	}
	if r := w.gitlab("plan"); r.code != 0 {
		t.Fatalf("plan before the version change: %s", r)
	}
	setGitLabVersion(w, backupSection, "18.5.2")

	plan := w.gitlab("plan")
	for _, want := range []string{
		"would back up first (glbootstrap backup run), before the upgrade",
		"would upgrade gitlab-ee 18.5.1 -> 18.5.2",
		"/etc/gitlab/skip-auto-reconfigure: would be created",
		GitLabCtlReconfigure,
	} {
		if !strings.Contains(plan.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	if plan.code != 10 {
		t.Fatalf("plan: %s", plan)
	}
	if n := len(w.stack.S3.Objects(testenv.StackBackupBucket, "")); n != 0 {
		t.Errorf("plan uploaded %d objects", n)
	}

	r := w.gitlab("apply")
	if r.code != 0 {
		t.Fatalf("apply of the upgrade: %s", r)
	}
	// The documented order: backup, package, reconfigure (after the fragment is in place).
	order := []string{"backed up before the upgrade", "upgrade gitlab-ee 18.5.1 -> 18.5.2", "[gitlab] gitlab-fragment",
		GitLabCtlReconfigure + ": not run"}
	at := -1
	for _, s := range order {
		i := strings.Index(r.stdout, s)
		if i <= at {
			t.Fatalf("apply: %q missing or out of order (want %q):\n%s", s, order, r)
		}
		at = i
	}
	if !strings.Contains(r.stdout, "the Omnibus package was upgraded to 18.5.2") {
		t.Errorf("reconfigure does not say it runs for the upgrade:\n%s", r)
	}
	if n := len(w.stack.S3.Objects(testenv.StackBackupBucket, "")); n == 0 {
		t.Error("no backup in the bucket after the upgrade")
	}
	var st struct {
		UpgradedTo string `json:"upgraded_to"`
	}
	if err := json.Unmarshal([]byte(w.read("var/lib/glbootstrap/gitlab.json")), &st); err != nil || st.UpgradedTo != "18.5.2" {
		t.Errorf("state: %+v %v", st, err)
	}
	if !strings.Contains(w.read("etc/gitlab/skip-auto-reconfigure"), "glbootstrap") {
		t.Error("skip-auto-reconfigure missing")
	}
}

// A failed backup stops the upgrade: no package step, no upgrade recorded.
func TestGitLabUpgradeStopsWhenBackupFails(t *testing.T) {
	w, first := newBackupWorld(t, "")
	if first.code != 0 {
		t.Fatalf("apply: %s", first)
	}
	w.env = append(w.env, standin.ModeEnv+"=fail")
	setGitLabVersion(w, backupSection, "18.5.2")
	r := w.gitlab("apply")
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "the backup before the upgrade failed, so gitlab-ee was not started") ||
		strings.Contains(r.stdout, "upgrade gitlab-ee 18.5.1 -> 18.5.2") || strings.Contains(r.stdout, "[gitlab] gitlab-fragment") {
		t.Fatalf("apply with a failing backup: %s", r)
	}
	if strings.Contains(w.read("var/lib/glbootstrap/gitlab.json"), "upgraded_to") {
		t.Error("the upgrade was recorded although the backup failed")
	}
}

// bake --role gitlab runs the packages phase only, and refuses a jump across a stop there too.
func TestGitLabBakePackages(t *testing.T) {
	w := newGitLabWorld(t)
	bake := func() result {
		return w.run("bake", "--role", "gitlab", "--config", "ssm:"+testenv.StackGitLabConfigParam, "--root", w.root)
	}
	r := bake()
	if r.code != 0 || !strings.Contains(r.stdout, "[gitlab] packages") ||
		strings.Contains(r.stdout, "[gitlab] reconfigure") {
		t.Fatalf("bake: %s", r)
	}
	setGitLabVersion(w, "", "18.6.0") // crosses no stop: the upgrade is left for the live system
	if r := bake(); r.code != 0 || !strings.Contains(r.stdout, "is not the live system): upgrade gitlab-ee 18.5.1 -> 18.6.0") {
		t.Fatalf("bake 18.5.1 -> 18.6.0: %s", r)
	}
	setGitLabVersion(w, "", "18.9.0")
	if r := bake(); r.code != 3 || !strings.Contains(r.stdout+r.stderr, "then 18.9.0") {
		t.Fatalf("bake across the 18.8 stop: %s", r)
	}
}

// Without a backup: section the upgrade still gets the database backup the Omnibus package
// would have made itself (skip-auto-reconfigure also skips the package's own), once GitLab runs;
// /etc/gitlab/skip-auto-backup skips it with a warning, as it does for the package.
func TestGitLabUpgradeLocalBackupWithoutBackupSection(t *testing.T) {
	w := newGitLabWorld(t)
	if r := w.gitlab("apply"); r.code != 0 {
		t.Fatal(r)
	}
	setGitLabVersion(w, "", "18.5.2")
	backupCmd := "gitlab-backup create SKIP=external_diffs,repositories,uploads,builds,artifacts,lfs,terraform_state,ci_secure_files,registry,pages,packages"
	// Never configured (no runit puma service): nothing to back up.
	if p := w.gitlab("plan"); p.code != 10 || strings.Contains(p.stdout, "gitlab-backup") {
		t.Fatalf("plan of an unconfigured GitLab: %s", p)
	}
	if err := os.MkdirAll(filepath.Join(w.root, "opt/gitlab/service/puma"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := w.gitlab("plan")
	bi, ui := strings.Index(p.stdout, backupCmd), strings.Index(p.stdout, "would upgrade gitlab-ee 18.5.1 -> 18.5.2")
	if p.code != 10 || bi < 0 || ui < bi {
		t.Fatalf("plan: want the local database backup before the upgrade:\n%s", p)
	}
	// And /etc/gitlab, as the package's preinst backs it up after the database.
	if ei := strings.Index(p.stdout, "/opt/gitlab/bin/gitlab-ctl backup-etc --no-delete-old-backups"); ei < bi || ui < ei {
		t.Errorf("plan: want gitlab-ctl backup-etc after the database backup and before the upgrade:\n%s", p)
	}
	if err := os.WriteFile(filepath.Join(w.root, "etc/gitlab/skip-auto-backup"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := w.gitlab("apply")
	if r.code != 0 || strings.Contains(r.stdout, backupCmd) || !strings.Contains(r.stdout+r.stderr, "skip-auto-backup exists: no backup is made before the upgrade") {
		t.Fatalf("apply with skip-auto-backup: %s", r)
	}
}

// A first install onto a host whose gitlab.rb already sets external_url (written by other
// tooling before glbootstrap) is refused before anything changes: the package's postinst would
// take that URL and its gitlab-ctl upgrade reconfigure at once, before the fragment and the
// initial root password (postinst.erb, upgrade.rb). The placeholder URL and a commented line
// are fine.
func TestGitLabFreshInstallRefusesPackageReconfigure(t *testing.T) {
	w := newGitLabWorld(t)
	for _, p := range []string{"opt/gitlab"} {
		if err := os.RemoveAll(filepath.Join(w.root, p)); err != nil {
			t.Fatal(err)
		}
	}
	rb := filepath.Join(w.root, "etc/gitlab/gitlab.rb")
	write := func(s string) {
		if err := os.WriteFile(rb, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("external_url 'https://gitlab.corp.example'\n")
	before := w.snapshot()
	r := w.run("bake", "--role", "gitlab", "--config", "ssm:"+testenv.StackGitLabConfigParam, "--root", w.root)
	if r.code != 1 || !strings.Contains(r.stdout, "[gitlab] packages            failed") ||
		!strings.Contains(r.stdout+r.stderr, `has external_url "https://gitlab.corp.example" and GitLab was never configured`) {
		t.Fatalf("bake onto a gitlab.rb with external_url: want exit 1 naming it: %s", r)
	}
	if w.snapshot() != before {
		t.Error("the refused install changed the tree")
	}
	for _, ok := range []string{"external_url 'http://gitlab.example.com'\n", "# external_url 'https://gitlab.corp.example'\n"} {
		write(ok)
		// (The seal then fails: under --root nothing is installed.)
		r := w.run("bake", "--role", "gitlab", "--config", "ssm:"+testenv.StackGitLabConfigParam, "--root", w.root)
		if !strings.Contains(r.stdout, "is not the live system): install gitlab-ee 18.5.1") || strings.Contains(r.stdout+r.stderr, "has external_url") {
			t.Errorf("bake onto gitlab.rb %q: want the install (left for the live system), no refusal: %s", ok, r)
		}
	}
}
