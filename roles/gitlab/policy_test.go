package gitlab

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestPolicyGolden: the GitLab host's policy for a configuration using every AWS resource (an
// ssm:/ configuration, the initial root password, the published private URL, backups in another
// region with a KMS alias) is testdata/policy-full.json (refresh with -update and review the
// diff), holds IAM's grammar and parses; a configuration that calls no AWS API has no statement
// and a note saying so.
func TestPolicyGolden(t *testing.T) {
	full := baseDoc + "  initial_root_password_parameter: /glbootstrap/gitlab/root-password\n" +
		"  publish_private_url_parameter: /glbootstrap/gitlab/private-url\n" +
		"backup:\n  bucket: example-gitlab-backups\n  region: eu-central-1\n  kms_key_id: alias/gitlab-backups\n"
	cfg, ps := parseDoc([]byte(full), Name)
	if cfg == nil || ps.Err() != nil {
		t.Fatal(ps.Err())
	}
	place := iampolicy.Place{Region: "us-east-2", Account: "123456789012"}
	d := policy(cfg, place, "ssm:/glbootstrap/gitlab/config")
	if err := d.Policy.Check(); err != nil {
		t.Fatal(err)
	}
	got, err := d.Policy.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back iampolicy.Policy
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil || len(back.Statement) != len(d.Policy.Statement) {
		t.Fatalf("the JSON does not read back: %v\n%s", err, got)
	}
	golden := filepath.Join("testdata", "policy-full.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("policy differs from %s (run with -update and review the diff):\n%s", golden, got)
	}
	if notes := strings.Join(d.Notes, "\n"); !strings.Contains(notes, "aws/ssm") {
		t.Errorf("notes: %s", notes)
	}

	minimal, _ := parseDoc([]byte(baseDoc), Name)
	d = policy(minimal, place, "/etc/glbootstrap/gitlab.yaml")
	if len(d.Policy.Statement) != 0 || !strings.Contains(strings.Join(d.Notes, "\n"), "call no AWS API") {
		t.Errorf("minimal: %+v", d)
	}
}

// TestPolicyBackup: the backup statements follow the prefix (the ListBucket condition and the
// marker the preflight deletes included) and the encryption: an empty prefix is the whole bucket
// (no s3:prefix condition),
// SSE-S3 needs no KMS statement, a key ARN is its own resource.
func TestPolicyBackup(t *testing.T) {
	place := iampolicy.Place{Region: "us-east-2", Account: "123456789012"}
	doc := backupBase + "  prefix: \"\"\n"
	cfg, ps := parseDoc([]byte(doc), Name)
	if ps.Err() != nil {
		t.Fatal(ps.Err())
	}
	b, _ := policy(cfg, place, "s3://cfg/gitlab.yaml").Policy.JSON()
	for _, want := range []string{`"arn:aws:s3:::example-gitlab-backups/*"`, `"arn:aws:s3:::example-gitlab-backups/.glbootstrap-preflight"`, `"arn:aws:s3:::cfg/gitlab.yaml"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "kms:") || strings.Contains(string(b), "s3:prefix") {
		t.Errorf("SSE-S3 with KMS permissions:\n%s", b)
	}
	key := "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	cfg, _ = parseDoc([]byte(backupBase+"  kms_key_id: "+key+"\n"), Name)
	p := policy(cfg, place, "").Policy
	var last iampolicy.Statement
	for _, st := range p.Statement {
		if st.Sid == "BackupEncryption" {
			last = st
		}
	}
	if last.Sid != "BackupEncryption" || last.Resource[0] != key || last.Condition != nil ||
		strings.Join(last.Action, " ") != "kms:Decrypt kms:GenerateDataKey" {
		t.Errorf("KMS statement %+v", last)
	}

	// backup.secrets in a bucket of its own: written, verified, listed, checked there too.
	cfg, ps = parseDoc([]byte(backupBase+"  secrets:\n    bucket: example-gitlab-secrets\n    prefix: gl/\n"), Name)
	if cfg == nil || ps.Err() != nil {
		t.Fatalf("config: %v", ps.Err())
	}
	b, _ = policy(cfg, place, "").Policy.JSON()
	for _, want := range []string{`"Sid": "SecretsWrite"`, `"arn:aws:s3:::example-gitlab-secrets/gl/*"`, `"arn:aws:s3:::example-gitlab-secrets/gl/.glbootstrap-preflight"`, `"Sid": "SecretsPreflightBucket"`, `"gl/*"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("separate secrets bucket: lacks %s:\n%s", want, b)
		}
	}
	if !regexp.MustCompile(`(?s)"s3:GetLifecycleConfiguration"\s*\],\s*"Resource": \[\s*"arn:aws:s3:::example-gitlab-backups",\s*"arn:aws:s3:::example-gitlab-secrets"`).Match(b) {
		t.Errorf("the lifecycle check is not granted on both buckets:\n%s", b)
	}
}

// TestPolicyTLS: with TLS passthrough the host reads its certificate and key where gitlab.tls
// names them (an SSM parameter or an S3 object).
func TestPolicyTLS(t *testing.T) {
	doc := "version: 1\ngitlab:\n  url: https://gitlab.example.com\n  nlb: {tls_termination: false}\n  tls:\n" +
		"    certificate_parameter: s3://example-certs/gitlab.crt\n    key_parameter: /gitlab/tls/key\n"
	cfg, ps := parseDoc([]byte(doc), Name)
	if cfg == nil || ps.Err() != nil {
		t.Fatalf("config: %v", ps.Err())
	}
	b, _ := policy(cfg, iampolicy.Place{Region: "us-east-2", Account: "123456789012"}, "").Policy.JSON()
	for _, want := range []string{`"arn:aws:s3:::example-certs/gitlab.crt"`, `"arn:aws:ssm:us-east-2:123456789012:parameter/gitlab/tls/key"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("lacks %s:\n%s", want, b)
		}
	}
}
