package testenv

import (
	"fmt"
	"strconv"
	"strings"
)

// The Omnibus package of the system tests: a gitlab-<edition> .deb around shell stand-ins for
// Omnibus's programs, whose maintainer scripts behave as GitLab's do. The behaviour was read in
// gitlabhq/omnibus-gitlab at 18.5.1+ee.0 (and, for MIN_VERSION, at every X.Y.Z+ee.0 tag from
// 17.0 to 19.3; the scripts' other lines do not differ between 18.2.8 and 18.8.2):
//
//   - config/templates/package-scripts/preinst.erb: on "upgrade" only, refuse when the installed
//     major.minor (build_version in /opt/gitlab/version-manifest.json) is older than the new
//     package's MIN_VERSION; then, unless /etc/gitlab/skip-auto-reconfigure exists (which makes
//     it do nothing more, so no backup either), when GitLab was configured (the runit
//     /opt/gitlab/service/puma exists) and /etc/gitlab/skip-auto-backup does not exist: a
//     database-only backup (gitlab-rake gitlab:backup:create SKIP=...; a failure stops the
//     upgrade) and, from 12.3 on, gitlab-ctl backup-etc --no-delete-old-backups (a failure is
//     only reported). Its config check and PostgreSQL version check are not modelled: the former
//     runs only when check_config.rb is installed, the latter skips when gitlab-psql cannot ask
//     a database, which is so here.
//   - config/templates/package-scripts/external_url.sh (spliced into postinst): with EXTERNAL_URL
//     unset and no /etc/gitlab/gitlab.rb on an EC2 host, the URL is asked of instance metadata
//     (IMDSv1, public-hostname then public-ipv4); a URL without a scheme gets http://; still
//     empty, it becomes http://gitlab.example.com.
//   - config/templates/package-scripts/postinst.erb: links the ctl commands into /usr/bin
//     (files/gitlab-scripts/symlink_ctl_cmds); without gitlab.rb, copies
//     /opt/gitlab/etc/gitlab.rb.template there (0600) with the URL in place of
//     GENERATED_EXTERNAL_URL; with gitlab.rb, takes its external_url when EXTERNAL_URL is the
//     placeholder, or rewrites gitlab.rb's external_url line to EXTERNAL_URL otherwise; on
//     "configure" runs "EXTERNAL_URL=... gitlab-ctl upgrade", whose exit status is the script's.
//   - files/gitlab-ctl-commands/upgrade.rb ("gitlab-ctl upgrade"): without
//     /var/opt/gitlab/bootstrapped and with EXTERNAL_URL set (not empty, not the placeholder) it
//     runs reconfigure at once (a fresh install) — before skip-auto-reconfigure is looked at;
//     otherwise, when gitlab-ctl status shows no service, "not configured yet" and exit 0; then
//     /etc/gitlab/skip-auto-reconfigure makes it stop ("Found ..., exiting..."); else reconfigure
//     (the migrations) and services restarted.
//   - config/templates/package-scripts/postrm.erb: on Debian removes the /usr/bin links on every
//     call, an upgrade's too (the new postinst links them again).
//   - config/projects/gitlab.rb: Conflicts and Replaces the other editions and "gitlab";
//     Depends openssh-server and perl on Debian (perl is left out here: it is not in the stock
//     rootfs and would have to come from the internet). No conffiles: everything is under
//     /opt/gitlab, and gitlab.rb is made by postinst, so dpkg never asks about it.
//
// The stand-ins append one line per call to OmnibusDebCalls (OmnibusDebCall parses it).

// OmnibusDebCalls is the file, in the system the package is installed on, where its stand-ins
// record each call.
const OmnibusDebCalls = "/var/log/gitlab/glb-standin.calls"

// OmnibusDebMinVersion is MIN_VERSION of the real package's preinst for a release's
// major.minor (omnibus-gitlab config/templates/package-scripts/preinst.erb at every X.Y.Z+ee.0
// tag from 17.0.0 to 19.3.0), or "" for a release outside that range.
func OmnibusDebMinVersion(majorMinor string) string {
	m := map[string]string{
		"17.0": "16.11", "17.1": "16.11", "17.2": "16.11", "17.3": "16.11",
		"17.4": "17.3", "17.5": "17.3",
		"17.6": "17.5", "17.7": "17.5", "17.8": "17.5",
		"17.9": "17.8", "17.10": "17.8", "17.11": "17.8",
		"18.0": "17.11", "18.1": "17.11", "18.2": "17.11",
		"18.3": "18.2", "18.4": "18.2", "18.5": "18.2",
		"18.6": "18.5", "18.7": "18.5", "18.8": "18.5",
		"18.9": "18.8", "18.10": "18.8", "18.11": "18.8",
		"19.0": "18.11", "19.1": "18.11", "19.2": "18.11",
		"19.3": "19.2",
	}
	return m[majorMinor]
}

// OmnibusDeb is gitlab-<edition> at version (MAJOR.MINOR.PATCH; the package's version is
// VERSION-<edition>.0, as GitLab's) for NewAptRepo. It panics on an edition other than ee or ce
// and on a release OmnibusDebMinVersion does not know.
//
// It installs /opt/gitlab/version-manifest.txt ("gitlab-ee 18.5.1") and .json (build_version),
// /opt/gitlab/etc/gitlab.rb.template, and stand-ins for gitlab-ctl (reconfigure, upgrade,
// status, backup-etc, restart, hup, stop), gitlab-rake (gitlab:backup:create) and gitlab-backup
// (create), with the maintainer scripts described above. A reconfigure creates what a real
// first one leaves for the scripts to find (/var/opt/gitlab/bootstrapped, the runit service
// directories under /opt/gitlab/service); a backup writes an empty
// /var/opt/gitlab/backups/<time>_<date>_<version>-<edition>_gitlab_backup.tar, backup-etc an
// empty /etc/gitlab/config_backup/gitlab_config_<time>_<date>.tar.
func OmnibusDeb(edition, version string) DebPackage {
	if edition != "ee" && edition != "ce" {
		panic("OmnibusDeb: edition " + edition + ": want ee or ce")
	}
	f := strings.Split(version, ".")
	if len(f) != 3 {
		panic("OmnibusDeb: version " + version + ": want MAJOR.MINOR.PATCH")
	}
	minor := f[0] + "." + f[1]
	min := OmnibusDebMinVersion(minor)
	if min == "" {
		panic("OmnibusDeb: no MIN_VERSION known for " + minor)
	}
	name := "gitlab-" + edition
	var others []string
	for _, o := range []string{"gitlab-ee", "gitlab-ce", "gitlab-fips", "gitlab"} {
		if o != name {
			others = append(others, o)
		}
	}
	return DebPackage{
		Name:      name,
		Version:   version + "-" + edition + ".0",
		Depends:   "openssh-server",
		Conflicts: strings.Join(others, ", "),
		Replaces:  strings.Join(others, ", "),
		Files: map[string]string{
			"/opt/gitlab/version-manifest.txt": name + " " + version + "\n\n" +
				"Component                      Installed Version                          Version GUID\n",
			"/opt/gitlab/version-manifest.json":         fmt.Sprintf("{\n  \"manifest_format\": 2,\n  \"software\": {},\n  \"build_version\": \"%s-%s\",\n  \"build_git_revision\": \"glbtest\",\n  \"license\": \"MIT\"\n}\n", version, edition),
			"/opt/gitlab/etc/gitlab.rb.template":        omnibusDebTemplate,
			"/opt/gitlab/bin/gitlab-ctl":                omnibusDebCtl(name, version),
			"/opt/gitlab/bin/gitlab-rake":               omnibusDebRake(name, version),
			"/opt/gitlab/bin/gitlab-backup":             omnibusDebBackup,
			"/opt/gitlab/embedded/bin/symlink_ctl_cmds": omnibusDebSymlinks,
		},
		Preinst:  omnibusDebPreinst(version, min),
		Postinst: omnibusDebPostinst,
		Postrm:   omnibusDebPostrm,
	}
}

// OmnibusDebCall is one line of OmnibusDebCalls.
type OmnibusDebCall struct {
	// Command is the program and its arguments ("gitlab-ctl reconfigure").
	Command string
	// Script is the maintainer script it ran under (DPKG_MAINTSCRIPT_NAME: "preinst",
	// "postinst"), or "" when dpkg did not start it.
	Script string
	// Parent is the command name of its parent process (/proc/PPID/comm).
	Parent string
	// ExternalURL is "unset", "empty" or the value of EXTERNAL_URL in its environment.
	ExternalURL string
	// RootPassword is whether GITLAB_ROOT_PASSWORD was in its environment ("set"/"unset"; the
	// value is never recorded).
	RootPassword string
	// Fragment is whether /etc/gitlab/gitlab.rb loaded glbootstrap's fragment (a from_file line
	// naming /etc/gitlab/glbootstrap.rb, and that file present): "yes" or "no".
	Fragment string
}

// ParseOmnibusDebCalls parses the content of OmnibusDebCalls.
func ParseOmnibusDebCalls(s string) []OmnibusDebCall {
	var out []OmnibusDebCall
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		cmd, rest, ok := strings.Cut(line, " | ")
		if !ok {
			continue
		}
		c := OmnibusDebCall{Command: cmd}
		for _, kv := range strings.Split(rest, " ") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "script":
				if v != "-" {
					c.Script = v
				}
			case "parent":
				c.Parent = v
			case "EXTERNAL_URL":
				c.ExternalURL = v
			case "GITLAB_ROOT_PASSWORD":
				c.RootPassword = v
			case "fragment":
				c.Fragment = v
			}
		}
		out = append(out, c)
	}
	return out
}

func (c OmnibusDebCall) String() string {
	return strconv.Quote(c.Command) + " script=" + orDash(c.Script) + " parent=" + c.Parent + " EXTERNAL_URL=" + c.ExternalURL +
		" GITLAB_ROOT_PASSWORD=" + c.RootPassword + " fragment=" + c.Fragment
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// omnibusDebRecord is the shell function every stand-in records its call with.
const omnibusDebRecord = `record() {
  mkdir -p /var/log/gitlab
  if [ -z "${EXTERNAL_URL+x}" ]; then eu=unset; elif [ -z "$EXTERNAL_URL" ]; then eu=empty; else eu=$(printf %s "$EXTERNAL_URL" | tr -c 'A-Za-z0-9:/._-' _); fi
  if [ -n "${GITLAB_ROOT_PASSWORD+x}" ]; then pw=set; else pw=unset; fi
  fr=no
  if [ -e /etc/gitlab/glbootstrap.rb ] && grep -q '^from_file "/etc/gitlab/glbootstrap.rb"' /etc/gitlab/gitlab.rb 2>/dev/null; then fr=yes; fi
  parent=$(cat /proc/$PPID/comm 2>/dev/null || echo unknown)
  echo "$* | script=${DPKG_MAINTSCRIPT_NAME:--} parent=$parent EXTERNAL_URL=$eu GITLAB_ROOT_PASSWORD=$pw fragment=$fr" >> ` + OmnibusDebCalls + `
}
`

// omnibusDebTemplate is /opt/gitlab/etc/gitlab.rb.template, abridged
// (files/gitlab-config-template/gitlab.rb.template: its one active line is external_url).
const omnibusDebTemplate = `## GitLab configuration settings
##! This file is generated during initial installation and **is not** modified
##! during upgrades.

external_url 'GENERATED_EXTERNAL_URL'

# gitlab_rails['time_zone'] = 'UTC'
`

// omnibusDebCtl is gitlab-ctl. upgrade follows files/gitlab-ctl-commands/upgrade.rb's order.
func omnibusDebCtl(name, version string) string {
	return `#!/bin/sh
# Stand-in for Omnibus's gitlab-ctl (` + name + ` ` + version + `), glbootstrap's system tests.
` + omnibusDebRecord + `
services="gitaly gitlab-workhorse logrotate nginx postgresql puma redis sidekiq sshd"
welcome() {
  echo "Thank you for installing GitLab!"
  if [ -z "$EXTERNAL_URL" ] || [ "$EXTERNAL_URL" = "http://gitlab.example.com" ]; then
    echo "Please configure a URL for your GitLab instance by setting external_url in /etc/gitlab/gitlab.rb,"
    echo "then run: sudo gitlab-ctl reconfigure"
  else
    echo "GitLab should be available at $EXTERNAL_URL"
  fi
  exit 0
}
upgraded() {
  echo "Upgrade complete! If your GitLab server is misbehaving try running"
  echo "  sudo gitlab-ctl restart"
  echo "before anything else."
  exit 0
}
url_unset() {
  [ -z "$EXTERNAL_URL" ] || [ "$EXTERNAL_URL" = "http://gitlab.example.com" ]
}
case "$1" in
status)
  for s in $services; do [ -d /opt/gitlab/service/$s ] && echo "run: $s: (pid 4242) 100s; run: log: (pid 4241) 100s"; done
  exit 0;;
esac
record gitlab-ctl "$@"
case "$1" in
reconfigure)
  mkdir -p /var/opt/gitlab /var/log/gitlab/reconfigure
  for s in $services; do mkdir -p /opt/gitlab/service/$s; done
  touch /var/opt/gitlab/bootstrapped
  echo "gitlab Reconfigured!";;
upgrade)
  if [ ! -e /var/opt/gitlab/bootstrapped ] && ! url_unset; then
    "$0" reconfigure || exit $?
    welcome
  fi
  if [ -z "$("$0" status)" ]; then
    echo "It looks like GitLab has not been configured yet; skipping the upgrade script."
    welcome
  fi
  if [ -e /etc/gitlab/skip-auto-reconfigure ]; then
    echo "Found /etc/gitlab/skip-auto-reconfigure, exiting..."
    upgraded
  fi
  echo "Shutting down all GitLab services except those needed for migrations"
  echo "Reconfigure GitLab to apply migrations"
  "$0" reconfigure || exit $?
  echo "Restarting previously running GitLab services"
  upgraded;;
backup-etc)
  mkdir -p /etc/gitlab/config_backup && chmod 0700 /etc/gitlab/config_backup
  f=/etc/gitlab/config_backup/gitlab_config_$(date +%s_%Y_%m_%d).tar
  : > "$f" && chmod 0600 "$f"
  echo "Configuration backup archive complete: $f";;
stop) echo "ok: down: ${2:-puma}: 0s, normally up";;
restart) for s in $services; do echo "ok: run: $s: (pid 4242) 0s"; done;;
hup) echo "ok: run: ${2:-nginx}: (pid 4242) 100s";;
*) echo "gitlab-ctl stand-in: $1 is not modelled" >&2; exit 1;;
esac
`
}

// omnibusDebRake is gitlab-rake; gitlab:backup:create writes the archive as gitlab-backup does.
func omnibusDebRake(name, version string) string {
	return `#!/bin/sh
# Stand-in for Omnibus's gitlab-rake (` + name + ` ` + version + `), glbootstrap's system tests.
` + omnibusDebRecord + `
record gitlab-rake "$@"
case "$1" in
gitlab:backup:create)
  mkdir -p /var/opt/gitlab/backups
  f=/var/opt/gitlab/backups/$(date +%s_%Y_%m_%d)_` + version + `-` + strings.TrimPrefix(name, "gitlab-") + `_gitlab_backup.tar
  : > "$f"
  echo "Backup $(basename "$f" _gitlab_backup.tar) is done.";;
*) echo "gitlab-rake stand-in: $1 is not modelled" >&2; exit 1;;
esac
`
}

// omnibusDebBackup is gitlab-backup: "create" is gitlab-rake gitlab:backup:create with the
// same arguments (files/gitlab-ctl-commands... bin/gitlab-backup in omnibus-gitlab).
const omnibusDebBackup = `#!/bin/sh
# Stand-in for Omnibus's gitlab-backup, glbootstrap's system tests.
` + omnibusDebRecord + `
record gitlab-backup "$@"
case "$1" in
create) shift; exec /opt/gitlab/bin/gitlab-rake gitlab:backup:create "$@";;
*) echo "gitlab-backup stand-in: $1 is not modelled" >&2; exit 1;;
esac
`

// omnibusDebSymlinks links the ctl commands that exist into /usr/bin
// (files/gitlab-scripts/symlink_ctl_cmds).
const omnibusDebSymlinks = `#!/bin/sh
# Links Omnibus's commands into /usr/bin, glbootstrap's system tests.
d=${1:-/opt/gitlab}
for c in bin/gitlab-ctl bin/gitlab-rake bin/gitlab-rails bin/gitlab-psql bin/gitlab-backup; do
  if [ -f "$d/$c" ]; then ln -sf "$d/$c" /usr/bin || { echo "Failed to create symlinks in /usr/bin" >&2; exit 1; }; fi
done
`

// omnibusDebPreinst is the preinst of a package of version whose MIN_VERSION is min.
func omnibusDebPreinst(version, min string) string {
	f := strings.Split(version, ".")
	return `#!/bin/sh
# gitlab-` + version + ` pre-install (glbootstrap's system tests; behaves as omnibus-gitlab's preinst.erb).
NEW_MAJOR=` + f[0] + `
NEW_MINOR=` + f[0] + "." + f[1] + `
MIN_VERSION=` + min + `
say() { echo "gitlab preinstall: $*"; }
# at_least A B: major.minor A >= B
at_least() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n 1)" = "$1" ]; }
mkdir -p /var/log/gitlab/reconfigure
old=""
if [ -e /opt/gitlab/version-manifest.json ]; then
  old=$(sed -n 's/.*"build_version": *"\([^"]*\)".*/\1/p' /opt/gitlab/version-manifest.json)
fi
old_major=$(echo "$old" | cut -d. -f1)
old_minor=$(echo "$old" | cut -d. -f1-2)
[ "$1" = upgrade ] || exit 0
if [ -n "$old" ] && ! at_least "$old_minor" "$MIN_VERSION"; then
  say "It seems you are upgrading from $old_minor to $NEW_MINOR."
  say "It is required to upgrade to the latest $MIN_VERSION.x version first before proceeding."
  if [ "$old_major" -lt "$NEW_MAJOR" ]; then
    say "Please follow the upgrade documentation at https://docs.gitlab.com/ee/update/#upgrading-to-a-new-major-version"
  else
    say "Please follow the upgrade documentation at https://docs.gitlab.com/ee/update/index.html#upgrade-paths"
  fi
  exit 1
fi
# skip-auto-reconfigure: nothing more, no backup either.
[ -e /etc/gitlab/skip-auto-reconfigure ] && exit 0
if [ -d /opt/gitlab/service/puma ] && [ ! -e /etc/gitlab/skip-auto-backup ]; then
  say "Automatically backing up only the GitLab SQL database (excluding everything else!)"
  if ! /opt/gitlab/bin/gitlab-rake gitlab:backup:create SKIP=external_diffs,repositories,uploads,builds,artifacts,lfs,terraform_state,ci_secure_files,registry,pages,packages; then
    say "Database backup failed! If you want to skip this backup, run: sudo touch /etc/gitlab/skip-auto-backup and try again"
    exit 1
  fi
  if at_least "$old_minor" 12.3; then
    say "Automatically backing up /etc/gitlab"
    /opt/gitlab/bin/gitlab-ctl backup-etc --no-delete-old-backups || say "Configuration backup failed - check permissions for /etc/gitlab/config_backup/"
  fi
fi
exit 0
`
}

// omnibusDebPostinst is the postinst, external_url.sh spliced in.
const omnibusDebPostinst = `#!/bin/sh
# GitLab Omnibus post-install (glbootstrap's system tests; behaves as omnibus-gitlab's postinst.erb
# with external_url.sh).
say() { echo "gitlab: $*"; }
if [ -n "$EXTERNAL_URL" ]; then
  case "$EXTERNAL_URL" in http://*|https://*) ;; *) EXTERNAL_URL="http://$EXTERNAL_URL";; esac
elif [ ! -e /etc/gitlab/gitlab.rb ] && [ -f /sys/hypervisor/uuid ] && [ "$(head -c 3 /sys/hypervisor/uuid)" = ec2 ]; then
  # First installation on EC2: instance metadata (IMDSv1), with Omnibus's own curl.
  for what in public-hostname public-ipv4; do
    a=$(/opt/gitlab/embedded/bin/curl -s http://169.254.169.254/latest/meta-data/$what 2>/dev/null)
    case "$a" in ""|*"<?xml"*) ;; *) EXTERNAL_URL="http://$a"; break;; esac
  done
fi
[ -n "$EXTERNAL_URL" ] || EXTERNAL_URL=http://gitlab.example.com

/opt/gitlab/embedded/bin/symlink_ctl_cmds /opt/gitlab
if [ ! -e /etc/gitlab/gitlab.rb ]; then
  mkdir -p /etc/gitlab
  sed "s!GENERATED_EXTERNAL_URL!$EXTERNAL_URL!g" /opt/gitlab/etc/gitlab.rb.template > /etc/gitlab/gitlab.rb
  chmod 600 /etc/gitlab/gitlab.rb
else
  have=$(awk '/^external_url/ { print $2 }' /etc/gitlab/gitlab.rb | tr -d "'\"")
  if [ "$EXTERNAL_URL" = http://gitlab.example.com ]; then
    EXTERNAL_URL=$have
  elif [ "$EXTERNAL_URL" != "$have" ]; then
    sed -i "s!^external_url .*!external_url \"$EXTERNAL_URL\"!g" /etc/gitlab/gitlab.rb
  fi
fi
case "$1" in
configure) EXTERNAL_URL=$EXTERNAL_URL /opt/gitlab/bin/gitlab-ctl upgrade;;
esac
`

// omnibusDebPostrm removes the /usr/bin links, on Debian at every call (postrm.erb).
const omnibusDebPostrm = `#!/bin/sh
# GitLab Omnibus post-remove (glbootstrap's system tests; behaves as omnibus-gitlab's postrm.erb on Debian).
for b in gitlab-ctl gitlab-rake gitlab-rails gitlab-psql gitlab-backup; do rm -f /usr/bin/$b; done
exit 0
`
