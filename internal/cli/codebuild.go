package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	cb "github.com/glbootstrap/glbootstrap/internal/aws/codebuild"
	"github.com/glbootstrap/glbootstrap/internal/aws/logs"
	"github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/codebuild"
	"github.com/glbootstrap/glbootstrap/templates/buildspec"
)

func newCodeBuildCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "codebuild",
		Short: "Run builds (Docker images) in AWS CodeBuild from CI jobs that cannot run Docker",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newCodeBuildRunCmd(e), newCodeBuildBuildspecCmd(e))
	return cmd
}

type codebuildFlags struct {
	project, source, bucket, prefix, buildspec string
	env                                        []string
	timeout, poll                              time.Duration
}

func newCodeBuildRunCmd(e *env) *cobra.Command {
	f := &codebuildFlags{}
	cmd := &cobra.Command{
		Use:   "run --project NAME --source DIR --bucket BUCKET",
		Short: "Zip DIR into S3, build it with CodeBuild, stream the log; exit 0 only when the build SUCCEEDED",
		Long: "Zips DIR (honouring " + codebuild.IgnoreFile + ", gitignore syntax; symlinks leaving DIR are skipped with a warning)\n" +
			"straight into an S3 multipart upload, starts a build of PROJECT with that zip as its source, streams the\n" +
			"build's CloudWatch Logs output to stdout as it arrives, and exits 0 only when the build ends SUCCEEDED.\n" +
			"FAILED, FAULT, TIMED_OUT, STOPPED, an AWS error or --timeout exit 1 with the final phase and its reason.\n" +
			"SIGINT/SIGTERM (a cancelled CI job) stops the build first. `glbootstrap codebuild buildspec` prints a Docker\n" +
			"buildspec (ECR login, cache from latest, push of latest and an immutable tag) to pass as --buildspec.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return codebuildRun(cmd, e, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.project, "project", "", "CodeBuild project name (required)")
	fl.StringVar(&f.source, "source", "", "directory to build (required)")
	fl.StringVar(&f.bucket, "bucket", "", "S3 bucket for the source zip (required; the project's role must read it)")
	fl.StringVar(&f.prefix, "key-prefix", codebuild.DefaultKeyPrefix, "S3 key prefix of source zips (a lifecycle rule on it keeps the bucket small)")
	fl.StringArrayVar(&f.env, "env", nil, "build environment variable K=V (repeatable; plain text: never pass secrets here)")
	fl.StringVar(&f.buildspec, "buildspec", "", "buildspec FILE to use instead of the project's")
	fl.DurationVar(&f.timeout, "timeout", 60*time.Minute, "give up (and stop the build) after this long; 0 = no limit")
	fl.DurationVar(&f.poll, "poll-interval", codebuild.DefaultPoll, "how often to ask CodeBuild for the build's status (raise it when many jobs build at once)")
	return cmd
}

func codebuildRun(cmd *cobra.Command, e *env, f *codebuildFlags) error {
	var missing []string
	for name, v := range map[string]string{"--project": f.project, "--source": f.source, "--bucket": f.bucket} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return exitf(ExitUsage, "%s required", strings.Join(slices.Sorted(slices.Values(missing)), ", "))
	}
	vars, err := parseEnvFlags(f.env)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(f.source); err != nil || !fi.IsDir() {
		return exitf(ExitUsage, "--source %s is not a directory", f.source)
	}
	spec := ""
	if f.buildspec != "" {
		b, err := os.ReadFile(f.buildspec)
		if err != nil {
			return exitf(ExitUsage, "reading --buildspec: %v", err)
		}
		spec = string(b)
	}
	if f.timeout < 0 || f.poll <= 0 {
		return exitf(ExitUsage, "--timeout must be >= 0 and --poll-interval > 0")
	}

	ctx := cmd.Context()
	deps, err := codebuildDeps(newAWSClients(ctx))
	if err != nil {
		return exitf(ExitFailed, "%v", err)
	}
	progress := func(s string) { fmt.Fprintln(e.stderr, "codebuild: "+s) }
	src := &codebuild.Dir{Path: f.source, Warn: func(s string) { progress("warning: " + s) }}
	res, err := codebuild.Run(ctx, deps, src, codebuild.Options{
		Project: f.project, Bucket: f.bucket, KeyPrefix: f.prefix, Env: vars, Buildspec: spec,
		Timeout: f.timeout, Poll: f.poll, Out: e.stdout, Progress: progress,
	})
	return codebuildExit(res, err)
}

// codebuildExit maps a run to the exit code: 0 only for SUCCEEDED.
func codebuildExit(res codebuild.Result, err error) error {
	if err == nil {
		if !res.Build.Succeeded() { // never exit 0 on anything but SUCCEEDED
			return exitf(ExitFailed, "build %s ended %q", res.Build.ID, res.Build.Status)
		}
		return nil
	}
	var be *codebuild.BuildError
	switch {
	case errors.As(err, &be):
		return exitf(ExitFailed, "%v", be)
	case errors.Is(err, codebuild.ErrEmptySource):
		return exitf(ExitUsage, "%v", err)
	}
	return exitf(ExitFailed, "%v", err)
}

// codebuildDeps builds the S3, CodeBuild and CloudWatch Logs clients from the SDK's standard
// configuration (AWS_REGION, AWS_ENDPOINT_URL_<SERVICE>, the task or instance role).
func codebuildDeps(a *awsClients) (codebuild.Deps, error) {
	c, err := a.config()
	if err != nil {
		return codebuild.Deps{}, err
	}
	return codebuild.Deps{S3: s3.New(c), Builds: cb.New(c), Logs: logs.New(c)}, nil
}

func parseEnvFlags(kvs []string) ([]cb.EnvVar, error) {
	var out []cb.EnvVar
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, exitf(ExitUsage, "--env %q: want NAME=VALUE", kv)
		}
		if strings.HasPrefix(k, "CODEBUILD_") {
			return nil, exitf(ExitUsage, "--env %s: CodeBuild reserves names starting with CODEBUILD_", k)
		}
		out = append(out, cb.EnvVar{Name: k, Value: v})
	}
	return out, nil
}

func newCodeBuildBuildspecCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "buildspec",
		Short: "Print the Docker buildspec: ECR login, pull latest as cache, build, push latest and an immutable tag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(e.stdout, buildspec.Docker)
			return err
		},
	}
}
