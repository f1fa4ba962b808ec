// Command pkghelper runs pkg.Manager.Ensure for gitlab-runner on the live system it runs on (a
// test container) and prints the steps, the planned actions and the error as JSON: the system
// test of package pkg runs it inside systemd-nspawn, where "/" is the container's root.
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
	req.AllowDowngrade = *downgrade
	res.Steps, err = pkg.Manager{Host: h}.Ensure(context.Background(), req)
	if err != nil {
		res.Error = err.Error()
	}
	res.Planned = h.Planned()
}
