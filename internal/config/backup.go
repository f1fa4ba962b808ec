package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Backup defaults.
const (
	DefaultBackupPrefix   = "gitlab/"
	DefaultBackupSchedule = "*-*-* 02:00:00"
	DefaultBackupKeep     = 7 * 24 * time.Hour
	DefaultBackupChunk    = 128 << 20

	// S3's multipart limits (Amazon S3 User Guide, "Amazon S3 multipart upload limits"):
	// parts are 5 MiB to 5 GiB, at most 10,000 of them.
	MinChunkSize = 5 << 20
	MaxChunkSize = 5 << 30
	MaxParts     = 10000
)

// Backup configures daily GitLab backups to S3: the backup section of role gitlab, which owns its
// defaults and rules (roles/gitlab). The type lives here because internal/backup reads it too.
type Backup struct {
	// Bucket is the S3 bucket for both archives; required.
	Bucket string `yaml:"bucket"`
	// Region is the bucket's region; default: the instance's region.
	Region string `yaml:"region"`
	// Prefix is the key prefix of application archives (gitlab-backup's DIRECTORY); config
	// archives go under <prefix>config/. Default "gitlab/"; "" puts them at the bucket's root.
	Prefix *string `yaml:"prefix"`
	// Schedule is a systemd OnCalendar expression (systemd.time(7)); default "*-*-* 02:00:00".
	Schedule string `yaml:"schedule"`
	// KeepLocal is backup_keep_time: how long local archives are kept ("7d", "36h"); S3 retention
	// is the bucket's lifecycle rule. Default 7d.
	KeepLocal Days `yaml:"keep_local"`
	// KMSKeyID selects SSE-KMS with that key (id, alias/name or ARN); empty means SSE-S3 (AES256).
	KMSKeyID string `yaml:"kms_key_id"`
	// ChunkSize is the multipart chunk in bytes ("128MiB", "64MB", 134217728); 5 MiB..5 GiB.
	// The largest archive S3 accepts is ChunkSize × 10,000.
	ChunkSize Size `yaml:"chunk_size"`
	// Secrets is where the configuration archive (gitlab-secrets.json, gitlab.rb) goes: GitLab's
	// backup docs say to keep it apart from the application archive it decrypts. Optional; nil
	// means the backup bucket under <prefix>config/.
	Secrets *BackupSecrets `yaml:"secrets"`
}

// BackupSecrets is the backup.secrets section: the configuration archive's own bucket or prefix,
// and KMS key. The bucket must be in the backup bucket's region (one instance profile, one
// regional client).
type BackupSecrets struct {
	// Bucket defaults to backup.bucket.
	Bucket string `yaml:"bucket"`
	// Prefix defaults to "<backup.prefix>config/"; must end with / (or be "").
	Prefix *string `yaml:"prefix"`
	// KMSKeyID selects SSE-KMS with that key; empty means backup.kms_key_id (or SSE-S3).
	KMSKeyID string `yaml:"kms_key_id"`
}

// SecretsLocation returns where configuration archives go: bucket, key prefix and KMS key id
// ("" for SSE-S3), with backup.secrets' defaults applied.
func (b *Backup) SecretsLocation() (bucket, prefix, kmsKeyID string) {
	bucket, prefix, kmsKeyID = b.Bucket, b.PrefixOrDefault()+"config/", b.KMSKeyID
	if s := b.Secrets; s != nil {
		if s.Bucket != "" {
			bucket = s.Bucket
		}
		if s.Prefix != nil {
			prefix = *s.Prefix
		}
		if s.KMSKeyID != "" {
			kmsKeyID = s.KMSKeyID
		}
	}
	return bucket, prefix, kmsKeyID
}

// PrefixOrDefault returns the configured prefix or the default.
func (b *Backup) PrefixOrDefault() string {
	if b.Prefix == nil {
		return DefaultBackupPrefix
	}
	return *b.Prefix
}

// Days is a duration that also accepts a day suffix ("7d").
type Days time.Duration

// UnmarshalYAML reads "7d", "36h", "90m" or a number of seconds.
func (d *Days) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDays(n.Value)
	if err != nil {
		return err
	}
	*d = Days(v)
	return nil
}

func parseDays(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration; write e.g. 7d or 36h", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write e.g. 7d or 36h", s)
	}
	return v, nil
}

// Size is a byte count that accepts IEC and SI suffixes ("128MiB", "64MB").
type Size int64

// UnmarshalYAML reads "128MiB", "1GiB", "64MB" or a plain number of bytes.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseSize(n.Value)
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

var sizeRE = regexp.MustCompile(`^([0-9]+)\s*([KMGT]i?B|B)?$`)

func parseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size; write e.g. 128MiB", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	return n * mult, nil
}
