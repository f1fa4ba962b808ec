package gitlabapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// CheckTLS connects to the private URL's host:port and completes a TLS
// handshake with the same trust roots as the API calls, so that a certificate
// problem is reported once, clearly, before any registration is attempted.
// It returns nil for an http:// URL (nothing to check).
//
// Errors say what to change: a certificate that does not cover the host or IP
// of gitlab.private_url (x509.HostnameError: the message lists the
// certificate's DNS names and IP SANs), a certificate from a CA this host does
// not trust (gitlab.ca_file), or GitLab not reachable at all (security group,
// GitLab down). The underlying error is wrapped.
func (c *Client) CheckTLS(ctx context.Context) error {
	if c.base.Scheme != "https" {
		return nil
	}
	host := c.base.Hostname()
	addr := c.addr()
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: dialTimeout},
		Config:    &tls.Config{RootCAs: c.roots, ServerName: host, MinVersion: tls.VersionTLS12},
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return c.explainConnError(addr, err)
	}
	return conn.Close()
}

// explainConnError turns a dial or TLS error towards GitLab into a message
// that says what to fix. It returns err wrapped (never nil for a non-nil err).
func (c *Client) explainConnError(addr string, err error) error {
	host := c.base.Hostname()
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var invalidErr x509.CertificateInvalidError
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &hostErr):
		var names, ips []string
		if hostErr.Certificate != nil {
			names = hostErr.Certificate.DNSNames
			for _, ip := range hostErr.Certificate.IPAddresses {
				ips = append(ips, ip.String())
			}
		}
		return fmt.Errorf("the TLS certificate of GitLab at %s does not cover %q (it names DNS %s and IP %s): "+
			"either put a private DNS name on the certificate and use it in gitlab.private_url, "+
			"or give GitLab a certificate that covers %s and set gitlab.ca_file to the PEM of its CA: %w",
			addr, host, listOrNone(names), listOrNone(ips), host, err)
	case errors.As(err, &authErr):
		issuer := "an unknown issuer"
		if authErr.Cert != nil {
			issuer = fmt.Sprintf("%q", authErr.Cert.Issuer.String())
		}
		if c.roots != nil {
			return fmt.Errorf("the TLS certificate of GitLab at %s is signed by %s, which is not in gitlab.ca_file "+
				"(glbootstrap and gitlab-runner trust only that file when it is set): put the PEM of that CA in it: %w", addr, issuer, err)
		}
		return fmt.Errorf("the TLS certificate of GitLab at %s is signed by %s, which this host does not trust: "+
			"set gitlab.ca_file to the PEM of that CA: %w", addr, issuer, err)
	case errors.As(err, &invalidErr):
		return fmt.Errorf("the TLS certificate of GitLab at %s is not valid (%s): renew or replace it on the GitLab host: %w",
			addr, invalidErr.Error(), err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot resolve GitLab's host %q: check gitlab.private_url and the VPC's DNS: %w", host, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("connecting to GitLab at %s: %w", addr, err)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("GitLab is not reachable at %s: check that GitLab is up (gitlab-ctl status) and that its "+
			"security group allows TCP %s from this instance: %w", addr, c.port(), err)
	}
	var recErr tls.RecordHeaderError
	if errors.As(err, &recErr) {
		return fmt.Errorf("GitLab at %s does not speak TLS: use http:// in gitlab.private_url or fix the port: %w", addr, err)
	}
	return fmt.Errorf("connecting to GitLab at %s: %w", addr, err)
}

// isTLSVerifyError reports whether err is a certificate verification failure,
// which no retry will fix.
func isTLSVerifyError(err error) bool {
	var verr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var invalidErr x509.CertificateInvalidError
	return errors.As(err, &verr) || errors.As(err, &hostErr) || errors.As(err, &authErr) || errors.As(err, &invalidErr)
}

// addr is the private URL's host:port, with the scheme's default port.
func (c *Client) addr() string { return net.JoinHostPort(c.base.Hostname(), c.port()) }

func (c *Client) port() string {
	if p := c.base.Port(); p != "" {
		return p
	}
	if c.base.Scheme == "http" {
		return "80"
	}
	return "443"
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
