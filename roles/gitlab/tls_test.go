package gitlab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// testPair is a self-signed ECDSA certificate for names, valid from notBefore to notAfter, and
// its key, both PEM.
func testPair(t *testing.T, names []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// keyBody is the base64 of a PEM key, the part that must never be printed.
func keyBody(key []byte) []string {
	var out []string
	for _, l := range strings.Split(string(key), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

func TestCheckKeyPair(t *testing.T) {
	now := time.Now()
	year := 365 * 24 * time.Hour
	good, goodKey := testPair(t, []string{"gitlab.example.com"}, now.Add(-time.Hour), now.Add(year))
	_, otherKey := testPair(t, []string{"gitlab.example.com"}, now.Add(-time.Hour), now.Add(year))
	expired, expiredKey := testPair(t, []string{"gitlab.example.com"}, now.Add(-2*year), now.Add(-24*time.Hour))
	soon, soonKey := testPair(t, []string{"*.example.com"}, now.Add(-time.Hour), now.Add(10*24*time.Hour))
	wrong, wrongKey := testPair(t, []string{"other.example.com", "www.example.com"}, now.Add(-time.Hour), now.Add(year))
	for _, c := range []struct {
		name       string
		cert, key  []byte
		err, warn  string
		secretsOut []byte
	}{
		{"good", good, goodKey, "", "", nil},
		{"key of another certificate", good, otherKey, "do not form a pair (tls: private key does not match public key)", "", otherKey},
		{"key and certificate swapped", goodKey, good, "do not form a pair", "", goodKey},
		{"not PEM", good, []byte("hunter2-not-a-key"), "do not form a pair", "", []byte("hunter2")},
		{"expired", expired, expiredKey, "expired on " + now.Add(-24*time.Hour).UTC().Format(time.DateOnly), "", nil},
		{"expires soon (wildcard)", soon, soonKey, "", "(in 9 days): renew it in src", nil},
		{"other host", wrong, wrongKey, "is for other.example.com, www.example.com, not for gitlab.example.com (gitlab.url's host)", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			warn, err := checkKeyPair(c.cert, c.key, "gitlab.example.com", now, "src")
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want %q", err, c.err)
			case !strings.Contains(warn, c.warn) || (c.warn == "") != (warn == ""):
				t.Errorf("warning %q, want %q", warn, c.warn)
			}
			if err != nil {
				for _, l := range keyBody(c.secretsOut) {
					if strings.Contains(err.Error(), l) {
						t.Errorf("the error quotes the key: %v", err)
					}
				}
			}
		})
	}
}

// fakeParams is SSM with fixed values.
type fakeParams map[string]string

func (p fakeParams) Get(_ context.Context, name string) (string, error) {
	v, ok := p[name]
	if !ok {
		return "", errors.New("parameter " + name + " not found")
	}
	return v, nil
}

func (p fakeParams) Put(context.Context, string, string, bool) (host.Step, error) {
	return host.Step{}, errors.New("not in this test")
}

// prepareTLS prepares the role for doc on a temp root, with params in SSM.
func prepareTLS(t *testing.T, root, doc string, params fakeParams, dry bool) (*Role, error) {
	t.Helper()
	h, err := host.New(root, dry)
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, "version: 1\ninstance: {vpc_cidr: 10.0.0.0/16}\n"+strings.TrimPrefix(doc, "version: 1\n"))
	return Prepare(context.Background(), Deps{Host: h, Config: cfg, Params: params})
}

// TestTLSFromSSM: gitlab.tls's certificate and key land where Omnibus looks (0644 and 0600), the
// key is never in a step (nor its JSON), a second run changes nothing, a new certificate on a
// configured GitLab is loaded with gitlab-ctl hup nginx, and a key of another certificate is
// refused in Prepare, before anything is written.
func TestTLSFromSSM(t *testing.T) {
	now := time.Now()
	cert, key := testPair(t, []string{"gitlab.example.com"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	params := fakeParams{"/glb/tls-cert": string(cert), "/glb/tls-key": string(key)}
	doc := baseDoc + "  tls: {certificate_parameter: /glb/tls-cert, key_parameter: /glb/tls-key}\n"
	root := t.TempDir()

	run := func(params fakeParams, dry bool) []host.Step {
		t.Helper()
		r, err := prepareTLS(t, root, doc, params, dry)
		if err != nil {
			t.Fatal(err)
		}
		steps, err := r.gitlabTLS(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(steps)
		for _, l := range keyBody([]byte(params["/glb/tls-key"])) {
			if strings.Contains(string(out), l) {
				t.Fatalf("a step shows the private key: %s", out)
			}
		}
		return steps
	}
	steps := run(params, false)
	if len(steps) != 2 || !steps[0].Changed || !steps[1].Changed || steps[1].Diff != "" {
		t.Fatalf("first run: %+v", steps)
	}
	for p, want := range map[string]struct {
		mode os.FileMode
		data []byte
	}{
		"/etc/gitlab/ssl/gitlab.example.com.crt": {0o644, cert},
		"/etc/gitlab/ssl/gitlab.example.com.key": {0o600, key},
	} {
		info, err := os.Stat(filepath.Join(root, p))
		b, _ := os.ReadFile(filepath.Join(root, p))
		if err != nil || info.Mode().Perm() != want.mode || string(b) != string(want.data) {
			t.Errorf("%s: %v %v, want mode %04o and the PEM from SSM", p, info, err, want.mode)
		}
	}
	if steps := run(params, false); steps[0].Changed || steps[1].Changed || len(steps) != 2 {
		t.Errorf("second run changed something: %+v", steps)
	}

	// GitLab configured: a renewed pair is written and nginx reloaded (under plan and --root
	// neither happens; the step says so).
	if err := os.MkdirAll(filepath.Join(root, "var/lib/glbootstrap"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, StateFile), []byte(`{"configured": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cert2, key2 := testPair(t, []string{"gitlab.example.com"}, now.Add(-time.Hour), now.Add(20*24*time.Hour))
	renewed := fakeParams{"/glb/tls-cert": string(cert2), "/glb/tls-key": string(key2)}
	steps = run(renewed, true)
	if len(steps) != 3 || steps[2].Target != GitLabCtl+" hup nginx" || !strings.HasPrefix(steps[2].Summary, "not run (--root") ||
		!strings.Contains(steps[0].Warning, "expires on") {
		t.Errorf("renewed certificate under plan: %+v", steps)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/gitlab/ssl/gitlab.example.com.key")); string(b) != string(key) {
		t.Error("plan wrote the key")
	}

	// A key that belongs to another certificate: Prepare fails, nothing is written.
	mixed := fakeParams{"/glb/tls-cert": string(cert2), "/glb/tls-key": string(key)}
	_, err := prepareTLS(t, root, doc, mixed, false)
	if err == nil || !strings.Contains(err.Error(), "SSM /glb/tls-cert and SSM /glb/tls-key (gitlab.tls) do not form a pair") {
		t.Fatalf("mismatched pair: %v", err)
	}
	for _, l := range keyBody(key) {
		if strings.Contains(err.Error(), l) {
			t.Fatalf("the error shows the key: %v", err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/gitlab/ssl/gitlab.example.com.crt")); string(b) != string(cert) {
		t.Error("a refused pair was written")
	}
}

// TestPassthroughWithoutCertificateStopsBeforeReconfigure: nginx serving HTTPS with no
// certificate files, no gitlab.tls and Let's Encrypt off fails in gitlab-tls and in reconfigure
// (for --phase reconfigure) with the fixes, without running gitlab-ctl; the files an admin put in
// place are checked and accepted; TLS at the NLB and Let's Encrypt need none.
func TestPassthroughWithoutCertificateStopsBeforeReconfigure(t *testing.T) {
	root := t.TempDir()
	r, err := prepareTLS(t, root, baseDoc, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, phase := range map[string]func(context.Context) ([]host.Step, error){"gitlab-tls": r.gitlabTLS, "reconfigure": r.reconfigure} {
		steps, err := phase(context.Background())
		if !errors.Is(err, errNoCertificate) || len(steps) != 0 {
			t.Fatalf("%s: steps %+v, err %v", name, steps, err)
		}
		for _, want := range []string{
			"/etc/gitlab/ssl/gitlab.example.com.crt and /etc/gitlab/ssl/gitlab.example.com.key are missing",
			"gitlab-ctl reconfigure was not run", "gitlab.tls.certificate_parameter", "gitlab.nlb.tls_termination: true", "gitlab.letsencrypt: true",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error lacks %q: %v", name, want, err)
			}
		}
	}
	if planned := r.d.Host.Planned(); len(planned) != 0 {
		t.Errorf("actions: %+v", planned)
	}

	// The admin's own files: checked, kept.
	cert, key := testPair(t, []string{"gitlab.example.com"}, time.Now().Add(-time.Hour), time.Now().Add(400*24*time.Hour))
	if err := os.MkdirAll(filepath.Join(root, SSLDir), 0o755); err != nil {
		t.Fatal(err)
	}
	_, otherKey := testPair(t, []string{"gitlab.example.com"}, time.Now().Add(-time.Hour), time.Now().Add(400*24*time.Hour))
	_ = os.WriteFile(filepath.Join(root, SSLDir, "gitlab.example.com.crt"), cert, 0o644)
	_ = os.WriteFile(filepath.Join(root, SSLDir, "gitlab.example.com.key"), otherKey, 0o600)
	if _, err := r.gitlabTLS(context.Background()); err == nil || !strings.Contains(err.Error(), "do not form a pair") {
		t.Errorf("admin's mismatched files: %v", err)
	}
	_ = os.WriteFile(filepath.Join(root, SSLDir, "gitlab.example.com.key"), key, 0o600)
	steps, err := r.gitlabTLS(context.Background())
	if err != nil || len(steps) != 1 || steps[0].Changed || !strings.Contains(steps[0].Summary, "not managed") {
		t.Errorf("admin's files: %+v %v", steps, err)
	}

	for _, doc := range []string{baseDoc + "  nlb: {tls_termination: true}\n", baseDoc + "  letsencrypt: true\n"} {
		r, err := prepareTLS(t, t.TempDir(), doc, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		if steps, err := r.gitlabTLS(context.Background()); err != nil || len(steps) != 1 || steps[0].Kind != "note" {
			t.Errorf("%s: %+v %v", doc, steps, err)
		}
		if err := r.certificateReady(); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

func TestTLSConfigRules(t *testing.T) {
	for _, c := range []struct {
		name, extra string
		want        []string
	}{
		{"tls", "  tls: {certificate_parameter: /glb/c, key_parameter: /glb/k}\n", nil},
		{"letsencrypt", "  letsencrypt: true\n", nil},
		{"key missing", "  tls: {certificate_parameter: /glb/c}\n", []string{`gitlab.tls.key_parameter (line 4): is required with gitlab.tls.certificate_parameter`}},
		{"certificate missing", "  tls: {key_parameter: /glb/k}\n", []string{`gitlab.tls.certificate_parameter (line 4): is required with gitlab.tls.key_parameter`}},
		{"bad name", "  tls: {certificate_parameter: c, key_parameter: /glb/k}\n", []string{`gitlab.tls.certificate_parameter (line 4): is not an SSM parameter name`}},
		{"s3", "  tls: {certificate_parameter: s3://example-certs/gitlab.crt, key_parameter: s3://example-certs/k/gitlab.key}\n", nil},
		{"bad s3", "  tls: {certificate_parameter: s3://Example/gitlab.crt, key_parameter: s3://example-certs/}\n", []string{
			`gitlab.tls.certificate_parameter (line 4): "s3://Example/gitlab.crt" is not an S3 object: write s3://BUCKET/KEY`,
			`gitlab.tls.key_parameter (line 4): "s3://example-certs/" is not an S3 object`}},
		{"tls at the NLB", "  nlb: {tls_termination: true}\n  tls: {certificate_parameter: /glb/c, key_parameter: /glb/k}\n", []string{`gitlab.tls (line 5): is unused: with gitlab.nlb.tls_termination true`}},
		{"letsencrypt at the NLB", "  nlb: {tls_termination: true}\n  letsencrypt: true\n", []string{`gitlab.letsencrypt (line 5): needs nginx to serve HTTPS itself`}},
		{"letsencrypt and tls", "  letsencrypt: true\n  tls: {certificate_parameter: /glb/c, key_parameter: /glb/k}\n", []string{`gitlab.letsencrypt (line 4): and gitlab.tls both provide nginx's certificate`}},
		{"letsencrypt in settings", "  settings:\n    letsencrypt: {enable: true}\n", []string{`gitlab.settings.letsencrypt.enable (line 5): letsencrypt['enable'] is set by glbootstrap; use gitlab.letsencrypt instead`}},
		{"certificate path moved", "  tls: {certificate_parameter: /glb/c, key_parameter: /glb/k}\n  settings:\n    gitlab_rails: {nginx: {ssl_certificate: /x.crt}}\n",
			[]string{`gitlab.settings.gitlab_rails.nginx.ssl_certificate (line 6): moves nginx's certificate away from the files gitlab.tls writes`}},
		{"managed key, new form", "  settings:\n    gitlab_rails: {nginx: {listen_https: false}}\n", []string{`gitlab.settings.gitlab_rails.nginx.listen_https (line 5): gitlab_rails['nginx']['listen_https'] is set by glbootstrap; use gitlab.nlb.tls_termination instead`}},
		{"both forms", "  settings:\n    nginx: {client_max_body_size: 1m}\n    gitlab_rails: {nginx: {client_max_body_size: 2m}}\n", []string{`gitlab.settings.gitlab_rails.nginx.client_max_body_size (line 6): is also set as gitlab.settings.nginx.client_max_body_size`}},
		{"whitelist open", "  settings:\n    gitlab_rails: {monitoring_whitelist: [10.1.0.0/16, 0.0.0.0/0, \"::/0\"]}\n", []string{
			`warning: gitlab.settings.gitlab_rails.monitoring_whitelist (line 5): 0.0.0.0/0 lets every address read`,
			`warning: gitlab.settings.gitlab_rails.monitoring_whitelist (line 5): ::/0 lets every address read`}},
		{"unknown key", "  version: \"19.2.0\"\n  settings:\n    gitlab_rails:\n      time_zone: UTC\n      time_zon: UTC\n    puma: {worker_processes: 4}\n", []string{
			`warning: gitlab.settings.gitlab_rails.time_zon (line 8): gitlab_rails['time_zon'] is not in Omnibus 19.2.0's gitlab.rb.template (did you mean "time_zone"?)`}},
		{"unknown key, no version", "  settings:\n    nginx: {client_max_body_siz: 1m}\n", []string{
			`warning: gitlab.settings.nginx.client_max_body_siz (line 5): nginx['client_max_body_siz'] is not in Omnibus 18.5.1 (gitlab.version is not set)'s gitlab.rb.template (did you mean "client_max_body_size"?)`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ps := parseDoc([]byte(gitlabBase+c.extra), Name)
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if len(got) != len(c.want) {
				t.Fatalf("problems:\n got  %q\n want %q", got, c.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("problem %d:\n got  %s\n want %s…", i, got[i], c.want[i])
				}
			}
		})
	}
}

// TestOverrideWarning: an admin's gitlab.rb line that sets a managed setting is reported by key
// and line, with who wins, and never with its value.
func TestOverrideWarning(t *testing.T) {
	frag18, err := renderFragmentFor(parse(t, baseDoc+"  settings:\n    gitlab_rails: {time_zone: UTC}\n"), testFacts, "18.5.1")
	if err != nil {
		t.Fatal(err)
	}
	frag19, err := renderFragmentFor(parse(t, baseDoc), testFacts, "19.2.0")
	if err != nil {
		t.Fatal(err)
	}
	admin := strings.Join([]string{
		"external_url 'http://gitlab.example.com'",                 // 1: the package's own: fine
		"nginx['listen_port'] = 8443 # secret-value-1",             // 2
		"# nginx['listen_https'] = false",                          // 3: a comment
		`gitlab_rails["nginx"]["listen_https"] = 'secret-value-2'`, // 4
		"letsencrypt['enable'] = true",                             // 5
		"gitlab_rails['smtp_password'] = 'secret-value-3'",         // 6: not managed
		"gitlab_rails['time_zone'] == 'x'",                         // 7: not an assignment
		includeComment + IncludeLine,                               // 8, 9
		"gitlab_rails['gitlab_shell_ssh_port'] = 2222",             // 10: after the include
		"external_url 'https://secret-value-4.example.com'",        // 11: after the include
	}, "\n")
	w18 := overrideWarning([]byte(admin), frag18, omnibusFor("18.5.1"))
	w19 := overrideWarning([]byte(admin), frag19, omnibusFor("19.2.0"))
	for _, c := range []struct {
		got  string
		want []string
	}{
		{w18, []string{
			"line 2: nginx['listen_port'] is managed by glbootstrap (gitlab.nlb.tls_termination): glbootstrap's value (loaded later) wins over it",
			"line 4: gitlab_rails['nginx']['listen_https'] is managed by glbootstrap (gitlab.nlb.tls_termination): Omnibus before 19.2 does not read it",
			"line 5: letsencrypt['enable'] is managed by glbootstrap (gitlab.letsencrypt): glbootstrap's value (loaded later) wins",
			"line 10: gitlab_rails['gitlab_shell_ssh_port'] is managed by glbootstrap (gitlab.ssh_port): it comes after the from_file line and wins",
			"line 11: external_url comes after the from_file line and wins over gitlab.url",
		}},
		{w19, []string{
			"line 2: nginx['listen_port'] is managed by glbootstrap (gitlab.nlb.tls_termination): glbootstrap's gitlab_rails['nginx']['listen_port'] wins over it, and it prints a deprecation",
			"line 4: gitlab_rails['nginx']['listen_https'] is managed by glbootstrap (gitlab.nlb.tls_termination): glbootstrap's value (loaded later) wins",
		}},
	} {
		for _, want := range c.want {
			if !strings.Contains(c.got, want) {
				t.Errorf("warning lacks %q:\n%s", want, c.got)
			}
		}
		if strings.Contains(c.got, "secret-value") || strings.Contains(c.got, "line 3") || strings.Contains(c.got, "line 6") || strings.Contains(c.got, "line 7") || strings.Contains(c.got, "line 1:") {
			t.Errorf("warning shows a value or an unmanaged line:\n%s", c.got)
		}
	}
	// With the old-style fragment (version unknown) on a 19.2 host, the admin's new-style line
	// wins wherever it is.
	fragOld, _ := renderFragmentFor(parse(t, baseDoc), testFacts, "")
	if w := overrideWarning([]byte(admin), fragOld, omnibusFor("19.2.0")); !strings.Contains(w, "line 4: gitlab_rails['nginx']['listen_https'] is managed by glbootstrap (gitlab.nlb.tls_termination): it wins over glbootstrap's nginx['listen_https'] wherever it is") {
		t.Errorf("old-style fragment on 19.2: %s", w)
	}
	if w := overrideWarning([]byte("external_url 'http://x'\ngitlab_rails['time_zone'] = 'UTC'\n"), frag19, omnibusFor("19.2.0")); w != "" {
		t.Errorf("nothing to report, got %s", w)
	}
}

// TestFragmentFollowsTheTableNotThePatchVersion: a package upgrade within a row of
// omnibusVersions leaves the fragment as it is (no reconfigure of glbootstrap's own after the
// package's), crossing into 19.2 changes it.
func TestFragmentFollowsTheTableNotThePatchVersion(t *testing.T) {
	cfg := parse(t, baseDoc)
	render := func(v string) string {
		b, err := renderFragmentFor(cfg, testFacts, v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if render("18.5.1") != render("18.11.2") || render("19.2.0") != render("19.3.1") {
		t.Error("a patch or minor upgrade within a row changed the fragment")
	}
	if a, b := render("19.1.6"), render("19.2.0"); a == b || !strings.Contains(b, "gitlab_rails['nginx']['listen_port'] = 443") || !strings.Contains(a, "nginx['listen_port'] = 443") {
		t.Errorf("19.1.6:\n%s\n19.2.0:\n%s", a, b)
	}
}

// fakeObjects is S3 with fixed objects ("bucket/key").
type fakeObjects map[string]string

func (o fakeObjects) Open(_ context.Context, bucket, key string) (io.ReadCloser, int64, error) {
	v, ok := o[bucket+"/"+key]
	if !ok {
		return nil, 0, errors.New("s3://" + bucket + "/" + key + ": not found")
	}
	return io.NopCloser(strings.NewReader(v)), int64(len(v)), nil
}

// TestTLSFromS3: gitlab.tls sources written s3://bucket/key are read from S3 (the key too, never
// shown), a missing object or one too large to be PEM is a clear error before anything is written.
func TestTLSFromS3(t *testing.T) {
	now := time.Now()
	cert, key := testPair(t, []string{"gitlab.example.com"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	doc := baseDoc + "  tls: {certificate_parameter: s3://example-certs/gitlab.crt, key_parameter: /glb/tls-key}\n"
	root := t.TempDir()
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	prep := func(objs fakeObjects) (*Role, error) {
		cfg := parse(t, "version: 1\ninstance: {vpc_cidr: 10.0.0.0/16}\n"+strings.TrimPrefix(doc, "version: 1\n"))
		return Prepare(context.Background(), Deps{Host: h, Config: cfg, Params: fakeParams{"/glb/tls-key": string(key)}, Objects: objs})
	}
	r, err := prep(fakeObjects{"example-certs/gitlab.crt": string(cert)})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := r.gitlabTLS(context.Background())
	if err != nil || len(steps) != 2 || !steps[0].Changed {
		t.Fatalf("steps %+v, err %v", steps, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/gitlab/ssl/gitlab.example.com.crt")); string(b) != string(cert) {
		t.Error("the certificate from S3 was not written")
	}
	if _, err := prep(fakeObjects{}); err == nil || !strings.Contains(err.Error(), "reading gitlab.tls.certificate_parameter: s3://example-certs/gitlab.crt: not found") {
		t.Errorf("missing object: %v", err)
	}
	if _, err := prep(fakeObjects{"example-certs/gitlab.crt": strings.Repeat("x", maxPEM+1)}); err == nil || !strings.Contains(err.Error(), "too large for a PEM") {
		t.Errorf("huge object: %v", err)
	}
}
