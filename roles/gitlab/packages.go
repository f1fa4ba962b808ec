package gitlab

import (
	"context"
	"fmt"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/pkg"
)

// SkipAutoReconfigure is the file that makes the Omnibus package's own "gitlab-ctl upgrade"
// (run by its postinst on deb, posttrans on rpm) stop before migrations and reconfigure.
// Source: omnibus-gitlab files/gitlab-ctl-commands/upgrade.rb ("#{etc_path}/skip-auto-reconfigure":
// log "Found ..., exiting..."), and GitLab's "Zero-downtime upgrades" page, which has it
// created before the package upgrade. glbootstrap keeps it for good: its own reconfigure phase
// runs after every package change, with the fragment in place.
const SkipAutoReconfigure = "/etc/gitlab/skip-auto-reconfigure"

const skipAutoReconfigureText = "# glbootstrap: the Omnibus package must not run gitlab-ctl reconfigure on install or upgrade;\n" +
	"# glbootstrap apply runs it once its gitlab.rb fragment is in place (its reconfigure phase).\n"

// gitlabRBSeed is gitlab.rb before the first install. With /etc/gitlab/gitlab.rb present the
// package's scripts do not look up an external URL in EC2 instance metadata but take gitlab.rb's
// external_url, which the seed has none of, so EXTERNAL_URL is empty (packageExternalURL refuses
// an existing gitlab.rb that sets one) and "gitlab-ctl upgrade" does not reconfigure a fresh install (omnibus-gitlab
// config/templates/package-scripts/external_url.sh only asks EC2 "if this is first
// installation", i.e. without gitlab.rb; upgrade.rb reconfigures a fresh install only when
// external_url_unset? is false). The package then keeps this file instead of its template.
const gitlabRBSeed = "# GitLab Omnibus configuration. glbootstrap owns " + FragmentPath + ", loaded by the from_file\n" +
	"# line below; put your own settings in this file (gitlab.rb.template in /opt/gitlab/etc lists them).\n"

// checkUpgrade decides, before anything changes, whether the packages phase installs or
// upgrades gitlab-<edition>: a jump across a required upgrade stop or a downgrade is an error
// (UpgradePath).
func (r *Role) checkUpgrade() error {
	want := r.cfg.GitLab.Version
	if want == "" {
		return nil
	}
	have := installedVersion(r.d.Host)
	if have == "" || plainVersion(have) == plainVersion(want) {
		return nil
	}
	if err := UpgradePath(have, want); err != nil {
		return err
	}
	r.upgradeFrom = have
	return nil
}

// packages installs gitlab-<edition> at gitlab.version through internal/pkg (GitLab's signed
// repository or packages.mirror; held afterwards), or upgrades it, in GitLab's documented
// order: skip-auto-reconfigure in place (the package then never reconfigures on its own), a
// backup first when backup: is configured (the code of "glbootstrap backup run"; a failed
// backup stops the upgrade), the package, and then this role's reconfigure phase (recorded as
// due in the state file, since the fragment itself may not change) and its readiness wait.
// Without gitlab.version it is skipped: the image must bring Omnibus itself.
func (r *Role) packages(ctx context.Context) ([]host.Step, error) {
	c := r.cfg.GitLab
	if c.Version == "" {
		return nil, engine.Skip("gitlab.version is not set: GitLab Omnibus must already be installed (a baked image); set gitlab.version (e.g. 18.5.1) to install and pin it")
	}
	h := r.d.Host
	edition := editionOr(c.Edition)
	name := "gitlab-" + edition
	have := installedVersion(h)
	if have != "" && plainVersion(have) == plainVersion(c.Version) {
		// The package's own version manifest answers, with no package manager and no network
		// (under --root none could run; on the live system an Omnibus that dpkg or rpm does not
		// record, e.g. from a tarball, is still the version it says). A package glbootstrap
		// installed was held then.
		return []host.Step{{Kind: "package", Target: name, Summary: have + " installed"}}, nil
	}
	if r.upgradeFrom == "" && have != "" && plainVersion(have) != plainVersion(c.Version) {
		// Prepare was skipped (bake): check here.
		if err := UpgradePath(have, c.Version); err != nil {
			return nil, err
		}
		r.upgradeFrom = have
	}

	if have == "" {
		if url := packageExternalURL(h); url != "" {
			return nil, fmt.Errorf("%s has external_url %q and GitLab was never configured (%s is missing): installing %s now would make the package's "+
				"gitlab-ctl upgrade reconfigure GitLab at once, before glbootstrap's fragment and initial root password are in place (omnibus-gitlab "+
				"postinst.erb takes EXTERNAL_URL from gitlab.rb; upgrade.rb reconfigures a fresh install when it is set, whatever %s says). "+
				"Nothing was changed: remove or comment out the external_url line (gitlab.url sets it in %s) and run apply again",
				GitLabRB, url, bootstrappedFile, name, SkipAutoReconfigure, FragmentPath)
		}
	}

	var steps []host.Step
	st, err := h.EnsureFile(host.File{Path: SkipAutoReconfigure, Data: []byte(skipAutoReconfigureText), Mode: 0o644})
	if err != nil {
		return nil, err
	}
	if st.Changed {
		steps = append(steps, st)
	}
	if have == "" && !h.Exists(GitLabRB) {
		st, err := h.EnsureFile(host.File{Path: GitLabRB, Data: []byte(gitlabRBSeed), Mode: 0o600})
		if err != nil {
			return steps, err
		}
		steps = append(steps, st)
	}

	from, to := have, c.Version
	what := fmt.Sprintf("install %s %s", name, to)
	if r.upgradeFrom != "" {
		what = fmt.Sprintf("upgrade %s %s -> %s", name, from, to)
	}
	plan := r.d.Plan
	if r.upgradeFrom != "" && r.cfg.Backup != nil {
		bst := host.Step{Kind: "backup", Target: "s3://" + r.cfg.Backup.Bucket, Changed: true}
		switch {
		case plan:
			bst.Summary = "would back up first (glbootstrap backup run), before the upgrade"
		default:
			// Under --root too, as "glbootstrap backup run --root" does: the tree's gitlab-backup.
			r.progress("backing up before the upgrade (" + what + ")")
			if err := r.d.BackupFirst(ctx, backupRegion(r.cfg.Backup, r.facts)); err != nil {
				bst.Summary = "failed"
				return append(steps, bst), fmt.Errorf("the backup before the upgrade failed, so %s was not started: fix the backup (glbootstrap backup status) and run apply again: %w", name, err)
			}
			bst.Summary = "backed up before the upgrade"
		}
		steps = append(steps, bst)
	}

	if r.upgradeFrom != "" && r.cfg.Backup == nil {
		st, err := r.localBackup(ctx, name)
		if st.Target != "" {
			steps = append(steps, st)
		}
		if err != nil {
			return steps, err
		}
	}

	ust := host.Step{Kind: "package", Target: name, Changed: true}
	switch {
	case plan:
		ust.Summary = "would " + what
	case !h.Live():
		ust.Summary = notRun(h) + ": " + what
	}
	if ust.Summary != "" {
		steps = append(steps, ust)
	}
	if !h.Live() {
		if plan || r.upgradeFrom == "" {
			return steps, nil
		}
		st, err := r.recordUpgrade(to)
		return append(steps, st), err
	}

	d, err := pkg.DetectDistro(h)
	if err != nil {
		return steps, err
	}
	req, err := pkg.GitLab(d, r.cfg.Packages.Mirror, edition, c.Version)
	if err != nil {
		return steps, err
	}
	if req, err = req.WithMirrorKey(r.cfg.Packages.MirrorKeyFingerprint); err != nil {
		return steps, err
	}
	install := r.d.Install
	if install == nil {
		install = pkg.Manager{Host: h, Progress: r.d.Progress}.Ensure
	}
	if r.upgradeFrom != "" || have == "" {
		r.progress(what)
	}
	ps, err := install(ctx, req)
	steps = append(steps, ps...)
	if err != nil || plan || r.upgradeFrom == "" {
		return steps, err
	}
	st, err = r.recordUpgrade(to)
	return append(steps, st), err
}

// bootstrappedFile is written by Omnibus's first reconfigure (omnibus-gitlab
// files/gitlab-cookbooks/gitlab/recipes/bootstrap.rb at 18.5.1+ee.0); while it is missing the
// package's "gitlab-ctl upgrade" treats the install as a fresh one.
const bootstrappedFile = "/var/opt/gitlab/bootstrapped"

// packageExternalURL is the external URL the Omnibus package's postinst would hand to
// "gitlab-ctl upgrade" on a first install with EXTERNAL_URL unset, when that makes it
// reconfigure at once; "" when it would not. postinst.erb (update_external_url, at 18.5.1+ee.0)
// takes the second field of every line of gitlab.rb starting with external_url, quotes
// removed, and upgrade.rb reconfigures when /var/opt/gitlab/bootstrapped is missing and that
// value is neither empty nor http://gitlab.example.com (external_url_unset?).
func packageExternalURL(h *host.Host) string {
	if h.Exists(bootstrappedFile) {
		return ""
	}
	b, err := h.ReadFile(GitLabRB)
	if err != nil {
		return ""
	}
	var urls []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "external_url") && len(f) > 1 {
			urls = append(urls, strings.NewReplacer("'", "", `"`, "").Replace(f[1]))
		}
	}
	url := strings.Join(urls, "\n")
	if url == "" || url == "http://gitlab.example.com" {
		return ""
	}
	return url
}

// PackageBackupSkip is the SKIP list of the database-only backup the Omnibus package's preinst
// makes before an upgrade of a running GitLab (omnibus-gitlab
// config/templates/package-scripts/preinst.erb, main(), at 18.5.1+ee.0). The package skips
// that backup, and its backup of /etc/gitlab (EtcBackupArgs), when
// /etc/gitlab/skip-auto-reconfigure exists, which glbootstrap keeps, so without a backup:
// section glbootstrap makes both itself (localBackup).
const PackageBackupSkip = "external_diffs,repositories,uploads,builds,artifacts,lfs,terraform_state,ci_secure_files,registry,pages,packages"

// EtcBackupArgs are gitlab-ctl's arguments for the configuration backup the package's preinst
// makes after the database backup when upgrading from 12.3 or later (preinst.erb at
// 18.5.1+ee.0): a tar of /etc/gitlab (gitlab.rb, gitlab-secrets.json, TLS and SSH host keys)
// in /etc/gitlab/config_backup, older ones kept. The package only reports its failure, and so
// does glbootstrap (a warning), since the database backup is what a rollback needs first.
var EtcBackupArgs = []string{"backup-etc", "--no-delete-old-backups"}

// SkipAutoBackup is the file with which an admin tells the Omnibus package (and glbootstrap)
// not to back up the database before an upgrade (preinst.erb, skip_backup_file).
const SkipAutoBackup = "/etc/gitlab/skip-auto-backup"

// pumaService is the runit service directory of a configured GitLab; the package's preinst
// backs up only when it exists, and so does localBackup.
const pumaService = "/opt/gitlab/service/puma"

// localBackup makes, before an upgrade without a backup: section, the backups the package
// itself would have made: the database only (PackageBackupSkip) into
// gitlab_rails['backup_path'] (/var/opt/gitlab/backups by default), then /etc/gitlab
// (EtcBackupArgs) into /etc/gitlab/config_backup. A GitLab that was never configured has
// nothing to back up; SkipAutoBackup skips both with a warning. A failed database backup stops
// the upgrade; a failed configuration backup is a warning, as in the package. The returned
// step has an empty Target when there is nothing to say.
func (r *Role) localBackup(ctx context.Context, name string) (host.Step, error) {
	h := r.d.Host
	st := host.Step{Kind: "backup", Target: "gitlab-backup (database only, local)"}
	switch {
	case !h.Exists(pumaService):
		return host.Step{}, nil
	case h.Exists(SkipAutoBackup):
		st.Summary = "skipped"
		st.Warning = SkipAutoBackup + " exists: no backup is made before the upgrade; remove it, or set backup: for a full backup to S3"
		return st, nil
	}
	argv := []string{"gitlab-backup", "create", "SKIP=" + PackageBackupSkip}
	r.progress("backing up the database before the upgrade (" + strings.Join(argv, " ") + ")")
	act, out, err := h.Run(ctx, nil, argv[0], argv[1:]...)
	st.Changed = true
	switch {
	case err != nil:
		st.Summary = "failed"
		return st, fmt.Errorf("the database backup before the upgrade failed, so %s was not upgraded: %s; fix it and run apply again, or create %s to upgrade without a backup (as the Omnibus package allows): %w",
			name, lastLine(out), SkipAutoBackup, err)
	case act.NotRun != "":
		st.Summary = act.NotRun + ": " + strings.Join(argv, " ") + "; " + GitLabCtl + " " + strings.Join(EtcBackupArgs, " ")
		return st, nil
	default:
		st.Summary = "database backed up locally before the upgrade (no backup: section: repositories and uploads are not in it)"
	}
	r.progress("backing up /etc/gitlab before the upgrade (gitlab-ctl " + strings.Join(EtcBackupArgs, " ") + ")")
	act, out, err = h.Run(ctx, nil, GitLabCtl, EtcBackupArgs...)
	switch {
	case err != nil:
		st.Warning = "the backup of /etc/gitlab before the upgrade failed (" + lastLine(out) + "); the upgrade goes on, as the Omnibus package's does: " +
			"keep a copy of /etc/gitlab/gitlab-secrets.json and gitlab.rb, without which the database backup cannot be restored"
	case act.Ran:
		st.Summary += "; /etc/gitlab backed up in /etc/gitlab/config_backup"
	}
	return st, nil
}

// lastLine is the last non-empty line of a command's output, for an error message.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return "no output"
}

// recordUpgrade marks reconfigure as due in the state file: the package changed under an
// unchanged fragment, and only glbootstrap's reconfigure runs the migrations now.
func (r *Role) recordUpgrade(to string) (host.Step, error) {
	r.state.UpgradedTo = to
	return r.writeState(r.state)
}

func (r *Role) progress(s string) {
	if r.d.Progress != nil {
		r.d.Progress(s)
	}
}

// notRun is how a --root apply says a command was left for the live system.
func notRun(h *host.Host) string {
	return "not run (--root " + h.Root + " is not the live system)"
}
