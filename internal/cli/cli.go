// Package cli is glbootstrap's command line: cobra commands, flags, exit
// codes, and human or JSON output. Main takes its arguments and writers so
// every command runs in-process in tests.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/glbootstrap/glbootstrap/internal/role"
	"github.com/glbootstrap/glbootstrap/roles"
)

// Version is stamped at build time: -ldflags "-X .../internal/cli.Version=v1.2.3".
var Version = "dev"

// Exit codes (README.md "Exit codes").
const (
	ExitOK            = 0
	ExitFailed        = 1  // a phase failed; phases before it stay applied
	ExitUsage         = 2  // command-line usage error
	ExitInvalidConfig = 3  // invalid configuration; nothing was changed
	ExitLocked        = 4  // another run holds the lock
	ExitPlanChanges   = 10 // plan only: changes are pending
	// ExitInterrupted (130) and ExitTerminated (143): stopped by SIGINT / SIGTERM (signal.go).
)

// exitError carries an exit code and an already-printed-or-to-print cause.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// env is what every command gets: its streams.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
	// json is set by commands run with --output json: an error that ends the run is then
	// also printed on stdout as a JSON line, with the configuration's problems.
	json     bool
	problems []string
	// unchanged ends the message of an error raised before anything was touched, for the
	// commands that change things ("" for validate and doctor, which never do).
	unchanged string
	// roles are the roles --role chooses from.
	roles role.Registry
	// allowDowngrade is apply's --allow-downgrade, for the roles' packages phases.
	allowDowngrade bool
}

// Main runs glbootstrap with args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return MainWithRoles(ctx, roles.All, args, stdin, stdout, stderr)
}

// MainWithRoles is Main with the roles of reg instead of the build's (roles.All): tests run the
// command line with a role of their own.
func MainWithRoles(ctx context.Context, reg role.Registry, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if err := reg.Check(); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return ExitFailed
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, unchanged: "\nnothing was changed", roles: reg}
	root := &cobra.Command{
		Use:   "glbootstrap",
		Short: "Converge an EC2 instance into a self-hosted GitLab host or a GitLab Runner front for AWS Fargate",
		Long: "glbootstrap converges an EC2 instance into a role (runner: a GitLab Runner front whose jobs run as\n" +
			"AWS Fargate tasks; gitlab: the Omnibus host) and keeps it there. Run it from user-data, an AMI bake\n" +
			"or SSM Run Command; a second apply changes nothing.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: fmt.Errorf("%w\nsee '%s --help'", err, c.CommandPath())}
	})
	root.AddCommand(
		newConvergeCmd(e, "apply"),
		newConvergeCmd(e, "plan"),
		newValidateCmd(e),
		newPhasesCmd(e),
		newVersionCmd(e),
		newDoctorCmd(e),
		newCodeBuildCmd(e),
		newImageCmd(e),
		newBackupCmd(e),
		newRunnerCmd(e),
		newUserdataCmd(e),
		newBakeCmd(e),
		newIAMPolicyCmd(e),
	)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var xe *exitError
	signal := ""
	if in := interruptOf(ctx); in != nil && (!errors.As(err, &xe) || xe.err != nil) {
		// Whatever the command was doing when the signal came failed because of it: report
		// the signal, not a phase failure (exit 1) or a config problem (exit 3).
		cause := err
		if xe != nil {
			cause = xe.err
		}
		err, signal = interrupted(in, cause), in.Name()
	}
	if errors.As(err, &xe) {
		if xe.err != nil {
			fmt.Fprintf(stderr, "error: %v\n", xe.err)
			if e.json {
				b, _ := json.Marshal(struct {
					Type     string   `json:"type"`
					ExitCode int      `json:"exit_code"`
					Error    string   `json:"error"`
					Problems []string `json:"problems,omitempty"`
					Signal   string   `json:"signal,omitempty"`
				}{"error", xe.code, xe.err.Error(), e.problems, signal})
				fmt.Fprintln(stdout, string(b))
			}
		}
		return xe.code
	}
	// cobra's own errors: unknown command, missing args.
	msg := err.Error()
	fmt.Fprintf(stderr, "error: %s\n", msg)
	if strings.HasPrefix(msg, "unknown command") || strings.Contains(msg, "arg(s)") {
		fmt.Fprintln(stderr, "run 'glbootstrap --help' for the commands")
	}
	return ExitUsage
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print glbootstrap's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(e.stdout, "glbootstrap %s\n", Version)
			return nil
		},
	}
}
