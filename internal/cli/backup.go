package cli

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
	"github.com/glbootstrap/glbootstrap/internal/backup"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/pkg"
	"github.com/glbootstrap/glbootstrap/roles/gitlab"
)

// newBackupCmd is "glbootstrap backup run|status": what the
// glbootstrap-backup.service unit runs, and how an admin checks on it.
// backupIDRE is a GitLab backup ID: <unix time>_<YYYY>_<MM>_<DD>_<version>[-ee] (the name of
// gitlab-backup's archive without _gitlab_backup.tar; "Backup timestamp" in GitLab's backup docs).
var backupIDRE = regexp.MustCompile(`^[0-9]{9,11}_[0-9]{4}_[0-9]{2}_[0-9]{2}_[0-9]+\.[0-9]+\.[0-9]+(-[a-z]+)?(-pre|-rc[0-9]+)?$`)

func newBackupCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back GitLab up to S3 (run), show the last backup (status), check the newest pair restores (verify), restore one (restore)",
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
				rec.Timestamp, rec.Bucket, rec.AppKey, rec.AppSize, rec.ConfigBucket, rec.ConfigKey, rec.ConfigSize)
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
	var from string
	verify := &cobra.Command{
		Use:   "verify --config SRC [--from BACKUP_ID]",
		Short: "Download the newest backup pair from S3 and check that a restore could use it (exit 1 with the reason when not); the gitlab role's timer runs it weekly",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := backupSetup(ctx, e, source, root)
			if err != nil {
				return err
			}
			if from != "" && !backupIDRE.MatchString(from) {
				return exitf(ExitUsage, "--from %q is not a backup ID (<unix time>_<YYYY_MM_DD>_<GitLab version>, e.g. 1796090405_2026_12_01_18.5.1-ee): pick one from 'glbootstrap backup status'", from)
			}
			start := time.Now()
			rep, err := r.Verify(ctx, from)
			printReport(e, rep, time.Since(start))
			if err != nil {
				fmt.Fprintf(e.stdout, "result:        FAILED: %v\n", err)
				return exitf(ExitFailed, "backup verify: %v", err)
			}
			fmt.Fprintf(e.stdout, "result:        OK: backup %s can be restored on this host (glbootstrap backup restore --from %s)\n", rep.Pair.ID, rep.Pair.ID)
			return nil
		},
	}
	flags(verify)
	verify.Flags().StringVar(&from, "from", "", "check this backup ID instead of the newest")
	var dryRun bool
	restore := &cobra.Command{
		Use:   "restore --config SRC --from BACKUP_ID [--dry-run]",
		Short: "Restore a backup pair onto this host in GitLab's documented order (stop puma and sidekiq, gitlab-backup restore, put back gitlab-secrets.json and gitlab.rb, reconfigure, restart, check)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if from == "" {
				return exitf(ExitUsage, "--from BACKUP_ID is required: pick one from 'glbootstrap backup status' (a restore overwrites the database, so glbootstrap never picks for you)")
			}
			if !backupIDRE.MatchString(from) {
				return exitf(ExitUsage, "--from %q is not a backup ID (<unix time>_<YYYY_MM_DD>_<GitLab version>, e.g. 1796090405_2026_12_01_18.5.1-ee): pick one from 'glbootstrap backup status'\nnothing was changed", from)
			}
			r, err := backupSetup(ctx, e, source, root)
			if err != nil {
				return err
			}
			if !dryRun {
				// A backup or an apply must not run while the data is replaced.
				unlock, err := r.Host.Lock()
				if err != nil {
					if errors.Is(err, host.ErrLocked) {
						return exitf(ExitLocked, "%v", err)
					}
					return exitf(ExitFailed, "%v", err)
				}
				defer unlock()
			}
			if err := r.Restore(ctx, backup.RestoreOptions{ID: from, DryRun: dryRun, Out: e.stdout}); err != nil {
				return exitf(ExitFailed, "%v", err)
			}
			return nil
		},
	}
	flags(restore)
	restore.Flags().StringVar(&from, "from", "", "the backup ID to restore (<unix>_<date>_<version>, as 'backup status' lists it)")
	restore.Flags().BoolVar(&dryRun, "dry-run", false, "check the backup pair and print the steps; change nothing")
	cmd.AddCommand(run, status, verify, restore)
	return cmd
}

// printReport prints what verify checked, one screen.
func printReport(e *env, rep backup.Report, took time.Duration) {
	p := rep.Pair
	fmt.Fprintf(e.stdout, "backup:        %s\n", orDash(p.ID))
	fmt.Fprintf(e.stdout, "installed:     GitLab %s\n", orDash(rep.Installed))
	if p.AppKey != "" {
		fmt.Fprintf(e.stdout, "application:   s3://%s/%s (%d bytes)\n", p.AppBucket, p.AppKey, p.AppSize)
	}
	if a := rep.App; a.Entries > 0 {
		fmt.Fprintf(e.stdout, "  GitLab %s, created %s; %d entries, database dump %d bytes uncompressed, %d repository files\n",
			orDash(a.GitLabVersion), orDash(a.CreatedAt), a.Entries, a.DatabaseBytes, a.Repositories)
	}
	if p.ConfigKey != "" {
		fmt.Fprintf(e.stdout, "configuration: s3://%s/%s (%d bytes)\n", p.ConfigBucket, p.ConfigKey, p.ConfigSize)
	}
	if c := rep.Config; c.BackupID != "" {
		fmt.Fprintf(e.stdout, "  same run (%s); gitlab.rb; gitlab-secrets.json with %d gitlab_rails keys, all %d a restore needs\n", c.BackupID, c.SecretsKeys, len(backup.RequiredSecrets))
	}
	fmt.Fprintf(e.stdout, "took:          %s\n", took.Round(time.Millisecond))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
	// gitlab-backup and restore's gitlab-ctl reconfigure must not see them (internal/pkg).
	if note := pkg.ScrubOmnibusEnvNote(pkg.ScrubOmnibusEnv()); note != "" {
		fmt.Fprintln(e.stderr, note)
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
			cfgBucket := rec.ConfigBucket
			if cfgBucket == "" {
				cfgBucket = rec.Bucket
			}
			fmt.Fprintf(e.stdout, "  backup %s: s3://%s/%s and s3://%s/%s\n", rec.Timestamp, rec.Bucket, rec.AppKey, cfgBucket, rec.ConfigKey)
			if age := time.Since(rec.FinishedAt); age > staleAfter {
				problem = fmt.Errorf("the last backup finished %s ago: is glbootstrap-backup.timer enabled?", age.Round(time.Hour))
			}
		}
	}
	prefix := r.Config.PrefixOrDefault()
	cfgBucket, cfgPrefix, _ := r.Config.SecretsLocation()
	for _, p := range []struct{ title, bucket, prefix string }{{"application archives", r.Config.Bucket, prefix}, {"configuration archives", cfgBucket, cfgPrefix}} {
		objs, err := r.Store.List(ctx, p.bucket, p.prefix)
		if err != nil {
			return exitf(ExitFailed, "listing s3://%s/%s: %v", p.bucket, p.prefix, err)
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
		fmt.Fprintf(e.stdout, "newest %s in s3://%s/%s:\n", p.title, p.bucket, p.prefix)
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
