package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/roles/runner"
)

// newRunnerCmd is "glbootstrap runner unregister": the way out for a front
// that is going away (an Auto Scaling termination hook through SSM Run
// Command, or by hand), so terminated instances do not pile up as runners.
func newRunnerCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "runner", Short: "Runner front operations: unregister"}
	var source, root, output string
	var force, dryRun bool
	un := &cobra.Command{
		Use:   "unregister --config SRC",
		Short: "Delete this front's runner from GitLab and its token from the host (a shared token from SSM needs --force)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e.json = output == "json"
			if err := e.checkCommon(runner.Name, source, output); err != nil {
				return err
			}
			def, _ := e.roles.Find(runner.Name)
			s, err := openSession(cmd.Context(), e, "runner unregister", def, source, root, output, dryRun, false, []string{})
			if err != nil {
				return err
			}
			defer s.close()
			start := time.Now()
			steps, err := s.role.(*runner.Role).Unregister(cmd.Context(), force)
			res := engine.PhaseResult{Role: runner.Name, Phase: "unregister", Steps: steps, Status: engine.Unchanged, Duration: time.Since(start)}
			for _, st := range steps {
				if st.Changed {
					res.Status = engine.Changed
				}
			}
			if err != nil {
				res.Status, res.Error = engine.Failed, err.Error()
			}
			s.out.phase(res)
			if err != nil {
				// The error was printed once, with the phase (as apply does); this line only
				// points at it.
				return exitf(ExitFailed, "runner unregister failed (its error is printed with the phase above)")
			}
			return nil
		},
	}
	addConfigFlag(un, &source)
	un.Flags().StringVar(&root, "root", "/", "operate on the tree under DIR (the GitLab API is still called)")
	un.Flags().StringVarP(&output, "output", "o", "text", "output format: text | json")
	un.Flags().BoolVar(&force, "force", false, "also delete a runner whose glrt- token came from SSM (other fronts sharing it lose it too)")
	un.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be deleted, delete nothing")
	cmd.AddCommand(un)
	return cmd
}
