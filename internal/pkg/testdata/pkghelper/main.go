// Command pkghelper runs pkg.Manager.Ensure for gitlab-runner on the live system it runs on (a
// test container) and prints the steps, the planned actions and the error as JSON: the system
// tests of package pkg run it inside systemd-nspawn (apt), or chrooted into an overlay of the
// test host (dnf), where "/" is the throwaway root.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/pkg"
)

type result struct {
	Steps   []host.Step   `json:"steps"`
	Planned []host.Action `json:"planned,omitempty"`
	Error   string        `json:"error,omitempty"`
}

func main() {
	mirror := flag.String("mirror", "", "packages.mirror")
	version := flag.String("version", "", "runner.version")
	fpr := flag.String("fingerprint", "", "the pinned key (the test's own)")
	plan := flag.Bool("plan", false, "plan instead of apply")
	downgrade := flag.Bool("allow-downgrade", false, "allow a downgrade")
	pkgFpr := flag.String("package-fingerprint", "", "the pinned package signing key (dnf)")
	osRelease := flag.String("os-release", "", "os-release content to use instead of /etc/os-release (dnf on a Debian test host)")
	flag.Parse()

	var res result
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(res) }()
	h, err := host.New("/", *plan)
	if err != nil {
		res.Error = err.Error()
		return
	}
	defer h.Close()
	d, err := pkg.DetectDistro(h)
	if *osRelease != "" {
		d, err = pkg.ParseOSRelease([]byte(*osRelease))
	}
	if err != nil {
		res.Error = err.Error()
		return
	}
	req, err := pkg.Runner(d, *mirror, *version)
	if err != nil {
		res.Error = err.Error()
		return
	}
	req.Repo.Fingerprints = []string{*fpr}
	if *pkgFpr != "" {
		req.Repo.PackageFingerprints = []string{*pkgFpr}
	}
	req.AllowDowngrade = *downgrade
	res.Steps, err = pkg.Manager{Host: h}.Ensure(context.Background(), req)
	if err != nil {
		res.Error = err.Error()
	}
	res.Planned = h.Planned()
}
