package runner

import (
	"context"

	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/pkg"
)

// packages installs gitlab-runner at runner.version (with gitlab-runner-helper-images where that
// release needs it) from GitLab's repository, or packages.mirror, and holds it (internal/pkg:
// signing key fingerprints pinned, or packages.mirror_key_fingerprint for a re-signing mirror; nothing downloaded when the right version is installed and
// held). Without runner.version it is skipped: the image must bring gitlab-runner itself.
func (r *Role) packages(ctx context.Context) ([]host.Step, error) {
	rc := r.d.Config.Runner
	if rc.Version == "" {
		return nil, engine.Skip("runner.version is not set: gitlab-runner must already be installed (a baked image); set runner.version (e.g. 17.9.3) to install and pin it")
	}
	d, err := pkg.DetectDistro(r.d.Host)
	if err != nil {
		return nil, err
	}
	req, err := pkg.Runner(d, r.d.Config.Packages.Mirror, rc.Version)
	if err != nil {
		return nil, err
	}
	// A mirror that re-signs the metadata with its own key is trusted with that key only.
	if req, err = req.WithMirrorKey(r.d.Config.Packages.MirrorKeyFingerprint); err != nil {
		return nil, err
	}
	req.AllowDowngrade = r.d.AllowDowngrade
	return pkg.Manager{Host: r.d.Host, Progress: r.d.Progress}.Ensure(ctx, req)
}
