package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

const testID = "1796090405_2026_12_01_18.5.1-ee"

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// tarOf writes the entries (name, content; a name ending in / is a directory) as a tar.
func tarOf(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e[0], Mode: 0o600, Size: int64(len(e[1])), Typeflag: tar.TypeReg}
		if strings.HasSuffix(e[0], "/") {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e[1]))
	}
	tw.Close()
	return buf.Bytes()
}

func appArchive(t *testing.T, info, db string) []byte {
	entries := [][2]string{{"db/", ""}, {"db/database.sql.gz", db}, {"repositories/", ""}, {"repositories/default/@hashed/6b/86/x/001.bundle", "PACK"}, {"uploads.tar.gz", string(gzipped(nil))}}
	if info != "" {
		entries = append([][2]string{{"backup_information.yml", info}}, entries...)
	}
	return tarOf(t, entries...)
}

const goodInfo = ":db_version: '20251020093000'\n:backup_created_at: 2026-12-01 02:00:05.000000000 +00:00\n:gitlab_version: 18.5.1-ee\n:skipped: ''\n"

func TestCheckApp(t *testing.T) {
	dump := string(gzipped([]byte("CREATE TABLE projects (id bigint);\n")))
	good := appArchive(t, goodInfo, dump)
	for _, tc := range []struct {
		name      string
		archive   []byte
		size      int64
		installed string
		want      string
	}{
		{name: "ok", archive: good, size: int64(len(good)), installed: "18.5.1-ee"},
		{name: "ok, size unknown", archive: good, size: -1, installed: "18.5.1-ee"},
		{name: "other version", archive: good, size: -1, installed: "18.6.0-ee", want: "made by GitLab 18.5.1-ee but this host runs 18.6.0-ee"},
		{name: "other edition", archive: good, size: -1, installed: "18.5.1-ce", want: "install gitlab-ee 18.5.1"},
		{name: "no metadata", archive: appArchive(t, "", dump), size: -1, installed: "18.5.1-ee", want: "has no backup_information.yml"},
		{name: "skipped db", archive: tarOf(t, [2]string{"backup_information.yml", strings.Replace(goodInfo, ":skipped: ''", ":skipped: db", 1)}, [2]string{"repositories/", ""}),
			size: -1, installed: "18.5.1-ee", want: "has no db/database.sql.gz (the backup was made with SKIP=db)"},
		{name: "dump not gzip", archive: appArchive(t, goodInfo, "CREATE TABLE"), size: -1, installed: "18.5.1-ee", want: "db/database.sql.gz is not a complete gzip stream"},
		{name: "dump cut", archive: appArchive(t, goodInfo, dump[:len(dump)-6]), size: -1, installed: "18.5.1-ee", want: "db/database.sql.gz is not a complete gzip stream"},
		{name: "no created_at", archive: appArchive(t, ":gitlab_version: 18.5.1-ee\n", dump), size: -1, installed: "18.5.1-ee", want: "has no backup_created_at"},
		{name: "renamed", archive: appArchive(t, strings.Replace(goodInfo, "18.5.1-ee", "18.4.0-ee", 1), dump), size: -1, installed: "18.4.0-ee", want: "named " + testID + " but its backup_information.yml says GitLab 18.4.0-ee"},
		{name: "truncated", archive: good[:len(good)/2], size: int64(len(good)), installed: "18.5.1-ee", want: "ends after"},
		{name: "not a tar", archive: []byte(strings.Repeat("x", 1024)), size: -1, installed: "18.5.1-ee", want: "not a readable tar archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := CheckApp(bytes.NewReader(tc.archive), testID, tc.installed, tc.size)
			if tc.want == "" {
				if err != nil || info.GitLabVersion != "18.5.1-ee" || info.Repositories != 1 || info.DatabaseBytes == 0 {
					t.Fatalf("info %+v, err %v", info, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	secrets := `{"gitlab_rails":{"secret_key_base":"a","db_key_base":"a","otp_key_base":"a","encrypted_settings_key_base":"a","openid_connect_signing_key":"a",` +
		`"active_record_encryption_primary_key":["a"],"active_record_encryption_deterministic_key":["a"],"active_record_encryption_key_derivation_salt":"a"}}`
	manifest := `{"backup_id":"` + testID + `"}`
	archive := func(entries ...[2]string) []byte { return gzipped(tarOf(t, entries...)) }
	good := archive([2]string{ManifestName, manifest}, [2]string{"etc/gitlab/", ""}, [2]string{"etc/gitlab/gitlab-secrets.json", secrets}, [2]string{"etc/gitlab/gitlab.rb", "external_url 'x'\n"})
	for _, tc := range []struct {
		name    string
		archive []byte
		size    int64
		want    string
	}{
		{name: "ok", archive: good, size: int64(len(good))},
		{name: "another run", archive: archive([2]string{ManifestName, strings.Replace(manifest, "1796090405", "1796000000", 1)}, [2]string{"etc/gitlab/gitlab-secrets.json", secrets}, [2]string{"etc/gitlab/gitlab.rb", ""}),
			size: -1, want: "was made with backup 1796000000_"},
		{name: "no manifest", archive: archive([2]string{"etc/gitlab/gitlab-secrets.json", secrets}, [2]string{"etc/gitlab/gitlab.rb", ""}), size: -1, want: "has no " + ManifestName},
		{name: "no secrets", archive: archive([2]string{ManifestName, manifest}, [2]string{"etc/gitlab/gitlab.rb", ""}), size: -1, want: "has no etc/gitlab/gitlab-secrets.json"},
		{name: "secrets not json", archive: archive([2]string{ManifestName, manifest}, [2]string{"etc/gitlab/gitlab-secrets.json", "{secret_key_base: s3cr3t"}, [2]string{"etc/gitlab/gitlab.rb", ""}),
			size: -1, want: "does not parse as JSON"},
		{name: "keys missing", archive: archive([2]string{ManifestName, manifest}, [2]string{"etc/gitlab/gitlab-secrets.json", `{"gitlab_rails":{"secret_key_base":"a"}}`}, [2]string{"etc/gitlab/gitlab.rb", ""}),
			size: -1, want: "lacks gitlab_rails.db_key_base, gitlab_rails.otp_key_base"},
		{name: "truncated", archive: good[:len(good)-20], size: int64(len(good)), want: "ends after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := CheckConfig(bytes.NewReader(tc.archive), testID, tc.size)
			if tc.want == "" {
				if err != nil || info.BackupID != testID || info.SecretsKeys != len(RequiredSecrets) {
					t.Fatalf("info %+v, err %v", info, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows the secrets: %v", err)
			}
		})
	}
}
