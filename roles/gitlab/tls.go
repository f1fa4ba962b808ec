package gitlab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// SSLDir is where Omnibus looks for nginx's certificate and key by default:
// /etc/gitlab/ssl/<external_url host>.crt and .key (omnibus-gitlab 18.5.1+ee.0
// files/gitlab-cookbooks/gitlab/libraries/gitlab_rails.rb parse_external_url sets
// Gitlab['nginx']['ssl_certificate'] ||= "/etc/gitlab/ssl/#{uri.host}.crt"; 19.2.0+ee.0 the same
// under Gitlab['gitlab_rails']['nginx']).
const SSLDir = "/etc/gitlab/ssl"

// certRenewWarning is how long before expiry the certificate check warns.
const certRenewWarning = 30 * 24 * time.Hour

// tlsFiles is nginx's certificate as the gitlab-tls phase handles it.
type tlsFiles struct {
	host     string // external_url's host (without port)
	certPath string // SSLDir/<host>.crt
	keyPath  string // SSLDir/<host>.key
	// cert and key are gitlab.tls's PEM from SSM, checked by checkKeyPair; nil when gitlab.tls
	// is not set. key is a secret: it is never printed and never in an error.
	cert, key []byte
	warning   string // checkKeyPair's warning (expiry within certRenewWarning)
}

// certPaths returns external_url's host and the certificate and key paths Omnibus uses for it.
func certPaths(rawURL string) (tlsFiles, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return tlsFiles{}, fmt.Errorf("gitlab.url %q has no host", rawURL)
	}
	h := u.Hostname()
	return tlsFiles{host: h, certPath: SSLDir + "/" + h + ".crt", keyPath: SSLDir + "/" + h + ".key"}, nil
}

// resolveTLS reads gitlab.tls's certificate and key from SSM and checks them (Prepare calls it, so
// a bad pair changes nothing). With TLS terminated at the NLB, or Let's Encrypt, there is nothing
// to read; without gitlab.tls only the paths are known and the phase checks the files there.
func resolveTLS(ctx context.Context, d Deps, cfg *Config) (tlsFiles, error) {
	g := cfg.GitLab
	if g.NLB.TLSTermination {
		return tlsFiles{}, nil
	}
	t, err := certPaths(g.URL)
	if err != nil || g.TLS.CertificateParameter == "" || g.LetsEncrypt {
		return t, err
	}
	cert, err := readTLSSource(ctx, d, g.TLS.CertificateParameter)
	if err != nil {
		return t, fmt.Errorf("reading gitlab.tls.certificate_parameter: %w", err)
	}
	key, err := readTLSSource(ctx, d, g.TLS.KeyParameter)
	if err != nil {
		return t, fmt.Errorf("reading gitlab.tls.key_parameter: %w", err)
	}
	t.cert = []byte(strings.TrimSpace(cert) + "\n")
	t.key = []byte(strings.TrimSpace(key) + "\n")
	src := fmt.Sprintf("%s and %s (gitlab.tls)", describeTLSSource(g.TLS.CertificateParameter), describeTLSSource(g.TLS.KeyParameter))
	if t.warning, err = checkKeyPair(t.cert, t.key, t.host, time.Now(), src); err != nil {
		return t, err
	}
	return t, nil
}

// ObjectOpener opens S3 objects (role.AWS's Open): the body and its size in bytes, -1 when unknown.
type ObjectOpener interface {
	Open(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error)
}

// maxPEM is the largest certificate chain or key read from S3 (bytes): a chain of a few
// certificates is a few KiB.
const maxPEM = 1 << 20

// s3Source splits s3://bucket/key; ok is false for anything else (an SSM parameter name).
func s3Source(src string) (bucket, key string, ok bool) {
	rest, ok := strings.CutPrefix(src, "s3://")
	if !ok {
		return "", "", false
	}
	bucket, key, _ = strings.Cut(rest, "/")
	return bucket, key, true
}

func describeTLSSource(src string) string {
	if _, _, ok := s3Source(src); ok {
		return src
	}
	return "SSM " + src
}

// readTLSSource reads a gitlab.tls source: an SSM parameter, or an S3 object (s3://bucket/key) of
// at most maxPEM bytes. Errors never hold the value.
func readTLSSource(ctx context.Context, d Deps, src string) (string, error) {
	bucket, key, ok := s3Source(src)
	if !ok {
		return d.Params.Get(ctx, src)
	}
	if d.Objects == nil {
		return "", fmt.Errorf("%s: S3 is not available to this command", src)
	}
	rc, _, err := d.Objects.Open(ctx, bucket, key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxPEM+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", src, err)
	}
	if len(b) > maxPEM {
		return "", fmt.Errorf("%s is larger than %d bytes, too large for a PEM certificate chain or key: point gitlab.tls at the PEM file", src, maxPEM)
	}
	return string(b), nil
}

// checkKeyPair checks that keyPEM is the private key of certPEM's first certificate, that the
// certificate is valid now and names host; src says where the pair came from, for the messages.
// It returns a warning when the certificate expires within 30 days. Errors never quote the key.
func checkKeyPair(certPEM, keyPEM []byte, host string, now time.Time, src string) (string, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls's messages name the problem ("private key does not match public key", "failed
		// to find any PEM data in key input") and never include the PEM.
		return "", fmt.Errorf("the certificate and key from %s do not form a pair (%v): store the PEM certificate chain (server certificate first) and the private key that belongs to it", src, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return "", fmt.Errorf("the certificate from %s does not parse (%v): store a PEM X.509 certificate", src, err)
	}
	if now.After(leaf.NotAfter) {
		return "", fmt.Errorf("the certificate from %s expired on %s: store a renewed certificate and key", src, leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	if now.Before(leaf.NotBefore) {
		return "", fmt.Errorf("the certificate from %s is not valid before %s (check the clock, or store a certificate valid now)", src, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if err := leaf.VerifyHostname(host); err != nil {
		names := append([]string(nil), leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		return "", fmt.Errorf("the certificate from %s is for %s, not for %s (gitlab.url's host): store a certificate that names %s", src, strings.Join(names, ", "), host, host)
	}
	if left := leaf.NotAfter.Sub(now); left < certRenewWarning {
		return fmt.Sprintf("the certificate expires on %s (in %d days): renew it in %s and run apply again", leaf.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24), src), nil
	}
	return "", nil
}

// errNoCertificate is the error of a passthrough host without a certificate (errors.Is).
var errNoCertificate = errors.New("no certificate for nginx")

// certificateReady checks, before gitlab-ctl reconfigure, that nginx will find a certificate when
// it serves HTTPS itself: without one Omnibus turns Let's Encrypt on, or, with letsencrypt['enable']
// false as the fragment sets it, nginx fails to start. gitlab.tls's files are written by the
// gitlab-tls phase; under plan they may not exist yet, which is fine.
func (r *Role) certificateReady() error {
	g := r.cfg.GitLab
	if g.NLB.TLSTermination || g.LetsEncrypt || r.tls.cert != nil {
		return nil
	}
	h := r.d.Host
	var missing []string
	for _, p := range []string{r.tls.certPath, r.tls.keyPath} {
		if !h.Exists(p) {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: nginx serves HTTPS itself (gitlab.nlb.tls_termination is false) but %s missing and Let's Encrypt is off; "+
		"gitlab-ctl reconfigure was not run. Fix one of: store the PEM certificate and key as SSM SecureStrings and set "+
		"gitlab.tls.certificate_parameter and gitlab.tls.key_parameter; put the files at %s and %s (0600 key) in the AMI or user-data; "+
		"terminate TLS at the NLB (a TLS listener, gitlab.nlb.tls_termination: true); or set gitlab.letsencrypt: true "+
		"(needs port 80 reachable from the internet)", errNoCertificate, strings.Join(missing, " and ")+map[bool]string{true: " is", false: " are"}[len(missing) == 1],
		r.tls.certPath, r.tls.keyPath)
}

// gitlabTLS writes gitlab.tls's certificate (0644) and key (0600, never shown) where Omnibus
// looks for them, or checks the files an admin put there, and fails when nginx would have no
// certificate. A changed certificate on a configured GitLab is loaded with gitlab-ctl hup nginx:
// reconfigure does not reload nginx for new certificate contents (omnibus-gitlab 19.2.0+ee.0
// doc/settings/ssl/_index.md, "Update the SSL certificates").
func (r *Role) gitlabTLS(ctx context.Context) ([]host.Step, error) {
	g := r.cfg.GitLab
	h := r.d.Host
	switch {
	case g.NLB.TLSTermination:
		return []host.Step{{Kind: "note", Target: "TLS", Summary: "terminated at the NLB: nginx serves plain HTTP, no certificate on this host"}}, nil
	case g.LetsEncrypt:
		return []host.Step{{Kind: "note", Target: "TLS", Summary: "Let's Encrypt (gitlab.letsencrypt) issues nginx's certificate at reconfigure"}}, nil
	case r.tls.cert == nil:
		if err := r.certificateReady(); err != nil {
			return nil, err
		}
		cert, err := h.ReadFile(r.tls.certPath)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", r.tls.certPath, err)
		}
		key, err := h.ReadFile(r.tls.keyPath)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", r.tls.keyPath, err)
		}
		warn, err := checkKeyPair(cert, key, r.tls.host, time.Now(), r.tls.certPath+" and "+r.tls.keyPath)
		if err != nil {
			return nil, err
		}
		return []host.Step{{Kind: "file", Target: r.tls.certPath, Summary: "present, with its key (not managed: gitlab.tls is not set)", Warning: warn}}, nil
	}
	certSt, err := h.EnsureFile(host.File{Path: r.tls.certPath, Data: r.tls.cert, Mode: 0o644})
	if err != nil {
		return []host.Step{certSt}, err
	}
	certSt.Warning = r.tls.warning
	keySt, err := h.EnsureFile(host.File{Path: r.tls.keyPath, Data: r.tls.key, Mode: 0o600,
		Secrets: []string{string(r.tls.key)}, NoDiff: "private key from " + describeTLSSource(g.TLS.KeyParameter) + " (not shown)"})
	steps := []host.Step{certSt, keySt}
	if err != nil {
		return steps, err
	}
	if (certSt.Changed || keySt.Changed) && r.state.Configured {
		act, _, err := h.Run(ctx, nil, GitLabCtl, "hup", "nginx")
		steps = append(steps, host.Step{Kind: "command", Target: GitLabCtl + " hup nginx", Changed: act.Ran || act.Planned(),
			Summary: act.Summary("nginx loads the new certificate (reconfigure does not reload it for new file contents)")})
		if err != nil {
			return steps, fmt.Errorf("gitlab-ctl hup nginx: %w; run it by hand so nginx serves the new certificate", err)
		}
	}
	return steps, nil
}

// keySecrets are the values to mask for a PEM key: the whole text and each base64 line, so a
// line quoted on its own (an error message of some program) is masked too.
func keySecrets(key []byte) []string {
	if len(key) == 0 {
		return nil
	}
	out := []string{string(key), strings.TrimSpace(string(key))}
	for _, line := range strings.Split(string(key), "\n") {
		if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}

// installedVersion is the installed Omnibus version (x.y.z) from the first line of
// /opt/gitlab/version-manifest.txt ("gitlab-ee 18.5.1"), or "" when it cannot be read.
func installedVersion(h *host.Host) string {
	b, err := h.ReadFile(VersionManifest)
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(b), "\n")
	_, v, _ := strings.Cut(strings.TrimSpace(first), " ")
	if _, ok := parseVersion(v); !ok {
		return ""
	}
	return v
}
