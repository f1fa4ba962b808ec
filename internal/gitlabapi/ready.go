package gitlabapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/cenkalti/backoff/v5"
	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// maxAttemptTime bounds one readiness request, so that a hanging connection
// cannot use up the whole wait.
const maxAttemptTime = 10 * time.Second

// readinessIntervals derives the backoff from the total timeout: about 40
// attempts' worth of room at the start, intervals growing to an eighth of the
// timeout, capped at 1 s initial and 10 s between attempts. A 10-minute wait
// polls after 1 s, 2 s, 4 s, 8 s, then every 10 s; a 2-second wait (tests)
// polls every 50–250 ms.
func readinessIntervals(timeout time.Duration) (initial, maxInterval time.Duration) {
	initial = min(max(timeout/40, 20*time.Millisecond), time.Second)
	maxInterval = min(max(timeout/8, initial), 10*time.Second)
	return initial, maxInterval
}

// WaitReady polls GET /-/readiness until GitLab answers 200, for at most
// timeout, with exponential backoff (see readinessIntervals). A GitLab still
// booting refuses connections (nginx not up yet) before it answers 502/503:
// both are waited for. progress, if not nil, is called after every failed
// attempt with the attempt number, the elapsed seconds and the reason (HTTP
// status or connection error).
//
// GitLab answers /-/readiness only to monitoring_whitelist addresses and 404
// (403 behind some proxies) to everyone else. Such an answer proves GitLab is
// up, so WaitReady returns nil after one progress warning that says to add the
// VPC CIDR to gitlab_rails['monitoring_whitelist'].
//
// A certificate that fails verification stops the wait at once (see
// CheckTLS). On timeout the error reads "GitLab at URL was not ready after Ns
// (last: REASON): HINT" and wraps the last failure; the hint names gitlab.ready_timeout, the
// key timeout comes from in every caller; when ctx ends first, the error wraps ctx's error.
func (c *Client) WaitReady(ctx context.Context, timeout time.Duration, progress func(msg string)) error {
	if progress == nil {
		progress = func(string) {}
	}
	if timeout <= 0 {
		return fmt.Errorf("waiting for GitLab at %s: timeout must be > 0, got %s", c.URL(), timeout)
	}
	u := *c.base
	u.Path += "/-/readiness"

	initial, maxInterval := readinessIntervals(timeout)
	b := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         maxInterval,
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	start := time.Now()
	attempt := 0
	var last *probeError
	op := func() (struct{}, error) {
		attempt++
		err := c.probeReadiness(wctx, &u, progress)
		if err == nil {
			return struct{}{}, nil
		}
		var pe *probeError
		if !errors.As(err, &pe) {
			return struct{}{}, backoff.Permanent(err)
		}
		if wctx.Err() != nil && last != nil {
			// The wait ended during this attempt: its "timed out" says nothing about GitLab,
			// so the error keeps the last real answer (connection refused, HTTP 503).
			return struct{}{}, pe
		}
		last = pe
		progress(fmt.Sprintf("GitLab at %s is not ready (attempt %d, %ds elapsed): %s",
			c.URL(), attempt, int(time.Since(start).Seconds()), pe.reason))
		return struct{}{}, pe
	}
	_, err := backoff.Retry(wctx, op,
		backoff.WithBackOff(b),
		backoff.WithMaxElapsedTime(timeout),
	)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("waiting for GitLab at %s: %w", c.URL(), ctx.Err())
	case last == nil || !errors.As(err, new(*probeError)) && !errors.Is(err, context.DeadlineExceeded):
		return err // permanent, already explained by probeReadiness
	}
	// Out of time: either the backoff would overshoot the timeout (err is the
	// last probeError) or wctx expired during a wait or an attempt.
	return fmt.Errorf("GitLab at %s was not ready after %ds (last: %s): %s: %w",
		c.URL(), int(math.Ceil(timeout.Seconds())), last.reason, last.hint(c.port()), last.err)
}

// probeError is a readiness attempt that failed in a way a later attempt may
// not: GitLab starting, unhealthy or not reachable yet.
type probeError struct {
	reason  string // "HTTP 503", "connection refused", …
	network bool   // no HTTP answer at all
	err     error
}

func (e *probeError) Error() string { return e.reason }
func (e *probeError) Unwrap() error { return e.err }

func (e *probeError) hint(port string) string {
	if e.network {
		return "check that GitLab is up (gitlab-ctl status) and that its security group allows TCP " + port +
			" from this instance, or raise gitlab.ready_timeout"
	}
	return "GitLab answers but is not healthy yet: check gitlab-ctl status and gitlab-ctl tail on the GitLab host, or raise gitlab.ready_timeout"
}

// probeReadiness does one GET /-/readiness. It returns nil when GitLab is
// ready (or up but not whitelisted, after warning), a *probeError when
// another attempt may succeed, and any other error when none will.
func (c *Client) probeReadiness(ctx context.Context, u *url.URL, progress func(string)) error {
	actx, cancel := context.WithTimeout(ctx, maxAttemptTime)
	defer cancel()
	req, err := c.gl.NewRequestToURL(http.MethodGet, u, nil,
		[]gitlab.RequestOptionFunc{gitlab.WithContext(actx), noRetry})
	if err != nil {
		return fmt.Errorf("building readiness request for %s: %w", u, err)
	}
	var body bytes.Buffer // raw body: a 200 is enough, whatever it says
	resp, err := c.gl.Do(req, &body)
	code := statusOf(resp, err)
	switch {
	case code == http.StatusOK:
		return nil
	case code == http.StatusNotFound || code == http.StatusForbidden:
		progress(fmt.Sprintf("warning: GitLab at %s is up but answered HTTP %d on /-/readiness because this instance "+
			"is not in its monitoring whitelist: add the VPC CIDR to gitlab_rails['monitoring_whitelist'] in gitlab.rb "+
			"(then gitlab-ctl reconfigure); continuing without the readiness check", c.URL(), code))
		return nil
	case code != 0:
		return &probeError{reason: fmt.Sprintf("HTTP %d %s", code, http.StatusText(code)), err: err}
	case isTLSVerifyError(err):
		return c.explainConnError(c.addr(), err)
	case ctx.Err() != nil:
		return &probeError{reason: "timed out", network: true, err: ctx.Err()}
	default:
		reason := err.Error()
		var ue *url.Error
		if errors.As(err, &ue) {
			reason = ue.Err.Error() // drop "Get \"https://…\":", the URL is in the message already
		}
		return &probeError{reason: reason, network: true, err: err}
	}
}
