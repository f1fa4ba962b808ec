package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
	"github.com/glbootstrap/glbootstrap/internal/backup"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/roles/gitlab"
)

// newBackupCmd is "glbootstrap backup run|status": what the
// glbootstrap-backup.service unit runs, and how an admin checks on it.
func newBackupCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back GitLab up to S3 (run) or show the last backup (status); the gitlab role's timer runs 'backup run' daily",
	}
	var source, root string
	flags := func(c *cobra.Command) {
		addConfigFlag(c, &source)
		c.Flags().StringVar(&root, "root", "/", "resolve /etc/gitlab, the backup directory and the status file under DIR")
	}
	run := &cobra.Command{
		Use:   "run --config SRC",
		Short: "gitlab-backup create, upload /etc/gitlab (with gitlab-secrets.json) under the same timestamp, verify both in S3",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := backupSetup(ctx, e, source, root)
			if err != nil {
				return err
			}
			// The host's run lock, as apply takes it: two backups, or a backup and an apply
			// (which may reconfigure GitLab or rewrite /etc/gitlab mid-archive), never overlap.
			unlock, err := r.Host.Lock()
			if err != nil {
				if errors.Is(err, host.ErrLocked) {
					return exitf(ExitLocked, "%v", err)
				}
				return exitf(ExitFailed, "%v", err)
			}
			defer unlock()
			r.Log = func(s string) { fmt.Fprintln(e.stderr, s) }
			rec, err := r.Run(ctx)
			if err != nil {
				// The journal shows this line; systemd marks the unit failed on the exit code.
				return exitf(ExitFailed, "%v", err)
			}
			fmt.Fprintf(e.stdout, "backup %s done: s3://%s/%s (%d bytes), s3://%s/%s (%d bytes)\n",
				rec.Timestamp, rec.Bucket, rec.AppKey, rec.AppSize, rec.Bucket, rec.ConfigKey, rec.ConfigSize)
			return nil
		},
	}
	flags(run)
	status := &cobra.Command{
		Use:   "status --config SRC",
		Short: "Print the last backup run, its result, and the newest archives in S3 (exit 1 when the last run failed or is older than 2 days)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := backupSetup(ctx, e, source, root)
			if err != nil {
				return err
			}
			return backupStatus(ctx, e, r)
		},
	}
	flags(status)
	cmd.AddCommand(run, status)
	return cmd
}

// backupSetup reads the configuration (role gitlab, with a backup section)
// and wires a backup.Runner to S3 in the bucket's region.
func backupSetup(ctx context.Context, e *env, source, root string) (*backup.Runner, error) {
	if source == "" {
		return nil, exitf(ExitUsage, "--config is required: the same source apply uses")
	}
	e.unchanged = "" // a backup changes no configuration
	h, err := host.New(root, false)
	if err != nil {
		return nil, exitf(ExitUsage, "%v", err)
	}
	clients := newAWSClients(ctx)
	doc, err := loadConfig(ctx, e, clients, gitlab.Name, source)
	if err != nil {
		return nil, err
	}
	cfg := doc.(*gitlab.Config)
	if cfg.Backup == nil {
		return nil, exitf(ExitInvalidConfig, "the configuration from %s has no backup section: add one with backup.bucket (see the commented backup section of examples/gitlab.yaml)", source)
	}
	region, err := clients.facts.Or(ctx, cfg.Backup.Region, "backup.region", func(f imds.Facts) string { return f.Region })
	if err != nil {
		return nil, exitf(ExitFailed, "finding the bucket's region: %v", err)
	}
	store, err := clients.s3For(region)
	if err != nil {
		return nil, exitf(ExitFailed, "%v", err)
	}
	return &backup.Runner{Host: h, Store: store, Config: cfg.Backup}, nil
}

// staleAfter is when a last success counts as too old for a daily backup.
const staleAfter = 48 * time.Hour

func backupStatus(ctx context.Context, e *env, r *backup.Runner) error {
	rec, ok, err := backup.ReadRecord(r.Host)
	if err != nil {
		return exitf(ExitFailed, "%v", err)
	}
	var problem error
	switch {
	case !ok:
		fmt.Fprintf(e.stdout, "last run: none recorded in %s\n", backup.StatusFile)
		problem = errors.New("no backup has run on this host yet: check 'systemctl list-timers glbootstrap-backup.timer'")
	default:
		fmt.Fprintf(e.stdout, "last run: %s, %s (%s)\n", rec.StartedAt.Format(time.RFC3339), rec.Result, rec.FinishedAt.Sub(rec.StartedAt).Round(time.Second))
		if rec.Result != "success" {
			fmt.Fprintf(e.stdout, "  failed at step %s: %s\n", rec.FailedStep, rec.Error)
			problem = fmt.Errorf("the last backup failed at step %s: see journalctl -u glbootstrap-backup", rec.FailedStep)
		} else {
			fmt.Fprintf(e.stdout, "  backup %s: s3://%s/%s and s3://%s/%s\n", rec.Timestamp, rec.Bucket, rec.AppKey, rec.Bucket, rec.ConfigKey)
			if age := time.Since(rec.FinishedAt); age > staleAfter {
				problem = fmt.Errorf("the last backup finished %s ago: is glbootstrap-backup.timer enabled?", age.Round(time.Hour))
			}
		}
	}
	prefix := r.Config.PrefixOrDefault()
	for _, p := range []struct{ title, prefix string }{{"application archives", prefix}, {"configuration archives", prefix + "config/"}} {
		objs, err := r.Store.List(ctx, r.Config.Bucket, p.prefix)
		if err != nil {
			return exitf(ExitFailed, "listing s3://%s/%s: %v", r.Config.Bucket, p.prefix, err)
		}
		var keep []string
		for _, o := range objs {
			rest := o.Key[len(p.prefix):]
			if rest == "" || strings.Contains(rest, "/") || rest == backup.MarkerKey {
				continue
			}
			keep = append(keep, fmt.Sprintf("  %s  %12d  %s", o.LastModified.UTC().Format(time.RFC3339), o.Size, o.Key))
		}
		sort.Sort(sort.Reverse(sort.StringSlice(keep)))
		if len(keep) > 3 {
			keep = keep[:3]
		}
		fmt.Fprintf(e.stdout, "newest %s in s3://%s/%s:\n", p.title, r.Config.Bucket, p.prefix)
		for _, l := range keep {
			fmt.Fprintln(e.stdout, l)
		}
		if len(keep) == 0 {
			fmt.Fprintln(e.stdout, "  (none)")
		}
	}
	if problem != nil {
		return exitf(ExitFailed, "%v", problem)
	}
	return nil
}
