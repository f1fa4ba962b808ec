package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/roles/runner"
	"github.com/glbootstrap/glbootstrap/roles/runner/preflight"
)

// newDoctorCmd is "glbootstrap doctor --role runner --config SRC [--strict]": the runner role's
// preflight checks alone, read-only, one line per check and then the fixes. Exit 1 when a check
// fails (or, with --strict, warns), 0 otherwise.
func newDoctorCmd(e *env) *cobra.Command {
	var role, source, root string
	var strict bool
	cmd := &cobra.Command{
		Use:   "doctor --role runner --config SRC [--strict]",
		Short: "Check with read-only AWS calls what the Fargate driver needs (exit 1 on a failed check; --strict: also on a warning)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.checkCommon(role, source, "text"); err != nil {
				return err
			}
			e.unchanged = "" // doctor only reads
			if role != runner.Name {
				return exitf(ExitUsage, "doctor checks role runner only, not %q", role)
			}
			ctx := cmd.Context()
			// Dry-run: the checks only read, and the host must not change whatever they call.
			h, err := host.New(root, true)
			if err != nil {
				return exitf(ExitUsage, "%v", err)
			}
			clients := newAWSClients(ctx)
			doc, err := loadConfig(ctx, e, clients, role, source)
			if err != nil {
				return err
			}
			cfg, ok := doc.(*runner.Config)
			if !ok {
				return exitf(ExitUsage, "doctor checks role runner only, not %q", role)
			}
			p, err := runner.NewPreflight(ctx, runner.Deps{Host: h, Config: cfg, Facts: clients.facts, Source: absSource(source),
				NewPreflight: func(region string) (preflight.Readers, error) { return preflight.ReadersFor(clients, region) }})
			if err != nil {
				return exitf(ExitFailed, "%v", err)
			}
			findings := p.Run(ctx)
			printFindings(e, findings)
			if err := preflight.FailedError(findings, strict); err != nil {
				return &exitError{code: ExitFailed}
			}
			return nil
		},
	}
	e.addRoleFlag(cmd, &role)
	addConfigFlag(cmd, &source)
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 on warnings too, including checks that could not run for lack of permission")
	cmd.Flags().StringVar(&root, "root", "/", "check the directories and driver under DIR instead of the live system")
	return cmd
}

// printFindings writes one line per check, then the fixes of those that are not ok, then a
// count.
func printFindings(e *env, findings []preflight.Finding) {
	counts := map[preflight.CheckStatus]int{}
	for _, f := range findings {
		fmt.Fprintln(e.stdout, f.Line())
		counts[f.Status]++
	}
	var fixes []string
	for _, f := range findings {
		if (f.Status == preflight.CheckWarn || f.Status == preflight.CheckFail) && f.Fix != "" {
			fixes = append(fixes, fmt.Sprintf("  %s (%s): %s", f.Check, f.Resource, f.Fix))
		}
	}
	if len(fixes) > 0 {
		fmt.Fprintf(e.stdout, "\nfixes:\n%s\n", strings.Join(fixes, "\n"))
	}
	fmt.Fprintf(e.stdout, "\n%d ok, %d warn, %d fail, %d skipped\n",
		counts[preflight.CheckOK], counts[preflight.CheckWarn], counts[preflight.CheckFail], counts[preflight.CheckSkip])
}
