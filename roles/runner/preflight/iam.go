package preflight

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/glbootstrap/glbootstrap/internal/aws/iam"
)

// checkIAM: the front's role may run, describe and stop tasks and pass the task definition's
// roles, and with enable_public_ip read the tasks' ENIs (the driver asks
// ec2:DescribeNetworkInterfaces for the public IP, and without it fails every job's prepare with
// UnauthorizedOperation), asked of IAM's policy simulator (without context keys, so condition-scoped grants may
// read as denied). Without iam:GetInstanceProfile or iam:SimulatePrincipalPolicy it says it
// could not check.
func checkIAM(ctx context.Context, in checkInput) Finding {
	role, err := in.AWS.IAM.InstanceRole(ctx)
	switch {
	case errors.Is(err, iam.ErrNoInstanceProfile):
		return Finding{Status: CheckFail, Resource: "instance " + in.Front.InstanceID, Problem: err.Error() + ": the driver gets no AWS credentials",
			Fix: "attach an instance profile whose role may ecs:RunTask, ecs:DescribeTasks, ecs:StopTask and iam:PassRole on the task roles"}
	case err != nil:
		return Finding{Status: CheckWarn, Resource: "instance role", Problem: "could not check: " + err.Error(),
			Fix: "allow iam:GetInstanceProfile and iam:SimulatePrincipalPolicy (read-only) to the instance profile to let glbootstrap check its role"}
	}
	res := "role " + role
	type ask struct {
		action    string
		resources []string
	}
	asks := []ask{{"ecs:DescribeTasks", []string{"*"}}, {"ecs:StopTask", []string{"*"}}}
	var passRoles []string
	if td, err := in.taskDefinition(ctx); err == nil {
		asks = append([]ask{{"ecs:RunTask", []string{aws.ToString(td.TaskDefinitionArn)}}}, asks...)
		for _, r := range []string{aws.ToString(td.TaskRoleArn), aws.ToString(td.ExecutionRoleArn)} {
			if r != "" && !slices.Contains(passRoles, r) {
				passRoles = append(passRoles, r)
			}
		}
		if len(passRoles) > 0 {
			asks = append(asks, ask{"iam:PassRole", passRoles})
		}
	} else {
		asks = append([]ask{{"ecs:RunTask", []string{"*"}}}, asks...)
	}
	if in.EnablePublicIP {
		asks = append(asks, ask{"ec2:DescribeNetworkInterfaces", []string{"*"}})
	}
	var denied []string
	for _, a := range asks {
		results, err := in.AWS.IAM.Simulate(ctx, role, a.action, a.resources)
		if err != nil {
			return Finding{Status: CheckWarn, Resource: res, Problem: "could not check what the role may do: " + err.Error(),
				Fix: "allow iam:SimulatePrincipalPolicy on " + role + " to the instance profile (read-only), or check by hand that it may ecs:RunTask, ecs:DescribeTasks, ecs:StopTask and iam:PassRole on the task roles"}
		}
		for _, r := range results {
			if r.EvalDecision != iamtypes.PolicyEvaluationDecisionTypeAllowed {
				denied = append(denied, fmt.Sprintf("%s on %s (%s)", aws.ToString(r.EvalActionName), aws.ToString(r.EvalResourceName), r.EvalDecision))
			}
		}
	}
	if len(denied) > 0 {
		fix := "add a policy to the role allowing ecs:RunTask on the task definition, ecs:DescribeTasks and ecs:StopTask, and iam:PassRole on the task definition's roles"
		if in.EnablePublicIP {
			fix += ", and ec2:DescribeNetworkInterfaces on * (enable_public_ip: the driver reads each task's public IP from its ENI)"
		}
		return Finding{Status: CheckFail, Resource: res, Problem: "the role may not " + strings.Join(denied, ", ") + ": the driver's calls fail and tasks may be left running",
			Fix: fix}
	}
	detail := "may run, describe and stop tasks"
	if in.EnablePublicIP {
		detail += ", read their ENIs' public IPs"
	}
	if len(passRoles) > 0 {
		detail += fmt.Sprintf(" and pass %d task role(s)", len(passRoles))
	}
	return Finding{Status: CheckOK, Resource: res, Detail: detail + " (IAM policy simulator)"}
}
