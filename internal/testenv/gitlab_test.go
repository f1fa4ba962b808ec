package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func gitlabStart(t *testing.T, opts GitLabOptions) (*GitLab, *http.Client) {
	t.Helper()
	g, err := NewGitLab(opts)
	if err != nil {
		t.Fatalf("NewGitLab: %v", err)
	}
	t.Cleanup(g.Close)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(g.CAPEM()) {
		t.Fatal("CAPEM holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return g, &http.Client{Transport: tr}
}

type gitlabReq struct {
	method, path string
	header       map[string]string
	json         any        // sent as application/json when set
	form         url.Values // sent as application/x-www-form-urlencoded when set
}

func gitlabDo(t *testing.T, c *http.Client, base string, rq gitlabReq) (int, map[string]any) {
	t.Helper()
	var body io.Reader
	ct := ""
	switch {
	case rq.json != nil:
		b, err := json.Marshal(rq.json)
		if err != nil {
			t.Fatal(err)
		}
		body, ct = strings.NewReader(string(b)), "application/json"
	case rq.form != nil:
		body, ct = strings.NewReader(rq.form.Encode()), "application/x-www-form-urlencoded"
	}
	req, err := http.NewRequest(rq.method, base+rq.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object: %v", rq.method, rq.path, raw, err)
		}
	}
	return resp.StatusCode, m
}

func TestCAIssue(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("127.0.0.1", "gitlab.internal", "::1")
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "gitlab.internal", "::1"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: ca.Pool()}); err != nil {
			t.Errorf("certificate does not verify for %s: %v", host, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "10.0.0.1", Roots: ca.Pool()}); err == nil {
		t.Error("certificate verifies for 10.0.0.1, which it does not name")
	}
	other, _ := NewCA()
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: other.Pool()}); err == nil {
		t.Error("certificate verifies against an unrelated CA")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.PEM()) {
		t.Error("PEM() is not a PEM certificate")
	}
	if _, err := ca.Issue(); err == nil {
		t.Error("Issue() with no hosts succeeded")
	}
}

func TestGitLabHealth(t *testing.T) {
	g, c := gitlabStart(t, GitLabOptions{NotReadyFor: 2})
	want := []int{503, 503, 200, 200}
	for i, w := range want {
		code, body := gitlabDo(t, c, g.URL(), gitlabReq{method: "GET", path: "/-/readiness"})
		if code != w {
			t.Fatalf("readiness call %d: got %d, want %d", i+1, code, w)
		}
		if w == 200 && body["status"] != "ok" {
			t.Errorf("readiness body = %v", body)
		}
	}
	if code, body := gitlabDo(t, c, g.URL(), gitlabReq{method: "GET", path: "/-/liveness"}); code != 200 || body["status"] != "ok" {
		t.Errorf("liveness = %d %v", code, body)
	}
	if n := g.Requests("GET", "/-/readiness"); n != 4 {
		t.Errorf("Requests(readiness) = %d, want 4", n)
	}

	g2, c2 := gitlabStart(t, GitLabOptions{MonitoringWhitelist: []string{"10.0.0.0/16"}})
	if code, _ := gitlabDo(t, c2, g2.URL(), gitlabReq{method: "GET", path: "/-/readiness"}); code != 404 {
		t.Errorf("readiness outside the whitelist = %d, want 404", code)
	}
}

func TestGitLabCertHosts(t *testing.T) {
	g, c := gitlabStart(t, GitLabOptions{CertHosts: []string{"gitlab.internal"}})
	_, err := c.Get(g.URL() + "/-/liveness")
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Fatalf("GET with a certificate only for gitlab.internal: got %v, want a hostname error", err)
	}
}

func TestGitLabEndpoints(t *testing.T) {
	g, c := gitlabStart(t, GitLabOptions{LegacyRegistrationToken: "reg-secret"})
	g.AddAccessToken("pat-create", "create_runner")
	g.AddAccessToken("pat-api", "api")
	g.AddAccessToken("pat-read", "read_user")
	pre := g.AddRunner(GitLabRunner{Token: "glrt-preexisting000000", Description: "admin-made"})
	if pre.ID != 1 || pre.RunnerType != "instance_type" {
		t.Fatalf("AddRunner = %+v", pre)
	}
	create := func(tok string) map[string]string { return map[string]string{"PRIVATE-TOKEN": tok} }

	tests := []struct {
		name     string
		req      gitlabReq
		wantCode int
		wantBody map[string]any // subset; "*" matches any value
	}{
		{"verify json with system_id", gitlabReq{method: "POST", path: "/api/v4/runners/verify", json: map[string]any{"token": pre.Token, "system_id": "s_0123456789ab"}},
			200, map[string]any{"id": float64(1), "token": pre.Token, "token_expires_at": nil}},
		{"verify form without system_id", gitlabReq{method: "POST", path: "/api/v4/runners/verify", form: url.Values{"token": {pre.Token}}}, 200, nil},
		{"verify unknown", gitlabReq{method: "POST", path: "/api/v4/runners/verify", form: url.Values{"token": {"glrt-nope"}}},
			403, map[string]any{"message": "403 Forbidden"}},
		{"verify missing token", gitlabReq{method: "POST", path: "/api/v4/runners/verify"}, 400, map[string]any{"error": "token is missing"}},

		{"create no token", gitlabReq{method: "POST", path: "/api/v4/user/runners", json: map[string]any{"runner_type": "instance_type"}},
			401, map[string]any{"message": "401 Unauthorized"}},
		{"create unknown token", gitlabReq{method: "POST", path: "/api/v4/user/runners", header: create("nope"), json: map[string]any{"runner_type": "instance_type"}},
			401, map[string]any{"message": "401 Unauthorized"}},
		{"create insufficient scope", gitlabReq{method: "POST", path: "/api/v4/user/runners", header: create("pat-read"), json: map[string]any{"runner_type": "instance_type"}},
			403, map[string]any{"error": "insufficient_scope"}},
		{"create missing runner_type", gitlabReq{method: "POST", path: "/api/v4/user/runners", header: create("pat-create"), json: map[string]any{}},
			400, map[string]any{"error": "runner_type is missing, runner_type does not have a valid value"}},
		{"create bad runner_type", gitlabReq{method: "POST", path: "/api/v4/user/runners", header: create("pat-create"), json: map[string]any{"runner_type": "shared"}},
			400, map[string]any{"error": "runner_type does not have a valid value"}},
		{"create group without group_id", gitlabReq{method: "POST", path: "/api/v4/user/runners", header: create("pat-create"), json: map[string]any{"runner_type": "group_type"}},
			400, map[string]any{"error": "group_id is missing"}},
		{"create project without project_id", gitlabReq{method: "POST", path: "/api/v4/user/runners", header: create("pat-create"), form: url.Values{"runner_type": {"project_type"}}},
			400, map[string]any{"error": "project_id is missing"}},
		{"create untagged-off without tags", gitlabReq{method: "POST", path: "/api/v4/user/runners", header: create("pat-create"), json: map[string]any{"runner_type": "instance_type", "run_untagged": false}},
			400, map[string]any{"message": "*"}},
		{"create instance json", gitlabReq{method: "POST", path: "/api/v4/user/runners", header: create("pat-create"),
			json: map[string]any{"runner_type": "instance_type", "description": "front", "tag_list": []string{"fargate", "aws"}, "run_untagged": false, "locked": true}},
			201, map[string]any{"id": float64(2), "token": "*", "token_expires_at": nil}},
		{"create group form", gitlabReq{method: "POST", path: "/api/v4/user/runners", header: map[string]string{"Authorization": "Bearer pat-api"},
			form: url.Values{"runner_type": {"group_type"}, "group_id": {"42"}, "tag_list": {"a,b"}}},
			201, map[string]any{"id": float64(3)}},

		{"legacy wrong token", gitlabReq{method: "POST", path: "/api/v4/runners", form: url.Values{"token": {"wrong"}}},
			403, map[string]any{"message": "403 Forbidden - invalid token supplied"}},
		{"legacy ok", gitlabReq{method: "POST", path: "/api/v4/runners", form: url.Values{"token": {"reg-secret"}, "description": {"old"}, "tag_list": {"x"}}},
			201, map[string]any{"id": float64(4), "token_expires_at": nil}},

		{"version no token", gitlabReq{method: "GET", path: "/api/v4/version"}, 401, nil},
		{"version", gitlabReq{method: "GET", path: "/api/v4/version", header: create("pat-api")}, 200, map[string]any{"version": "18.5.1-ee"}},

		{"delete by id create_runner-only token", gitlabReq{method: "DELETE", path: "/api/v4/runners/2", header: create("pat-create")},
			403, map[string]any{"error": "insufficient_scope"}},
		{"delete by id unknown token", gitlabReq{method: "DELETE", path: "/api/v4/runners/2", header: create("nope")}, 401, nil},
		{"delete by id", gitlabReq{method: "DELETE", path: "/api/v4/runners/2", header: create("pat-api")}, 204, nil},
		{"delete by id again", gitlabReq{method: "DELETE", path: "/api/v4/runners/2", header: create("pat-api")},
			404, map[string]any{"message": "404 Runner Not Found"}},
		{"delete by token unknown", gitlabReq{method: "DELETE", path: "/api/v4/runners", form: url.Values{"token": {"glrt-nope"}}},
			403, map[string]any{"message": "403 Forbidden"}},
		{"delete by token json", gitlabReq{method: "DELETE", path: "/api/v4/runners", json: map[string]any{"token": pre.Token}}, 204, nil},

		{"unknown path", gitlabReq{method: "GET", path: "/api/v4/projects"}, 404, map[string]any{"message": "404 Not Found"}},
		{"wrong method", gitlabReq{method: "GET", path: "/api/v4/user/runners"}, 404, map[string]any{"message": "404 Not Found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := gitlabDo(t, c, g.URL(), tt.req)
			if code != tt.wantCode {
				t.Fatalf("status = %d, want %d (body %v)", code, tt.wantCode, body)
			}
			for k, want := range tt.wantBody {
				got, ok := body[k]
				if !ok || (want != "*" && got != want) {
					t.Errorf("body[%q] = %v, want %v (body %v)", k, got, want, body)
				}
			}
		})
	}

	runners := g.Runners()
	var ids []int64
	for _, r := range runners {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []int64{3, 4}) {
		t.Fatalf("runners left = %v, want [3 4]", ids)
	}
	grp, legacy := runners[0], runners[1]
	if grp.RunnerType != "group_type" || grp.GroupID != 42 || !slices.Equal(grp.Tags, []string{"a", "b"}) || !grp.RunUntagged || !strings.HasPrefix(grp.Token, "glrt-") || len(grp.Token) != 25 {
		t.Errorf("group runner = %+v", grp)
	}
	if !legacy.Legacy || strings.HasPrefix(legacy.Token, "glrt-") || legacy.Description != "old" {
		t.Errorf("legacy runner = %+v", legacy)
	}
	if n := g.Requests("DELETE", "/api/v4/runners/:id"); n != 4 {
		t.Errorf("Requests(DELETE /runners/:id) = %d, want 4", n)
	}
	if n := g.Requests("DELETE", "/api/v4/runners/2"); n != 4 {
		t.Errorf("Requests(DELETE /runners/2) = %d, want 4", n)
	}
}

func TestGitLabVerifyRecordsSystemIDsAndResetToken(t *testing.T) {
	g, c := gitlabStart(t, GitLabOptions{})
	r := g.AddRunner(GitLabRunner{})
	verify := func(tok, sys string) int {
		f := url.Values{"token": {tok}}
		if sys != "" {
			f.Set("system_id", sys)
		}
		code, _ := gitlabDo(t, c, g.URL(), gitlabReq{method: "POST", path: "/api/v4/runners/verify", form: f})
		return code
	}
	for _, sys := range []string{"s_aaa", "s_bbb", "s_aaa", ""} {
		if code := verify(r.Token, sys); code != 200 {
			t.Fatalf("verify(%q) = %d", sys, code)
		}
	}
	if got := g.Runners()[0].SystemIDs; !slices.Equal(got, []string{"s_aaa", "s_bbb"}) {
		t.Errorf("SystemIDs = %v", got)
	}
	nt := g.ResetToken(r.ID)
	if nt == r.Token || !strings.HasPrefix(nt, "glrt-") {
		t.Fatalf("ResetToken = %q", nt)
	}
	if code := verify(r.Token, "s_aaa"); code != 403 {
		t.Errorf("old token verify = %d, want 403", code)
	}
	if code := verify(nt, "s_aaa"); code != 200 {
		t.Errorf("new token verify = %d, want 200", code)
	}
	if g.ResetToken(99) != "" {
		t.Error("ResetToken of an unknown runner returned a token")
	}
}

func TestGitLabLegacyDisabled(t *testing.T) {
	g, c := gitlabStart(t, GitLabOptions{})
	code, body := gitlabDo(t, c, g.URL(), gitlabReq{method: "POST", path: "/api/v4/runners", json: map[string]any{"token": "anything"}})
	if code != 410 || !strings.HasPrefix(body["message"].(string), "410 Gone") {
		t.Errorf("legacy registration when disabled = %d %v, want 410 Gone", code, body)
	}
	if len(g.Runners()) != 0 {
		t.Error("a runner was created")
	}
}
