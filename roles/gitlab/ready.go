package gitlab

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// readiness probes GitLab's GET /-/readiness on this host, over loopback: 127.0.0.0/8 is always
// in the monitoring whitelist the fragment writes, and the probe does not depend on the NLB,
// DNS or the security group. It speaks to nginx the way the NLB does: https on 443, or plain
// http on 80 when the NLB terminates TLS, with a PROXY protocol v1 header first when the NLB
// sends one (nginx then refuses anything else).
//
// The certificate is not verified: it names the external host, not 127.0.0.1, the connection
// never leaves the machine, and the probe sends no credential.
type readiness struct {
	url    string
	client *http.Client
	// every bounds one attempt; initial and maxInterval shape the backoff between attempts.
	every, initial, maxInterval time.Duration
}

// loopbackReadiness builds the probe for cfg.
func loopbackReadiness(cfg *Config) *readiness {
	u, _ := url.Parse(cfg.GitLab.URL)
	path := ""
	if u != nil {
		path = u.Path
	}
	scheme, port := "https", 443
	if cfg.GitLab.NLB.TLSTermination {
		scheme, port = "http", 80
	}
	return newReadiness(scheme+"://127.0.0.1:"+strconv.Itoa(port)+trimSlash(path)+"/-/readiness", cfg.GitLab.NLB.ProxyProtocol)
}

func newReadiness(u string, proxyProtocol bool) *readiness {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // loopback only; see readiness
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || !proxyProtocol {
				return c, err
			}
			src := c.LocalAddr().(*net.TCPAddr)
			dst := c.RemoteAddr().(*net.TCPAddr)
			if _, err := fmt.Fprintf(c, "PROXY TCP4 %s %s %d %d\r\n", src.IP, dst.IP, src.Port, dst.Port); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	}
	return &readiness{url: u, client: &http.Client{Transport: tr}, every: 10 * time.Second,
		initial: 2 * time.Second, maxInterval: 15 * time.Second}
}

func trimSlash(p string) string {
	for len(p) > 0 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}

// wait polls until GitLab answers 200, for at most timeout, with exponential backoff (2 s doubling
// to 15 s between attempts), reporting each failed attempt to progress. After a reconfigure, puma
// needs a minute or two to come up, during which nginx answers 502; before nginx itself is up
// (the first reconfigure, a reboot) the connection is refused, which is waited for the same way.
// ctx ending stops the wait at once.
func (p *readiness) wait(ctx context.Context, timeout time.Duration, progress func(string)) error {
	if progress == nil {
		progress = func(string) {}
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	attempt := 0
	var last error
	op := func() (struct{}, error) {
		attempt++
		err := p.probe(wctx)
		if err == nil {
			return struct{}{}, nil
		}
		if wctx.Err() != nil && last != nil {
			// The wait ended during this attempt: keep the last real answer for the error.
			return struct{}{}, err
		}
		last = err
		progress(fmt.Sprintf("GitLab is not ready yet (attempt %d, %ds elapsed): %v", attempt, int(time.Since(start).Seconds()), err))
		return struct{}{}, err
	}
	b := &backoff.ExponentialBackOff{InitialInterval: p.initial, RandomizationFactor: 0.1, Multiplier: 2, MaxInterval: p.maxInterval}
	_, err := backoff.Retry(wctx, op, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(timeout))
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("waiting for GitLab's %s: %w", p.url, ctx.Err())
	case last == nil:
		last = err
	}
	return fmt.Errorf("GitLab was not ready at %s after %s (last: %v): see gitlab-ctl status and gitlab-ctl tail puma, or raise gitlab.ready_timeout", p.url, timeout, last)
}

func (p *readiness) probe(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, p.every)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, p.url, nil)
	if err != nil {
		return backoff.Permanent(err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
