package gitlabapi

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// fastRetries keeps client-go's retries (5 of them on 5xx and dial errors)
// but drops its 700–900 ms waits, so tests of retried calls stay fast.
var fastRetries = gitlab.WithCustomBackoff(func(_, _ time.Duration, _ int, _ *http.Response) time.Duration {
	return time.Millisecond
})

func startGitLab(t *testing.T, opts testenv.GitLabOptions) *testenv.GitLab {
	t.Helper()
	g, err := testenv.NewGitLab(opts)
	if err != nil {
		t.Fatalf("starting GitLab stand-in: %v", err)
	}
	t.Cleanup(g.Close)
	return g
}

func clientFor(t *testing.T, baseURL string, caPEM []byte) *Client {
	t.Helper()
	c, err := newClient(baseURL, caPEM, fastRetries)
	if err != nil {
		t.Fatalf("newClient(%s): %v", baseURL, err)
	}
	return c
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// tlsServer starts an httptest TLS server and returns it with its CA PEM.
func tlsServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, []byte) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

func wantErrContains(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestNew(t *testing.T) {
	for _, u := range []string{"", "gitlab.internal", "ftp://gitlab.internal", "https://", "https://u:p@gitlab.internal", "https://gitlab.internal/?x=1"} {
		if _, err := New(u, nil); err == nil {
			t.Errorf("New(%q) succeeded, want an error", u)
		}
	}
	if _, err := New("https://gitlab.internal", []byte("not a certificate")); err == nil || !strings.Contains(err.Error(), "gitlab.ca_file") {
		t.Errorf("New with a non-PEM CA: %v, want an error naming gitlab.ca_file", err)
	}
	c, err := New("https://10.0.1.5/gitlab/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.URL() != "https://10.0.1.5/gitlab" {
		t.Errorf("URL() = %q", c.URL())
	}
}

func TestVerify(t *testing.T) {
	g := startGitLab(t, testenv.GitLabOptions{})
	c := clientFor(t, g.URL(), g.CAPEM())
	created := g.AddRunner(testenv.GitLabRunner{Description: "admin-made"})
	stale := g.AddRunner(testenv.GitLabRunner{})
	staleToken := stale.Token
	g.ResetToken(stale.ID)

	tests := []struct {
		name, token, systemID string
		want                  bool
		wantID                int64
	}{
		{"glrt with system_id", created.Token, "s_0a1b2c3d4e5f", true, created.ID},
		{"glrt without system_id", created.Token, "", true, created.ID},
		{"unknown token", "glrt-unknownunknownunkn", "s_0a1b2c3d4e5f", false, 0},
		{"token reset since", staleToken, "s_0a1b2c3d4e5f", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, got, err := c.Verify(context.Background(), tt.token, tt.systemID)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got != tt.want || reg.ID != tt.wantID {
				t.Errorf("Verify = %v, id %d; want %v, id %d", got, reg.ID, tt.want, tt.wantID)
			}
		})
	}
	if got := g.Runners()[0].SystemIDs; !slices.Equal(got, []string{"s_0a1b2c3d4e5f"}) {
		t.Errorf("system ids recorded = %v, want exactly the one sent", got)
	}
	if _, _, err := c.Verify(context.Background(), "", "s_x"); err == nil {
		t.Error("Verify with an empty token succeeded")
	}
}

// GitLab < 15.10 answers a valid token with 200 and no JSON: valid, id unknown (gitlab-runner
// falls back to the same "legacy response format").
func TestVerifyOldGitLab(t *testing.T) {
	srv, caPEM := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	reg, ok, err := clientFor(t, srv.URL, caPEM).Verify(context.Background(), "glrt-aaaaaaaaaaaaaaaaaaaa", "s_1")
	if err != nil || !ok || reg.ID != 0 {
		t.Errorf("Verify = %+v, %v, %v; want valid with id 0", reg, ok, err)
	}
}

// A failure that is not a 403 must be an error, never "invalid": the caller
// would register a new runner.
func TestVerifyFailureIsNeverFalse(t *testing.T) {
	var hits atomic.Int32
	srv, caPEM := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	})
	tests := []struct {
		name string
		c    *Client
		want []string
	}{
		{"closed port", clientFor(t, "https://"+closedAddr(t), nil), []string{"not reachable", "security group"}},
		{"502", clientFor(t, srv.URL, caPEM), []string{"HTTP 502", "expected 200 or 403"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, valid, err := tt.c.Verify(context.Background(), "glrt-aaaaaaaaaaaaaaaaaaaa", "s_1")
			if valid {
				t.Error("Verify = true on a failure")
			}
			wantErrContains(t, err, tt.want...)
		})
	}
	// Verify is idempotent, so client-go's retries stay on for it.
	if n := hits.Load(); n < 2 {
		t.Errorf("verify was sent %d times on 502, want client-go's retries", n)
	}
}

func TestCreateRunner(t *testing.T) {
	g := startGitLab(t, testenv.GitLabOptions{})
	g.AddAccessToken("glpat-create-runner-only", "create_runner")
	g.AddAccessToken("glpat-read-only-xxxxxxx", "read_api")
	c := clientFor(t, g.URL(), g.CAPEM())
	const tok = "glpat-create-runner-only"

	tests := []struct {
		name    string
		token   string
		opts    CreateOptions
		wantErr []string // substrings; nil = success
		check   func(t *testing.T, r testenv.GitLabRunner)
	}{
		{name: "instance", token: tok,
			opts: CreateOptions{RunnerType: "instance_type", Description: "fargate front", Tags: []string{"fargate", "aws"}, RunUntagged: false, Locked: true},
			check: func(t *testing.T, r testenv.GitLabRunner) {
				if r.RunnerType != "instance_type" || r.Description != "fargate front" || !slices.Equal(r.Tags, []string{"fargate", "aws"}) || r.RunUntagged || !r.Locked || r.Legacy {
					t.Errorf("stored runner = %+v", r)
				}
			}},
		{name: "group", token: tok, opts: CreateOptions{RunnerType: "group_type", GroupID: 42, RunUntagged: true},
			check: func(t *testing.T, r testenv.GitLabRunner) {
				if r.RunnerType != "group_type" || r.GroupID != 42 || !r.RunUntagged {
					t.Errorf("stored runner = %+v", r)
				}
			}},
		{name: "project", token: tok, opts: CreateOptions{RunnerType: "project_type", ProjectID: 7, RunUntagged: true},
			check: func(t *testing.T, r testenv.GitLabRunner) {
				if r.RunnerType != "project_type" || r.ProjectID != 7 {
					t.Errorf("stored runner = %+v", r)
				}
			}},
		{name: "bad runner_type", token: tok, opts: CreateOptions{RunnerType: "shared_type", RunUntagged: true},
			wantErr: []string{"HTTP 400", "runner_type does not have a valid value", "instance_type"}},
		{name: "empty runner_type", token: tok, opts: CreateOptions{RunUntagged: true},
			wantErr: []string{"HTTP 400", "runner_type is missing"}},
		{name: "group without group_id", token: tok, opts: CreateOptions{RunnerType: "group_type", RunUntagged: true},
			wantErr: []string{"HTTP 400", "group_id is missing"}},
		{name: "project without project_id", token: tok, opts: CreateOptions{RunnerType: "project_type", RunUntagged: true},
			wantErr: []string{"HTTP 400", "project_id is missing"}},
		{name: "untagged off without tags", token: tok, opts: CreateOptions{RunnerType: "instance_type"},
			wantErr: []string{"HTTP 400", "at least one tag"}},
		{name: "unknown access token", token: "glpat-unknownunknownunk", opts: CreateOptions{RunnerType: "instance_type", RunUntagged: true},
			wantErr: []string{"HTTP 401", "unknown, expired or revoked", "create_runner scope"}},
		{name: "token without create_runner scope", token: "glpat-read-only-xxxxxxx", opts: CreateOptions{RunnerType: "instance_type", RunUntagged: true},
			wantErr: []string{"lacks the create_runner scope", "HTTP 403"}},
		{name: "empty access token", token: "", opts: CreateOptions{RunnerType: "instance_type"},
			wantErr: []string{"access token is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(g.Runners())
			reg, err := c.CreateRunner(context.Background(), tt.token, tt.opts)
			if tt.wantErr != nil {
				wantErrContains(t, err, tt.wantErr...)
				if n := len(g.Runners()); n != before {
					t.Errorf("a failed create left %d runners, had %d", n, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateRunner: %v", err)
			}
			if !strings.HasPrefix(reg.Token, "glrt-") || reg.ID == 0 || reg.ExpiresAt != nil {
				t.Errorf("Registered = %+v", reg)
			}
			rs := g.Runners()
			r := rs[len(rs)-1]
			if r.ID != reg.ID || r.Token != reg.Token {
				t.Fatalf("stored runner %+v does not match %+v", r, reg)
			}
			tt.check(t, r)
			if v, ok, err := c.Verify(context.Background(), reg.Token, "s_new"); !ok || err != nil || v.ID != reg.ID {
				t.Errorf("the new token does not verify as runner #%d: %v %v %+v", reg.ID, ok, err, v)
			}
		})
	}
}

// A create that fails with a 5xx must not be retried: the first attempt may
// have created a runner whose token is now lost.
func TestCreateIsNotRetried(t *testing.T) {
	var hits atomic.Int32
	srv, caPEM := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	})
	c := clientFor(t, srv.URL, caPEM)
	_, err := c.CreateRunner(context.Background(), "glpat-xxxxxxxxxxxxxxxxxxxx", CreateOptions{RunnerType: "instance_type"})
	wantErrContains(t, err, "HTTP 502")
	_, err = c.RegisterLegacy(context.Background(), "reg-xxxxxxxxxxxxxxxxxxxx", CreateOptions{})
	wantErrContains(t, err, "HTTP 502")
	if n := hits.Load(); n != 2 {
		t.Errorf("2 creating POSTs reached the server %d times, want 2 (no retries)", n)
	}
}

func TestRegisterLegacy(t *testing.T) {
	enabled := startGitLab(t, testenv.GitLabOptions{LegacyRegistrationToken: "GR1348941legacytoken"})
	disabled := startGitLab(t, testenv.GitLabOptions{})
	opts := CreateOptions{Description: "front", Tags: []string{"fargate"}, RunUntagged: false}

	t.Run("enabled", func(t *testing.T) {
		c := clientFor(t, enabled.URL(), enabled.CAPEM())
		reg, err := c.RegisterLegacy(context.Background(), "GR1348941legacytoken", opts)
		if err != nil {
			t.Fatalf("RegisterLegacy: %v", err)
		}
		if reg.ID == 0 || reg.Token == "" || strings.HasPrefix(reg.Token, "glrt-") {
			t.Errorf("Registered = %+v, want a non-glrt token", reg)
		}
		r := enabled.Runners()[0]
		if !r.Legacy || r.Description != "front" || !slices.Equal(r.Tags, []string{"fargate"}) || r.RunUntagged {
			t.Errorf("stored runner = %+v", r)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		c := clientFor(t, enabled.URL(), enabled.CAPEM())
		_, err := c.RegisterLegacy(context.Background(), "GR1348941wrongwrongwr", opts)
		wantErrContains(t, err, "HTTP 403", "registration token")
		if errors.Is(err, ErrRegistrationTokensDisabled) {
			t.Error("a wrong token is reported as registration disabled")
		}
	})
	t.Run("disabled 410", func(t *testing.T) {
		c := clientFor(t, disabled.URL(), disabled.CAPEM())
		_, err := c.RegisterLegacy(context.Background(), "GR1348941legacytoken", opts)
		if !errors.Is(err, ErrRegistrationTokensDisabled) {
			t.Fatalf("err = %v, want ErrRegistrationTokensDisabled", err)
		}
		wantErrContains(t, err, "410", "glrt-")
		if len(disabled.Runners()) != 0 {
			t.Error("a runner was created")
		}
	})
}

func TestDeleteRunner(t *testing.T) {
	g := startGitLab(t, testenv.GitLabOptions{})
	g.AddAccessToken("glpat-admin-api-scope-x", "api")
	g.AddAccessToken("glpat-create-runner-only", "create_runner")
	c := clientFor(t, g.URL(), g.CAPEM())
	a := g.AddRunner(testenv.GitLabRunner{})
	b := g.AddRunner(testenv.GitLabRunner{})

	tests := []struct {
		name    string
		token   string
		id      int64
		wantErr []string
	}{
		{"unknown token", "glpat-unknownunknownunk", a.ID, []string{"HTTP 401"}},
		{"create_runner-only token", "glpat-create-runner-only", a.ID, []string{"HTTP 403", "needs the api or manage_runner scope"}},
		{"delete", "glpat-admin-api-scope-x", a.ID, nil},
		{"already gone is nil", "glpat-admin-api-scope-x", a.ID, nil},
		{"never existed is nil", "glpat-admin-api-scope-x", 999, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.DeleteRunner(context.Background(), tt.token, tt.id)
			if tt.wantErr != nil {
				wantErrContains(t, err, tt.wantErr...)
				answerOnce(t, err)
				return
			}
			if err != nil {
				t.Fatalf("DeleteRunner: %v", err)
			}
		})
	}
	if rs := g.Runners(); len(rs) != 1 || rs[0].ID != b.ID {
		t.Fatalf("runners left = %+v, want only %d", rs, b.ID)
	}
	if n := g.Requests("DELETE", "/api/v4/runners/:id"); n != 5 {
		t.Errorf("DELETE /runners/:id requests = %d, want 5", n)
	}

	if err := c.DeleteRunnerByToken(context.Background(), b.Token); err != nil {
		t.Fatalf("DeleteRunnerByToken: %v", err)
	}
	if len(g.Runners()) != 0 {
		t.Error("DeleteRunnerByToken left the runner")
	}
	err := c.DeleteRunnerByToken(context.Background(), b.Token)
	if !errors.Is(err, ErrRunnerTokenRejected) {
		t.Errorf("second DeleteRunnerByToken = %v, want ErrRunnerTokenRejected", err)
	}
}

// No error may carry a token, even when something between us and GitLab
// echoes the request back.
func TestErrorsNeverContainTokens(t *testing.T) {
	echo, caPEM := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"message": map[string]any{
			"body":   string(body),
			"header": r.Header.Get("Private-Token"),
			"query":  r.URL.RawQuery,
		}})
	})
	g := startGitLab(t, testenv.GitLabOptions{})
	const (
		runnerTok = "glrt-SECRETrunnerTOKEN1"
		accessTok = "glpat-SECRETaccessTOKEN"
		regTok    = "GR1348941SECRETregTOKEN"
	)
	secrets := []string{runnerTok, accessTok, regTok}
	calls := map[string]func(c *Client) error{
		"Verify": func(c *Client) error {
			_, _, err := c.Verify(context.Background(), runnerTok, "s_1")
			return err
		},
		"CreateRunner": func(c *Client) error {
			_, err := c.CreateRunner(context.Background(), accessTok, CreateOptions{RunnerType: "instance_type"})
			return err
		},
		"RegisterLegacy": func(c *Client) error {
			_, err := c.RegisterLegacy(context.Background(), regTok, CreateOptions{})
			return err
		},
		"DeleteRunner":        func(c *Client) error { return c.DeleteRunner(context.Background(), accessTok, 1) },
		"DeleteRunnerByToken": func(c *Client) error { return c.DeleteRunnerByToken(context.Background(), runnerTok) },
	}
	servers := map[string]*Client{
		"echoing proxy": clientFor(t, echo.URL, caPEM),
		"stand-in":      clientFor(t, g.URL(), g.CAPEM()),
		"closed port":   clientFor(t, "https://"+closedAddr(t), nil),
	}
	for sname, c := range servers {
		for cname, call := range calls {
			t.Run(sname+"/"+cname, func(t *testing.T) {
				err := call(c)
				if err == nil {
					if sname != "stand-in" {
						t.Fatal("want an error")
					}
					return // Verify of an unknown token: false, nil
				}
				for _, s := range secrets {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error contains a token: %v", err)
					}
				}
			})
		}
	}
	// The echo really did see the tokens, so the redaction was exercised.
	_, err := clientFor(t, echo.URL, caPEM).CreateRunner(context.Background(), accessTok, CreateOptions{RunnerType: "instance_type"})
	wantErrContains(t, err, "[MASKED]")
}

func TestWaitReady(t *testing.T) {
	t.Run("comes up after 3 tries", func(t *testing.T) {
		g := startGitLab(t, testenv.GitLabOptions{NotReadyFor: 3})
		c := clientFor(t, g.URL(), g.CAPEM())
		var msgs []string
		if err := c.WaitReady(context.Background(), 3*time.Second, func(m string) { msgs = append(msgs, m) }); err != nil {
			t.Fatalf("WaitReady: %v", err)
		}
		if len(msgs) != 3 {
			t.Fatalf("progress calls = %d (%q), want 3", len(msgs), msgs)
		}
		for i, m := range msgs {
			for _, want := range []string{"attempt " + string(rune('1'+i)), "s elapsed", "HTTP 503"} {
				if !strings.Contains(m, want) {
					t.Errorf("progress %q does not contain %q", m, want)
				}
			}
		}
		if n := g.Requests("GET", "/-/readiness"); n != 4 {
			t.Errorf("readiness requests = %d, want 4", n)
		}
	})
	t.Run("never comes up", func(t *testing.T) {
		g := startGitLab(t, testenv.GitLabOptions{NotReadyFor: 1 << 30})
		c := clientFor(t, g.URL(), g.CAPEM())
		start := time.Now()
		err := c.WaitReady(context.Background(), time.Second, nil)
		wantErrContains(t, err, "GitLab at "+g.URL()+" was not ready after 1s (last: HTTP 503 Service Unavailable)", "gitlab-ctl status", "or raise gitlab.ready_timeout")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("WaitReady took %s for a 1s timeout", d)
		}
	})
	t.Run("not reachable", func(t *testing.T) {
		c := clientFor(t, "https://"+closedAddr(t), nil)
		err := c.WaitReady(context.Background(), 500*time.Millisecond, nil)
		wantErrContains(t, err, "was not ready after 1s (last: ", "connection refused", "security group", "or raise gitlab.ready_timeout")
	})
	t.Run("booting: connection refused until nginx listens", func(t *testing.T) {
		g := startGitLab(t, testenv.GitLabOptions{ListenAfter: 700 * time.Millisecond, NotReadyFor: 1})
		c := clientFor(t, g.URL(), g.CAPEM())
		var msgs []string
		start := time.Now()
		if err := c.WaitReady(context.Background(), 5*time.Second, func(m string) { msgs = append(msgs, m) }); err != nil {
			t.Fatalf("WaitReady: %v (progress %q)", err, msgs)
		}
		if d := time.Since(start); d < 700*time.Millisecond {
			t.Errorf("ready after %s, before GitLab listened", d)
		}
		if len(msgs) < 2 || !strings.Contains(msgs[0], "connection refused") || !strings.Contains(msgs[len(msgs)-1], "HTTP 503") {
			t.Errorf("progress = %q, want connection refused first and the 503 of a starting GitLab last", msgs)
		}
	})
	t.Run("booting: caller cancels while refused", func(t *testing.T) {
		g := startGitLab(t, testenv.GitLabOptions{ListenAfter: time.Hour})
		c := clientFor(t, g.URL(), g.CAPEM())
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		err := c.WaitReady(ctx, time.Minute, nil)
		if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
			t.Errorf("err = %v after %s, want context.Canceled at once", err, time.Since(start))
		}
	})
	t.Run("outside monitoring whitelist", func(t *testing.T) {
		g := startGitLab(t, testenv.GitLabOptions{MonitoringWhitelist: []string{"10.0.0.0/16"}})
		c := clientFor(t, g.URL(), g.CAPEM())
		var msgs []string
		if err := c.WaitReady(context.Background(), 3*time.Second, func(m string) { msgs = append(msgs, m) }); err != nil {
			t.Fatalf("WaitReady: %v", err)
		}
		if len(msgs) != 1 || !strings.Contains(msgs[0], "gitlab_rails['monitoring_whitelist']") || !strings.Contains(msgs[0], "VPC CIDR") {
			t.Errorf("progress = %q, want one warning about monitoring_whitelist", msgs)
		}
	})
	t.Run("bad certificate stops at once", func(t *testing.T) {
		g := startGitLab(t, testenv.GitLabOptions{CertHosts: []string{"gitlab.internal"}})
		c := clientFor(t, g.URL(), g.CAPEM())
		start := time.Now()
		err := c.WaitReady(context.Background(), 5*time.Second, nil)
		wantErrContains(t, err, "does not cover", "gitlab.internal")
		if d := time.Since(start); d > time.Second {
			t.Errorf("WaitReady retried a certificate error for %s", d)
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		g := startGitLab(t, testenv.GitLabOptions{NotReadyFor: 1 << 30})
		c := clientFor(t, g.URL(), g.CAPEM())
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		err := c.WaitReady(ctx, time.Minute, nil)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestReadinessIntervals(t *testing.T) {
	tests := []struct {
		timeout, initial, maxInterval time.Duration
	}{
		{10 * time.Minute, time.Second, 10 * time.Second},
		{2 * time.Second, 50 * time.Millisecond, 250 * time.Millisecond},
		{100 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond},
	}
	for _, tt := range tests {
		i, m := readinessIntervals(tt.timeout)
		if i != tt.initial || m != tt.maxInterval {
			t.Errorf("readinessIntervals(%s) = %s, %s; want %s, %s", tt.timeout, i, m, tt.initial, tt.maxInterval)
		}
	}
}

func TestCheckTLS(t *testing.T) {
	good := startGitLab(t, testenv.GitLabOptions{})
	mismatch := startGitLab(t, testenv.GitLabOptions{CertHosts: []string{"gitlab.internal", "10.0.1.5"}})
	closed := closedAddr(t)

	tests := []struct {
		name    string
		url     string
		caPEM   []byte
		wantErr []string
		wantAs  func(error) bool
	}{
		{name: "certificate for 127.0.0.1", url: good.URL(), caPEM: good.CAPEM()},
		{name: "http is not checked", url: "http://" + closed},
		{name: "certificate only for gitlab.internal", url: mismatch.URL(), caPEM: mismatch.CAPEM(),
			wantErr: []string{`does not cover "127.0.0.1"`, "DNS gitlab.internal", "IP 10.0.1.5", "gitlab.private_url", "gitlab.ca_file"},
			wantAs:  func(err error) bool { var h x509.HostnameError; return errors.As(err, &h) }},
		{name: "unknown CA", url: good.URL(), caPEM: nil,
			wantErr: []string{"glbootstrap testenv CA", "does not trust", "gitlab.ca_file"},
			wantAs:  func(err error) bool { var u x509.UnknownAuthorityError; return errors.As(err, &u) }},
		{name: "ca_file of another CA", url: good.URL(), caPEM: mismatch.CAPEM(),
			wantErr: []string{"glbootstrap testenv CA", "not in gitlab.ca_file", "trust only that file"},
			wantAs:  func(err error) bool { var u x509.UnknownAuthorityError; return errors.As(err, &u) }},
		{name: "closed port", url: "https://" + closed,
			wantErr: []string{"not reachable at " + closed, "security group", "GitLab is up"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clientFor(t, tt.url, tt.caPEM)
			err := c.CheckTLS(context.Background())
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckTLS: %v", err)
				}
				return
			}
			wantErrContains(t, err, tt.wantErr...)
			if tt.wantAs != nil && !tt.wantAs(err) {
				t.Errorf("error %v does not wrap the x509 error", err)
			}
		})
	}
}

// answerOnce fails unless err wraps client-go's *gitlab.ErrorResponse (errors.As still reaches
// GitLab's answer) and its message quotes that answer exactly once.
func answerOnce(t *testing.T, err error) {
	t.Helper()
	var er *gitlab.ErrorResponse
	if !errors.As(err, &er) || er.Message == "" {
		t.Fatalf("%v does not wrap GitLab's answer", err)
	}
	if n := strings.Count(err.Error(), er.Message); n != 1 {
		t.Errorf("GitLab's answer %q is %d times in %q", er.Message, n, err.Error())
	}
}

// TestRefusalsQuoteGitLabOnce: every request GitLab refuses gives a message that says what to do
// and quotes GitLab's answer once, however the client wraps it.
func TestRefusalsQuoteGitLabOnce(t *testing.T) {
	g := startGitLab(t, testenv.GitLabOptions{})
	g.AddAccessToken("glpat-create-runner-only", "create_runner")
	c := clientFor(t, g.URL(), g.CAPEM())
	a := g.AddRunner(testenv.GitLabRunner{})
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"DeleteRunner 401": func() error { return c.DeleteRunner(ctx, "glpat-unknownunknownunk", a.ID) },
		"DeleteRunner 403": func() error { return c.DeleteRunner(ctx, "glpat-create-runner-only", a.ID) },
		"CreateRunner 401": func() error {
			_, err := c.CreateRunner(ctx, "glpat-unknownunknownunk", CreateOptions{RunnerType: "instance_type", RunUntagged: true})
			return err
		},
		"RegisterLegacy 403": func() error {
			_, err := c.RegisterLegacy(ctx, "GR1348941-not-a-registration-token", CreateOptions{RunUntagged: true})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) { answerOnce(t, call()) })
	}
}
