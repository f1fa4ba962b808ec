package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/role"
)

// DriverRecord is where the fargate-driver phase records which release it installed: the
// configuration alone cannot tell that a SHA-256 belongs to another release (GitLab publishes no
// checksums, and glbootstrap ships no table it could vouch for), but the host can. The AMI bake
// keeps this file (it names a binary, not the machine).
const DriverRecord = "/var/lib/glbootstrap/driver.json"

// driverRecord is DriverRecord's content.
type driverRecord struct {
	// Version is fargate.driver.version when the binary was installed (or found in place).
	Version string `json:"version"`
	// SHA256 is the binary's SHA-256, lower-case hex.
	SHA256 string `json:"sha256"`
	// Source is where it came from (fargate.driver.url or GitLab's bucket).
	Source string `json:"source"`
}

// readDriverRecord returns the record; ok is false when there is none.
func readDriverRecord(h *host.Host) (rec driverRecord, ok bool, err error) {
	b, err := h.ReadFile(DriverRecord)
	if host.IsNotExist(err) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("reading %s: %w", DriverRecord, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, false, fmt.Errorf("%s is not valid JSON (%v): remove it, and the next apply writes it again", DriverRecord, err)
	}
	return rec, true, nil
}

// recordedVersion is the release the record names for the pinned SHA-256, "" when the record
// is missing or is about another binary.
func recordedVersion(h *host.Host, d Driver) (string, error) {
	rec, ok, err := readDriverRecord(h)
	if err != nil || !ok || rec.SHA256 != d.SHA256 {
		return "", err
	}
	return rec.Version, nil
}

// checkDriverPin refuses a configuration that changed fargate.driver.version but kept the SHA-256
// of the release installed before: the fargate-driver phase would find the right checksum on
// disk and install nothing, while everything (doctor included) believed the new release ran.
// The error is the configuration's (exit 3) and names both keys.
func checkDriverPin(h *host.Host, d Driver) error {
	was, err := recordedVersion(h, d)
	if err != nil || was == "" || was == d.Version {
		return err
	}
	return &role.ConfigError{Err: fmt.Errorf("fargate.driver.version is %s but fargate.driver.sha256 is the SHA-256 of the %s binary installed at %s (%s): "+
		"put the SHA-256 of the %s release (sha256sum fargate-linux-%s) in fargate.driver.sha256, or set fargate.driver.version back to %s",
		d.Version, was, d.Path, DriverRecord, d.Version, runtime.GOARCH, was)}
}

// fargateDriver is the phase: install the pinned driver, then record which release it is.
func (r *Role) fargateDriver(ctx context.Context) ([]host.Step, error) {
	steps, err := r.installDriver(ctx)
	if err != nil {
		return steps, err
	}
	drv := r.cfg.Fargate.Driver
	b, err := json.MarshalIndent(driverRecord{Version: drv.Version, SHA256: drv.SHA256, Source: drv.DownloadURL(runtime.GOARCH)}, "", "  ")
	if err != nil {
		return steps, err
	}
	st, err := r.d.Host.EnsureFile(host.File{Path: DriverRecord, Data: append(b, '\n'), Mode: 0o644})
	return append(steps, st), err
}
