package gitlab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/render"
	"github.com/glbootstrap/glbootstrap/templates"
)

// The backup units (templates/systemd). The timer starts the service, the
// service runs "glbootstrap backup run" with the configuration apply used.
const (
	BackupService = "glbootstrap-backup.service"
	BackupTimer   = "glbootstrap-backup.timer"
	// VerifyService and VerifyTimer run "glbootstrap backup verify" weekly: a backup is only
	// known to be usable once its newest pair was downloaded and checked.
	VerifyService = "glbootstrap-backup-verify.service"
	VerifyTimer   = "glbootstrap-backup-verify.timer"
	// VerifySchedule is the verify timer's OnCalendar: Sunday morning, hours after the nightly
	// backup of the default schedule.
	VerifySchedule = "Sun *-*-* 06:00:00"
	unitDir        = "/etc/systemd/system"
)

// validateBackupSecrets checks backup.secrets: a valid bucket name, a prefix like backup.prefix,
// a KMS key shape, and a location that is not the application archives' own prefix.
func validateBackupSecrets(c *config.Checker, b *config.Backup) {
	s := b.Secrets
	if s == nil {
		return
	}
	if s.Bucket != "" && (!config.ValidBucket(s.Bucket) || strings.Contains(s.Bucket, "..")) {
		c.Errorf("backup.secrets.bucket", "%q is not a valid S3 bucket name (3-63 lower-case letters, digits, dots and hyphens)", s.Bucket)
	}
	if s.Prefix != nil {
		if pre := *s.Prefix; pre != "" && (strings.HasPrefix(pre, "/") || !strings.HasSuffix(pre, "/") || strings.Contains(pre, "//") || !prefixRE.MatchString(pre)) {
			c.Errorf("backup.secrets.prefix", "%q must be a key prefix ending with / and not starting with /, e.g. gitlab-secrets/", pre)
		}
	}
	if s.KMSKeyID != "" && !kmsKeyRE.MatchString(s.KMSKeyID) {
		c.Errorf("backup.secrets.kms_key_id", "%q is not a KMS key id, alias/NAME or key ARN", s.KMSKeyID)
	}
	if bucket, prefix, _ := b.SecretsLocation(); bucket == b.Bucket && prefix == b.PrefixOrDefault() {
		c.Errorf("backup.secrets.prefix", "is the application archives' own location (s3://%s/%s): give the configuration archive its own bucket or prefix, e.g. %sconfig/", bucket, prefix, prefix)
	}
}

// notConfigured is the skip reason of the backup phases without a backup section.
const notConfigured = "not configured (no backup section)"

// backupRegion is the bucket's region: backup.region, else the instance's.
func backupRegion(b *config.Backup, f Facts) string {
	if b.Region != "" {
		return b.Region
	}
	return f.Region
}

// backupStatements returns the gitlab.rb statements for uploads of the
// application archive to S3 with the instance profile: no key lines at all
// (use_iam_profile), SSE-S3 or SSE-KMS, the multipart chunk and the local
// retention. Source: docs.gitlab.com, "Back up GitLab" > "Upload backups to
// a remote (cloud) storage" (Omnibus gitlab_rails['backup_*'] settings).
func backupStatements(cfg *Config, f Facts) ([]string, error) {
	b := cfg.Backup
	if b == nil {
		return nil, nil
	}
	region := backupRegion(b, f)
	if region == "" {
		return nil, fmt.Errorf("no region for the backup bucket: set backup.region or run on EC2")
	}
	sse := map[string]any{"server_side_encryption": "AES256"}
	if b.KMSKeyID != "" {
		sse = map[string]any{"server_side_encryption": "aws:kms", "server_side_encryption_kms_key_id": b.KMSKeyID}
	}
	settings := []struct {
		key   string
		value any
	}{
		{"backup_upload_connection", map[string]any{"provider": "AWS", "region": region, "use_iam_profile": true}},
		{"backup_upload_remote_directory", b.Bucket},
		{"backup_multipart_chunk_size", int64(b.ChunkSize)},
		{"backup_upload_storage_options", sse},
		{"backup_keep_time", int64(time.Duration(b.KeepLocal) / time.Second)},
	}
	out := make([]string, 0, len(settings))
	for _, s := range settings {
		st, err := Statement("gitlab_rails", s.key, s.value)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// backupPreflight checks with the instance profile that the bucket is in
// the expected region and that a marker object can be written (with the
// configured encryption) and deleted, so a nightly backup does not fail at
// 2 a.m. for a reason visible now. Under plan the checker wired in
// (backup.PlanCheck) reads the region only: plan writes nothing, in S3 either.
func (r *Role) backupPreflight(ctx context.Context) ([]host.Step, error) {
	b := r.cfg.Backup
	if b == nil {
		return nil, engine.Skip(notConfigured)
	}
	if r.d.BackupCheck == nil {
		return nil, fmt.Errorf("no S3 client for the backup checks")
	}
	st, err := r.d.BackupCheck.Check(ctx, b, backupRegion(b, r.facts))
	return []host.Step{st}, err
}

// unitData fills the backup unit templates.
type unitData struct {
	Binary, ConfigSource, Schedule string
	// VerifySchedule is the verify timer's OnCalendar.
	VerifySchedule string
}

// backupTimer installs the backup service and timer (exactly one schedule,
// however often apply runs), enables the timer, and on the live system
// starts it, or restarts it after its file changed.
func (r *Role) backupTimer(ctx context.Context) ([]host.Step, error) {
	b := r.cfg.Backup
	if b == nil {
		return nil, engine.Skip(notConfigured)
	}
	if r.d.ConfigSource == "" || r.d.ConfigSource == "-" {
		return nil, fmt.Errorf("the backup service reads the configuration again at 2 a.m., so it cannot come from stdin: apply with --config FILE, ssm:/name or s3://bucket/key")
	}
	// Before the first write, so a schedule systemd would refuse leaves the old timer in place.
	if msg := checkCalendar(ctx, b.Schedule); msg != "" {
		return nil, fmt.Errorf("backup.schedule %s; fix backup.schedule and apply again (the timer was left as it was)", msg)
	}
	data := unitData{Binary: r.d.Binary, ConfigSource: r.d.ConfigSource, Schedule: b.Schedule, VerifySchedule: VerifySchedule}
	if data.Binary == "" {
		data.Binary = DefaultBinary
	}
	var steps []host.Step
	for _, t := range []struct{ timer, service string }{{BackupTimer, BackupService}, {VerifyTimer, VerifyService}} {
		timerChanged := false
		for _, name := range []string{t.service, t.timer} {
			text, err := render.Template(templates.FS, "systemd/"+name+".tmpl", nil, data)
			if err != nil {
				return steps, err
			}
			st, err := r.d.Host.EnsureFile(host.File{Path: unitDir + "/" + name, Data: text, Mode: 0o644})
			steps = append(steps, st)
			if err != nil {
				return steps, err
			}
			timerChanged = timerChanged || st.Changed
		}
		if r.d.Units == nil {
			return steps, fmt.Errorf("no systemd manager available")
		}
		st, err := r.d.Units.Enable(ctx, t.timer)
		steps = append(steps, st)
		if err != nil {
			return steps, err
		}
		if timerChanged && !st.Changed {
			// Already enabled: a running timer keeps its old schedule until
			// systemd rereads the file.
			st, err = r.d.Units.Restart(ctx, t.timer)
		} else {
			st, err = r.d.Units.Start(ctx, t.timer)
		}
		steps = append(steps, st)
		if err != nil {
			return steps, err
		}
	}
	return steps, nil
}

// DefaultBinary is where the AMI bake installs glbootstrap; the backup
// service runs it from there unless Deps.Binary says otherwise.
const DefaultBinary = "/usr/local/bin/glbootstrap"

// checkCalendar checks a systemd OnCalendar expression with "systemd-analyze calendar" (a pure
// computation: it reads and changes nothing, so it runs under plan and --root too); it returns ""
// when systemd accepts the expression, else why not. Where systemd-analyze is not installed (a
// test machine; the GitLab host always has it) only config.Parse's shape check applies.
func checkCalendar(ctx context.Context, spec string) string {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		return ""
	}
	out, err := exec.CommandContext(ctx, sa, "calendar", "--iterations=1", spec).CombinedOutput()
	if err == nil {
		return ""
	}
	msg := strings.TrimSpace(string(out))
	if i := strings.LastIndex(msg, "\n"); i >= 0 {
		msg = msg[i+1:]
	}
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Sprintf("%q is not a valid systemd OnCalendar expression (systemd-analyze calendar: %s); examples: \"daily\", \"*-*-* 02:00:00\", \"Mon..Fri 03:30\"", spec, msg)
}
