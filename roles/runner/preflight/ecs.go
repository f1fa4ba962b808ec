package preflight

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// CoordinatorContainer is the container of the task definition the driver injects
// SSH_PUBLIC_KEY into and connects to (the driver's README,
// https://gitlab.com/gitlab-org/ci-cd/custom-executor-drivers/fargate).
const CoordinatorContainer = "ci-coordinator"

// checkCluster: the cluster exists, is ACTIVE, and has a default capacity provider strategy of
// Fargate providers. The driver calls RunTask without a launch type, so ECS uses the cluster's
// default strategy; with none it falls back to launch type EC2, which a Fargate-only cluster
// cannot place (ECS RunTask: "If no capacityProviderStrategy or launchType is specified, the
// defaultCapacityProviderStrategy for the cluster is used").
func checkCluster(ctx context.Context, in checkInput) Finding {
	name := in.Cluster
	res := "cluster " + name
	strategyFix := fmt.Sprintf("aws ecs put-cluster-capacity-providers --cluster %s --capacity-providers FARGATE FARGATE_SPOT --default-capacity-provider-strategy capacityProvider=FARGATE,weight=1", name)
	c, err := in.AWS.ECS.Cluster(ctx, name)
	switch {
	case isNotFound(err):
		return Finding{Status: CheckFail, Resource: res, Problem: err.Error(),
			Fix: fmt.Sprintf("create it (aws ecs create-cluster --cluster-name %s --capacity-providers FARGATE FARGATE_SPOT --default-capacity-provider-strategy capacityProvider=FARGATE,weight=1) or fix fargate.cluster", name)}
	case err != nil:
		return apiFinding(res, "ecs:DescribeClusters", err)
	}
	var fs findings
	if st := aws.ToString(c.Status); st != "ACTIVE" {
		fs.add("the cluster is "+st+", not ACTIVE", "point fargate.cluster at an ACTIVE cluster")
	}
	var used []string
	for _, s := range c.DefaultCapacityProviderStrategy {
		if s.Weight == 0 && s.Base == 0 {
			continue
		}
		p := aws.ToString(s.CapacityProvider)
		used = append(used, fmt.Sprintf("%s (weight %d)", p, s.Weight))
		if p != "FARGATE" && p != "FARGATE_SPOT" {
			fs.add("its default capacity provider strategy uses "+p+", which is not a Fargate provider: the coordinator task is Fargate-only",
				strategyFix)
		}
	}
	if len(used) == 0 {
		fs.add("it has no default capacity provider strategy: GitLab's Fargate driver starts tasks without a launch type, so ECS would place them with launch type EC2 on container instances this cluster does not have",
			strategyFix)
	}
	return fs.result(res, CheckFail, "ACTIVE, default capacity provider strategy "+strings.Join(used, ", "))
}

// checkTaskDefinition: the task definition exists, is ACTIVE, Fargate-compatible with awsvpc, and
// has a container named ci-coordinator mapping the SSH port; awslogs needs an execution role.
func checkTaskDefinition(ctx context.Context, in checkInput) Finding {
	name := in.TaskDefinition
	res := "task definition " + name
	td, err := in.taskDefinition(ctx)
	switch {
	case isNotFound(err):
		return Finding{Status: CheckFail, Resource: res, Problem: err.Error(),
			Fix: "register it (aws ecs register-task-definition) or fix fargate.task_definition (family, family:revision or ARN)"}
	case err != nil:
		return apiFinding(res, "ecs:DescribeTaskDefinition", err)
	}
	port := int32(in.SSHPort)
	var fs findings
	if st := string(td.Status); st != "ACTIVE" {
		fs.add("revision "+strconv.Itoa(int(td.Revision))+" is "+st+": ECS starts no new task from it",
			"point fargate.task_definition at an ACTIVE revision, or at the family alone for the latest one")
	}
	if td.NetworkMode != ecstypes.NetworkModeAwsvpc {
		fs.add(fmt.Sprintf("network mode is %q, not awsvpc (the only mode Fargate runs)", td.NetworkMode),
			"register a revision with networkMode awsvpc")
	}
	if !slices.Contains(td.Compatibilities, ecstypes.CompatibilityFargate) {
		fs.add(fmt.Sprintf("it is not Fargate-compatible (requiresCompatibilities %v)", td.RequiresCompatibilities),
			"register a revision with requiresCompatibilities FARGATE and task-level cpu and memory")
	}
	var names []string
	var coord *ecstypes.ContainerDefinition
	awslogs := false
	for i, c := range td.ContainerDefinitions {
		names = append(names, aws.ToString(c.Name))
		if aws.ToString(c.Name) == CoordinatorContainer {
			coord = &td.ContainerDefinitions[i]
		}
		if c.LogConfiguration != nil && c.LogConfiguration.LogDriver == ecstypes.LogDriverAwslogs {
			awslogs = true
		}
	}
	if coord == nil {
		fs.add(fmt.Sprintf("it has no container named %s (it has: %s): the driver injects SSH_PUBLIC_KEY only into %s, so SSH to the task never works",
			CoordinatorContainer, strings.Join(names, ", "), CoordinatorContainer),
			"name the job container "+CoordinatorContainer+" in a new revision")
	} else {
		var ports []string
		found := false
		for _, pm := range coord.PortMappings {
			p := aws.ToInt32(pm.ContainerPort)
			ports = append(ports, strconv.Itoa(int(p)))
			found = found || p == port && pm.Protocol != ecstypes.TransportProtocolUdp
		}
		if !found {
			fs.add(fmt.Sprintf("container %s maps no tcp port %d (fargate.ssh.port); it maps [%s]", CoordinatorContainer, port, strings.Join(ports, " ")),
				fmt.Sprintf("add portMappings containerPort %d to %s in a new revision", port, CoordinatorContainer))
		}
	}
	if awslogs && aws.ToString(td.ExecutionRoleArn) == "" {
		fs.add("a container logs with awslogs but the task definition has no execution role, which Fargate uses to write to CloudWatch Logs",
			"set executionRoleArn to a role with the AmazonECSTaskExecutionRolePolicy managed policy")
	}
	return fs.result(res, CheckFail, fmt.Sprintf("revision %d ACTIVE, awsvpc, FARGATE, %s maps port %d",
		td.Revision, CoordinatorContainer, port))
}

func usesAWSLogs(td ecstypes.TaskDefinition) bool {
	for _, c := range td.ContainerDefinitions {
		if c.LogConfiguration != nil && c.LogConfiguration.LogDriver == ecstypes.LogDriverAwslogs {
			return true
		}
	}
	return false
}
