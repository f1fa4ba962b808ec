package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidateCmd(e *env) *cobra.Command {
	var role, source string
	cmd := &cobra.Command{
		Use:   "validate --role ROLE --config SRC",
		Short: "Check a configuration and list every problem with its field path and line (exit 3 when invalid)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.checkCommon(role, source, "text"); err != nil {
				return err
			}
			e.unchanged = ""
			clients := newAWSClients(cmd.Context())
			if _, err := loadConfig(cmd.Context(), e, clients, role, source); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s: valid for role %s\n", source, role)
			return nil
		},
	}
	e.addRoleFlag(cmd, &role)
	addConfigFlag(cmd, &source)
	return cmd
}

func newPhasesCmd(e *env) *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "phases --role ROLE",
		Short: "List a role's phases in order, with their stage (bake phases also run at AMI bake)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.checkCommon(role, "-", "text"); err != nil {
				return err
			}
			def, _ := e.roles.Find(role)
			for _, p := range def.Phases() {
				fmt.Fprintf(e.stdout, "%-19s %-5s %s\n", p.Name, p.Stage, p.Description)
			}
			return nil
		},
	}
	e.addRoleFlag(cmd, &role)
	return cmd
}
