package runner

import (
	"context"
	"fmt"
	"maps"

	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/image"
)

// CoordinatorImage keeps the coordinator image in ECR (internal/image.Apply or image.Plan).
type CoordinatorImage = image.Converger

// coordinatorBuildArgs are the coordinator image's build args from the configuration: the
// [SSH] port and user the driver logs in with, which the image's sshd must serve (the driver
// passes the task nothing but SSH_PUBLIC_KEY), and the builds and cache directories the job's
// script writes to as that user (RUNNER_DIRS, left out when they are the defaults), and the
// front's gitlab-runner release (runner.version) for the one in the task.
func coordinatorBuildArgs(cfg *Config) map[string]string {
	if cfg == nil || cfg.Fargate == nil {
		return nil
	}
	args := image.SSHArgs(cfg.Fargate.SSH.Port, cfg.Fargate.SSH.Username)
	if r := cfg.Runner; r != nil {
		b, c := r.BuildsDir, r.CacheDir
		if b == "" {
			b = DefaultBuildsDir
		}
		if c == "" {
			c = DefaultCacheDir
		}
		if dirs := b + "," + c; dirs != image.DefaultRunnerDirs {
			args[image.ArgRunnerDirs] = dirs
		}
		maps.Copy(args, image.RunnerVersionArgs(r.Version))
	}
	return args
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
