package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/glbootstrap/glbootstrap/internal/userdata"
)

func newUserdataCmd(e *env) *cobra.Command {
	var role, source string
	o := userdata.Options{}
	cmd := &cobra.Command{
		Use:   "userdata --role ROLE --config SRC --binary URL --sha256 HEX",
		Short: "Print EC2 user-data that installs glbootstrap (checksum verified) and converges the instance at every boot",
		Long: "Print a POSIX sh user-data script (under EC2's 16 KB limit) that downloads glbootstrap from --binary\n" +
			"(https://, or s3:// through the AWS CLI), checks its SHA-256, installs it at /usr/local/bin/glbootstrap\n" +
			"and runs `glbootstrap apply`, logging to the console, the journal (journalctl -t glbootstrap-userdata)\n" +
			"and /var/log/glbootstrap-userdata.log. --config ssm:/NAME or s3://BUCKET/KEY is read at boot; a local\n" +
			"FILE is validated now and embedded.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.checkCommon(role, source, "text"); err != nil {
				return err
			}
			e.unchanged = ""
			o.Role, o.Source, o.Version = role, source, Version
			remote := strings.HasPrefix(source, "ssm:") || strings.HasPrefix(source, "s3:")
			if !remote {
				if source == "-" {
					return exitf(ExitUsage, "--config -: give the file's path, or ssm:/NAME or s3://BUCKET/KEY for the instance to read at boot")
				}
				// A local file is embedded: check it now, so an instance never boots with a
				// configuration that cannot apply.
				data, _, err := loadConfigData(cmd.Context(), e, newAWSClients(cmd.Context()), role, source)
				if err != nil {
					return err
				}
				o.Content = data
			}
			out, err := userdata.Render(o)
			if err != nil {
				return exitf(ExitUsage, "%v", err)
			}
			if remote {
				fmt.Fprintf(e.stderr, "note: %s is read on the instance at boot (not now): run `glbootstrap validate --role %s --config %s` where AWS credentials reach it\n", source, role, source)
			}
			_, err = e.stdout.Write(out)
			return err
		},
	}
	e.addRoleFlag(cmd, &role)
	addConfigFlag(cmd, &source)
	cmd.Flags().StringVar(&o.Binary, "binary", "", "URL the instance downloads glbootstrap from: https://… or s3://… (matching the instance's architecture)")
	cmd.Flags().StringVar(&o.SHA256, "sha256", "", "SHA-256 of that binary, 64 hex digits (from the release's SHA256SUMS)")
	cmd.Flags().BoolVar(&o.AllowHTTP, "allow-http", false, "allow a plain http:// --binary (a mirror inside the VPC; the checksum still checks the content)")
	return cmd
}
