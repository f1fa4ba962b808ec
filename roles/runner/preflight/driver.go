package preflight

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// knownBadDriver is a driver release range with a bug that breaks jobs. Only bugs with a public
// source are listed; an empty match means "none known to glbootstrap", not "none".
type knownBadDriver struct {
	fixedIn string // first release without the bug
	problem string
	source  string
}

// knownBadDrivers: GitLab's CI/CD job token troubleshooting documents that driver 0.5.0 and
// earlier fail with "Error when persisting the task ARN. Will stop the task for cleanup" once
// GitLab issues JWT-format job tokens (driver issue #86), fixed in 0.5.1. No public source was
// found for task-leak or SSH-handshake bugs by version, so none are listed.
var knownBadDrivers = []knownBadDriver{{
	fixedIn: "v0.5.1",
	problem: `jobs fail with "Error when persisting the task ARN. Will stop the task for cleanup" when GitLab issues JWT-format CI/CD job tokens`,
	source:  "https://docs.gitlab.com/ci/jobs/ci_job_token/ (troubleshooting), gitlab-org/ci-cd/custom-executor-drivers/fargate#86",
}}

// checkDriver: the pinned driver version has no known bug, and the binary installed at
// driver.path is the pinned one, installed as the configured release (a version changed without
// its SHA-256 leaves the old binary in place, so the record names another release).
func checkDriver(ctx context.Context, in checkInput) Finding {
	drv := in.Driver
	res := "driver " + drv.Version
	if drv.Recorded != "" && drv.Recorded != drv.Version {
		return Finding{Status: CheckFail, Resource: "driver " + drv.Recorded + " at " + drv.Path,
			Problem: fmt.Sprintf("fargate.driver.version is %s but fargate.driver.sha256 is the SHA-256 of the %s binary installed there: %s still runs", drv.Version, drv.Recorded, drv.Recorded),
			Fix:     fmt.Sprintf("put the SHA-256 of the %s release in fargate.driver.sha256 and run glbootstrap apply --role runner, or set fargate.driver.version back to %s", drv.Version, drv.Recorded)}
	}
	var fs findings
	fs.warnOnly = true
	v, ok := parseVersion(drv.Version)
	if !ok {
		fs.add("cannot compare version "+drv.Version+" with the table of known-bad releases", "pin a release tag such as v0.5.1 in fargate.driver.version")
	}
	for _, b := range knownBadDrivers {
		fixed, _ := parseVersion(b.fixedIn)
		if ok && lessVersion(v, fixed) {
			fs.add(fmt.Sprintf("releases before %s: %s (%s)", b.fixedIn, b.problem, b.source),
				fmt.Sprintf("pin %s or later in fargate.driver.version with its sha256", b.fixedIn))
		}
	}
	have, err := in.Host.FileSHA256(drv.Path)
	switch {
	case err != nil:
		fs.warnOnly = false
		fs.add(err.Error(), "make "+drv.Path+" readable")
	case have == "":
		fs.warnOnly = false
		fs.add(drv.Path+" is not installed", "run glbootstrap apply --role runner (the fargate-driver phase installs it)")
	case have != drv.SHA256:
		fs.warnOnly = false
		fs.add(fmt.Sprintf("%s has sha256 %s, not the pinned %s", drv.Path, have[:12], drv.SHA256[:min(12, len(drv.SHA256))]),
			"run glbootstrap apply --role runner (the fargate-driver phase replaces it)")
	}
	status := CheckFail
	if fs.warnOnly {
		status = CheckWarn
	}
	return fs.result(res, status, fmt.Sprintf("installed at %s with the pinned sha256; no known bug for this release in glbootstrap's table (%d entry, sourced bugs only)", drv.Path, len(knownBadDrivers)))
}

func parseVersion(s string) ([3]int, bool) {
	var v [3]int
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func lessVersion(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}
