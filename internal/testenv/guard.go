package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Guard makes stand-ins read-only: once armed, every request that would change the system
// behind a stand-in (GitLab POST/PUT/DELETE but runners/verify, an AWS write action, an S3
// PUT/POST/DELETE) is refused with an error the product reports, and recorded, so a test of
// plan can fail on any mutating request the product sent.
type Guard struct {
	mu      sync.Mutex
	armed   bool
	refused []string
}

// Arm starts refusing mutating requests.
func (g *Guard) Arm() {
	g.mu.Lock()
	g.armed, g.refused = true, nil
	g.mu.Unlock()
}

// Disarm lets mutating requests through again.
func (g *Guard) Disarm() {
	g.mu.Lock()
	g.armed = false
	g.mu.Unlock()
}

// Refused returns the mutating requests refused since Arm ("ssm PutParameter", "gitlab POST
// /api/v4/user/runners").
func (g *Guard) Refused() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.refused...)
}

// wrap returns h behind the guard; classify names the operation of a mutating request and
// returns "" for a read.
func (g *Guard) wrap(service string, h http.Handler, classify func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		armed := g.armed
		g.mu.Unlock()
		if armed {
			if op := classify(r); op != "" {
				g.mu.Lock()
				g.refused = append(g.refused, service+" "+op)
				g.mu.Unlock()
				http.Error(w, fmt.Sprintf("read-only stand-in (a plan must not change anything): %s %s refused", service, op), http.StatusForbidden)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// awsWrites are the prefixes of AWS action names that change something (SSM PutParameter,
// ECS RunTask, CodeBuild StartBuild, ECR PutImage, …). Describe*, Get*, List*, BatchGet*,
// Simulate* and the like are reads.
var awsWrites = []string{"Put", "Delete", "Create", "Start", "Stop", "Run", "Update", "Tag", "Untag",
	"Register", "Deregister", "Upload", "Complete", "Initiate", "Modify", "Attach", "Detach", "Label",
	"BatchDelete", "Remove", "Add", "Set", "Reset", "Authorize", "Revoke"}

func awsJSONWrite(r *http.Request) string {
	target := r.Header.Get("X-Amz-Target")
	_, op, _ := strings.Cut(target, ".")
	if r.Method == http.MethodPost && op == "" {
		// The query protocol (EC2, IAM) names the action in the form body; put the body back
		// for the stand-in.
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		q, _ := url.ParseQuery(string(b))
		op = q.Get("Action")
	}
	for _, p := range awsWrites {
		if strings.HasPrefix(op, p) {
			return op
		}
	}
	return ""
}

func s3Write(r *http.Request) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return ""
	}
	return r.Method + " " + r.URL.Path
}

func gitlabWrite(r *http.Request) string {
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return ""
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/api/v4/runners/verify"):
		return "" // POST, but only a check of a token
	}
	return r.Method + " " + r.URL.Path
}

// GuardAll puts every stand-in of the stack behind one Guard, which it returns disarmed.
func (s *Stack) GuardAll() *Guard {
	g := &Guard{}
	s.SSM.srv.Config.Handler = g.wrap("ssm", s.SSM.srv.Config.Handler, awsJSONWrite)
	s.S3.srv.Config.Handler = g.wrap("s3", s.S3.srv.Config.Handler, s3Write)
	s.GitLab.srv.Handler = g.wrap("gitlab", s.GitLab.srv.Handler, gitlabWrite)
	if s.ECS != nil {
		s.ECS.srv.Config.Handler = g.wrap("ecs", s.ECS.srv.Config.Handler, awsJSONWrite)
		s.EC2.srv.Config.Handler = g.wrap("ec2", s.EC2.srv.Config.Handler, awsJSONWrite)
		s.ECR.srv.Config.Handler = g.wrap("ecr", s.ECR.srv.Config.Handler, awsJSONWrite)
		s.IAM.srv.Config.Handler = g.wrap("iam", s.IAM.srv.Config.Handler, awsJSONWrite)
	}
	return g
}
