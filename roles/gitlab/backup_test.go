package gitlab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/systemd"
)

const backupDoc = baseDoc + `backup:
  bucket: example-gitlab-backups
  prefix: gitlab/
  schedule: "*-*-* 02:00:00"
  keep_local: 7d
  chunk_size: 128MiB
`

func TestBackupSettingsEvaluate(t *testing.T) {
	ruby := needTool(t, "ruby", "ruby")
	facts := testFacts
	facts.Region = "us-east-2"
	for _, tc := range []struct {
		name, extra string
		sse         map[string]any
	}{
		{name: "SSE-S3", sse: map[string]any{"server_side_encryption": "AES256"}},
		{name: "SSE-KMS", extra: "  kms_key_id: alias/gitlab-backups\n",
			sse: map[string]any{"server_side_encryption": "aws:kms", "server_side_encryption_kms_key_id": "alias/gitlab-backups"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frag, err := renderFragment(parse(t, backupDoc+tc.extra), facts)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(frag), "aws_access_key_id") || strings.Contains(string(frag), "aws_secret_access_key") {
				t.Fatalf("key lines in the fragment; the instance profile must be used:\n%s", frag)
			}
			rubyCheck(t, ruby, tc.name, frag)
			_, settings := evaluate(t, ruby, frag, "")
			rails := settings["gitlab_rails"]
			want := map[string]any{
				"backup_upload_connection":       map[string]any{"provider": "AWS", "region": "us-east-2", "use_iam_profile": true},
				"backup_upload_remote_directory": "example-gitlab-backups",
				"backup_multipart_chunk_size":    float64(128 << 20),
				"backup_upload_storage_options":  tc.sse,
				"backup_keep_time":               float64(7 * 24 * 3600),
			}
			for k, v := range want {
				if !reflect.DeepEqual(rails[k], v) {
					t.Errorf("gitlab_rails[%q] = %#v, want %#v", k, rails[k], v)
				}
			}
		})
	}
}

// TestBackupUnitsVerify renders the timer and service through the phase
// and has systemd check them (systemd-analyze verify), then checks the
// schedule with systemd-analyze calendar and that a second run changes
// nothing (one schedule, however often apply runs).
func TestBackupUnitsVerify(t *testing.T) {
	sa := needTool(t, "systemd-analyze", "systemd")
	needTool(t, "systemctl", "systemd")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	r := &Role{cfg: parse(t, backupDoc), d: Deps{Host: h, Units: systemd.For(h, false), ConfigSource: "ssm:/glbootstrap/gitlab/config", Binary: self}}
	steps, err := r.backupTimer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Per timer: service, timer, enable, start (not on --root).
	if len(steps) != 8 || !steps[0].Changed || !steps[1].Changed || !steps[2].Changed || !steps[4].Changed || !steps[5].Changed || !steps[6].Changed {
		t.Fatalf("first run steps: %+v", steps)
	}
	for _, tm := range []string{BackupTimer, VerifyTimer} {
		if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/timers.target.wants", tm)); err != nil {
			t.Errorf("%s not enabled offline: %v", tm, err)
		}
	}
	units := []string{filepath.Join(root, unitDir, BackupTimer), filepath.Join(root, unitDir, BackupService),
		filepath.Join(root, unitDir, VerifyTimer), filepath.Join(root, unitDir, VerifyService)}
	if out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput(); err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	timer, _ := os.ReadFile(units[0])
	service, _ := os.ReadFile(units[1])
	for _, want := range []string{"OnCalendar=*-*-* 02:00:00", "Persistent=true", "RandomizedDelaySec="} {
		if !strings.Contains(string(timer), want) {
			t.Errorf("timer lacks %q", want)
		}
	}
	if !strings.Contains(string(service), "ExecStart="+self+" backup run --config ssm:/glbootstrap/gitlab/config") {
		t.Errorf("service ExecStart:\n%s", service)
	}
	if vs, _ := os.ReadFile(units[3]); !strings.Contains(string(vs), "ExecStart="+self+" backup verify --config ssm:/glbootstrap/gitlab/config") {
		t.Errorf("verify service ExecStart:\n%s", vs)
	}
	for _, cal := range []string{"*-*-* 02:00:00", VerifySchedule} {
		if out, err := exec.Command(sa, "calendar", cal).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze calendar %q: %v\n%s", cal, err, out)
		}
	}
	steps, err = r.backupTimer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.Changed {
			t.Errorf("second run changed %s: %s", s.Target, s.Summary)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(root, unitDir))
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".timer") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d timer units, want exactly two (backup, weekly verify)", n)
	}
}

func TestBackupTimerRefusesStdinSource(t *testing.T) {
	h, err := host.New(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	r := &Role{cfg: parse(t, backupDoc), d: Deps{Host: h, Units: systemd.For(h, false), ConfigSource: "-"}}
	_, err = r.backupTimer(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot come from stdin") {
		t.Fatalf("err = %v", err)
	}
	if h.Exists(unitDir) {
		t.Error("units written for a source the timer cannot read")
	}
}

// TestBackupTimerChecksTheSchedule: a schedule systemd refuses fails the backup-timer phase with
// systemd's reason and the key to fix, before anything is written.
func TestBackupTimerChecksTheSchedule(t *testing.T) {
	needTool(t, "systemd-analyze", "systemd")
	h, err := host.New(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, strings.Replace(backupDoc, `"*-*-* 02:00:00"`, "every night at two", 1))
	if cfg.Backup.Schedule != "every night at two" {
		t.Fatalf("test bug: schedule %q", cfg.Backup.Schedule)
	}
	r := &Role{cfg: cfg, d: Deps{Host: h, Units: systemd.For(h, false), ConfigSource: "ssm:/glbootstrap/gitlab/config"}}
	steps, err := r.backupTimer(context.Background())
	if err == nil || !strings.Contains(err.Error(), `backup.schedule "every night at two" is not a valid systemd OnCalendar expression (systemd-analyze calendar: `) ||
		!strings.Contains(err.Error(), "fix backup.schedule") {
		t.Fatalf("err = %v", err)
	}
	if len(steps) != 0 || h.Exists(unitDir) {
		t.Errorf("units written for a schedule systemd refuses: %+v", steps)
	}
}
