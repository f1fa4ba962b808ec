package gitlab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/roles/runner"
)

const backupBase = "version: 1\ngitlab:\n  url: https://gitlab.example.com\nbackup:\n  bucket: example-gitlab-backups\n"

func TestBackupDefaults(t *testing.T) {
	cfg, ps := parseDoc([]byte(backupBase), Name)
	if err := ps.Err(); err != nil {
		t.Fatal(err)
	}
	b := cfg.Backup
	if b.PrefixOrDefault() != "gitlab/" || b.Schedule != "*-*-* 02:00:00" || time.Duration(b.KeepLocal) != 7*24*time.Hour || b.ChunkSize != 128<<20 {
		t.Errorf("defaults = %+v prefix %q", b, b.PrefixOrDefault())
	}
}

func TestBackupRules(t *testing.T) {
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"ok days", "  keep_local: 14d\n  chunk_size: 64MB\n", ""},
		{"ok seconds", "  keep_local: 604800\n  chunk_size: 5242880\n  prefix: \"\"\n", ""},
		{"ok kms arn", "  kms_key_id: arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab\n", ""},
		{"bad keep", "  keep_local: a week\n", `backup.keep_local (line 6): "a week" is not a duration; write e.g. 7d or 36h`},
		{"chunk below S3 minimum", "  chunk_size: 4MiB\n", "backup.chunk_size (line 6): 4194304 bytes is below S3's minimum part size of 5 MiB"},
		{"chunk above S3 maximum", "  chunk_size: 6GiB\n", "above S3's maximum part size of 5 GiB"},
		{"chunk not a size", "  chunk_size: lots\n", `"lots" is not a size; write e.g. 128MiB`},
		{"prefix without slash", "  prefix: gitlab\n", `backup.prefix (line 6): must end with /, e.g. "gitlab/"`},
		{"region", "  region: Ohio\n", `backup.region (line 6): "Ohio" is not an AWS region`},
		{"kms", "  kms_key_id: my key\n", `backup.kms_key_id (line 6): "my key" is not a KMS key id`},
		{"schedule newline", "  schedule: \"daily\\nExecStart=/bin/sh\"\n", "backup.schedule (line 6): "},
		{"ok secrets apart", "  secrets:\n    bucket: example-gitlab-secrets\n    kms_key_id: alias/gitlab-secrets\n", ""},
		{"ok secrets prefix", "  secrets:\n    prefix: gitlab-secrets/\n", ""},
		{"secrets bucket", "  secrets:\n    bucket: Secrets_Bucket\n", `backup.secrets.bucket (line 7): "Secrets_Bucket" is not a valid S3 bucket name`},
		{"secrets prefix without slash", "  secrets:\n    prefix: secrets\n", `backup.secrets.prefix (line 7): "secrets" must be a key prefix ending with /`},
		{"secrets with the archives", "  secrets:\n    prefix: gitlab/\n", "backup.secrets.prefix (line 7): is the application archives' own location (s3://example-gitlab-backups/gitlab/)"},
		{"secrets kms", "  secrets:\n    kms_key_id: my key\n", `backup.secrets.kms_key_id (line 7): "my key" is not a KMS key id`},
		{"unknown key", "  bukcet: x\n", `backup.bukcet (line 6): unknown key; known keys in backup: bucket, region`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := parseDoc([]byte(backupBase+tc.extra), Name)
			got := ""
			if err := ps.Err(); err != nil {
				got = err.Error()
			}
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("problems = %q, want %q", got, tc.want)
			}
		})
	}
	_, ps := parseDoc([]byte("version: 1\ngitlab:\n  url: https://gitlab.example.com\nbackup:\n  prefix: x/\n"), Name)
	if err := ps.Err(); err == nil || !strings.Contains(err.Error(), "backup.bucket (line 4): is required") {
		t.Errorf("missing bucket: %v", err)
	}
}

// TestParseRunsNoProgram: reading a configuration has no side effect; the schedule is checked
// by systemd in the backup-timer phase (TestBackupTimerChecksTheSchedule), not by Parse, even
// with a systemd-analyze on PATH.
func TestParseRunsNoProgram(t *testing.T) {
	bin := t.TempDir()
	marker := filepath.Join(t.TempDir(), "ran")
	script := "#!/bin/sh\necho \"$@\" > " + marker + "\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "systemd-analyze"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	if _, ps := parseDoc([]byte(backupBase+"  schedule: every night at two\n"), Name); ps.Err() != nil {
		t.Errorf("a schedule only systemd can judge was refused by Parse: %v", ps.Err())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("Parse ran systemd-analyze")
	}
	for _, bad := range []string{`"daily\nExecStart=/bin/sh"`, `"daily; reboot"`} {
		if _, ps := parseDoc([]byte(backupBase+"  schedule: "+bad+"\n"), Name); ps.Err() == nil || !strings.Contains(ps.Err().Error(), "backup.schedule (line 6)") {
			t.Errorf("schedule %s: %v", bad, ps.Err())
		}
	}
}

func TestRoleFit(t *testing.T) {
	data, err := os.ReadFile("../../examples/runner.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, ps := parseDoc(data, Name)
	if err := ps.Err(); err == nil || !strings.Contains(err.Error(), "runner (line") || !strings.Contains(err.Error(), "the runner section belongs to role runner") {
		t.Errorf("runner config under role gitlab: %v", err)
	}
	data, err = os.ReadFile("../../examples/gitlab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, ps = parseDoc(data, runner.Name)
	warned := false
	for _, w := range ps.Warnings() {
		warned = warned || strings.Contains(w.String(), "gitlab.edition (line")
	}
	if !warned {
		t.Errorf("gitlab config under role runner: no warning about gitlab.edition: %v", ps)
	}
}

func TestPlacesAndNamesFromTheFreshUserReview(t *testing.T) {
	data, err := os.ReadFile("../../examples/runner.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := string(data)
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"metadata dir is the builds dir", "metadata_dir: /opt/gitlab-runner/metadata", "metadata_dir: /opt/gitlab-runner/builds", "runner.builds_dir (line 64): is the same path as fargate.metadata_dir"},
		{"driver is the cache dir", "path: /opt/gitlab-runner/fargate", "path: /opt/gitlab-runner/cache", "is the same path as runner.cache_dir"},
		{"driver in /usr/local/bin is fine", "path: /opt/gitlab-runner/fargate", "path: /usr/local/bin/fargate", ""},
		{"driver in /usr/bin is not", "path: /opt/gitlab-runner/fargate", "path: /usr/bin/fargate", "directory of the OS's own programs"},
		{"name with an escape", "# name: fargate-front", "name: \"evil\\e[31m\"", "runner.name (line"},
		{"name with a bidi override", "# name: fargate-front", "name: \"a\u202eb\"", "control or invisible characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(base, tc.old, tc.new, 1)
			if doc == base {
				t.Fatalf("%q not in the example", tc.old)
			}
			_, ps := parseDoc([]byte(doc), runner.Name)
			got := ""
			if err := ps.Err(); err != nil {
				got = err.Error()
			}
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("problems = %q, want %q", got, tc.want)
			}
		})
	}
	for _, pre := range []string{"../", "gitlab/../../etc/", "./x/"} {
		_, ps := parseDoc([]byte(backupBase+"  prefix: "+pre+"\n"), Name)
		if err := ps.Err(); err == nil || !strings.Contains(err.Error(), "must not contain . or .. segments") {
			t.Errorf("prefix %q: %v", pre, err)
		}
	}
}
