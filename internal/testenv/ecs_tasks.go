package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// The task side of the ECS stand-in: RunTask, DescribeTasks and StopTask as GitLab's Fargate
// driver calls them (aws-sdk-go v1: RunTask with the cluster, the task definition, an awsvpc
// network configuration and environment overrides for the container named ci-coordinator; the
// waiter TasksRunning polls DescribeTasks until tasks[].lastStatus is RUNNING, failing on
// STOPPED or on a failure with reason MISSING; then containers[0].networkInterfaces[0]
// .privateIpv4Address, or, with EnablePublicIP, the networkInterfaceId detail of attachments[0]
// for EC2 DescribeNetworkInterfaces (the EC2 stand-in answers it from NetworkInterfaces); StopTask
// at cleanup or when prepare fails).
// Shapes: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html,
// API_DescribeTasks.html, API_StopTask.html.

// ECSLauncher starts what a task runs once it leaves PENDING. Launch returns a stop function
// that ends it (StopTask, or the task stopping by itself); an error makes the task STOPPED with
// the error as its stoppedReason, as ECS reports a container that could not start.
type ECSLauncher interface {
	Launch(l ECSLaunch) (stop func(), err error)
}

// ECSLaunch is one task to start: its ARN, its address (a loopback address 127.X.Y.Z of its own
// standing in for the task's ENI), the container RunTask overrode (the task definition's first
// container when no override names one) with its port mappings, and that container's
// environment overrides.
type ECSLaunch struct {
	TaskARN string
	IP      string
	// PublicIP is the public address of the task's ENI (another loopback address of its own),
	// set when RunTask asked for assignPublicIp ENABLED: the launcher listens on it too.
	PublicIP  string
	Container ECSContainer
	Env       map[string]string
}

// ECSTaskBehaviour says how new tasks move through their states. The zero value: RUNNING at
// once, until StopTask.
type ECSTaskBehaviour struct {
	// Pending is how long a task stays PENDING before it is launched.
	Pending time.Duration
	// RunFor makes a RUNNING task stop by itself after this long (stopCode
	// EssentialContainerExited); 0 runs it until StopTask.
	RunFor time.Duration
	// NeverStart keeps tasks from ever reaching RUNNING: they stay PENDING, or, when StopAfter is
	// set, go STOPPED after StopAfter with StoppedReason (what ECS does when, say, the image
	// cannot be pulled: "CannotPullContainerError: ...").
	NeverStart    bool
	StopAfter     time.Duration
	StoppedReason string
	// NoPublicIP leaves the ENI of a task started with assignPublicIp ENABLED without a public
	// address (no association in DescribeNetworkInterfaces), as an ENI whose public IP was
	// released would be.
	NoPublicIP bool
}

// ECSTask is a task as a test sees it (ECS.Tasks).
type ECSTask struct {
	ARN, Cluster, TaskDefinitionARN string
	LastStatus, DesiredStatus       string // PENDING, RUNNING, STOPPED
	StoppedReason, StopCode         string
	IP                              string // the ENI's private address
	PublicIP                        string // the ENI's public address; "" unless AssignPublicIP is ENABLED
	ENI                             string // the ENI's id, eni-...
	MAC                             string // the ENI's MAC address
	Container                       string // the container the overrides named
	Env                             map[string]string
	Subnets, SecurityGroups         []string
	AssignPublicIP                  string // ENABLED or DISABLED
	PlatformVersion                 string
	CreatedAt                       time.Time
}

type ecsTasks struct {
	behaviour ECSTaskBehaviour
	launcher  ECSLauncher
	byARN     map[string]*ecsTask
	order     []string
	net       int // the second octet of this stand-in's task addresses
	next      int
}

type ecsTask struct {
	ECSTask
	container ECSContainer
	taskDef   *ECSTaskDefinition
	stop      func()
}

// SetLauncher sets what RunTask starts; without one, tasks run nothing (they still move
// through their states).
func (e *ECS) SetLauncher(l ECSLauncher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tasks.launcher = l
}

// SetTaskBehaviour sets how tasks started from now on move through their states.
func (e *ECS) SetTaskBehaviour(b ECSTaskBehaviour) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tasks.behaviour = b
}

// Tasks returns every task RunTask started, in order.
func (e *ECS) Tasks() []ECSTask {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ECSTask, 0, len(e.tasks.order))
	for _, arn := range e.tasks.order {
		t := e.tasks.byARN[arn].ECSTask
		env := make(map[string]string, len(t.Env))
		for k, v := range t.Env {
			env[k] = v
		}
		t.Env = env
		out = append(out, t)
	}
	return out
}

// StopAll stops every task still running (what a test's cleanup does so no process outlives
// it).
func (e *ECS) StopAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.tasks.byARN {
		e.setStopped(t, "UserInitiated", "Stopped by the test's cleanup")
	}
}

func ecsInvalidParameter(msg string) *awsJSONError {
	return &awsJSONError{status: http.StatusBadRequest, code: "InvalidParameterException", message: msg}
}

func ecsClusterNotFound() *awsJSONError {
	return &awsJSONError{status: http.StatusBadRequest, code: "ClusterNotFoundException", message: "Cluster not found."}
}

// clusterName is the short name of a cluster given by name or ARN ("default" when empty).
func clusterName(c string) string {
	if c == "" {
		return "default"
	}
	return c[strings.LastIndex(c, "/")+1:]
}

func (e *ECS) runTask(body []byte, region string) (any, *awsJSONError) {
	var in struct {
		Cluster, TaskDefinition, LaunchType, PlatformVersion string
		Count                                                int
		CapacityProviderStrategy                             []struct{ CapacityProvider string }
		NetworkConfiguration                                 *struct {
			AwsvpcConfiguration *struct {
				Subnets, SecurityGroups []string
				AssignPublicIp          string
			}
		}
		Overrides *struct {
			ContainerOverrides []struct {
				Name        string
				Environment []struct{ Name, Value string }
			}
		}
	}
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	cluster, ok := e.clusters[clusterName(in.Cluster)]
	if !ok {
		return nil, ecsClusterNotFound()
	}
	td := e.findTaskDef(in.TaskDefinition)
	if td == nil {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "ClientException", message: "TaskDefinition not found."}
	}
	// The driver gives no launch type: ECS then uses the cluster's default capacity provider
	// strategy, and with none it places the task on EC2 container instances.
	fargate := in.LaunchType == "FARGATE"
	for _, s := range in.CapacityProviderStrategy {
		fargate = fargate || strings.HasPrefix(s.CapacityProvider, "FARGATE")
	}
	if in.LaunchType == "" && len(in.CapacityProviderStrategy) == 0 {
		for _, s := range cluster.DefaultStrategy {
			fargate = fargate || strings.HasPrefix(s.CapacityProvider, "FARGATE")
		}
	}
	if !fargate {
		return nil, ecsInvalidParameter("No Container Instances were found in your cluster.")
	}
	if td.NetworkMode != "awsvpc" {
		return nil, ecsInvalidParameter("Task definition does not support launch_type FARGATE.")
	}
	if in.NetworkConfiguration == nil || in.NetworkConfiguration.AwsvpcConfiguration == nil {
		return nil, ecsInvalidParameter("Network Configuration must be provided when networkMode 'awsvpc' is specified.")
	}
	vpc := in.NetworkConfiguration.AwsvpcConfiguration
	if len(vpc.Subnets) == 0 {
		return nil, ecsInvalidParameter("subnets can not be empty.")
	}
	if in.Count > 1 {
		return nil, ecsInvalidParameter("the stand-in runs one task per RunTask")
	}
	if len(td.Containers) == 0 {
		return nil, ecsInvalidParameter("Task definition has no containers.")
	}
	container, env := td.Containers[0], map[string]string{}
	if in.Overrides != nil {
		for _, o := range in.Overrides.ContainerOverrides {
			found := false
			for _, c := range td.Containers {
				if c.Name == o.Name {
					container, found = c, true
				}
			}
			if !found {
				return nil, ecsInvalidParameter(fmt.Sprintf("Override for container named %s is not a container in the TaskDefinition.", o.Name))
			}
			for _, kv := range o.Environment {
				env[kv.Name] = kv.Value
			}
		}
	}
	if vpc.AssignPublicIp == "" {
		vpc.AssignPublicIp = "DISABLED"
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	ts := &e.tasks
	if ts.byARN == nil {
		ts.byARN = map[string]*ecsTask{}
		// A second octet per stand-in, so that two test processes on one machine do not hand out
		// the same address (and port).
		ts.net = 1 + mrand.IntN(254)
	}
	addr := func() string {
		ts.next++
		return fmt.Sprintf("127.%d.%d.%d", ts.net, ts.next/254, ts.next%254+1)
	}
	t := &ecsTask{container: container, taskDef: td, ECSTask: ECSTask{
		ARN:               fmt.Sprintf("arn:aws:ecs:%s:%s:task/%s/%s", region, awsAccount, cluster.Name, hex.EncodeToString(id)),
		Cluster:           fmt.Sprintf("arn:aws:ecs:%s:%s:cluster/%s", region, awsAccount, cluster.Name),
		TaskDefinitionARN: fmt.Sprintf("arn:aws:ecs:%s:%s:task-definition/%s:%d", region, awsAccount, td.Family, td.Revision),
		LastStatus:        "PENDING", DesiredStatus: "RUNNING",
		IP:  addr(),
		ENI: "eni-" + hex.EncodeToString(id[:9])[:17], MAC: fmt.Sprintf("0a:%02x:%02x:%02x:%02x:%02x", id[9], id[10], id[11], id[12], id[13]),
		Container: container.Name, Env: env,
		Subnets: vpc.Subnets, SecurityGroups: vpc.SecurityGroups, AssignPublicIP: vpc.AssignPublicIp,
		PlatformVersion: in.PlatformVersion, CreatedAt: time.Now(),
	}}
	if t.PlatformVersion == "" {
		t.PlatformVersion = "LATEST"
	}
	if vpc.AssignPublicIp == "ENABLED" && !ts.behaviour.NoPublicIP {
		t.PublicIP = addr()
	}
	ts.byARN[t.ARN] = t
	ts.order = append(ts.order, t.ARN)
	b, l := ts.behaviour, ts.launcher
	switch {
	case b.NeverStart && b.StopAfter > 0:
		time.AfterFunc(b.StopAfter, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.setStopped(t, "TaskFailedToStart", b.StoppedReason)
		})
	case b.NeverStart:
	default:
		time.AfterFunc(b.Pending, func() { e.launch(t, l, b.RunFor) })
	}
	return map[string]any{"tasks": []any{e.taskJSON(t)}, "failures": []any{}}, nil
}

// launch starts t (outside e.mu: starting sshd takes a while) and marks it RUNNING, or STOPPED
// when the launch failed or StopTask came first.
func (e *ECS) launch(t *ecsTask, l ECSLauncher, runFor time.Duration) {
	e.mu.Lock()
	if t.DesiredStatus == "STOPPED" {
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	stop, err := func() (func(), error) {
		if l == nil {
			return func() {}, nil
		}
		return l.Launch(ECSLaunch{TaskARN: t.ARN, IP: t.IP, PublicIP: t.PublicIP, Container: t.container, Env: t.Env})
	}()
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.setStopped(t, "TaskFailedToStart", "CannotStartContainerError: "+err.Error())
		return
	}
	t.stop = stop
	if t.DesiredStatus == "STOPPED" { // StopTask arrived while it was starting
		e.setStopped(t, t.StopCode, t.StoppedReason)
		return
	}
	t.LastStatus = "RUNNING"
	if runFor > 0 {
		time.AfterFunc(runFor, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.setStopped(t, "EssentialContainerExited", "Essential container in task exited")
		})
	}
}

// setStopped stops t's process and marks it STOPPED; the first reason sticks. The caller holds
// e.mu.
func (e *ECS) setStopped(t *ecsTask, code, reason string) {
	if t.stop != nil {
		t.stop()
		t.stop = nil
	}
	if t.LastStatus == "STOPPED" {
		return
	}
	t.DesiredStatus, t.LastStatus = "STOPPED", "STOPPED"
	if t.StopCode == "" {
		t.StopCode, t.StoppedReason = code, reason
	}
}

func (e *ECS) describeTasks(body []byte, region string) (any, *awsJSONError) {
	var in struct {
		Cluster string
		Tasks   []string
	}
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	name := clusterName(in.Cluster)
	if _, ok := e.clusters[name]; !ok {
		return nil, ecsClusterNotFound()
	}
	if len(in.Tasks) == 0 || len(in.Tasks) > 100 {
		return nil, ecsInvalidParameter("Tasks cannot be empty.")
	}
	tasks, failures := []any{}, []any{}
	for _, arn := range in.Tasks {
		t := e.findTask(name, arn)
		if t == nil {
			failures = append(failures, map[string]string{"arn": arn, "reason": "MISSING"})
			continue
		}
		tasks = append(tasks, e.taskJSON(t))
	}
	return map[string]any{"tasks": tasks, "failures": failures}, nil
}

func (e *ECS) stopTask(body []byte, region string) (any, *awsJSONError) {
	var in struct{ Cluster, Task, Reason string }
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	name := clusterName(in.Cluster)
	if _, ok := e.clusters[name]; !ok {
		return nil, ecsClusterNotFound()
	}
	t := e.findTask(name, in.Task)
	if t == nil {
		return nil, ecsInvalidParameter("The referenced task was not found.")
	}
	reason := in.Reason
	if reason == "" {
		reason = "Task stopped by user"
	}
	e.setStopped(t, "UserInitiated", reason)
	return map[string]any{"task": e.taskJSON(t)}, nil
}

// findTask finds a task of cluster by ARN or ID. The caller holds e.mu.
func (e *ECS) findTask(cluster, ref string) *ecsTask {
	for _, arn := range e.tasks.order {
		t := e.tasks.byARN[arn]
		if clusterName(t.Cluster) == cluster && (arn == ref || strings.HasSuffix(arn, "/"+ref)) {
			return t
		}
	}
	return nil
}

// taskJSON is t as DescribeTasks, RunTask and StopTask answer it. The caller holds e.mu.
func (e *ECS) taskJSON(t *ecsTask) map[string]any {
	attachID := t.ARN[len(t.ARN)-32:]
	attStatus := map[string]string{"PENDING": "PRECREATED", "RUNNING": "ATTACHED", "STOPPED": "DELETED"}[t.LastStatus]
	env := []any{}
	for k, v := range t.Env {
		env = append(env, map[string]string{"name": k, "value": v})
	}
	containers := []any{}
	for _, c := range t.taskDef.Containers {
		status := t.LastStatus
		containers = append(containers, map[string]any{
			"containerArn": strings.Replace(t.ARN, ":task/", ":container/", 1) + "/" + c.Name,
			"taskArn":      t.ARN, "name": c.Name, "image": c.Image, "lastStatus": status,
			"networkInterfaces": []any{map[string]string{"attachmentId": attachID, "privateIpv4Address": t.IP}},
		})
	}
	out := map[string]any{
		"taskArn": t.ARN, "clusterArn": t.Cluster, "taskDefinitionArn": t.TaskDefinitionARN,
		"lastStatus": t.LastStatus, "desiredStatus": t.DesiredStatus,
		"launchType": "FARGATE", "capacityProviderName": "FARGATE", "platformVersion": t.PlatformVersion,
		"cpu": t.taskDef.CPU, "memory": t.taskDef.Memory, "group": "family:" + t.taskDef.Family,
		"createdAt":  float64(t.CreatedAt.UnixMilli()) / 1000,
		"containers": containers,
		"attachments": []any{map[string]any{"id": attachID, "type": "ElasticNetworkInterface", "status": attStatus,
			"details": []any{
				map[string]string{"name": "subnetId", "value": t.Subnets[0]},
				map[string]string{"name": "networkInterfaceId", "value": t.ENI},
				map[string]string{"name": "macAddress", "value": t.MAC},
				map[string]string{"name": "privateDnsName", "value": privateDNSName(t.IP, t.ARN)},
				map[string]string{"name": "privateIPv4Address", "value": t.IP},
			}}},
		"overrides": map[string]any{"containerOverrides": []any{map[string]any{"name": t.Container, "environment": env}}},
	}
	if t.LastStatus == "STOPPED" {
		out["stopCode"], out["stoppedReason"] = t.StopCode, t.StoppedReason
	}
	return out
}

// privateDNSName is the EC2 private DNS name of ip in the region of arn
// (ip-A-B-C-D.REGION.compute.internal).
func privateDNSName(ip, arn string) string {
	region := "us-east-1"
	if parts := strings.SplitN(arn, ":", 5); len(parts) == 5 {
		region = parts[3]
	}
	return "ip-" + strings.ReplaceAll(ip, ".", "-") + "." + region + ".compute.internal"
}

// NetworkInterfaces returns the ENIs of the tasks that are not STOPPED (ECS deletes a task's ENI
// once it stops), in RunTask order: what the EC2 stand-in's DescribeNetworkInterfaces serves
// (EC2.AddENISource).
func (e *ECS) NetworkInterfaces() []EC2NetworkInterface {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []EC2NetworkInterface
	for _, arn := range e.tasks.order {
		t := e.tasks.byARN[arn]
		if t.LastStatus == "STOPPED" {
			continue
		}
		status := "in-use"
		if t.LastStatus == "PENDING" {
			status = "available"
		}
		out = append(out, EC2NetworkInterface{ID: t.ENI, SubnetID: t.Subnets[0], MAC: t.MAC,
			PrivateIP: t.IP, PrivateDNS: privateDNSName(t.IP, t.ARN), PublicIP: t.PublicIP,
			SecurityGroups: append([]string(nil), t.SecurityGroups...), Status: status,
			Description:   "arn:aws:ecs:" + strings.SplitN(t.ARN, ":", 5)[3] + ":" + awsAccount + ":attachment/" + t.ARN[len(t.ARN)-32:],
			InterfaceType: "interface", RequesterManaged: true})
	}
	return out
}
