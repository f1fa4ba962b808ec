// Package gitlabapi manages a runner's lifecycle over GitLab's REST API v4
// (https://docs.gitlab.com/api/runners/): it checks that GitLab's private URL
// is reachable with a certificate that covers it, waits for GitLab to be
// ready, verifies runner tokens, creates or registers runners and deletes
// them. It uses gitlab.com/gitlab-org/api/client-go for every HTTP call.
//
// No error or progress message carries a token: messages are scrubbed of the
// tokens passed in before they are returned.
package gitlabapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// Timeouts of one HTTP exchange; the caller's context bounds the whole call.
const (
	dialTimeout           = 10 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	responseHeaderTimeout = 30 * time.Second
)

// Client talks to one GitLab over its private URL (gitlab.private_url).
// It is safe for concurrent use.
type Client struct {
	base  *url.URL // scheme, host and relative URL root, no trailing slash
	roots *x509.CertPool
	gl    *gitlab.Client
}

// New returns a client for the GitLab at baseURL (http:// or https://, with
// an optional relative URL root such as https://10.0.1.5/gitlab). caPEM is
// the content of gitlab.ca_file: nil trusts the system roots, non-nil trusts
// exactly the certificates it holds, as gitlab-runner does with the same file
// as tls-ca-file (docs.gitlab.com/runner/configuration/tls-self-signed/), so
// what glbootstrap accepts is what the runner will accept. (It also spares
// parsing the system bundle: ~3.7 MB and ~12 ms per apply.) New does not
// contact GitLab.
func New(baseURL string, caPEM []byte) (*Client, error) {
	return newClient(baseURL, caPEM)
}

// newClient is New with extra client-go options, which tests use to shorten
// client-go's own retry waits.
func newClient(baseURL string, caPEM []byte, extra ...gitlab.ClientOptionFunc) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("gitlab.private_url %q: must be http(s)://HOST[:PORT][/PATH], without credentials, query or fragment", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""

	var roots *x509.CertPool // nil: the system roots, loaded by crypto/x509 when first needed
	if caPEM != nil {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("reading gitlab.ca_file: it holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)")
		}
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = tlsHandshakeTimeout
	tr.ResponseHeaderTimeout = responseHeaderTimeout
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

	opts := append([]gitlab.ClientOptionFunc{
		gitlab.WithBaseURL(u.String()),
		gitlab.WithHTTPClient(&http.Client{Transport: tr}),
	}, extra...)
	// The token is per call (gitlab.WithToken): one client serves runner
	// tokens, registration tokens and access tokens alike.
	gl, err := gitlab.NewClient("", opts...)
	if err != nil {
		return nil, fmt.Errorf("creating GitLab API client for %s: %w", u, err)
	}
	return &Client{base: u, roots: roots, gl: gl}, nil
}

// URL returns the base URL the client talks to, without a trailing slash.
func (c *Client) URL() string { return c.base.String() }

// noRetry disables client-go's retries for one request. It is used for POSTs
// that create something: client-go retries 5xx answers and some connection
// errors, and a retried create whose first attempt did reach GitLab leaves a
// second runner behind whose token nobody knows.
var noRetry = gitlab.WithRequestRetry(func(_ context.Context, _ *http.Response, _ error) (bool, error) {
	return false, nil
})

// statusOf returns the HTTP status of a client-go call, 0 when no response
// arrived.
func statusOf(resp *gitlab.Response, err error) int {
	var er *gitlab.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	if resp != nil && resp.Response != nil {
		return resp.StatusCode
	}
	return 0
}

// messageOf returns GitLab's error message ("401 Unauthorized",
// "{error: insufficient_scope}, …") or "" when there is none.
func messageOf(err error) string {
	var er *gitlab.ErrorResponse
	if errors.As(err, &er) {
		return er.Message
	}
	return ""
}

// httpStatus formats a status for a message: "HTTP 403" or
// "HTTP 403: 403 Forbidden - invalid token supplied".
func httpStatus(code int, err error) string {
	if m := messageOf(err); m != "" {
		return fmt.Sprintf("HTTP %d: %s", code, m)
	}
	return fmt.Sprintf("HTTP %d", code)
}

// answered returns an error for a request GitLab answered with an error status: format and args
// say what failed and what to do, and quote GitLab's answer once through httpStatus. It wraps
// err (errors.Is and errors.As reach client-go's *gitlab.ErrorResponse) without printing it,
// because client-go's text ("DELETE URL: 403 {error: ...}") repeats that answer; an err that
// carries no answer from GitLab (nothing httpStatus could quote) is printed after the message.
func answered(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if err != nil && messageOf(err) == "" {
		msg += ": " + err.Error()
	}
	return &answeredError{msg: msg, err: err}
}

// answeredError is answered's error.
type answeredError struct {
	msg string
	err error
}

func (e *answeredError) Error() string { return e.msg }
func (e *answeredError) Unwrap() error { return e.err }

// redactedError carries a message scrubbed of secrets. Unwrap still reaches
// the original error so that errors.Is and errors.As keep working; only the
// message is guaranteed clean.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// minSecretLen keeps redaction from mangling messages with very short
// "secrets" (real tokens are 20+ characters).
const minSecretLen = 6

// redact returns err with every occurrence of the secrets in its message
// replaced by [MASKED]. GitLab never echoes a token, but an error body from a
// proxy in between, or a future client-go message, might.
func redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		if len(s) >= minSecretLen {
			clean = strings.ReplaceAll(clean, s, "[MASKED]")
		}
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}
