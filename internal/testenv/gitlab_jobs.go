package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The CI jobs API of the GitLab stand-in: the endpoints a runner manager uses to take and run
// jobs, as gitlab-runner 17.9.3 calls them (network/gitlab.go: RequestJob, PatchTrace,
// UpdateJob, UploadRawArtifacts, DownloadArtifacts; payloads in common/network.go) and GitLab
// answers them (lib/api/ci/runner.rb, https://docs.gitlab.com/api/runners/ is silent on these:
// they are the runner's private API):
//
//	POST  /api/v4/jobs/request         runner token [+ system_id] → 201 job payload | 204 none | 403
//	PATCH /api/v4/jobs/:id/trace       JOB-TOKEN, Content-Range → 202 (Range, Job-Status) | 416 | 403
//	PUT   /api/v4/jobs/:id             token, state, failure_reason → 200 (Job-Status) | 400 | 403
//	POST  /api/v4/jobs/:id/artifacts   JOB-TOKEN, multipart "file" → 201 | 403
//	GET   /api/v4/jobs/:id/artifacts   JOB-TOKEN → 200 archive | 404 | 403

// JobVariable is one CI/CD variable in a job payload (Ci::Build#runner_variables).
type JobVariable struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Public bool   `json:"public"`
	Masked bool   `json:"masked"`
	File   bool   `json:"file,omitempty"`
	Raw    bool   `json:"raw,omitempty"`
}

// JobArtifact is one artifacts: entry of a job (common.Artifact).
type JobArtifact struct {
	Name      string   `json:"name"`
	Untracked bool     `json:"untracked"`
	Paths     []string `json:"paths"`
	Exclude   []string `json:"exclude"`
	When      string   `json:"when"`            // on_success (default), on_failure, always
	Type      string   `json:"artifact_type"`   // archive (default), junit, ...
	Format    string   `json:"artifact_format"` // zip (default), gzip, raw
	ExpireIn  string   `json:"expire_in"`
}

// JobCache is one cache: entry of a job (common.Cache).
type JobCache struct {
	Key          string   `json:"key"`
	Untracked    bool     `json:"untracked"`
	Policy       string   `json:"policy"` // pull-push (default), pull, push
	Paths        []string `json:"paths"`
	When         string   `json:"when"` // on_success (default), on_failure, always
	FallbackKeys []string `json:"fallback_keys"`
}

// JobSpec is a job a test enqueues: what .gitlab-ci.yml would say about it. Zero fields get
// GitLab's defaults (stage "test", image none, timeout 1 h, a project "group/project" whose
// repository is not fetched: GIT_STRATEGY=none unless Variables set it).
type JobSpec struct {
	Name, Stage  string
	Script       []string
	AfterScript  []string
	Image        string
	Variables    []JobVariable
	Artifacts    []JobArtifact
	Cache        []JobCache
	Tags         []string
	Timeout      time.Duration
	Dependencies []int64 // ids of earlier jobs whose archive artifacts this job downloads
}

// JobArtifactUpload is one artifact the runner uploaded for a job.
type JobArtifactUpload struct {
	Type, Format, ExpireIn string // the query parameters artifact_type, artifact_format, expire_in
	Filename               string // the multipart file name
	Data                   []byte
}

// GitLabJob is a job's state as the stand-in holds it.
type GitLabJob struct {
	ID    int64
	Token string // CI_JOB_TOKEN: glcbt-…
	Spec  JobSpec
	// State is pending, running, success or failed.
	State string
	// FailureReason is what the runner sent with state failed (script_failure,
	// runner_system_failure, job_execution_timeout, …).
	FailureReason string
	ExitCode      int
	// RunnerID and SystemID say which runner and runner manager took the job.
	RunnerID int64
	SystemID string
	// HandedOut is when POST /jobs/request answered 201 with this job (zero while pending).
	HandedOut time.Time
	// Trace is the job log as appended by PATCH /jobs/:id/trace.
	Trace []byte
	// Checksum and Bytesize are the final trace's as the runner reported them on PUT
	// (output.checksum "crc32:HEX", output.bytesize).
	Checksum  string
	Bytesize  int
	Artifacts []JobArtifactUpload
}

// Finished reports whether the job reached success or failed.
func (j GitLabJob) Finished() bool { return j.State == "success" || j.State == "failed" }

// GitLabJobRequest is one POST /jobs/request as received.
type GitLabJobRequest struct {
	RunnerID   int64 // 0 when the token was not a runner's
	SystemID   string
	LastUpdate string
	// Info is the request's info object (name, version, revision, executor, shell, features).
	Info map[string]any
}

// gitlabJobs is the job queue of a GitLab stand-in; its own lock, taken after GitLab.mu when
// both are needed, never before.
type gitlabJobs struct {
	mu       sync.Mutex
	nextID   int64
	jobs     map[int64]*GitLabJob
	queue    []int64 // pending, in order
	requests []GitLabJobRequest
	update   int // bumps with every enqueue: X-GitLab-Last-Update
	changed  chan struct{}
}

func (q *gitlabJobs) init() {
	if q.jobs == nil {
		q.jobs = map[int64]*GitLabJob{}
		q.changed = make(chan struct{})
	}
}

// notifyLocked wakes WaitJob callers.
func (q *gitlabJobs) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// EnqueueJob adds a pending job and returns its id. The next POST /jobs/request of a runner
// whose tags fit (all of the job's tags, or an untagged job and run_untagged) gets it.
func (g *GitLab) EnqueueJob(spec JobSpec) int64 {
	q := &g.jobs
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	if spec.Name == "" {
		spec.Name = "job"
	}
	if spec.Stage == "" {
		spec.Stage = "test"
	}
	if spec.Timeout <= 0 {
		spec.Timeout = time.Hour
	}
	q.nextID++
	j := &GitLabJob{ID: q.nextID, Token: gitlabNewToken("glcbt-"), Spec: spec, State: "pending"}
	q.jobs[j.ID] = j
	q.queue = append(q.queue, j.ID)
	q.update++
	g.mu.Lock()
	g.issued = append(g.issued, j.Token)
	g.mu.Unlock()
	return j.ID
}

// Job returns a snapshot of job id, false when there is none.
func (g *GitLab) Job(id int64) (GitLabJob, bool) {
	q := &g.jobs
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	j, ok := q.jobs[id]
	if !ok {
		return GitLabJob{}, false
	}
	return gitlabCopyJob(j), true
}

// JobRequests returns every POST /jobs/request received, in order.
func (g *GitLab) JobRequests() []GitLabJobRequest {
	q := &g.jobs
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.requests)
}

// WaitJob waits until job id is finished (success or failed) and returns it; the error is
// ctx's, with the job's last state, or an unknown id.
func (g *GitLab) WaitJob(ctx context.Context, id int64) (GitLabJob, error) {
	q := &g.jobs
	for {
		q.mu.Lock()
		q.init()
		j, ok := q.jobs[id]
		if !ok {
			q.mu.Unlock()
			return GitLabJob{}, fmt.Errorf("no job %d", id)
		}
		snap, changed := gitlabCopyJob(j), q.changed
		q.mu.Unlock()
		if snap.Finished() {
			return snap, nil
		}
		select {
		case <-ctx.Done():
			return snap, fmt.Errorf("job %d still %s (trace %d bytes): %w", id, snap.State, len(snap.Trace), ctx.Err())
		case <-changed:
		}
	}
}

func gitlabCopyJob(j *GitLabJob) GitLabJob {
	c := *j
	c.Trace = slices.Clone(j.Trace)
	c.Artifacts = slices.Clone(j.Artifacts)
	return c
}

// gitlabJobRouteRE matches /api/v4/jobs/:id[/trace|/artifacts].
var gitlabJobRouteRE = regexp.MustCompile(`^/api/v4/jobs/([0-9]+)(/trace|/artifacts)?$`)

// serveJobs routes the jobs API; false when the request is not one of its routes.
func (g *GitLab) serveJobs(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path == "/api/v4/jobs/request" {
		if r.Method != http.MethodPost {
			return false
		}
		g.handleJobRequest(w, r)
		return true
	}
	m := gitlabJobRouteRE.FindStringSubmatch(r.URL.Path)
	if m == nil {
		return false
	}
	id, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return false
	}
	switch {
	case m[2] == "/trace" && r.Method == http.MethodPatch:
		g.handleTrace(w, r, id)
	case m[2] == "" && r.Method == http.MethodPut:
		g.handleUpdateJob(w, r, id)
	case m[2] == "/artifacts" && r.Method == http.MethodPost:
		g.handleUploadArtifacts(w, r, id)
	case m[2] == "/artifacts" && r.Method == http.MethodGet:
		g.handleDownloadArtifacts(w, r, id)
	default:
		return false
	}
	return true
}

// handleJobRequest is POST /jobs/request (Ci::RegisterJobService).
func (g *GitLab) handleJobRequest(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Token      string         `json:"token"`
		SystemID   string         `json:"system_id"`
		LastUpdate string         `json:"last_update"`
		Info       map[string]any `json:"info"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		gitlabMessage(w, http.StatusBadRequest, "400 Bad request - invalid JSON body")
		return
	}
	if body.Token == "" {
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": "token is missing"})
		return
	}
	g.mu.Lock()
	rn := g.byTokenLocked(body.Token)
	var runner GitLabRunner
	if rn != nil {
		// A poll with a system_id makes (or refreshes) the runner manager, as verify does.
		if body.SystemID != "" && !slices.Contains(rn.SystemIDs, body.SystemID) {
			rn.SystemIDs = append(rn.SystemIDs, body.SystemID)
		}
		runner = gitlabCopyRunner(rn)
	}
	g.mu.Unlock()

	q := &g.jobs
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	q.requests = append(q.requests, GitLabJobRequest{RunnerID: runner.ID, SystemID: body.SystemID, LastUpdate: body.LastUpdate, Info: body.Info})
	if rn == nil {
		gitlabMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	w.Header().Set("X-GitLab-Last-Update", strconv.Itoa(q.update))
	if runner.Paused {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	for i, id := range q.queue {
		j := q.jobs[id]
		if !gitlabRunnerFits(runner, j.Spec.Tags) {
			continue
		}
		q.queue = slices.Delete(q.queue, i, i+1)
		j.State, j.RunnerID, j.SystemID = "running", runner.ID, body.SystemID
		j.HandedOut = time.Now()
		q.notifyLocked()
		gitlabJSON(w, http.StatusCreated, g.jobPayloadLocked(j))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// gitlabRunnerFits is GitLab's tag matching: a runner takes a job when it has all the job's
// tags, and an untagged job only when it runs untagged jobs.
func gitlabRunnerFits(r GitLabRunner, tags []string) bool {
	if len(tags) == 0 {
		return r.RunUntagged
	}
	for _, t := range tags {
		if !slices.Contains(r.Tags, t) {
			return false
		}
	}
	return true
}

// gitlabFailureReasons are the failure reasons this GitLab accepts on PUT /jobs/:id and
// announces in features.failure_reasons (Enums::Ci::CommitStatus.failure_reasons, the part a
// runner may send).
var gitlabFailureReasons = []string{
	"unknown_failure", "script_failure", "api_failure", "stuck_or_timeout_failure",
	"runner_system_failure", "missing_dependency_failure", "runner_unsupported",
	"stale_schedule", "job_execution_timeout", "archived_failure", "unmet_prerequisites",
	"scheduler_failure", "data_integrity_failure",
}

// jobPayloadLocked is the 201 body of POST /jobs/request (API::Entities::Ci::JobRequest::Response).
func (g *GitLab) jobPayloadLocked(j *GitLabJob) map[string]any {
	s := j.Spec
	project := "group/project"
	repoURL := g.url + "/" + project + ".git"
	vars := []JobVariable{
		{Key: "CI_JOB_ID", Value: strconv.FormatInt(j.ID, 10), Public: true},
		{Key: "CI_JOB_NAME", Value: s.Name, Public: true},
		{Key: "CI_JOB_STAGE", Value: s.Stage, Public: true},
		{Key: "CI_JOB_TOKEN", Value: j.Token, Masked: true},
		{Key: "CI_PIPELINE_ID", Value: "1", Public: true},
		{Key: "CI_PROJECT_ID", Value: "1", Public: true},
		{Key: "CI_PROJECT_NAME", Value: "project", Public: true},
		{Key: "CI_PROJECT_PATH", Value: project, Public: true},
		{Key: "CI_SERVER_URL", Value: g.url, Public: true},
		{Key: "CI_REPOSITORY_URL", Value: repoURL, Public: false},
		{Key: "CI_COMMIT_SHA", Value: "1111111111111111111111111111111111111111", Public: true},
		{Key: "CI_COMMIT_REF_NAME", Value: "main", Public: true},
	}
	if !slices.ContainsFunc(s.Variables, func(v JobVariable) bool { return v.Key == "GIT_STRATEGY" }) {
		vars = append(vars, JobVariable{Key: "GIT_STRATEGY", Value: "none", Public: true})
	}
	vars = append(vars, s.Variables...)
	timeout := int(s.Timeout / time.Second)
	steps := []map[string]any{{"name": "script", "script": jobsNonNil(s.Script), "timeout": timeout, "when": "on_success", "allow_failure": false}}
	if len(s.AfterScript) > 0 {
		steps = append(steps, map[string]any{"name": "after_script", "script": s.AfterScript, "timeout": timeout, "when": "always", "allow_failure": true})
	}
	artifacts := make([]JobArtifact, 0, len(s.Artifacts))
	for _, a := range s.Artifacts {
		a.When = jobsOr(a.When, "on_success")
		a.Type = jobsOr(a.Type, "archive")
		a.Format = jobsOr(a.Format, "zip")
		a.Paths, a.Exclude = jobsNonNil(a.Paths), jobsNonNil(a.Exclude)
		artifacts = append(artifacts, a)
	}
	caches := make([]JobCache, 0, len(s.Cache))
	for _, c := range s.Cache {
		c.Policy = jobsOr(c.Policy, "pull-push")
		c.When = jobsOr(c.When, "on_success")
		c.Paths, c.FallbackKeys = jobsNonNil(c.Paths), jobsNonNil(c.FallbackKeys)
		caches = append(caches, c)
	}
	deps := []map[string]any{}
	for _, id := range s.Dependencies {
		d, ok := g.jobs.jobs[id]
		if !ok {
			continue
		}
		dep := map[string]any{"id": d.ID, "token": j.Token, "name": d.Spec.Name}
		if a := archiveOf(d); a != nil {
			dep["artifacts_file"] = map[string]any{"filename": a.Filename, "size": len(a.Data)}
		}
		deps = append(deps, dep)
	}
	image := map[string]any{"name": s.Image, "entrypoint": nil, "ports": []any{}, "pull_policy": nil}
	if s.Image == "" {
		image = map[string]any{"name": nil}
	}
	return map[string]any{
		"id":              j.ID,
		"token":           j.Token,
		"allow_git_fetch": true,
		"job_info": map[string]any{"id": j.ID, "name": s.Name, "stage": s.Stage, "project_id": 1, "project_name": "project",
			"time_in_queue_seconds": 0.5, "project_jobs_running_on_instance_runners_count": "0"},
		"git_info": map[string]any{"repo_url": repoURL, "repo_object_format": "sha1", "ref": "main", "sha": "1111111111111111111111111111111111111111",
			"before_sha": "0000000000000000000000000000000000000000", "ref_type": "branch",
			"refspecs": []string{"+refs/pipelines/1:refs/pipelines/1", "+refs/heads/main:refs/remotes/origin/main"}, "depth": 20},
		"runner_info":  map[string]any{"timeout": timeout, "runner_session_url": nil},
		"variables":    vars,
		"steps":        steps,
		"image":        image,
		"services":     []any{},
		"artifacts":    artifacts,
		"cache":        caches,
		"credentials":  []any{},
		"dependencies": deps,
		"features": map[string]any{"trace_sections": true, "token_mask_prefixes": []string{"glpat-", "glcbt-", "glrt-"},
			"failure_reasons": gitlabFailureReasons},
	}
}

func jobsNonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func jobsOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func archiveOf(j *GitLabJob) *JobArtifactUpload {
	for i := range j.Artifacts {
		if j.Artifacts[i].Type == "archive" {
			return &j.Artifacts[i]
		}
	}
	return nil
}

// jobByTokenLocked finds job id and checks its token: GitLab's authenticate_job!, which answers
// 403 for a wrong token and, where the job must be running, for a job that is not.
func (q *gitlabJobs) jobByTokenLocked(w http.ResponseWriter, id int64, token string, mustRun bool) *GitLabJob {
	q.init()
	j, ok := q.jobs[id]
	if !ok {
		gitlabMessage(w, http.StatusNotFound, "404 Not Found")
		return nil
	}
	if token == "" || token != j.Token {
		gitlabMessage(w, http.StatusForbidden, "403 Forbidden")
		return nil
	}
	if mustRun && j.State != "running" {
		w.Header().Set("Job-Status", j.State)
		gitlabMessage(w, http.StatusForbidden, "403 Forbidden - Job is not running")
		return nil
	}
	return j
}

// gitlabContentRangeRE is the Content-Range a runner sends with a trace patch: START-END, inclusive.
var gitlabContentRangeRE = regexp.MustCompile(`^(\d+)-(\d+)$`)

// handleTrace is PATCH /jobs/:id/trace: the patch must start where the trace ends (else 416
// with the trace's Range), and the answer says the job's state so the runner can stop.
func (g *GitLab) handleTrace(w http.ResponseWriter, r *http.Request, id int64) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		gitlabMessage(w, http.StatusBadRequest, "400 Bad request - unreadable body")
		return
	}
	q := &g.jobs
	q.mu.Lock()
	defer q.mu.Unlock()
	j := q.jobByTokenLocked(w, id, r.Header.Get("Job-Token"), true)
	if j == nil {
		return
	}
	m := gitlabContentRangeRE.FindStringSubmatch(r.Header.Get("Content-Range"))
	if m == nil {
		gitlabMessage(w, http.StatusBadRequest, "400 Bad request - Content-Range header is missing or invalid")
		return
	}
	start, _ := strconv.Atoi(m[1])
	end, _ := strconv.Atoi(m[2])
	w.Header().Set("Job-Status", j.State)
	w.Header().Set("X-GitLab-Trace-Update-Interval", "3")
	if start != len(j.Trace) || end-start+1 != len(data) {
		w.Header().Set("Range", fmt.Sprintf("0-%d", len(j.Trace)))
		gitlabMessage(w, http.StatusRequestedRangeNotSatisfiable, "416 Range Not Satisfiable")
		return
	}
	j.Trace = append(j.Trace, data...)
	q.notifyLocked()
	w.Header().Set("Range", fmt.Sprintf("0-%d", len(j.Trace)))
	w.WriteHeader(http.StatusAccepted)
}

// handleUpdateJob is PUT /jobs/:id: the runner's final state (or a keep-alive with state
// running). A failure_reason GitLab does not know is a 400, as Grape's values: check gives.
func (g *GitLab) handleUpdateJob(w http.ResponseWriter, r *http.Request, id int64) {
	var body struct {
		Token         string `json:"token"`
		State         string `json:"state"`
		FailureReason string `json:"failure_reason"`
		Checksum      string `json:"checksum"`
		ExitCode      int    `json:"exit_code"`
		Output        struct {
			Checksum string `json:"checksum"`
			Bytesize int    `json:"bytesize"`
		} `json:"output"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		gitlabMessage(w, http.StatusBadRequest, "400 Bad request - invalid JSON body")
		return
	}
	if body.FailureReason != "" && !slices.Contains(gitlabFailureReasons, body.FailureReason) {
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": "failure_reason does not have a valid value"})
		return
	}
	switch body.State {
	case "", "running", "success", "failed":
	default:
		gitlabJSON(w, http.StatusBadRequest, map[string]any{"error": "state does not have a valid value"})
		return
	}
	q := &g.jobs
	q.mu.Lock()
	defer q.mu.Unlock()
	j := q.jobByTokenLocked(w, id, body.Token, false)
	if j == nil {
		return
	}
	if j.State != "running" {
		w.Header().Set("Job-Status", j.State)
		gitlabMessage(w, http.StatusForbidden, "403 Forbidden - Job is not running")
		return
	}
	if body.State == "success" || body.State == "failed" {
		j.State, j.ExitCode = body.State, body.ExitCode
		if body.State == "failed" {
			j.FailureReason = jobsOr(body.FailureReason, "unknown_failure")
		}
		j.Checksum = jobsOr(body.Output.Checksum, body.Checksum)
		j.Bytesize = body.Output.Bytesize
		q.notifyLocked()
	}
	w.Header().Set("Job-Status", j.State)
	w.WriteHeader(http.StatusOK)
}

// handleUploadArtifacts is POST /jobs/:id/artifacts (multipart field "file"), while the job runs.
func (g *GitLab) handleUploadArtifacts(w http.ResponseWriter, r *http.Request, id int64) {
	q := &g.jobs
	q.mu.Lock()
	j := q.jobByTokenLocked(w, id, r.Header.Get("Job-Token"), true)
	q.mu.Unlock()
	if j == nil {
		return
	}
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" || params["boundary"] == "" {
		gitlabMessage(w, http.StatusBadRequest, "400 Bad request - file is missing")
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		gitlabMessage(w, http.StatusBadRequest, "400 Bad request - file is missing")
		return
	}
	up := JobArtifactUpload{
		Type:     jobsOr(r.URL.Query().Get("artifact_type"), "archive"),
		Format:   jobsOr(r.URL.Query().Get("artifact_format"), "zip"),
		ExpireIn: r.URL.Query().Get("expire_in"),
	}
	found := false
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			gitlabMessage(w, http.StatusBadRequest, "400 Bad request - invalid multipart body")
			return
		}
		if p.FormName() != "file" {
			continue
		}
		if up.Data, err = io.ReadAll(io.LimitReader(p, 64<<20)); err != nil {
			gitlabMessage(w, http.StatusBadRequest, "400 Bad request - invalid multipart body")
			return
		}
		up.Filename, found = p.FileName(), true
	}
	if !found {
		gitlabMessage(w, http.StatusBadRequest, "400 Bad request - file is missing")
		return
	}
	q.mu.Lock()
	j.Artifacts = append(j.Artifacts, up)
	q.notifyLocked()
	q.mu.Unlock()
	gitlabJSON(w, http.StatusCreated, map[string]any{"id": j.ID, "name": j.Spec.Name, "status": j.State})
}

// handleDownloadArtifacts is GET /jobs/:id/artifacts: job id's archive, for a job that lists
// it in its dependencies and shows its own running job's token (as the runner does).
func (g *GitLab) handleDownloadArtifacts(w http.ResponseWriter, r *http.Request, id int64) {
	token := r.Header.Get("Job-Token")
	q := &g.jobs
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	j, ok := q.jobs[id]
	if !ok {
		gitlabMessage(w, http.StatusNotFound, "404 Not Found")
		return
	}
	allowed := token != "" && token == j.Token
	for _, other := range q.jobs {
		if token != "" && other.Token == token && other.State == "running" && slices.Contains(other.Spec.Dependencies, id) {
			allowed = true
		}
	}
	if !allowed {
		gitlabMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	a := archiveOf(j)
	if a == nil {
		gitlabMessage(w, http.StatusNotFound, "404 Not Found")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", a.Filename))
	w.Header().Set("Content-Length", strconv.Itoa(len(a.Data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.Data)
}

// TraceChecksum is the checksum gitlab-runner reports for a trace on PUT /jobs/:id
// ("crc32:" and the IEEE CRC-32 in lower-case hex, trace.go's checksum).
func TraceChecksum(trace []byte) string {
	return fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(trace))
}

// traceHasLine reports whether trace has line as a whole line, ignoring ANSI colour codes and
// carriage returns the runner adds.
func traceHasLine(trace []byte, line string) bool {
	clean := gitlabANSIRE.ReplaceAllString(string(trace), "")
	for _, l := range strings.Split(clean, "\n") {
		if strings.TrimRight(l, "\r") == line {
			return true
		}
	}
	return false
}

var gitlabANSIRE = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]|\r`)

// TraceHasLine reports whether the job's trace holds line as a whole line (ANSI colour codes
// and the runner's section markers' carriage returns removed).
func (j GitLabJob) TraceHasLine(line string) bool { return traceHasLine(j.Trace, line) }
