package runner

import (
	"context"
	"fmt"

	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/image"
)

// CoordinatorImage keeps the coordinator image in ECR (internal/image.Apply or image.Plan).
type CoordinatorImage = image.Converger

// coordinatorBuildArgs are the coordinator image's build args from the fargate section: the
// [SSH] port and user the driver logs in with, which the image's sshd must serve (the driver
// passes the task nothing but SSH_PUBLIC_KEY).
func coordinatorBuildArgs(f *Fargate) map[string]string {
	if f == nil {
		return nil
	}
	return image.SSHArgs(f.SSH.Port, f.SSH.Username)
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
	r.progress("checking the coordinator image in ECR against the build context")
	st, err := ci.Converge(ctx)
	return []host.Step{st}, err
}
