package testenv

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// awsAccount and awsPrincipal are what the ECS, ECR, EC2 and IAM stand-ins pretend the account
// and the caller are, as they appear in ARNs and in access-denied messages (the SSM stand-in's).
const (
	awsAccount   = ssmAccount
	awsPrincipal = ssmPrincipal
)

// ECS is an in-process stand-in for the read side of Amazon ECS that speaks the awsJson1_1
// protocol (POST /, X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Op>, Content-Type
// application/x-amz-json-1.1), so the real aws-sdk-go-v2 ECS client can be pointed at it with
// AWS_ENDPOINT_URL_ECS=URL().
//
// Operations: DescribeClusters (a missing cluster comes back under failures with reason
// MISSING, as ECS does) and DescribeTaskDefinition (family = latest ACTIVE revision,
// family:revision, or ARN; a missing one is ClientException "Unable to describe task
// definition."), and RunTask, DescribeTasks and StopTask (ecs_tasks.go: tasks that run what an
// ECSLauncher starts, such as real sshd processes). Deny makes an operation answer
// AccessDeniedException. Safe for concurrent use.
type ECS struct {
	srv *httptest.Server

	mu       sync.Mutex
	clusters map[string]ECSCluster
	taskDefs map[string][]ECSTaskDefinition // family -> revisions in order
	denied   map[string]bool
	calls    map[string]int
	tasks    ecsTasks // RunTask, DescribeTasks, StopTask: ecs_tasks.go
}

// ECSCluster is a cluster as DescribeClusters reports it.
type ECSCluster struct {
	Name              string
	Status            string // ACTIVE (default), INACTIVE, ...
	CapacityProviders []string
	// DefaultStrategy is the default capacity provider strategy RunTask uses when the caller
	// gives no launch type (GitLab's Fargate driver gives none).
	DefaultStrategy []ECSStrategyItem
}

// ECSStrategyItem is one capacity provider strategy entry.
type ECSStrategyItem struct {
	CapacityProvider string
	Weight, Base     int32
}

// ECSTaskDefinition is a task definition revision as DescribeTaskDefinition reports it.
type ECSTaskDefinition struct {
	Family   string
	Revision int32  // 0: the next revision of the family
	Status   string // ACTIVE (default) or INACTIVE
	// NetworkMode is awsvpc, bridge, host or none.
	NetworkMode string
	// RequiresCompatibilities is what the registration asked for (FARGATE, EC2);
	// Compatibilities (what ECS found the definition compatible with) is derived from it.
	RequiresCompatibilities []string
	TaskRoleARN             string
	ExecutionRoleARN        string
	CPU, Memory             string
	Containers              []ECSContainer
}

// ECSContainer is one container definition.
type ECSContainer struct {
	Name      string
	Image     string
	Ports     []int32 // containerPort of each tcp port mapping
	LogDriver string  // logConfiguration.logDriver, e.g. awslogs; empty for none
}

// NewECS starts the stand-in on a random 127.0.0.1 port. Close it when done.
func NewECS() *ECS {
	e := &ECS{clusters: map[string]ECSCluster{}, taskDefs: map[string][]ECSTaskDefinition{},
		denied: map[string]bool{}, calls: map[string]int{}}
	e.srv = httptest.NewServer(e.Handler())
	return e
}

// URL is the endpoint to put in AWS_ENDPOINT_URL_ECS.
func (e *ECS) URL() string { return e.srv.URL }

// Close stops the server.
func (e *ECS) Close() { e.srv.Close() }

// PutCluster creates or replaces a cluster.
func (e *ECS) PutCluster(c ECSCluster) {
	if c.Status == "" {
		c.Status = "ACTIVE"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clusters[c.Name] = c
}

// RegisterTaskDefinition adds a revision (the next one when td.Revision is 0) and returns its
// family:revision.
func (e *ECS) RegisterTaskDefinition(td ECSTaskDefinition) string {
	if td.Status == "" {
		td.Status = "ACTIVE"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	revs := e.taskDefs[td.Family]
	if td.Revision == 0 {
		td.Revision = int32(len(revs)) + 1
	}
	e.taskDefs[td.Family] = append(revs, td)
	return fmt.Sprintf("%s:%d", td.Family, td.Revision)
}

// TaskDefinition returns a copy of the task definition name resolves to (family, family:revision
// or ARN), as a test's base for a new revision.
func (e *ECS) TaskDefinition(name string) (ECSTaskDefinition, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	td := e.findTaskDef(name)
	if td == nil {
		return ECSTaskDefinition{}, false
	}
	c := *td
	c.RequiresCompatibilities = append([]string(nil), td.RequiresCompatibilities...)
	c.Containers = append([]ECSContainer(nil), td.Containers...)
	for i := range c.Containers {
		c.Containers[i].Ports = append([]int32(nil), td.Containers[i].Ports...)
	}
	return c, true
}

// Deny makes every call of op (e.g. "DescribeClusters") fail with AccessDeniedException, as
// when the caller's policy does not allow ecs:<op>.
func (e *ECS) Deny(op string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.denied[op] = true
}

// Calls returns how many requests named op were received.
func (e *ECS) Calls(op string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[op]
}

// Handler is the protocol handler.
func (e *ECS) Handler() http.Handler {
	return awsJSONHandler("AmazonEC2ContainerServiceV20141113.", "ecs", func(op string, body []byte, region string) (any, *awsJSONError) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.calls[op]++
		if e.denied[op] {
			return nil, awsJSONDenied("ecs:"+op, fmt.Sprintf("arn:aws:ecs:%s:%s:*", region, awsAccount))
		}
		switch op {
		case "DescribeClusters":
			return e.describeClusters(body, region)
		case "DescribeTaskDefinition":
			return e.describeTaskDefinition(body, region)
		case "RunTask":
			return e.runTask(body, region)
		case "DescribeTasks":
			return e.describeTasks(body, region)
		case "StopTask":
			return e.stopTask(body, region)
		}
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "UnknownOperationException"}
	})
}

func (e *ECS) describeClusters(body []byte, region string) (any, *awsJSONError) {
	var in struct{ Clusters []string }
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	if len(in.Clusters) == 0 {
		in.Clusters = []string{"default"}
	}
	clusters, failures := []any{}, []any{}
	for _, name := range in.Clusters {
		short := name[strings.LastIndex(name, "/")+1:]
		arn := fmt.Sprintf("arn:aws:ecs:%s:%s:cluster/%s", region, awsAccount, short)
		c, ok := e.clusters[short]
		if !ok {
			failures = append(failures, map[string]string{"arn": arn, "reason": "MISSING"})
			continue
		}
		strategy := []any{}
		for _, s := range c.DefaultStrategy {
			strategy = append(strategy, map[string]any{"capacityProvider": s.CapacityProvider, "weight": s.Weight, "base": s.Base})
		}
		clusters = append(clusters, map[string]any{
			"clusterArn": arn, "clusterName": c.Name, "status": c.Status,
			"capacityProviders":                 nonNil(c.CapacityProviders),
			"defaultCapacityProviderStrategy":   strategy,
			"registeredContainerInstancesCount": 0, "runningTasksCount": 0, "pendingTasksCount": 0, "activeServicesCount": 0,
		})
	}
	return map[string]any{"clusters": clusters, "failures": failures}, nil
}

var ecsTaskDefRE = regexp.MustCompile(`^(?:arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task-definition/)?([A-Za-z0-9_-]+)(?::(\d+))?$`)

func (e *ECS) describeTaskDefinition(body []byte, region string) (any, *awsJSONError) {
	var in struct{ TaskDefinition string }
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	td := e.findTaskDef(in.TaskDefinition)
	if td == nil {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "ClientException", message: "Unable to describe task definition."}
	}
	containers := []any{}
	for _, c := range td.Containers {
		ports := []any{}
		for _, p := range c.Ports {
			ports = append(ports, map[string]any{"containerPort": p, "hostPort": p, "protocol": "tcp"})
		}
		cd := map[string]any{"name": c.Name, "image": c.Image, "essential": true, "portMappings": ports,
			"cpu": 0, "environment": []any{}, "mountPoints": []any{}, "volumesFrom": []any{}}
		if c.LogDriver != "" {
			cd["logConfiguration"] = map[string]any{"logDriver": c.LogDriver, "options": map[string]string{}}
		}
		containers = append(containers, cd)
	}
	compat := []string{"EC2"}
	for _, rc := range td.RequiresCompatibilities {
		if rc == "FARGATE" && td.NetworkMode == "awsvpc" {
			compat = append(compat, "FARGATE")
		}
	}
	out := map[string]any{
		"taskDefinitionArn":       fmt.Sprintf("arn:aws:ecs:%s:%s:task-definition/%s:%d", region, awsAccount, td.Family, td.Revision),
		"family":                  td.Family,
		"revision":                td.Revision,
		"status":                  td.Status,
		"networkMode":             td.NetworkMode,
		"requiresCompatibilities": nonNil(td.RequiresCompatibilities),
		"compatibilities":         compat,
		"containerDefinitions":    containers,
		"cpu":                     td.CPU,
		"memory":                  td.Memory,
	}
	if td.TaskRoleARN != "" {
		out["taskRoleArn"] = td.TaskRoleARN
	}
	if td.ExecutionRoleARN != "" {
		out["executionRoleArn"] = td.ExecutionRoleARN
	}
	return map[string]any{"taskDefinition": out, "tags": []any{}}, nil
}

// findTaskDef resolves family (latest ACTIVE revision), family:revision or an ARN; nil when
// there is none. The caller holds e.mu.
func (e *ECS) findTaskDef(name string) *ECSTaskDefinition {
	m := ecsTaskDefRE.FindStringSubmatch(name)
	if m == nil {
		return nil
	}
	var td *ECSTaskDefinition
	revs := e.taskDefs[m[1]]
	for i := range revs {
		r := &revs[i]
		if m[2] != "" {
			if strconv.Itoa(int(r.Revision)) == m[2] {
				td = r
			}
		} else if r.Status == "ACTIVE" && (td == nil || r.Revision > td.Revision) {
			td = r
		}
	}
	return td
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// awsJSONHandler serves one awsJson1_1 service: POST / with X-Amz-Target: <prefix><Op> and
// Content-Type application/x-amz-json-1.1; handle returns the answer (marshalled to JSON) or an
// error in the shape every awsJson service sends ({"__type": code, "message": text}).
func awsJSONHandler(prefix, service string, handle func(op string, body []byte, region string) (any, *awsJSONError)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/" {
			writeAWSJSONError(w, &awsJSONError{status: http.StatusNotFound, code: "UnknownOperationException", message: "expected POST /"})
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-amz-json-1.1" {
			writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "SerializationException",
				message: "expected Content-Type application/x-amz-json-1.1, got " + r.Header.Get("Content-Type")})
			return
		}
		op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), prefix)
		if !ok {
			writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "UnknownOperationException"})
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "SerializationException", message: err.Error()})
			return
		}
		out, serr := handle(op, body, sigV4Region(r.Header.Get("Authorization"), service))
		if serr != nil {
			writeAWSJSONError(w, serr)
			return
		}
		writeAWSJSON(w, out)
	})
}

// awsJSONDenied is the AccessDeniedException AWS's authorization layer sends for action.
func awsJSONDenied(action, resource string) *awsJSONError {
	return &awsJSONError{status: http.StatusBadRequest, code: "AccessDeniedException", upper: true,
		message: fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action",
			awsPrincipal, action, resource, action)}
}

var sigV4ScopeRE = regexp.MustCompile(`Credential=[^/]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request`)

// sigV4Region reads the region from a request's SigV4 credential scope (ssmRegion when absent),
// so ARNs in answers name the region the client asked for. IAM is global and signs with
// us-east-1.
func sigV4Region(auth, service string) string {
	if m := sigV4ScopeRE.FindStringSubmatch(auth); m != nil && m[2] == service {
		return m[1]
	}
	return ssmRegion
}
