package runner

import (
	"context"
	"fmt"

	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/image"
)

// CoordinatorImage keeps the coordinator image in ECR (internal/image.Coordinator).
type CoordinatorImage interface {
	Repository() string
	// Check reads what the repository holds for the current build context.
	Check(ctx context.Context) (image.State, error)
	// Ensure builds and pushes the image through CodeBuild unless the repository already has
	// the context's hash tag as latest; built says whether it built.
	Ensure(ctx context.Context) (st image.State, built bool, err error)
}

// coordinatorImage makes sure ECR's latest coordinator image is the one built from this
// glbootstrap's templates and binary. Without a coordinator section it changes nothing and is
// reported skipped.
func (r *Role) coordinatorImage(ctx context.Context) ([]host.Step, error) {
	if r.cfg.Coordinator == nil {
		return nil, engine.Skip("not configured (no coordinator section)")
	}
	ci := r.d.Coordinator
	if ci == nil {
		return nil, fmt.Errorf("no coordinator image builder was set up")
	}
	target := ci.Repository() + ":" + image.LatestTag
	if r.d.Host.DryRun {
		st, err := ci.Check(ctx)
		if err != nil {
			return nil, err
		}
		if st.Current() {
			return []host.Step{{Kind: "remote", Target: target, Summary: "up to date (" + st.Tag + ", " + st.LatestDigest + ")"}}, nil
		}
		return []host.Step{{Kind: "remote", Target: target, Changed: true,
			Summary: fmt.Sprintf("would build %s with CodeBuild and push it as latest (latest is now %s)", st.Tag, orAbsent(st.LatestDigest))}}, nil
	}
	if r.d.Progress != nil {
		r.d.Progress("checking " + target + " against the coordinator build context")
	}
	st, built, err := ci.Ensure(ctx)
	if err != nil {
		return nil, fmt.Errorf("coordinator image %s: %w", st.Tag, err)
	}
	if !built {
		return []host.Step{{Kind: "remote", Target: target, Summary: "up to date (" + st.Tag + ", " + st.LatestDigest + ")"}}, nil
	}
	return []host.Step{{Kind: "remote", Target: target, Changed: true,
		Summary: fmt.Sprintf("built %s with CodeBuild and pushed it as latest (%s)", st.Tag, st.LatestDigest)}}, nil
}

func orAbsent(s string) string {
	if s == "" {
		return "absent"
	}
	return s
}
