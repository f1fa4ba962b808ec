package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/glbootstrap/glbootstrap/internal/aws/ecr"
	"github.com/glbootstrap/glbootstrap/internal/codebuild"
	"github.com/glbootstrap/glbootstrap/internal/image"
	"github.com/glbootstrap/glbootstrap/internal/role"
	"github.com/glbootstrap/glbootstrap/roles/runner"
)

func newImageCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the coordinator image every Fargate job runs in",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newImagePushCmd(e))
	return cmd
}

type imageFlags struct {
	repository, project, bucket, prefix, binary string
	force                                       bool
	buildArgs                                   []string
	timeout, poll                               time.Duration
}

func newImagePushCmd(e *env) *cobra.Command {
	f := &imageFlags{}
	cmd := &cobra.Command{
		Use:   "push --repository URI --project NAME --bucket BUCKET",
		Short: "Build the coordinator image with CodeBuild and push it to ECR as latest, unless latest already is this build",
		Long: "Builds templates/coordinator (Dockerfile, entrypoint) with this glbootstrap binary (or --binary) through\n" +
			"CodeBuild, tagged with a hash of that build context and latest. When the repository already has the hash\n" +
			"tag and latest points to the same image, nothing is built (exit 0, \"up to date\"). The runner role's\n" +
			"coordinator-image phase does the same from the configuration's coordinator section.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return imagePush(cmd.Context(), e, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.repository, "repository", "", "ECR repository URI, ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME (required)")
	fl.StringVar(&f.project, "project", "", "CodeBuild project that builds it (required; privileged mode)")
	fl.StringVar(&f.bucket, "bucket", "", "S3 bucket for the build context (required)")
	fl.StringVar(&f.prefix, "key-prefix", codebuild.DefaultKeyPrefix, "S3 key prefix of build contexts")
	fl.StringVar(&f.binary, "binary", "", "glbootstrap binary to put in the image, built for the Fargate task's architecture (default: this one)")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "NAME=VALUE for the Dockerfile (repeatable): SSH_PORT and SSH_USER (fargate.ssh.port and username when not 22 and root), GITLAB_RUNNER_DOWNLOADS (a private mirror of GitLab's runner downloads), GITLAB_RUNNER_VERSION")
	fl.BoolVar(&f.force, "force", false, "build and push even when latest is already this build context")
	fl.DurationVar(&f.timeout, "timeout", runner.DefaultCoordinatorTimeout, "give up (and stop the build) after this long")
	fl.DurationVar(&f.poll, "poll-interval", codebuild.DefaultPoll, "how often to ask CodeBuild for the build's status")
	return cmd
}

func imagePush(ctx context.Context, e *env, f *imageFlags) error {
	if f.repository == "" || f.project == "" || f.bucket == "" {
		return exitf(ExitUsage, "--repository, --project and --bucket are required")
	}
	if _, ok := ecr.ParseImage(f.repository + ":latest"); !ok {
		return exitf(ExitUsage, "--repository %q is not a private ECR repository URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME, no tag)", f.repository)
	}
	if f.poll <= 0 || f.timeout < 0 {
		return exitf(ExitUsage, "--poll-interval must be > 0 and --timeout >= 0")
	}
	args := map[string]string{}
	for _, a := range f.buildArgs {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return exitf(ExitUsage, "--build-arg %q: want NAME=VALUE", a)
		}
		args[k] = v
	}
	progress := func(s string) { fmt.Fprintln(e.stderr, "image: "+s) }
	spec := role.ImageSpec{Repository: f.repository, Project: f.project, Bucket: f.bucket, KeyPrefix: f.prefix, Timeout: f.timeout, BuildArgs: args}
	c, err := coordinatorImage(newAWSClients(ctx), spec, f.binary, f.poll, progress, e.stdout)
	if err != nil {
		return exitf(ExitFailed, "%v", err)
	}
	c.Force = f.force
	progress(fmt.Sprintf("build context %s (%d files)", c.Context.Tag(), len(c.Context.Files)))
	st, built, err := c.Ensure(ctx)
	if err != nil {
		return codebuildExit(codebuild.Result{}, err)
	}
	if !built {
		fmt.Fprintf(e.stdout, "%s:latest is up to date (%s = %s)\n", f.repository, st.Tag, st.LatestDigest)
		return nil
	}
	fmt.Fprintf(e.stdout, "pushed %s:%s and %s:latest (%s)\n", f.repository, st.Tag, f.repository, st.LatestDigest)
	return nil
}

// coordinatorImage wires image.Coordinator to the AWS clients: CodeBuild through
// codebuild.Run, ECR's DescribeImages for the repository's state. binary "" is this executable.
func coordinatorImage(a *awsClients, co role.ImageSpec, binary string, poll time.Duration,
	progress func(string), out interface{ Write([]byte) (int, error) }) (*image.Coordinator, error) {
	if binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding this glbootstrap binary for the image: %w", err)
		}
		binary = exe
	}
	ictx, err := image.CoordinatorContext(binary, co.BuildArgs)
	if err != nil {
		return nil, err
	}
	deps, err := codebuildDeps(a)
	if err != nil {
		return nil, err
	}
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	return &image.Coordinator{Context: ictx, Push: &image.Push{
		Registry:   image.ECR{Client: ecr.New(cfg)},
		Repository: co.Repository,
		Build: func(ctx context.Context, src codebuild.Source, o codebuild.Options) (codebuild.Result, error) {
			return codebuild.Run(ctx, deps, src, o)
		},
		Options: codebuild.Options{Project: co.Project, Bucket: co.Bucket, KeyPrefix: co.KeyPrefix,
			Timeout: co.Timeout, Poll: poll, Out: out, Progress: progress},
	}}, nil
}

// lazyCoordinator is role.Env's Images (the runner role's coordinator image): it hashes the
// binary and connects to AWS only when the coordinator-image phase runs.
type lazyCoordinator struct {
	aws      *awsClients
	spec     role.ImageSpec
	progress func(string)
	once     sync.Once
	c        *image.Coordinator
	err      error
}

// newLazyImage returns the image builder for spec; nothing is read or connected yet.
func newLazyImage(a *awsClients, spec role.ImageSpec, progress func(string)) *lazyCoordinator {
	return &lazyCoordinator{aws: a, spec: spec, progress: progress}
}

func (l *lazyCoordinator) get() (*image.Coordinator, error) {
	l.once.Do(func() {
		progress := func(s string) {
			if l.progress != nil {
				l.progress(s)
			}
		}
		l.c, l.err = coordinatorImage(l.aws, l.spec, "", codebuild.DefaultPoll, progress, progressWriter{progress})
	})
	return l.c, l.err
}

func (l *lazyCoordinator) Repository() string { return l.spec.Repository }

func (l *lazyCoordinator) Check(ctx context.Context) (image.State, error) {
	c, err := l.get()
	if err != nil {
		return image.State{}, err
	}
	return c.Check(ctx)
}

func (l *lazyCoordinator) Ensure(ctx context.Context) (image.State, bool, error) {
	c, err := l.get()
	if err != nil {
		return image.State{}, false, err
	}
	return c.Ensure(ctx)
}

// progressWriter turns build log output into progress lines.
type progressWriter struct{ progress func(string) }

func (p progressWriter) Write(b []byte) (int, error) {
	for _, line := range splitLines(string(b)) {
		p.progress("build: " + line)
	}
	return len(b), nil
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}
