package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/spf13/cobra"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
	"github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/aws/ssm"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/role"
)

// convergeFlags are shared by apply and plan.
type convergeFlags struct {
	role, source, root, output string
	only, skip                 []string
}

func (e *env) addRoleFlag(cmd *cobra.Command, role *string) {
	cmd.Flags().StringVar(role, "role", "", "role to converge: "+strings.Join(e.roles.Names(), " | "))
}

func addConfigFlag(cmd *cobra.Command, src *string) {
	cmd.Flags().StringVar(src, "config", "", "configuration source: FILE, - (stdin), ssm:/parameter/name or s3://bucket/key")
}

func newConvergeCmd(e *env, verb string) *cobra.Command {
	f := &convergeFlags{}
	short := "Converge this host into the role"
	if verb == "plan" {
		short = "Show what apply would change, changing nothing (exit 10 when changes are pending)"
	}
	cmd := &cobra.Command{
		Use:   verb + " --role ROLE --config SRC",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("phase") && len(f.only) == 0 {
				return exitf(ExitUsage, "--phase is empty: name the phases to run (glbootstrap phases --role %s lists them)", f.role)
			}
			return converge(cmd.Context(), e, f, verb == "plan")
		},
	}
	e.addRoleFlag(cmd, &f.role)
	addConfigFlag(cmd, &f.source)
	cmd.Flags().StringVar(&f.root, "root", "/", "converge the tree under DIR instead of the live system; nothing is executed or started")
	cmd.Flags().StringSliceVar(&f.only, "phase", nil, "run only these phases (repeatable or comma-separated)")
	cmd.Flags().StringSliceVar(&f.skip, "skip-phases", nil, "skip these phases (comma-separated)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text | json (JSON lines, for SSM and CloudWatch)")
	cmd.Flags().BoolVar(&e.allowDowngrade, "allow-downgrade", false, "let the packages phase install a pinned version older than the installed one")
	return cmd
}

// checkCommon validates the flags every converge-like command shares.
func (e *env) checkCommon(role, source, output string) error {
	switch {
	case role == "":
		return exitf(ExitUsage, "--role is required: one of %s", strings.Join(e.roles.Names(), ", "))
	case !contains(e.roles.Names(), role):
		return exitf(ExitUsage, "unknown role %q: one of %s", role, strings.Join(e.roles.Names(), ", "))
	case source == "":
		return exitf(ExitUsage, "--config is required: FILE, - (stdin), ssm:/name or s3://bucket/key")
	case output != "text" && output != "json":
		return exitf(ExitUsage, "--output must be text or json, not %q", output)
	}
	return nil
}

// awsClients loads the AWS configuration once, lazily: a run from a local
// file that needs no parameter never touches AWS.
// The region is the SDK's own (AWS_REGION, shared config) or else the
// instance's, from instance metadata: SSM parameters live in the front's
// region.
type awsClients struct {
	ctx context.Context
	cfg *aws.Config
	err error
	ssm *ssm.Client
	s3  *s3.Client
	// plan makes Put only read (a plan must not write SSM either).
	plan bool

	// facts reads instance metadata once, when something needs it.
	facts *imds.Lazy
}

func newAWSClients(ctx context.Context) *awsClients {
	return &awsClients{ctx: ctx, facts: imds.NewLazy(nil)}
}

// Facts reads instance metadata once.
func (a *awsClients) Facts() (imds.Facts, error) { return a.facts.Get(a.ctx) }

func (a *awsClients) config() (aws.Config, error) {
	if a.cfg == nil && a.err == nil {
		region := ""
		if os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" {
			f, err := a.Facts()
			if err != nil {
				a.err = fmt.Errorf("finding the AWS region (off EC2, set AWS_REGION): %w", err)
				return aws.Config{}, a.err
			}
			region = f.Region
		}
		c, err := awscfg.Load(a.ctx, region)
		a.cfg, a.err = &c, err
	}
	if a.err != nil {
		return aws.Config{}, a.err
	}
	return *a.cfg, nil
}

// Get reads an SSM parameter with decryption.
func (a *awsClients) Get(ctx context.Context, name string) (string, error) {
	if a.ssm == nil {
		c, err := a.config()
		if err != nil {
			return "", err
		}
		a.ssm = ssm.New(c)
	}
	return a.ssm.Get(ctx, name)
}

// Open opens an S3 object.
func (a *awsClients) Open(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error) {
	if a.s3 == nil {
		c, err := a.config()
		if err != nil {
			return nil, 0, err
		}
		a.s3 = s3.New(c)
	}
	return a.s3.Open(ctx, bucket, key)
}

// loadConfig reads, parses and validates the configuration for role (a
// role of the registry), printing every problem; any error means exit 3 and
// nothing touched. The document is the role's type (role.Definition.NewConfig).
func loadConfig(ctx context.Context, e *env, clients *awsClients, role, source string) (config.Document, error) {
	_, cfg, err := loadConfigData(ctx, e, clients, role, source)
	return cfg, err
}

// loadConfigData is loadConfig that also returns the bytes read.
func loadConfigData(ctx context.Context, e *env, clients *awsClients, role, source string) ([]byte, config.Document, error) {
	data, err := config.Read(ctx, source, e.stdin, clients, clients)
	if err != nil {
		// A file that is missing or unreadable, or a parameter or object that does not exist, is
		// a configuration mistake (3); reading from AWS that fails otherwise (denied, no answer,
		// no metadata) is the environment's (1).
		code := ExitInvalidConfig
		remote := strings.HasPrefix(source, "ssm:") || strings.HasPrefix(source, "s3:")
		if remote && !errors.Is(err, ssm.ErrNotFound) && !errors.Is(err, s3.ErrNotFound) {
			code = ExitFailed
		}
		return nil, nil, exitf(code, "%v%s", err, e.unchanged)
	}
	cfg, problems := config.Parse(data, role, e.roles.Schemas())
	for _, p := range problems.Warnings() {
		fmt.Fprintln(e.stderr, p.String())
	}
	if errs := problems.Errors(); len(errs) > 0 {
		for _, p := range errs {
			fmt.Fprintln(e.stderr, "error: "+p.String())
			e.problems = append(e.problems, p.String())
		}
		return nil, nil, &exitError{code: ExitInvalidConfig, err: fmt.Errorf("the configuration from %s has %d problem(s)%s", source, len(errs), strings.ReplaceAll(e.unchanged, "\n", "; "))}
	}
	return data, cfg, nil
}

func converge(ctx context.Context, e *env, f *convergeFlags, dryRun bool) error {
	e.json = f.output == "json"
	if err := e.checkCommon(f.role, f.source, f.output); err != nil {
		return err
	}
	def, _ := e.roles.Find(f.role)
	selected, err := engine.Select(def.Phases(), engine.Options{Only: f.only, Skip: f.skip})
	if err != nil {
		return exitf(ExitUsage, "%v", err)
	}
	bakeOnly := len(selected) > 0
	names := []string{}
	for _, p := range selected {
		bakeOnly = bakeOnly && p.Stage == engine.Bake
		names = append(names, p.Name)
	}
	s, err := openSession(ctx, e, "", def, f.source, f.root, f.output, dryRun, bakeOnly, names)
	if err != nil {
		return err
	}
	defer s.close()
	var failed []string
	observe := func(r engine.PhaseResult) {
		if r.Status == engine.Failed {
			failed = append(failed, r.Phase)
		}
		s.out.phase(r)
	}
	rep, runErr := engine.Run(ctx, f.role, s.role.Phases(), engine.Options{
		Only: f.only, Skip: f.skip, DryRun: dryRun, Observe: observe,
	})
	s.out.summary(rep)
	switch {
	case runErr != nil && engine.IsUsage(runErr):
		return exitf(ExitUsage, "%v", runErr)
	case runErr != nil && len(failed) == 0:
		// Failed before any phase reported (interrupted): nothing above says why.
		return exitf(ExitFailed, "%s", s.out.mask(runErr.Error()))
	case runErr != nil:
		// Each error was printed once, with its phase; this line only points at it.
		if dryRun {
			return exitf(ExitFailed, "plan: %d phase(s) failed: %s (the errors are printed with their phases above); apply would stop at %s", len(failed), strings.Join(failed, ", "), failed[0])
		}
		return exitf(ExitFailed, "phase %s failed (its error is printed with the phase above); the phases before it stay applied: fix the cause and run apply again", failed[0])
	case dryRun && rep.Changed > 0:
		return &exitError{code: ExitPlanChanges}
	}
	return nil
}

// session is a role prepared on a host, holding the run lock unless dry-run.
type session struct {
	host *host.Host
	// plan wires every effect's plan implementation into the role (roleEnv).
	plan   bool
	role   role.Prepared
	out    *printer
	unlock func()
}

func (s *session) close() {
	if s.unlock != nil {
		s.unlock()
	}
	_ = s.host.Close()
}

// openSession does what every command that converges does first, in the
// order that keeps "invalid input changes nothing": read and validate the
// configuration (exit 3), take the lock (exit 4), and resolve the role's
// inputs (exit 3 for a missing parameter, else 1). Instance metadata is read
// only if the role needs a fact its configuration does not give.
func openSession(ctx context.Context, e *env, verb string, def role.Definition, source, root, output string, dryRun, bakeOnly bool, selected []string) (*session, error) {
	h, err := host.New(root, dryRun)
	if err != nil {
		return nil, exitf(ExitUsage, "%v", err)
	}
	clients := newAWSClients(ctx)
	cfg, err := loadConfig(ctx, e, clients, def.Name, source)
	if err != nil {
		return nil, err
	}
	s := &session{host: h, plan: dryRun}
	clients.plan = dryRun
	if !dryRun {
		if s.unlock, err = h.Lock(); err != nil {
			if errors.Is(err, host.ErrLocked) {
				return nil, exitf(ExitLocked, "%v", err)
			}
			return nil, exitf(ExitFailed, "%v", err)
		}
	}
	s.out = newPrinter(e, output, dryRun)
	s.role, err = def.Prepare(ctx, e.roleEnv(s, clients, source, bakeOnly, selected), cfg)
	if err != nil {
		s.close()
		code := ExitFailed
		var ce *role.ConfigError
		if errors.Is(err, ssm.ErrNotFound) || errors.As(err, &ce) {
			code = ExitInvalidConfig
		}
		return nil, exitf(code, "%v\nnothing was changed", err)
	}
	s.out.secrets = s.role.Secrets
	if verb == "" {
		verb = "apply"
		if dryRun {
			verb = "plan"
		}
		verb += " --role " + def.Name
	}
	s.out.header(verb, h)
	return s, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// absSource makes a file source absolute, so a unit that reads the
// configuration later finds it whatever its working directory.
func absSource(src string) string {
	if src == "-" || strings.Contains(src, ":") {
		return src
	}
	if abs, err := filepath.Abs(src); err == nil {
		return abs
	}
	return src
}
