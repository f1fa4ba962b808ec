package gitlab

import (
	"fmt"
	"strings"
)

// RequiredStops are GitLab's required upgrade stops (major.minor) that apply to every
// instance, oldest first. An upgrade from version A to version B must pass through (install the
// latest patch release of, and let its background migrations finish) every stop S with
// A < S < B, compared as major.minor.
//
// Sources: GitLab's "Plan your upgrade path" page, section "Required upgrade stops"
// (https://docs.gitlab.com/update/upgrade_paths/: 16.3, 16.7, 16.11 for GitLab 16; from 17.5
// on, stops at x.2, x.5, x.8 and x.11), and the Omnibus package's own check, which refuses the
// same jumps at install time: MIN_VERSION in upgrade_check() of omnibus-gitlab
// config/templates/package-scripts/preinst.erb, whose history holds 16.3, 16.7, 16.11, 17.3,
// 17.5, 17.8, 17.11, 18.2, 18.5, 18.8, 18.11 and 19.2 (read at every X.Y.0+ee.0 tag up to 19.3).
// The stops the docs list only for some instances (16.0, 16.1, 16.2, 17.1: large
// pipeline-variable histories, NPM packages) are not enforced here; the README says to check
// them. Versions after the table's last stop follow the announced schedule (cadenceStops).
var RequiredStops = []string{
	"15.11",
	"16.3", "16.7", "16.11",
	"17.3", "17.5", "17.8", "17.11",
	"18.2", "18.5", "18.8", "18.11",
	"19.2",
}

// UpgradePathsURL is the page RequiredStops comes from, named in every refusal.
const UpgradePathsURL = "https://docs.gitlab.com/update/upgrade_paths/"

// UpgradeError is an upgrade glbootstrap refuses: a downgrade, or a jump across required stops.
type UpgradeError struct {
	From, To string
	// Stops are the major.minor versions to upgrade to first, in order (empty for a downgrade).
	Stops     []string
	Downgrade bool
}

func (e *UpgradeError) Error() string {
	if e.Downgrade {
		return fmt.Sprintf("gitlab.version %s is older than the installed GitLab %s: the Omnibus package cannot be downgraded "+
			"(its database was already migrated); set gitlab.version to %s or newer, or restore a backup made with the older version on a new instance", e.To, e.From, e.From)
	}
	steps := make([]string, 0, len(e.Stops)+1)
	for _, s := range e.Stops {
		steps = append(steps, s+".x (its latest patch release)")
	}
	steps = append(steps, e.To)
	return fmt.Sprintf("gitlab.version %s cannot be reached from the installed GitLab %s in one upgrade: it crosses the required upgrade stop(s) %s (%s). "+
		"The path: %s. Set gitlab.version to the latest %s patch release, apply, let the background migrations finish "+
		"(Admin > Monitoring > Background migrations), and go on to the next",
		e.To, e.From, strings.Join(e.Stops, ", "), UpgradePathsURL, "upgrade to "+strings.Join(steps, ", then "), e.Stops[0])
}

// UpgradePath checks an upgrade of Omnibus GitLab from version from to version to (both
// MAJOR.MINOR.PATCH, a package suffix such as -ee.0 ignored). It returns nil when the upgrade may
// be made in one step (the same version, a patch release of the same minor, or a jump that
// crosses no required stop) and an *UpgradeError for a downgrade or for a jump across stops,
// naming the stops in order. A version it cannot read is an error.
func UpgradePath(from, to string) error {
	f, ok := parseVersion(plainVersion(from))
	if !ok {
		return fmt.Errorf("installed GitLab version %q is not MAJOR.MINOR.PATCH", from)
	}
	t, ok := parseVersion(plainVersion(to))
	if !ok {
		return fmt.Errorf("gitlab.version %q is not MAJOR.MINOR.PATCH (e.g. 18.5.1)", to)
	}
	if cmpVersion(t, f) < 0 {
		return &UpgradeError{From: from, To: to, Downgrade: true}
	}
	var stops []string
	for _, s := range append(RequiredStops, cadenceStops(t[0])...) {
		sv, _ := parseVersion(s + ".0")
		if cmpMinor(f, sv) < 0 && cmpMinor(sv, t) < 0 {
			stops = append(stops, s)
		}
	}
	if len(stops) > 0 {
		return &UpgradeError{From: from, To: to, Stops: stops}
	}
	return nil
}

// cadenceStops are the scheduled stops after RequiredStops' last one, up to major version
// maxMajor: "In GitLab 17.5 and later ... required upgrade stops occur at versions x.2.z, x.5.z,
// x.8.z, and x.11.z" (UpgradePathsURL). A GitLab released after this table was written is thus
// still upgraded stop by stop; add a stop to RequiredStops when GitLab announces an unscheduled one.
func cadenceStops(maxMajor int) []string {
	last, _ := parseVersion(RequiredStops[len(RequiredStops)-1] + ".0")
	var out []string
	for major := last[0]; major <= maxMajor; major++ {
		for _, minor := range []int{2, 5, 8, 11} {
			if major > last[0] || minor > last[1] {
				out = append(out, fmt.Sprintf("%d.%d", major, minor))
			}
		}
	}
	return out
}

// plainVersion drops a package suffix: "18.5.1-ee.0" is "18.5.1".
func plainVersion(v string) string {
	v, _, _ = strings.Cut(strings.TrimSpace(v), "-")
	return v
}

func cmpVersion(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func cmpMinor(a, b [3]int) int {
	a[2], b[2] = 0, 0
	return cmpVersion(a, b)
}
