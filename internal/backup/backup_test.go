package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	"github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

const (
	bucket    = "example-gitlab-backups"
	deniedKey = "alias/not-for-this-role"
)

// rig is a GitLab host root, gofakes3 behind a fault-injecting proxy, and
// the real S3 client pointed at it through AWS_ENDPOINT_URL_S3.
type rig struct {
	h      *host.Host
	fake   *testenv.S3
	store  *s3.Client
	failAt atomic.Int32 // fail the N-th UploadPart request (0 = never)
	parts  atomic.Int32
	cfg    *config.Backup
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{fake: testenv.NewS3()}
	t.Cleanup(r.fake.Close)
	r.fake.CreateBucket(bucket)
	inner := r.fake.Handler()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// A KMS key the instance profile may not use: S3 answers like AWS does.
		if req.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id") == deniedKey {
			_, _ = io.Copy(io.Discard, req.Body)
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `<Error><Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/gitlab/i-0 is not authorized to perform: kms:GenerateDataKey on resource: arn:aws:kms:us-east-2:123456789012:%s because no identity-based policy allows the kms:GenerateDataKey action</Message></Error>`, deniedKey)
			return
		}
		if req.Method == http.MethodPut && req.URL.Query().Has("partNumber") {
			if n := r.parts.Add(1); n == r.failAt.Load() {
				_, _ = io.Copy(io.Discard, req.Body)
				http.Error(w, `<Error><Code>InternalError</Code><Message>injected fault</Message></Error>`, http.StatusInternalServerError)
				return
			}
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(proxy.Close)
	testenv.SetAWSEnv(t, map[string]string{"AWS_ENDPOINT_URL_S3": proxy.URL, "AWS_MAX_ATTEMPTS": "1"})
	cfg, err := awscfg.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	r.store = s3.New(cfg)
	h, err := host.New(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	prefix := "gitlab/"
	r.cfg = &config.Backup{Bucket: bucket, Prefix: &prefix, ChunkSize: config.MinChunkSize}
	r.write(t, EtcGitLab+"/gitlab.rb", "external_url 'https://gitlab.example.com'\n")
	r.write(t, EtcGitLab+"/gitlab-secrets.json", `{"gitlab_rails":{"secret_key_base":"s"}}`)
	if err := os.MkdirAll(filepath.Join(r.h.Root, ArchiveDir), 0o700); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) write(t *testing.T, p, s string) {
	t.Helper()
	full := filepath.Join(r.h.Root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// gitlabBackup stands in for Omnibus's gitlab-backup: it writes an archive
// into the backup directory and, like Omnibus with backup_upload_connection,
// uploads it under DIRECTORY. upload=false is an Omnibus without upload
// settings; exitErr makes it fail.
func (r *rig) gitlabBackup(t *testing.T, calls *[]string, upload bool, exitErr error) func(ctx context.Context, name string, args ...string) ([]byte, error) {
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		*calls = append(*calls, name+" "+strings.Join(args, " "))
		if exitErr != nil {
			return []byte("Dumping database ...\nError: pg_dump: connection refused\n"), exitErr
		}
		archive := "1764468000_2026_11_30_18.5.1-ee" + archiveSuffix
		data := make([]byte, 3<<20)
		_, _ = rand.Read(data)
		if err := os.WriteFile(filepath.Join(filepath.Join(r.h.Root, ArchiveDir), archive), data, 0o600); err != nil {
			return nil, err
		}
		if upload {
			dir := ""
			for _, a := range args {
				if v, ok := strings.CutPrefix(a, "DIRECTORY="); ok {
					dir = v + "/"
				}
			}
			r.fake.PutObject(bucket, dir+archive, data)
		}
		return []byte("Backup 1764468000_2026_11_30_18.5.1-ee is done.\n"), nil
	}
}

func (r *rig) runner(t *testing.T, exec func(context.Context, string, ...string) ([]byte, error)) *Runner {
	return &Runner{Host: r.h, Store: r.store, Config: r.cfg, Exec: exec,
		Free: func(string) (uint64, error) { return 50 << 30, nil },
		Now:  func() time.Time { return time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC) }}
}

func TestRunUploadsBothArchivesUnderOneTimestamp(t *testing.T) {
	r := newRig(t)
	// A 12 MiB file makes the config archive a real multipart upload (5 MiB parts).
	big := make([]byte, 12<<20)
	_, _ = rand.Read(big)
	r.write(t, EtcGitLab+"/ssl/big.bin", string(big))
	var calls []string
	rec, err := r.runner(t, r.gitlabBackup(t, &calls, true, nil)).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0] != "gitlab-backup create CRON=1 DIRECTORY=gitlab" {
		t.Errorf("gitlab-backup calls = %q", calls)
	}
	if rec.AppKey != "gitlab/1764468000_2026_11_30_18.5.1-ee_gitlab_backup.tar" ||
		rec.ConfigKey != "gitlab/config/1764468000_2026_11_30_18.5.1-ee_gitlab_config.tar.gz" {
		t.Errorf("keys = %s %s", rec.AppKey, rec.ConfigKey)
	}
	if r.parts.Load() < 2 {
		t.Errorf("config archive went up in %d parts, want a multipart upload", r.parts.Load())
	}
	// The config archive restores gitlab-secrets.json.
	body, _, err := r.store.Open(context.Background(), bucket, rec.ConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	names := tarNames(t, body)
	for _, want := range []string{"etc/gitlab/", "etc/gitlab/gitlab.rb", "etc/gitlab/gitlab-secrets.json", "etc/gitlab/ssl/big.bin"} {
		if !names[want] {
			t.Errorf("config archive lacks %s (has %v)", want, names)
		}
	}
	got, ok, err := ReadRecord(r.h)
	if err != nil || !ok || got.Result != "success" || got.Timestamp != "1764468000_2026_11_30_18.5.1-ee" {
		t.Errorf("record = %+v %v %v", got, ok, err)
	}
}

func tarNames(t *testing.T, r io.Reader) map[string]bool {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = true
	}
}

func TestRunFailuresNameTheStepAndRecordNoSuccess(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, r *rig)
		upload   bool
		exitErr  error
		step     string
		contains string
	}{
		{name: "no space", step: StepDisk, contains: "a backup needs at least",
			setup: func(t *testing.T, r *rig) {}},
		{name: "secrets missing", step: StepDisk, contains: "gitlab-secrets.json is missing", upload: true,
			setup: func(t *testing.T, r *rig) { os.Remove(filepath.Join(r.h.Root, EtcGitLab+"/gitlab-secrets.json")) }},
		{name: "gitlab-backup fails", step: StepCreate, contains: "pg_dump: connection refused", exitErr: errors.New("exit status 1"),
			setup: func(t *testing.T, r *rig) {}},
		{name: "omnibus did not upload", step: StepVerify, contains: "application archive (uploaded by gitlab-backup",
			setup: func(t *testing.T, r *rig) {}},
		{name: "upload fails half way", step: StepConfig, contains: "injected fault", upload: true,
			setup: func(t *testing.T, r *rig) {
				big := make([]byte, 12<<20)
				_, _ = rand.Read(big)
				r.write(t, EtcGitLab+"/ssl/big.bin", string(big))
				r.failAt.Store(2)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			tc.setup(t, r)
			var calls []string
			run := r.runner(t, r.gitlabBackup(t, &calls, tc.upload, tc.exitErr))
			if tc.name == "no space" {
				run.Free = func(string) (uint64, error) { return 100 << 20, nil }
			}
			_, err := run.Run(context.Background())
			var se *StepError
			if !errors.As(err, &se) || se.Step != tc.step || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("err = %v; want step %s with %q", err, tc.step, tc.contains)
			}
			if !strings.HasPrefix(err.Error(), "backup failed at step "+tc.step+": ") {
				t.Errorf("message does not lead with the step: %v", err)
			}
			rec, ok, rerr := ReadRecord(r.h)
			if rerr != nil || !ok || rec.Result != "failed" || rec.FailedStep != tc.step {
				t.Errorf("record = %+v %v %v; want a failed record naming %s", rec, ok, rerr, tc.step)
			}
			if tc.step == StepConfig {
				objs, _ := r.store.List(context.Background(), bucket, "gitlab/config/")
				if len(objs) != 0 {
					t.Errorf("a half-uploaded config archive is visible: %v", objs)
				}
			}
		})
	}
}

func TestCheckDiskNeedsTwiceTheLargestArchive(t *testing.T) {
	r := newRig(t)
	run := r.runner(t, nil)
	run.Free = func(string) (uint64, error) { return 3 << 30, nil }
	if err := run.checkDisk(map[string]int64{"a": 1 << 30}); err != nil {
		t.Errorf("3 GiB free for a 1 GiB archive: %v", err)
	}
	err := run.checkDisk(map[string]int64{"a": 2 << 30})
	if err == nil || !strings.Contains(err.Error(), "3.0 GiB free, a backup needs at least 4.0 GiB") {
		t.Errorf("err = %v", err)
	}
}

func ExampleStepError() {
	fmt.Println(&StepError{Step: StepVerify, Err: errors.New("s3://b/k is 1 bytes, the local copy 2")})
	// Output: backup failed at step verify: s3://b/k is 1 bytes, the local copy 2
}

func TestPreflight(t *testing.T) {
	const lifecycle = `<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ID>old</ID><Filter><Prefix>gitlab/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule></LifecycleConfiguration>`
	for _, tc := range []struct {
		name, region, kms, want string
		noBucket                bool
		secrets                 *config.BackupSecrets
		lifecycle               string
		warn, noWarn            []string
	}{
		// gofakes3 keeps buckets in us-east-1 (an empty LocationConstraint).
		{name: "ok", region: "us-east-1", warn: []string{
			"no lifecycle rule expires s3://" + bucket + "/gitlab/",
			"aws s3api put-bucket-lifecycle-configuration --bucket " + bucket + ` --lifecycle-configuration '{"Rules":[{"ID":"glbootstrap-gitlab-backups","Status":"Enabled","Filter":{"Prefix":"gitlab/"},"Expiration":{"Days":30}`,
			"goes to the application archives' bucket " + bucket}},
		{name: "lifecycle rule on the prefix", region: "us-east-1", lifecycle: lifecycle, noWarn: []string{"lifecycle"}},
		{name: "lifecycle rule on another prefix", region: "us-east-1", lifecycle: strings.Replace(lifecycle, "<Prefix>gitlab/", "<Prefix>logs/", 1),
			warn: []string{"no lifecycle rule expires s3://" + bucket + "/gitlab/", "the bucket has other rules"}},
		{name: "secrets in their own bucket", region: "us-east-1", secrets: &config.BackupSecrets{Bucket: "example-gitlab-secrets"}, lifecycle: lifecycle,
			warn: []string{"no lifecycle rule expires s3://example-gitlab-secrets/gitlab/config/"}, noWarn: []string{"application archives' bucket"}},
		{name: "secrets bucket missing", region: "us-east-1", secrets: &config.BackupSecrets{Bucket: "no-such-secrets"}, want: "backup.secrets bucket no-such-secrets: bucket no-such-secrets does not exist"},
		{name: "secrets kms key the profile cannot use", region: "us-east-1", secrets: &config.BackupSecrets{Bucket: "example-gitlab-secrets", KMSKeyID: deniedKey}, want: "writing a test object to the backup.secrets bucket: uploading s3://example-gitlab-secrets/gitlab/config/.glbootstrap-preflight: the KMS key may not be used"},
		{name: "bucket in another region", region: "us-east-2", want: "is in us-east-1, not us-east-2: set backup.region: us-east-1"},
		{name: "missing bucket", region: "us-east-1", noBucket: true, want: "does not exist"},
		{name: "kms key the profile cannot use", region: "us-east-1", kms: deniedKey, want: "kms:GenerateDataKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.fake.CreateBucket("example-gitlab-secrets")
			if tc.noBucket {
				r.cfg.Bucket = "no-such-bucket"
			}
			if tc.lifecycle != "" {
				r.fake.SetLifecycle(bucket, tc.lifecycle)
			}
			r.cfg.KMSKeyID = tc.kms
			r.cfg.Secrets = tc.secrets
			warns, err := Preflight(context.Background(), r.store, r.cfg, tc.region)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range []string{bucket, "example-gitlab-secrets"} {
					if objs, _ := r.store.List(context.Background(), b, ""); len(objs) != 0 {
						t.Errorf("marker left behind in %s: %v", b, objs)
					}
				}
				all := strings.Join(warns, "\n")
				for _, w := range tc.warn {
					if !strings.Contains(all, w) {
						t.Errorf("warnings lack %q:\n%s", w, all)
					}
				}
				for _, w := range tc.noWarn {
					if strings.Contains(all, w) {
						t.Errorf("warnings have %q:\n%s", w, all)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
