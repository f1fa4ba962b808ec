package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// CodeBuild is an in-process stand-in for AWS CodeBuild's StartBuild, BatchGetBuilds and
// StopBuild over the awsJson1_1 protocol (X-Amz-Target: CodeBuild_20161006.<Op>), for the real
// aws-sdk-go-v2 client pointed at it with AWS_ENDPOINT_URL_CODEBUILD=URL().
//
// Every BatchGetBuilds call moves a build one phase on (SUBMITTED, QUEUED, PROVISIONING,
// DOWNLOAD_SOURCE, INSTALL, PRE_BUILD, BUILD, POST_BUILD, UPLOAD_ARTIFACTS, FINALIZING,
// COMPLETED), writing its script's log lines to Logs as it goes, until it reaches the script's
// terminal status. Safe for concurrent use.
type CodeBuild struct {
	srv  *httptest.Server
	logs *Logs

	mu       sync.Mutex
	projects map[string]bool
	builds   map[string]*cbBuild
	order    []string
	calls    map[string]int
	throttle map[string]int
	script   func(StartedBuild) BuildScript
}

// StartedBuild is what a StartBuild call asked for.
type StartedBuild struct {
	ID, Project string
	// SourceType and SourceLocation are the overrides (S3, bucket/key).
	SourceType, SourceLocation string
	Buildspec                  string
	Env                        map[string]string
	TimeoutMinutes             int
}

// BuildScript says how a build goes.
type BuildScript struct {
	// Status is the terminal buildStatus: SUCCEEDED (default), FAILED, FAULT, TIMED_OUT. A build
	// stopped with StopBuild ends STOPPED whatever its script.
	Status string
	// FailPhase is the phase that gets Status when it is not SUCCEEDED; default BUILD.
	FailPhase string
	// Context is the failing phase's "statusCode: message"-style reason.
	Code, Message string
	// Lines are written to the log while the build is in BUILD (one call's worth each poll).
	Lines []string
	// Hold keeps the build IN_PROGRESS in BUILD until StopBuild.
	Hold bool
	// NoLogs leaves logs.groupName empty (a project that logs to S3 only).
	NoLogs bool
	// OnSuccess runs when the build reaches SUCCEEDED (e.g. a "push" into a registry); an error
	// turns the build FAILED in POST_BUILD with the error as the reason.
	OnSuccess func(StartedBuild) error
}

var cbPhases = []string{"SUBMITTED", "QUEUED", "PROVISIONING", "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD",
	"BUILD", "POST_BUILD", "UPLOAD_ARTIFACTS", "FINALIZING", "COMPLETED"}

type cbBuild struct {
	started StartedBuild
	script  BuildScript
	number  int64
	phase   int    // index into cbPhases
	status  string // IN_PROGRESS or terminal
	phases  []map[string]any
	stream  string
	pending []string // log lines not yet written
}

// CodeBuildLogGroup is the log group every stand-in build writes to.
const CodeBuildLogGroup = "/aws/codebuild/"

// NewCodeBuild starts the stand-in on a random 127.0.0.1 port, writing build logs into logs
// (which may be nil: no log stream is then announced). Close it when done.
func NewCodeBuild(logs *Logs) *CodeBuild {
	c := &CodeBuild{logs: logs, projects: map[string]bool{}, builds: map[string]*cbBuild{},
		calls: map[string]int{}, throttle: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	return c
}

// URL is the endpoint for AWS_ENDPOINT_URL_CODEBUILD.
func (c *CodeBuild) URL() string { return c.srv.URL }

// Close stops the server.
func (c *CodeBuild) Close() { c.srv.Close() }

// AddProject makes StartBuild accept project name.
func (c *CodeBuild) AddProject(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.projects[name] = true
}

// Script sets how every following build goes (nil: succeed with no lines).
func (c *CodeBuild) Script(f func(StartedBuild) BuildScript) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.script = f
}

// Throttle makes the next n calls of op (StartBuild, BatchGetBuilds, StopBuild) answer
// ThrottlingException.
func (c *CodeBuild) Throttle(op string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.throttle[op] += n
}

// Calls returns how many requests named op were received, throttled ones included.
func (c *CodeBuild) Calls(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[op]
}

// Builds returns every started build, oldest first, with its current buildStatus.
func (c *CodeBuild) Builds() []struct {
	StartedBuild
	Status string
} {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []struct {
		StartedBuild
		Status string
	}
	for _, id := range c.order {
		b := c.builds[id]
		out = append(out, struct {
			StartedBuild
			Status string
		}{b.started, b.status})
	}
	return out
}

func (c *CodeBuild) serve(w http.ResponseWriter, r *http.Request) {
	op, body, aerr := readAWSJSON(r, "CodeBuild_20161006.")
	if aerr != nil {
		writeAWSJSONError(w, aerr)
		return
	}
	c.mu.Lock()
	c.calls[op]++
	var out any
	if c.throttle[op] > 0 {
		c.throttle[op]--
		aerr = &awsJSONError{status: http.StatusBadRequest, code: "ThrottlingException", message: "Rate exceeded"}
	} else {
		switch op {
		case "StartBuild":
			out, aerr = c.startBuild(body)
		case "BatchGetBuilds":
			out, aerr = c.batchGetBuilds(body)
		case "StopBuild":
			out, aerr = c.stopBuild(body)
		default:
			aerr = &awsJSONError{status: http.StatusBadRequest, code: "UnknownOperationException", message: op}
		}
	}
	c.mu.Unlock()
	if aerr != nil {
		writeAWSJSONError(w, aerr)
		return
	}
	writeAWSJSON(w, out)
}

func (c *CodeBuild) startBuild(body []byte) (any, *awsJSONError) {
	var in struct {
		ProjectName                  string
		SourceTypeOverride           string
		SourceLocationOverride       string
		BuildspecOverride            string
		TimeoutInMinutesOverride     int
		EnvironmentVariablesOverride []struct{ Name, Value, Type string }
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "SerializationException", message: err.Error()}
	}
	if !c.projects[in.ProjectName] {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "ResourceNotFoundException",
			message: "Project cannot be found: arn:aws:codebuild:us-east-2:123456789012:project/" + in.ProjectName}
	}
	if in.SourceTypeOverride != "" && in.SourceTypeOverride != "S3" {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "InvalidInputException", message: "unexpected source type " + in.SourceTypeOverride}
	}
	if in.TimeoutInMinutesOverride != 0 && (in.TimeoutInMinutesOverride < 5 || in.TimeoutInMinutesOverride > 2160) {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "InvalidInputException",
			message: "1 validation error detected: Value at 'timeoutInMinutesOverride' failed to satisfy constraint: Member must have value between 5 and 2160"}
	}
	n := int64(len(c.order) + 1)
	id := fmt.Sprintf("%s:%08d-0000-4000-8000-%012d", in.ProjectName, n, n)
	sb := StartedBuild{ID: id, Project: in.ProjectName, SourceType: in.SourceTypeOverride, SourceLocation: in.SourceLocationOverride,
		Buildspec: in.BuildspecOverride, Env: map[string]string{}, TimeoutMinutes: in.TimeoutInMinutesOverride}
	for _, e := range in.EnvironmentVariablesOverride {
		sb.Env[e.Name] = e.Value
	}
	script := BuildScript{}
	if c.script != nil {
		script = c.script(sb)
	}
	if script.Status == "" {
		script.Status = "SUCCEEDED"
	}
	if script.FailPhase == "" {
		script.FailPhase = "BUILD"
	}
	b := &cbBuild{started: sb, script: script, number: n, status: "IN_PROGRESS", stream: fmt.Sprintf("%08d-0000-4000-8000-%012d", n, n)}
	b.phases = []map[string]any{{"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED", "durationInSeconds": 0}}
	c.builds[id] = b
	c.order = append(c.order, id)
	return map[string]any{"build": c.buildJSON(b)}, nil
}

// advance moves b one phase on and writes its log lines.
func (c *CodeBuild) advance(b *cbBuild) {
	if b.status != "IN_PROGRESS" {
		return
	}
	cur := cbPhases[b.phase]
	if cur == "BUILD" && b.script.Hold {
		c.log(b, "[Container] still building")
		return
	}
	if cur == "BUILD" && len(b.pending) > 0 {
		c.log(b, b.pending...)
		b.pending = nil
	}
	// Finish the current phase.
	last := b.phases[len(b.phases)-1]
	if cur == b.script.FailPhase && b.script.Status != "SUCCEEDED" {
		c.fail(b, b.script.Status, b.script.Code, b.script.Message)
		return
	}
	if cur == "POST_BUILD" && b.script.Status == "SUCCEEDED" && b.script.OnSuccess != nil {
		if err := b.script.OnSuccess(b.started); err != nil {
			c.log(b, "[Container] push failed: "+err.Error())
			c.fail(b, "FAILED", "COMMAND_EXECUTION_ERROR", err.Error())
			return
		}
	}
	last["phaseStatus"] = "SUCCEEDED"
	b.phase++
	next := cbPhases[b.phase]
	if next == "COMPLETED" {
		b.status = b.script.Status
		b.phases = append(b.phases, map[string]any{"phaseType": "COMPLETED"})
		return
	}
	b.phases = append(b.phases, map[string]any{"phaseType": next, "phaseStatus": "IN_PROGRESS"})
	if next == "INSTALL" || next == "PRE_BUILD" || next == "BUILD" || next == "POST_BUILD" {
		c.log(b, "[Container] Entering phase "+next)
	}
	if next == "BUILD" {
		b.pending = append([]string(nil), b.script.Lines...)
	}
}

// fail ends b with status, marking its current phase so and skipping to COMPLETED.
func (c *CodeBuild) fail(b *cbBuild, status, code, message string) {
	last := b.phases[len(b.phases)-1]
	last["phaseStatus"] = status
	if code != "" || message != "" {
		last["contexts"] = []map[string]string{{"statusCode": code, "message": message}}
	}
	if status != "STOPPED" {
		c.log(b, fmt.Sprintf("[Container] Phase complete: %s State: %s", cbPhases[b.phase], status))
	}
	b.phases = append(b.phases, map[string]any{"phaseType": "FINALIZING", "phaseStatus": "SUCCEEDED"},
		map[string]any{"phaseType": "COMPLETED"})
	b.status = status
}

func (c *CodeBuild) log(b *cbBuild, lines ...string) {
	if c.logs == nil || b.script.NoLogs {
		return
	}
	c.logs.Append(CodeBuildLogGroup+b.started.Project, b.stream, lines...)
}

func (c *CodeBuild) batchGetBuilds(body []byte) (any, *awsJSONError) {
	var in struct{ Ids []string }
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "SerializationException", message: err.Error()}
	}
	builds, missing := []any{}, []string{}
	for _, id := range in.Ids {
		b, ok := c.builds[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		c.advance(b)
		builds = append(builds, c.buildJSON(b))
	}
	return map[string]any{"builds": builds, "buildsNotFound": missing}, nil
}

func (c *CodeBuild) stopBuild(body []byte) (any, *awsJSONError) {
	var in struct{ Id string }
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "SerializationException", message: err.Error()}
	}
	b, ok := c.builds[in.Id]
	if !ok {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "ResourceNotFoundException", message: "Build " + in.Id + " not found"}
	}
	if b.status == "IN_PROGRESS" {
		c.log(b, "[Container] Build was stopped")
		c.fail(b, "STOPPED", "BUILD_STOPPED", "build was stopped")
	}
	return map[string]any{"build": c.buildJSON(b)}, nil
}

func (c *CodeBuild) buildJSON(b *cbBuild) map[string]any {
	cur := cbPhases[b.phase]
	if b.status != "IN_PROGRESS" {
		cur = "COMPLETED"
	}
	out := map[string]any{
		"id":            b.started.ID,
		"arn":           "arn:aws:codebuild:us-east-2:123456789012:build/" + b.started.ID,
		"buildNumber":   b.number,
		"projectName":   b.started.Project,
		"buildStatus":   b.status,
		"currentPhase":  cur,
		"buildComplete": b.status != "IN_PROGRESS",
		"startTime":     float64(time.Now().Unix()),
		"phases":        b.phases,
	}
	// CodeBuild names the log stream once the build is provisioned.
	if c.logs != nil && !b.script.NoLogs && b.phase >= 2 {
		group := CodeBuildLogGroup + b.started.Project
		out["logs"] = map[string]any{"groupName": group, "streamName": b.stream,
			"deepLink": "https://console.aws.amazon.com/cloudwatch/home?region=us-east-2#logEvent:group=" + group + ";stream=" + b.stream}
	}
	return out
}
