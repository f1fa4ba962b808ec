package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"
)

// Names and values the GitLab host's tests and demo use in the stack's SSM.
const (
	StackGitLabConfigParam  = "/glbootstrap/gitlab/config"
	StackRootPasswordParam  = "/glbootstrap/gitlab/root-password"
	StackRootPasswordVal    = "demo-Root-pw'\"#{1}-0001"
	StackOmnibusEdition     = "ee"
	StackOmnibusVersion     = "18.5.1"
	StackGitLabPrivateParam = StackPrivateURL
	// StackTLSCertParam and StackTLSKeyParam hold nginx's certificate and key (gitlab.tls),
	// StackTLSPair's; the key is a SecureString marked secret.
	StackTLSCertParam = "/glbootstrap/gitlab/tls-certificate"
	StackTLSKeyParam  = "/glbootstrap/gitlab/tls-key"
	// StackBackupBucket is the backup bucket of the tests and the demo (create it in us-east-2).
	StackBackupBucket = "example-gitlab-backups"
)

// GitLabConfigValues fill GitLabConfigTemplate.
type GitLabConfigValues struct {
	// PrivateURL is gitlab.private_url ("" for the https://<local-ipv4> default).
	PrivateURL string
	// Extra is appended under gitlab: as is (indented two spaces).
	Extra string
}

// GitLabConfigTemplate is the reference GitLab host configuration for the stack: behind a TCP
// passthrough NLB, git over SSH on 22, the initial root password and the published private URL in
// the stack's SSM.
const GitLabConfigTemplate = `version: 1
gitlab:
  url: https://gitlab.example.com
{{- if .PrivateURL}}
  private_url: {{.PrivateURL}}
{{- end}}
  edition: ee
  version: "18.5.1"
  ssh_port: 22
  nlb: {tls_termination: false, proxy_protocol: false}
  letsencrypt: false
  tls: {certificate_parameter: /glbootstrap/gitlab/tls-certificate, key_parameter: /glbootstrap/gitlab/tls-key}
  initial_root_password_parameter: /glbootstrap/gitlab/root-password
  publish_private_url_parameter: /glbootstrap/gitlab/private-url
  settings:
    gitlab_rails:
      time_zone: UTC
{{.Extra}}`

// GitLabConfig renders GitLabConfigTemplate with privateURL and extra.
func (s *Stack) GitLabConfig(privateURL, extra string) string {
	var b strings.Builder
	t := template.Must(template.New("cfg").Parse(GitLabConfigTemplate))
	if err := t.Execute(&b, GitLabConfigValues{PrivateURL: privateURL, Extra: extra}); err != nil {
		panic(err)
	}
	return b.String()
}

// SeedGitLabSSM stores the GitLab host's secrets in the stack's SSM (StartStack does it too; call
// it again after deleting them): the initial root password as a SecureString, marked secret.
func (s *Stack) SeedGitLabSSM() {
	s.SSM.Put(StackRootPasswordParam, StackRootPasswordVal, true)
	s.SSM.MarkSecret(StackRootPasswordParam)
	cert, key := StackTLSPair()
	s.SSM.Put(StackTLSCertParam, cert, true)
	s.SSM.Put(StackTLSKeyParam, key, true)
	s.SSM.MarkSecret(StackTLSKeyParam)
}

// NewTLSKey is a fresh ECDSA P-256 private key, PKCS #8 PEM, for a key that belongs to no
// certificate of the stack.
func NewTLSKey() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

var stackTLS struct {
	once      sync.Once
	cert, key string
}

// StackTLSPair is NewTLSPair("gitlab.example.com") (the stack's gitlab.url host), made once: the
// same pair for the whole test process.
func StackTLSPair() (certPEM, keyPEM string) {
	stackTLS.once.Do(func() { stackTLS.cert, stackTLS.key = NewTLSPair("gitlab.example.com") })
	return stackTLS.cert, stackTLS.key
}

// NewTLSPair is a fresh self-signed ECDSA P-256 certificate for host, valid from an hour ago for
// a year, and its PKCS #8 key, both PEM.
func NewTLSPair(host string) (certPEM, keyPEM string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

// Delete removes a parameter, like DeleteParameter (no-op when it does not exist). A parameter
// marked with MarkSecret stays marked, and Secrets still returns the values it held.
func (s *SSM) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteLocked(name)
}

// OmnibusGitLabRB is /etc/gitlab/gitlab.rb as the Omnibus package leaves it (abridged): the
// package's postinst writes the template with external_url filled in.
const OmnibusGitLabRB = `## GitLab configuration settings
##! This file is generated during initial installation and **is not** modified
##! during upgrades.
##! Check out the latest version of this file to know about the different
##! settings that can be configured by this file, which may be found at:
##! https://gitlab.com/gitlab-org/omnibus-gitlab/raw/master/files/gitlab-config-template/gitlab.rb.template

external_url 'http://gitlab.example.com'

# gitlab_rails['time_zone'] = 'UTC'
`

// AdminGitLabRB are lines an admin added to gitlab.rb after installing the package (outgoing
// mail, an external database, LDAP), as SeedGitLabRoot appends them. Their secrets are
// AdminSMTPPassword, AdminDBPassword and AdminLDAPPassword: glbootstrap must never print any of
// them (the secret lines come last, where a diff of the appended from_file line would show
// them as context).
const AdminGitLabRB = `
### Added by the admin after installation.
gitlab_rails['smtp_enable'] = true
gitlab_rails['smtp_address'] = 'email-smtp.us-east-2.amazonaws.com'
gitlab_rails['smtp_user_name'] = 'gitlab-mailer'
gitlab_rails['db_host'] = 'gitlab-db.internal'
gitlab_rails['ldap_servers'] = { 'main' => { 'host' => 'ldap.internal', 'bind_dn' => 'cn=gitlab', 'password' => '` + AdminLDAPPassword + `' } }
gitlab_rails['db_password'] = '` + AdminDBPassword + `'
gitlab_rails['smtp_password'] = '` + AdminSMTPPassword + `'
`

// DebianSSHDConfig is Debian 12's /etc/ssh/sshd_config without its comments.
const DebianSSHDConfig = `Include /etc/ssh/sshd_config.d/*.conf
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem	sftp	/usr/lib/openssh/sftp-server
`

// OmnibusCallsEnv names the file the Omnibus stand-ins (gitlab-ctl, gitlab-rake, gitlab-backup)
// append each command line to, with the first 12 hex digits of the root's gitlab-secrets.json
// SHA-256 at that moment (so a test sees which secrets a reconfigure ran with).
const OmnibusCallsEnv = "GLB_STANDIN_CALLS"

// omnibusStandIn is a shell stand-in for an Omnibus program: it records its command line in
// $GLB_STANDIN_CALLS (when set) and prints what the real program prints on success.
func omnibusStandIn(name string) string {
	return `#!/bin/sh
# Stand-in for Omnibus's ` + name + ` in the glbootstrap tests and demo root.
if [ -n "$` + OmnibusCallsEnv + `" ]; then
  s=$(sha256sum "${GLB_STANDIN_ROOT:-}/etc/gitlab/gitlab-secrets.json" 2>/dev/null | cut -c1-12)
  echo "` + name + ` $* secrets=${s:-none}" >> "$` + OmnibusCallsEnv + `"
fi
case "` + name + ` $1" in
"gitlab-ctl stop") echo "ok: down: $2: 0s, normally up";;
"gitlab-ctl reconfigure") echo "gitlab Reconfigured!";;
"gitlab-ctl restart") for s in gitaly gitlab-workhorse logrotate nginx postgresql puma redis sidekiq sshd; do echo "ok: run: $s: (pid 4242) 0s"; done;;
"gitlab-rake gitlab:check") echo "Checking GitLab subtasks ..."; echo "Checking GitLab App ... Finished";;
"gitlab-rake gitlab:doctor:secrets") echo "Checking encrypted values in the database"; echo "Total: 0 invalid";;
*) echo "` + name + ` stand-in" >&2;;
esac
`
}

// SeedGitLabRoot lays out root the way a baked GitLab AMI leaves it: the Omnibus package
// (version manifest, gitlab-ctl stand-in) at the stack's edition and version, its
// /etc/gitlab/gitlab.rb with the admin's lines (OmnibusGitLabRB + AdminGitLabRB), and Debian's
// sshd_config.
func SeedGitLabRoot(root string) error {
	files := map[string]string{
		"opt/gitlab/version-manifest.txt": "gitlab-" + StackOmnibusEdition + " " + StackOmnibusVersion + "\n\n" +
			"Component                      Installed Version                          Version GUID\n",
		"opt/gitlab/bin/gitlab-ctl":  omnibusStandIn("gitlab-ctl"),
		"opt/gitlab/bin/gitlab-rake": omnibusStandIn("gitlab-rake"),
		"etc/gitlab/gitlab.rb":       OmnibusGitLabRB + AdminGitLabRB,
		"etc/ssh/sshd_config":        DebianSSHDConfig,
	}
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		switch {
		case strings.HasPrefix(rel, "opt/gitlab/bin/"):
			mode = 0o755
		case rel == "etc/gitlab/gitlab.rb":
			mode = 0o600
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	return os.MkdirAll(filepath.Join(root, "etc/ssh/sshd_config.d"), 0o755)
}
