package config

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
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

// Backup configures daily GitLab backups to S3 (role gitlab).
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

var (
	bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`)
	kmsKeyRE = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]+|arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+))$`)
	prefixRE = regexp.MustCompile(`^[A-Za-z0-9!_.*'()/-]*$`)
)

// defaultsBackup fills the backup section's defaults.
func defaultsBackup(b *Backup, p *parser) {
	if b == nil {
		return
	}
	defaultString(&b.Schedule, DefaultBackupSchedule)
	if !p.present["backup.keep_local"] {
		b.KeepLocal = Days(DefaultBackupKeep)
	}
	if !p.present["backup.chunk_size"] {
		b.ChunkSize = DefaultBackupChunk
	}
}

// backup checks the backup section's values.
func (c checker) backup(b *Backup) {
	if b == nil {
		return
	}
	switch {
	case b.Bucket == "":
		c.errf("backup.bucket", "is required: the S3 bucket the backups go to")
	case !validBucket(b.Bucket) || strings.Contains(b.Bucket, "..") || net.ParseIP(b.Bucket) != nil:
		c.errf("backup.bucket", "%q is not a valid S3 bucket name (3-63 lower-case letters, digits, dots and hyphens)", b.Bucket)
	}
	if b.Region != "" && !regionRE.MatchString(b.Region) {
		c.errf("backup.region", "%q is not an AWS region such as us-east-2", b.Region)
	}
	if pre := b.PrefixOrDefault(); pre != "" {
		switch {
		case strings.HasPrefix(pre, "/"):
			c.errf("backup.prefix", "must not start with /: S3 keys are relative to the bucket, e.g. gitlab/")
		case !strings.HasSuffix(pre, "/"):
			c.errf("backup.prefix", "must end with /, e.g. %q", pre+"/")
		case slices.Contains(strings.Split(strings.TrimSuffix(pre, "/"), "/"), "..") || slices.Contains(strings.Split(strings.TrimSuffix(pre, "/"), "/"), "."):
			c.errf("backup.prefix", "must not contain . or .. segments: it becomes gitlab-backup's DIRECTORY and part of every key")
		case !prefixRE.MatchString(pre) || strings.Contains(pre, "//"):
			c.errf("backup.prefix", "%q has characters that are unsafe in S3 keys; use letters, digits and - _ . /", pre)
		}
	}
	if msg := CheckCalendar(b.Schedule); msg != "" {
		c.errf("backup.schedule", "%s", msg)
	}
	if b.KeepLocal < 0 {
		c.errf("backup.keep_local", "must not be negative")
	}
	if b.KMSKeyID != "" && !kmsKeyRE.MatchString(b.KMSKeyID) {
		c.errf("backup.kms_key_id", "%q is not a KMS key id, alias/NAME or key ARN", b.KMSKeyID)
	}
	switch {
	case b.ChunkSize < MinChunkSize:
		c.errf("backup.chunk_size", "%d bytes is below S3's minimum part size of 5 MiB; use e.g. 128MiB", b.ChunkSize)
	case b.ChunkSize > MaxChunkSize:
		c.errf("backup.chunk_size", "%d bytes is above S3's maximum part size of 5 GiB", b.ChunkSize)
	}
}

// CheckCalendar checks a systemd OnCalendar expression with
// "systemd-analyze calendar" when that program is available (the GitLab
// host always has it); it returns "" when the expression is valid, else
// why not. Without systemd-analyze only the shape is checked here and the
// backup-timer phase checks again on the host.
func CheckCalendar(spec string) string {
	if spec == "" {
		return "is empty; write a systemd OnCalendar expression such as \"*-*-* 02:00:00\""
	}
	if strings.ContainsAny(spec, "\n\r;\\") {
		return fmt.Sprintf("%q is not a systemd OnCalendar expression (no newlines, ; or \\)", spec)
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		return ""
	}
	out, err := exec.Command(sa, "calendar", "--iterations=1", spec).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = msg[i+1:]
		}
		return fmt.Sprintf("%q is not a valid systemd OnCalendar expression (systemd-analyze calendar: %s); examples: \"daily\", \"*-*-* 02:00:00\", \"Mon..Fri 03:30\"", spec, msg)
	}
	return ""
}
