package testenv

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GitLabOptions configures NewGitLab. The zero value is a GitLab >= 17.0 with
// legacy registration disabled, ready at once, on a random port of 127.0.0.1,
// with a certificate for 127.0.0.1 from a fresh CA.
type GitLabOptions struct {
	// CertHosts are the subject alternative names of the served certificate
	// (IPs or DNS names); default {"127.0.0.1"}. A certificate only for
	// "gitlab.internal" makes https://127.0.0.1:PORT fail hostname checks.
	CertHosts []string
	// CA signs the served certificate; default: a fresh CA from NewCA.
	CA *CA
	// LegacyRegistrationToken is the instance registration token accepted by
	// POST /api/v4/runners. "" means legacy registration is disabled: that
	// endpoint answers 410 Gone for any token, like GitLab >= 17.0 by default
	// (allow_runner_registration_token = false).
	LegacyRegistrationToken string
	// NotReadyFor makes the first N GET /-/readiness answer 503 (GitLab
	// starting up).
	NotReadyFor int
	// MonitoringWhitelist lists the CIDRs (or single IPs) allowed on
	// /-/readiness and /-/liveness, like gitlab_rails['monitoring_whitelist'];
	// other clients get 404. nil allows every client. Use e.g.
	// {"10.0.0.0/16"} to see what a front outside the whitelist sees.
	MonitoringWhitelist []string
	// Addr is the listen address; default "127.0.0.1:0" (a random port).
	Addr string
	// ListenAfter delays listening: until then connections to URL are refused (ECONNREFUSED),
	// as while GitLab boots and nginx is not up yet. URL is known at once.
	ListenAfter time.Duration
}

// GitLabRunner is a runner as the stand-in stores it.
type GitLabRunner struct {
	ID int64
	// Token is the runner authentication token: "glrt-…" for runners created
	// with POST /user/runners (or in the UI), "t1_…" for legacy registrations.
	Token string
	// RunnerType is instance_type, group_type or project_type.
	RunnerType  string
	GroupID     int64
	ProjectID   int64
	Description string
	Tags        []string
	RunUntagged bool
	Locked      bool
	Paused      bool
	// SystemIDs are the runner managers (system_id values) seen by
	// POST /runners/verify, in order of first appearance.
	SystemIDs []string
	// Legacy is true for runners registered with a registration token.
	Legacy bool
	// MaintenanceNote is the free-text note given at creation.
	MaintenanceNote string
}

// GitLab is a protocol-level stand-in for the GitLab REST endpoints a runner
// manager uses, served over TLS. Status codes and JSON bodies follow GitLab's
// Grape API (lib/api/ci/runner.rb, lib/api/user_runners.rb, lib/api/ci/runners.rb,
// https://docs.gitlab.com/api/runners/ and
// https://docs.gitlab.com/api/users/#create-a-runner-linked-to-a-user):
//
//	GET    /-/readiness, /-/liveness       health checks (monitoring whitelist; 503 while starting)
//	POST   /api/v4/runners/verify          token [+ system_id] → 200 | 403
//	POST   /api/v4/user/runners            PRIVATE-TOKEN with create_runner or api scope → 201
//	POST   /api/v4/runners                 legacy registration token → 201 | 403 | 410
//	DELETE /api/v4/runners                 runner token → 204 | 403
//	DELETE /api/v4/runners/:id             PRIVATE-TOKEN with api or manage_runner scope → 204 | 404
//	GET    /api/v4/version                 PRIVATE-TOKEN with api or read_api scope → 200
//	GET    /api/v4/runners/all             PRIVATE-TOKEN with api or read_api scope; ?type= &status= &page= &per_page=
//	GET    /api/v4/groups/:id/runners      the same, for a group's runners
//	GET    /api/v4/projects/:id/runners    the same, for a project's runners
//	…      /api/v4/jobs/…                  the CI jobs API a runner manager uses (gitlab_jobs.go)
//
// Every access token is treated as an administrator's; group and project IDs
// > 0 are taken to exist. All methods are safe for concurrent use.
type GitLab struct {
	url       string
	ca        *CA
	srv       *http.Server
	whitelist []*net.IPNet
	legacy    string
	notReady  int

	mu        sync.Mutex
	nextID    int64
	runners   map[int64]*GitLabRunner
	tokens    map[string][]string // access token → scopes
	requests  map[string]int      // "METHOD path" → count
	readiness int                 // whitelisted GET /-/readiness seen
	issued    []string            // every runner token handed out or stored, for Secrets
	listening chan error          // ListenAfter: the delayed listen's result, once

	jobs gitlabJobs // the CI job queue (gitlab_jobs.go); its own lock
}

// NewGitLab starts a stand-in GitLab. Close it when done.
func NewGitLab(opts GitLabOptions) (*GitLab, error) {
	if len(opts.CertHosts) == 0 {
		opts.CertHosts = []string{"127.0.0.1"}
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	ca := opts.CA
	if ca == nil {
		var err error
		if ca, err = NewCA(); err != nil {
			return nil, err
		}
	}
	var whitelist []*net.IPNet
	for _, s := range opts.MonitoringWhitelist {
		if !strings.Contains(s, "/") {
			if ip := net.ParseIP(s); ip != nil && ip.To4() != nil {
				s += "/32"
			} else {
				s += "/128"
			}
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("parsing monitoring whitelist entry %q: %w", s, err)
		}
		whitelist = append(whitelist, n)
	}
	cert, err := ca.Issue(opts.CertHosts...)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", opts.Addr, err)
	}
	g := &GitLab{
		url:       "https://" + ln.Addr().String(),
		ca:        ca,
		whitelist: whitelist,
		legacy:    opts.LegacyRegistrationToken,
		notReady:  opts.NotReadyFor,
		runners:   map[int64]*GitLabRunner{},
		tokens:    map[string][]string{},
		requests:  map[string]int{},
	}
	g.srv = &http.Server{
		Handler:           g,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		// Handshake failures are what some tests are about; keep them off stderr.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	if opts.ListenAfter <= 0 {
		go func() { _ = g.srv.ServeTLS(ln, "", "") }()
		return g, nil
	}
	// Keep the port, refuse connections on it, then listen again. Nothing else takes a port
	// the kernel just handed out within a test's few seconds.
	addr := ln.Addr().String()
	ln.Close()
	g.listening = make(chan error, 1)
	time.AfterFunc(opts.ListenAfter, func() {
		ln, err := net.Listen("tcp", addr)
		g.listening <- err
		if err == nil {
			_ = g.srv.ServeTLS(ln, "", "")
		}
	})
	return g, nil
}

// Listening waits until a stand-in started with ListenAfter listens and returns the error of
// its listen (nil at once without ListenAfter).
func (g *GitLab) Listening() error {
	if g.listening == nil {
		return nil
	}
	err := <-g.listening
	g.listening <- err
	return err
}

// URL returns the base URL, https://ADDR:PORT with the listener's address
// (https://127.0.0.1:PORT by default), without a trailing slash.
func (g *GitLab) URL() string { return g.url }

// CAPEM returns the PEM of the CA that signed the served certificate.
func (g *GitLab) CAPEM() []byte { return g.ca.PEM() }

// Close stops the server and drops open connections.
func (g *GitLab) Close() { _ = g.srv.Close() }

// AddAccessToken registers a personal access token with the given scopes.
// POST /user/runners needs create_runner or api; DELETE /runners/:id needs api
// or manage_runner; GET /version needs api or read_api (as in GitLab, where a
// create_runner-only token can create runners but not delete them).
func (g *GitLab) AddAccessToken(token string, scopes ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tokens[token] = slices.Clone(scopes)
}

// AddRunner stores a pre-existing runner (for example one an admin created in
// the UI, whose glrt- token the config names) and returns it with its new ID.
// An empty Token gets a fresh glrt- token, an empty RunnerType instance_type.
func (g *GitLab) AddRunner(r GitLabRunner) GitLabRunner {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.Token == "" {
		r.Token = gitlabNewToken("glrt-")
	}
	if r.RunnerType == "" {
		r.RunnerType = "instance_type"
	}
	r.Tags = slices.Clone(r.Tags)
	r.SystemIDs = slices.Clone(r.SystemIDs)
	return gitlabCopyRunner(g.storeLocked(&r))
}

// Runners returns a snapshot of all runners, sorted by ID.
func (g *GitLab) Runners() []GitLabRunner {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]GitLabRunner, 0, len(g.runners))
	for _, r := range g.runners {
		out = append(out, gitlabCopyRunner(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ResetToken gives runner id a new authentication token (same prefix) and
// returns it; the old token stops verifying (403). It returns "" when no
// runner has that ID.
func (g *GitLab) ResetToken(id int64) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.runners[id]
	if !ok {
		return ""
	}
	prefix := "glrt-"
	if !strings.HasPrefix(r.Token, prefix) {
		prefix = "t1_"
	}
	r.Token = gitlabNewToken(prefix)
	g.issued = append(g.issued, r.Token)
	return r.Token
}

// Secrets returns every secret this GitLab knows or has known: its access tokens, its legacy
// registration token, and every runner authentication token it handed out or was given,
// including those of runners deleted since and tokens replaced by ResetToken.
func (g *GitLab) Secrets() []Secret {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Secret
	for t := range g.tokens {
		out = append(out, Secret{Source: "GitLab access token", Value: t})
	}
	if g.legacy != "" {
		out = append(out, Secret{Source: "GitLab registration token", Value: g.legacy})
	}
	for _, t := range g.issued {
		out = append(out, Secret{Source: "GitLab runner token", Value: t})
	}
	return out
}

// Requests returns how many requests hit method and path. path is either the
// literal request path ("/api/v4/runners/3") or, for the runner-by-ID route,
// its pattern ("/api/v4/runners/:id", which counts every ID).
func (g *GitLab) Requests(method, path string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.requests[method+" "+path]
}

// ServeHTTP routes a request. Unknown routes answer 404 {"message":"404 Not Found"}.
func (g *GitLab) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	idRoute := ""
	if rest, ok := strings.CutPrefix(path, "/api/v4/runners/"); ok && rest != "" && !strings.Contains(rest, "/") && rest != "verify" {
		idRoute = rest
	}
	g.mu.Lock()
	g.requests[r.Method+" "+path]++
	if idRoute != "" {
		g.requests[r.Method+" /api/v4/runners/:id"]++
	}
	g.mu.Unlock()

	if strings.HasPrefix(path, "/api/v4/jobs/") && g.serveJobs(w, r) {
		return
	}
	switch {
	case r.Method == http.MethodGet && path == "/-/readiness":
		g.handleReadiness(w, r)
	case r.Method == http.MethodGet && path == "/-/liveness":
		if !g.whitelisted(r) {
			gitlabRails404(w)
			return
		}
		gitlabJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	case r.Method == http.MethodPost && path == "/api/v4/runners/verify":
		g.handleVerify(w, r)
	case r.Method == http.MethodPost && path == "/api/v4/user/runners":
		g.handleCreate(w, r)
	case r.Method == http.MethodPost && path == "/api/v4/runners":
		g.handleRegister(w, r)
	case r.Method == http.MethodDelete && path == "/api/v4/runners":
		g.handleDeleteByToken(w, r)
	case r.Method == http.MethodDelete && idRoute != "":
		g.handleDeleteByID(w, r, idRoute)
	case r.Method == http.MethodGet && idRoute != "" && idRoute != "all":
		g.handleDetails(w, r, idRoute)
	case r.Method == http.MethodGet && (path == "/api/v4/runners/all" || gitlabScopedRunnersRE.MatchString(path)):
		g.handleList(w, r)
	case r.Method == http.MethodGet && path == "/api/v4/version":
		if _, ok := g.authorize(w, r, "api", "read_api"); !ok {
			return
		}
		gitlabJSON(w, http.StatusOK, map[string]any{"version": "18.5.1-ee", "revision": "abc"})
	default:
		gitlabMessage(w, http.StatusNotFound, "404 Not Found")
	}
}

func (g *GitLab) handleReadiness(w http.ResponseWriter, r *http.Request) {
	if !g.whitelisted(r) {
		gitlabRails404(w)
		return
	}
	g.mu.Lock()
	g.readiness++
	starting := g.readiness <= g.notReady
	g.mu.Unlock()
	if starting {
		gitlabJSON(w, http.StatusServiceUnavailable, map[string]any{
			"status":       "failed",
			"master_check": []any{map[string]any{"status": "failed", "message": "unexpected Master check result: false"}},
		})
		return
	}
	gitlabJSON(w, http.StatusOK, map[string]any{
		"status":       "ok",
		"master_check": []any{map[string]any{"status": "ok"}},
	})
}

// handleVerify is POST /runners/verify (lib/api/ci/runner.rb).
func (g *GitLab) handleVerify(w http.ResponseWriter, r *http.Request) {
	p, ok := gitlabParse(w, r)
	if !ok {
		return
	}
	token, ok := p.required(w, "token")
	if !ok {
		return
	}
	systemID, _ := p.str("system_id")
	g.mu.Lock()
	defer g.mu.Unlock()
	rn := g.byTokenLocked(token)
	if rn == nil {
		gitlabMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	// Without a system_id GitLab authenticates the runner but cannot attach
	// a runner manager to it, so nothing is recorded.
	if systemID != "" && !slices.Contains(rn.SystemIDs, systemID) {
		rn.SystemIDs = append(rn.SystemIDs, systemID)
	}
	gitlabJSON(w, http.StatusOK, gitlabRegistrationDetails(rn))
}

// handleCreate is POST /user/runners (lib/api/user_runners.rb).
func (g *GitLab) handleCreate(w http.ResponseWriter, r *http.Request) {
	if _, ok := g.authorize(w, r, "api", "create_runner"); !ok {
		return
	}
	p, ok := gitlabParse(w, r)
	if !ok {
		return
	}
	var errs []string
	rn := &GitLabRunner{RunUntagged: true}
	if !p.has("runner_type") {
		errs = append(errs, "runner_type is missing", "runner_type does not have a valid value")
	} else {
		rn.RunnerType, _ = p.str("runner_type")
		switch rn.RunnerType {
		case "instance_type":
		case "group_type":
			rn.GroupID = p.requiredInt("group_id", &errs)
		case "project_type":
			rn.ProjectID = p.requiredInt("project_id", &errs)
		default:
			errs = append(errs, "runner_type does not have a valid value")
		}
	}
	rn.Description, _ = p.str("description")
	rn.MaintenanceNote, _ = p.str("maintenance_note")
	p.boolean("paused", &rn.Paused, &errs)
	p.boolean("locked", &rn.Locked, &errs)
	p.boolean("run_untagged", &rn.RunUntagged, &errs)
	rn.Tags = p.list("tag_list")
	if len(errs) > 0 {
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": strings.Join(errs, ", ")})
		return
	}
	// CreateRunnerService: a group or project that does not exist is a
	// "Missing/invalid scope", answered with bad_request!.
	if (rn.RunnerType == "group_type" && rn.GroupID <= 0) || (rn.RunnerType == "project_type" && rn.ProjectID <= 0) {
		gitlabMessage(w, http.StatusBadRequest, "400 Bad request - Missing/invalid scope")
		return
	}
	if !rn.RunUntagged && len(rn.Tags) == 0 {
		// Ci::Runner validation tag_constraints.
		gitlabMessage(w, http.StatusBadRequest, "400 Bad request - Tags list can not be empty when runner is not allowed to pick untagged jobs")
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	rn.Token = gitlabNewToken("glrt-")
	gitlabJSON(w, http.StatusCreated, gitlabRegistrationDetails(g.storeLocked(rn)))
}

// handleRegister is legacy POST /runners (lib/api/ci/runner.rb,
// Ci::Runners::RegisterRunnerService).
func (g *GitLab) handleRegister(w http.ResponseWriter, r *http.Request) {
	p, ok := gitlabParse(w, r)
	if !ok {
		return
	}
	token, ok := p.required(w, "token")
	if !ok {
		return
	}
	if g.legacy == "" {
		if token == "" {
			gitlabMessage(w, http.StatusForbidden, "403 Forbidden - invalid token supplied")
			return
		}
		gitlabMessage(w, http.StatusGone, "410 Gone - runner registration disallowed")
		return
	}
	if token != g.legacy {
		gitlabMessage(w, http.StatusForbidden, "403 Forbidden - invalid token supplied")
		return
	}
	var errs []string
	rn := &GitLabRunner{RunnerType: "instance_type", Legacy: true, RunUntagged: true}
	rn.Description, _ = p.str("description")
	rn.MaintenanceNote, _ = p.str("maintenance_note")
	p.boolean("paused", &rn.Paused, &errs)
	p.boolean("locked", &rn.Locked, &errs)
	p.boolean("run_untagged", &rn.RunUntagged, &errs)
	rn.Tags = p.list("tag_list")
	if len(errs) > 0 {
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": strings.Join(errs, ", ")})
		return
	}
	if !rn.RunUntagged && len(rn.Tags) == 0 {
		// render_validation_error! with the model's errors.
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"message": map[string]any{
			"tags_list": []string{"can not be empty when runner is not allowed to pick untagged jobs"},
		}})
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	rn.Token = gitlabNewToken("t1_")
	gitlabJSON(w, http.StatusCreated, gitlabRegistrationDetails(g.storeLocked(rn)))
}

// handleDeleteByToken is DELETE /runners with the runner's own token.
func (g *GitLab) handleDeleteByToken(w http.ResponseWriter, r *http.Request) {
	p, ok := gitlabParse(w, r)
	if !ok {
		return
	}
	token, ok := p.required(w, "token")
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	rn := g.byTokenLocked(token)
	if rn == nil {
		gitlabMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	delete(g.runners, rn.ID)
	w.WriteHeader(http.StatusNoContent)
}

// handleDeleteByID is DELETE /runners/:id (lib/api/ci/runners.rb).
func (g *GitLab) handleDeleteByID(w http.ResponseWriter, r *http.Request, rawID string) {
	if _, ok := g.authorize(w, r, "api", "manage_runner"); !ok {
		return
	}
	id, err := strconv.ParseInt(rawID, 10, 64)
	if err != nil {
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": "id is invalid"})
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.runners[id]; !ok {
		gitlabMessage(w, http.StatusNotFound, "404 Runner Not Found")
		return
	}
	delete(g.runners, id)
	w.WriteHeader(http.StatusNoContent)
}

// authorize checks the access token (PRIVATE-TOKEN header, private_token
// parameter or Authorization: Bearer) and that it has one of scopes. On
// failure it has already answered: 401 for a missing or unknown token, 403
// insufficient_scope (the OAuth2 bearer error body GitLab's APIGuard renders)
// for a token without the scope.
func (g *GitLab) authorize(w http.ResponseWriter, r *http.Request, scopes ...string) (string, bool) {
	token := r.Header.Get("Private-Token")
	if token == "" {
		token = r.URL.Query().Get("private_token")
	}
	if token == "" {
		if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			token = b
		}
	}
	g.mu.Lock()
	have, known := g.tokens[token]
	g.mu.Unlock()
	if token == "" || !known {
		gitlabMessage(w, http.StatusUnauthorized, "401 Unauthorized")
		return "", false
	}
	for _, s := range scopes {
		if slices.Contains(have, s) {
			return token, true
		}
	}
	gitlabJSON(w, http.StatusForbidden, map[string]any{
		"error":             "insufficient_scope",
		"error_description": "The request requires higher privileges than provided access token.",
		"scope":             strings.Join(scopes, " "),
	})
	return "", false
}

func (g *GitLab) whitelisted(r *http.Request) bool {
	if g.whitelist == nil {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	for _, n := range g.whitelist {
		if ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// handleDetails answers GET /api/v4/runners/:id (REST API "Get runner's details") with the
// fields glbootstrap reads.
func (g *GitLab) handleDetails(w http.ResponseWriter, r *http.Request, rawID string) {
	if _, ok := g.authorize(w, r, "api", "read_api", "manage_runner"); !ok {
		return
	}
	id, err := strconv.ParseInt(rawID, 10, 64)
	if err != nil {
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": "id is invalid"})
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	rn, ok := g.runners[id]
	if !ok {
		gitlabMessage(w, http.StatusNotFound, "404 Runner Not Found")
		return
	}
	gitlabJSON(w, http.StatusOK, map[string]any{"id": rn.ID, "description": rn.Description, "runner_type": rn.RunnerType,
		"status": rn.status(), "paused": rn.Paused, "maintenance_note": rn.MaintenanceNote, "tag_list": rn.Tags,
		"run_untagged": rn.RunUntagged, "locked": rn.Locked})
}

// gitlabScopedRunnersRE matches GET /groups/:id/runners and /projects/:id/runners.
var gitlabScopedRunnersRE = regexp.MustCompile(`^/api/v4/(groups|projects)/([0-9]+)/runners$`)

// handleList answers the runner list endpoints (REST API "Runners": list all runners, a
// group's, a project's) with the fields glbootstrap reads: id, description, runner_type and
// status, which is never_contacted until a runner manager verified or polled with the token.
// Filters: type, status; pages of per_page (default 20, at most 100) with X-Next-Page.
func (g *GitLab) handleList(w http.ResponseWriter, r *http.Request) {
	if _, ok := g.authorize(w, r, "api", "read_api"); !ok {
		return
	}
	q := r.URL.Query()
	scope, scopeID := "", int64(0)
	if m := gitlabScopedRunnersRE.FindStringSubmatch(r.URL.Path); m != nil {
		scope = m[1]
		scopeID, _ = strconv.ParseInt(m[2], 10, 64)
	}
	g.mu.Lock()
	var list []map[string]any
	ids := make([]int64, 0, len(g.runners))
	for id := range g.runners {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		rn := g.runners[id]
		status := rn.status()
		switch {
		case scope == "groups" && rn.GroupID != scopeID,
			scope == "projects" && rn.ProjectID != scopeID,
			q.Get("type") != "" && q.Get("type") != rn.RunnerType,
			q.Get("status") != "" && q.Get("status") != status:
			continue
		}
		list = append(list, map[string]any{"id": rn.ID, "description": rn.Description, "runner_type": rn.RunnerType,
			"status": status, "paused": rn.Paused, "is_shared": rn.RunnerType == "instance_type"})
	}
	g.mu.Unlock()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 20
	}
	per = min(per, 100)
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 1)
	start := min((page-1)*per, len(list))
	end := min(start+per, len(list))
	if end < len(list) {
		w.Header().Set("X-Next-Page", strconv.Itoa(page+1))
	}
	w.Header().Set("X-Page", strconv.Itoa(page))
	w.Header().Set("X-Per-Page", strconv.Itoa(per))
	out := list[start:end]
	if out == nil {
		out = []map[string]any{}
	}
	gitlabJSON(w, http.StatusOK, out)
}

func (g *GitLab) storeLocked(r *GitLabRunner) *GitLabRunner {
	g.issued = append(g.issued, r.Token)
	g.nextID++
	r.ID = g.nextID
	g.runners[r.ID] = r
	return r
}

func (g *GitLab) byTokenLocked(token string) *GitLabRunner {
	if token == "" {
		return nil
	}
	for _, r := range g.runners {
		if r.Token == token {
			return r
		}
	}
	return nil
}

// status is the runner's status as the REST API reports it: never_contacted until a runner
// manager verified or polled with its token (the stand-in does not age runners to offline).
func (r *GitLabRunner) status() string {
	if len(r.SystemIDs) == 0 {
		return "never_contacted"
	}
	return "online"
}

func gitlabCopyRunner(r *GitLabRunner) GitLabRunner {
	c := *r
	c.Tags = slices.Clone(r.Tags)
	c.SystemIDs = slices.Clone(r.SystemIDs)
	return c
}

// gitlabRegistrationDetails is Entities::Ci::RunnerRegistrationDetails.
func gitlabRegistrationDetails(r *GitLabRunner) map[string]any {
	return map[string]any{"id": r.ID, "token": r.Token, "token_expires_at": nil}
}

const gitlabTokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

// gitlabNewToken returns prefix followed by 20 random URL-safe characters.
func gitlabNewToken(prefix string) string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand.Read does not fail on supported platforms
	}
	for i := range b {
		b[i] = gitlabTokenAlphabet[int(b[i])%len(gitlabTokenAlphabet)]
	}
	return prefix + string(b)
}

func gitlabJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func gitlabMessage(w http.ResponseWriter, status int, msg string) {
	gitlabJSON(w, status, map[string]any{"message": msg})
}

// gitlabRails404 is what Rails answers a client outside the monitoring
// whitelist: its HTML not-found page.
func gitlabRails404(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	_, _ = io.WriteString(w, "<!DOCTYPE html>\n<html><head><title>The page you're looking for could not be found (404)</title></head><body><h1>404</h1></body></html>\n")
}

// gitlabParams are the merged query and body parameters of a request, like
// Grape's params: JSON values as decoded (json.Number for numbers), form
// values as strings, "key[]" or repeated form keys as []any.
type gitlabParams map[string]any

// gitlabParse reads query and body (JSON, urlencoded or multipart form). On a
// body it cannot parse it answers 400 and returns false.
func gitlabParse(w http.ResponseWriter, r *http.Request) (gitlabParams, bool) {
	p := gitlabParams{}
	p.addValues(r.URL.Query())
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "multipart/form-data" {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid multipart body"})
			return nil, false
		}
		p.addValues(r.MultipartForm.Value)
		return p, true
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": "unreadable body"})
		return nil, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return p, true
	}
	switch ct {
	case "application/json":
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			gitlabMessage(w, http.StatusBadRequest, "400 Bad request - invalid JSON body")
			return nil, false
		}
		for k, v := range m {
			p[k] = v
		}
	default:
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			gitlabMessage(w, http.StatusBadRequest, "400 Bad request - invalid form body")
			return nil, false
		}
		p.addValues(vals)
	}
	return p, true
}

func (p gitlabParams) addValues(vals map[string][]string) {
	for k, vs := range vals {
		if name, ok := strings.CutSuffix(k, "[]"); ok || len(vs) > 1 {
			list := make([]any, len(vs))
			for i, v := range vs {
				list[i] = v
			}
			p[name] = list
			continue
		}
		if len(vs) == 1 {
			p[k] = vs[0]
		}
	}
}

func (p gitlabParams) has(k string) bool {
	v, ok := p[k]
	return ok && v != nil
}

// str returns a scalar parameter as a string.
func (p gitlabParams) str(k string) (string, bool) {
	switch v := p[k].(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

// required answers 400 "<k> is missing" when k is absent.
func (p gitlabParams) required(w http.ResponseWriter, k string) (string, bool) {
	v, ok := p.str(k)
	if !p.has(k) {
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": k + " is missing"})
		return "", false
	}
	if !ok {
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": k + " is invalid"})
		return "", false
	}
	return v, true
}

func (p gitlabParams) requiredInt(k string, errs *[]string) int64 {
	if !p.has(k) {
		*errs = append(*errs, k+" is missing")
		return 0
	}
	s, _ := p.str(k)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		*errs = append(*errs, k+" is invalid")
	}
	return n
}

// boolean sets *dst when k is present, with Grape's Boolean coercion.
func (p gitlabParams) boolean(k string, dst *bool, errs *[]string) {
	if !p.has(k) {
		return
	}
	s, _ := p.str(k)
	switch strings.ToLower(s) {
	case "true", "t", "1", "yes", "y":
		*dst = true
	case "false", "f", "0", "no", "n":
		*dst = false
	default:
		*errs = append(*errs, k+" is invalid")
	}
}

// list returns a list parameter given as an array or as a comma-separated
// string (CommaSeparatedToArray), without empty items.
func (p gitlabParams) list(k string) []string {
	var raw []string
	switch v := p[k].(type) {
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				raw = append(raw, strings.Split(s, ",")...)
			}
		}
	case string:
		raw = strings.Split(v, ",")
	}
	var out []string
	for _, s := range raw {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
