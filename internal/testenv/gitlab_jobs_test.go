package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// jobsDo sends one request the way gitlab-runner's network client does and returns status,
// headers and body.
func jobsDo(t *testing.T, c *http.Client, method, url, ct string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func jobsJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jobResponse is the part of gitlab-runner 17.9.3's common.JobResponse the runner acts on, in
// its JSON spelling: the payload must decode into it with these types.
type jobResponse struct {
	ID      int64                        `json:"id"`
	Token   string                       `json:"token"`
	JobInfo struct{ Name, Stage string } `json:"job_info"`
	GitInfo struct {
		RepoURL string `json:"repo_url"`
		Sha     string `json:"sha"`
		Depth   int    `json:"depth"`
	} `json:"git_info"`
	RunnerInfo struct {
		Timeout int `json:"timeout"`
	} `json:"runner_info"`
	Variables []JobVariable `json:"variables"`
	Steps     []struct {
		Name    string   `json:"name"`
		Script  []string `json:"script"`
		Timeout int      `json:"timeout"`
		When    string   `json:"when"`
	} `json:"steps"`
	Image struct {
		Name string `json:"name"`
	} `json:"image"`
	Artifacts    []JobArtifact `json:"artifacts"`
	Cache        []JobCache    `json:"cache"`
	Dependencies []struct {
		ID            int64  `json:"id"`
		Token         string `json:"token"`
		ArtifactsFile struct {
			Filename string `json:"filename"`
			Size     int64  `json:"size"`
		} `json:"artifacts_file"`
	} `json:"dependencies"`
	Features struct {
		FailureReasons []string `json:"failure_reasons"`
	} `json:"features"`
}

func TestGitLabJobsLifecycle(t *testing.T) {
	g, c := gitlabStart(t, GitLabOptions{})
	rn := g.AddRunner(GitLabRunner{RunUntagged: true})
	api := g.URL() + "/api/v4"
	poll := func(token string) (int, http.Header, []byte) {
		return jobsDo(t, c, "POST", api+"/jobs/request", "application/json",
			jobsJSON(t, map[string]any{"token": token, "system_id": "s_0a1b2c3d4e5f", "info": map[string]any{"executor": "custom"}}), nil)
	}

	if code, _, _ := poll("glrt-wrongwrongwrongwrong"); code != http.StatusForbidden {
		t.Errorf("jobs/request with an unknown token = %d, want 403", code)
	}
	code, hdr, _ := poll(rn.Token)
	if code != http.StatusNoContent || hdr.Get("X-GitLab-Last-Update") == "" {
		t.Fatalf("empty queue = %d (last update %q), want 204 with X-GitLab-Last-Update", code, hdr.Get("X-GitLab-Last-Update"))
	}
	if got := g.Runners()[0].SystemIDs; len(got) != 1 || got[0] != "s_0a1b2c3d4e5f" {
		t.Errorf("runner managers after a poll = %v", got)
	}

	tagged := g.EnqueueJob(JobSpec{Name: "tagged", Tags: []string{"gpu"}, Script: []string{"true"}})
	id := g.EnqueueJob(JobSpec{Name: "build", Script: []string{"echo hello"}, Image: "alpine:3",
		Artifacts: []JobArtifact{{Paths: []string{"out/"}}}, Cache: []JobCache{{Key: "deps", Paths: []string{"vendor/"}}},
		Variables: []JobVariable{{Key: "FOO", Value: "bar", Public: true}}})
	code, _, body := poll(rn.Token)
	if code != http.StatusCreated {
		t.Fatalf("jobs/request with a job queued = %d %s", code, body)
	}
	var jr jobResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&jr); err != nil {
		t.Fatalf("payload does not decode as gitlab-runner's JobResponse: %v\n%s", err, body)
	}
	if jr.ID != id || !strings.HasPrefix(jr.Token, "glcbt-") || jr.JobInfo.Name != "build" || jr.Image.Name != "alpine:3" ||
		jr.RunnerInfo.Timeout != 3600 || len(jr.Steps) != 1 || jr.Steps[0].Name != "script" || jr.Steps[0].Script[0] != "echo hello" ||
		jr.GitInfo.RepoURL == "" || len(jr.Features.FailureReasons) == 0 {
		t.Errorf("payload = %+v", jr)
	}
	if len(jr.Artifacts) != 1 || jr.Artifacts[0].Type != "archive" || jr.Artifacts[0].Format != "zip" || jr.Artifacts[0].When != "on_success" ||
		len(jr.Cache) != 1 || jr.Cache[0].Key != "deps" || jr.Cache[0].Policy != "pull-push" {
		t.Errorf("artifacts/cache = %+v %+v", jr.Artifacts, jr.Cache)
	}
	vars := map[string]string{}
	for _, v := range jr.Variables {
		vars[v.Key] = v.Value
	}
	if vars["FOO"] != "bar" || vars["CI_JOB_TOKEN"] != jr.Token || vars["GIT_STRATEGY"] != "none" || vars["CI_JOB_ID"] == "" {
		t.Errorf("variables = %v", vars)
	}
	if j, _ := g.Job(id); j.State != "running" || j.RunnerID != rn.ID || j.SystemID != "s_0a1b2c3d4e5f" {
		t.Errorf("taken job = %+v", j)
	}
	if j, _ := g.Job(tagged); j.State != "pending" {
		t.Errorf("a job tagged gpu went to an untagged runner: %s", j.State)
	}
	if code, _, _ := poll(rn.Token); code != http.StatusNoContent {
		t.Errorf("poll with only a job for other tags = %d, want 204", code)
	}

	// Trace: appended in order; a patch that does not start at the end is 416 with the Range to resend from.
	patch := func(tok, rng, data string) (int, http.Header) {
		code, hdr, _ := jobsDo(t, c, "PATCH", api+"/jobs/"+itoa(id)+"/trace?debug_trace=false", "text/plain", []byte(data),
			map[string]string{"JOB-TOKEN": tok, "Content-Range": rng})
		return code, hdr
	}
	if code, _ := patch("glcbt-wrong", "0-5", "hello\n"); code != http.StatusForbidden {
		t.Errorf("trace with a wrong job token = %d, want 403", code)
	}
	code, hdr = patch(jr.Token, "0-5", "hello\n")
	if code != http.StatusAccepted || hdr.Get("Range") != "0-6" || hdr.Get("Job-Status") != "running" {
		t.Errorf("trace patch = %d Range %q Job-Status %q", code, hdr.Get("Range"), hdr.Get("Job-Status"))
	}
	code, hdr = patch(jr.Token, "3-5", "lo\n")
	if code != http.StatusRequestedRangeNotSatisfiable || hdr.Get("Range") != "0-6" {
		t.Errorf("overlapping patch = %d Range %q, want 416 0-6", code, hdr.Get("Range"))
	}
	if code, _ = patch(jr.Token, "6-12", "world!\n"); code != http.StatusAccepted {
		t.Errorf("second patch = %d", code)
	}

	// Artifacts: upload while running; a dependent job downloads them with its own token.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	fw, _ := mw.CreateFormFile("file", "artifacts.zip")
	_, _ = fw.Write([]byte("PK-zip-bytes"))
	mw.Close()
	code, _, body = jobsDo(t, c, "POST", api+"/jobs/"+itoa(id)+"/artifacts?artifact_format=zip&artifact_type=archive&expire_in=1+day",
		mw.FormDataContentType(), mp.Bytes(), map[string]string{"JOB-TOKEN": jr.Token})
	if code != http.StatusCreated {
		t.Fatalf("artifact upload = %d %s", code, body)
	}

	// Final state: an unknown failure reason is refused; success is recorded with the checksum.
	put := func(v map[string]any) (int, http.Header) {
		code, hdr, _ := jobsDo(t, c, "PUT", api+"/jobs/"+itoa(id), "application/json", jobsJSON(t, v), nil)
		return code, hdr
	}
	if code, _ := put(map[string]any{"token": jr.Token, "state": "failed", "failure_reason": "made_up"}); code != http.StatusBadRequest {
		t.Errorf("PUT with an unknown failure_reason = %d, want 400", code)
	}
	trace := []byte("hello\nworld!\n")
	if code, hdr := put(map[string]any{"token": jr.Token, "state": "success", "output": map[string]any{"checksum": TraceChecksum(trace), "bytesize": len(trace)}}); code != http.StatusOK || hdr.Get("Job-Status") != "success" {
		t.Errorf("PUT success = %d Job-Status %q", code, hdr.Get("Job-Status"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	j, err := g.WaitJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != "success" || string(j.Trace) != string(trace) || j.Checksum != TraceChecksum(trace) || j.Bytesize != len(trace) ||
		!j.TraceHasLine("world!") || len(j.Artifacts) != 1 || j.Artifacts[0].Filename != "artifacts.zip" || j.Artifacts[0].ExpireIn != "1 day" {
		t.Errorf("finished job = %+v", j)
	}
	if code, hdr = patch(jr.Token, "13-14", "x\n"); code != http.StatusForbidden || hdr.Get("Job-Status") != "success" {
		t.Errorf("trace after the job finished = %d Job-Status %q, want 403 success", code, hdr.Get("Job-Status"))
	}

	dep := g.EnqueueJob(JobSpec{Name: "deploy", Dependencies: []int64{id}})
	_, _, body = poll(rn.Token)
	var dr jobResponse
	if err := json.Unmarshal(body, &dr); err != nil || dr.ID != dep || len(dr.Dependencies) != 1 ||
		dr.Dependencies[0].ID != id || dr.Dependencies[0].Token != dr.Token || dr.Dependencies[0].ArtifactsFile.Size != int64(len("PK-zip-bytes")) {
		t.Fatalf("dependent job payload = %+v (%v)", dr, err)
	}
	code, _, body = jobsDo(t, c, "GET", api+"/jobs/"+itoa(id)+"/artifacts", "", nil, map[string]string{"JOB-TOKEN": dr.Token})
	if code != http.StatusOK || string(body) != "PK-zip-bytes" {
		t.Errorf("artifact download = %d %q", code, body)
	}
	if code, _, _ = jobsDo(t, c, "GET", api+"/jobs/"+itoa(id)+"/artifacts", "", nil, map[string]string{"JOB-TOKEN": "glcbt-nope"}); code != http.StatusForbidden {
		t.Errorf("artifact download with a stranger's token = %d, want 403", code)
	}
	if code, _ = jobsDoPut(t, c, api, dep, dr.Token, "failed", "script_failure"); code != http.StatusOK {
		t.Errorf("PUT failed = %d", code)
	}
	if j, _ := g.Job(dep); j.State != "failed" || j.FailureReason != "script_failure" {
		t.Errorf("failed job = %s %q", j.State, j.FailureReason)
	}
}

func jobsDoPut(t *testing.T, c *http.Client, api string, id int64, tok, state, reason string) (int, http.Header) {
	t.Helper()
	code, hdr, _ := jobsDo(t, c, "PUT", api+"/jobs/"+itoa(id), "application/json",
		jobsJSON(t, map[string]any{"token": tok, "state": state, "failure_reason": reason}), nil)
	return code, hdr
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
