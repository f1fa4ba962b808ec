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
	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
)

// PolicyFunc returns the front's least-privilege policy (the one "glbootstrap iam-policy"
// prints) for the front's role: its partition and account (from the role's ARN), its name, and
// the task definition's task and execution roles (nil when the task definition could not be
// read).
type PolicyFunc func(ctx context.Context, partition, account, roleName string, taskRoles []string) iampolicy.Policy

// checkIAM asks IAM's policy simulator, for the front's role, every action of every statement of
// the front's policy (Input.Policy) on that statement's resources, with the statement's
// condition keys as the request context: what is checked is exactly what iam-policy prints. A
// denial in a statement the host needs fails; one in glbootstrap's own read-only checks
// (iampolicy.ChecksSid) warns. Without iam:GetInstanceProfile or iam:SimulatePrincipalPolicy it
// says it could not check.
func checkIAM(ctx context.Context, in checkInput) Finding {
	role, err := in.AWS.IAM.InstanceRole(ctx)
	switch {
	case errors.Is(err, iam.ErrNoInstanceProfile):
		return Finding{Status: CheckFail, Resource: "instance " + in.Front.InstanceID, Problem: err.Error() + ": the driver gets no AWS credentials",
			Fix: "attach an instance profile whose role has the policy `glbootstrap iam-policy --role runner` prints"}
	case err != nil:
		return Finding{Status: CheckWarn, Resource: "instance role", Problem: "could not check: " + err.Error(),
			Fix: "allow iam:GetInstanceProfile and iam:SimulatePrincipalPolicy (read-only) to the instance profile to let glbootstrap check its role (statement GlbootstrapChecksIAM of `glbootstrap iam-policy`)"}
	}
	res := "role " + role
	if in.Policy == nil {
		return Finding{Status: CheckFail, Resource: res, Problem: "no policy to check the role against", Fix: "report this: the runner role builds the policy"}
	}
	partition, account, name, ok := splitRoleARN(role)
	if !ok {
		return Finding{Status: CheckWarn, Resource: res, Problem: "could not check: " + role + " is not a role ARN (arn:PARTITION:iam::ACCOUNT:role/NAME)",
			Fix: "check by hand that the role has the policy `glbootstrap iam-policy --role runner` prints"}
	}
	var taskRoles []string // nil: unknown
	if td, err := in.taskDefinition(ctx); err == nil {
		taskRoles = []string{}
		for _, r := range []string{aws.ToString(td.TaskRoleArn), aws.ToString(td.ExecutionRoleArn)} {
			if r != "" && !slices.Contains(taskRoles, r) {
				taskRoles = append(taskRoles, r)
			}
		}
	}
	pol := in.Policy(ctx, partition, account, name, taskRoles)
	var denied, deniedChecks []string
	asked := 0
	for _, a := range pol.Asks() {
		if a.Sid == "PassTaskRoles" && taskRoles == nil {
			// The policy holds a placeholder: nothing real to ask (task-definition says why).
			continue
		}
		results, err := in.AWS.IAM.Simulate(ctx, role, a)
		if err != nil {
			return Finding{Status: CheckWarn, Resource: res, Problem: "could not check what the role may do: " + err.Error(),
				Fix: "allow iam:SimulatePrincipalPolicy on " + role + " to the instance profile (read-only), or check by hand that the role has the policy `glbootstrap iam-policy --role runner` prints"}
		}
		asked++
		for _, r := range results {
			if r.EvalDecision == iamtypes.PolicyEvaluationDecisionTypeAllowed {
				continue
			}
			d := fmt.Sprintf("%s on %s (%s)", aws.ToString(r.EvalActionName), aws.ToString(r.EvalResourceName), r.EvalDecision)
			if strings.HasPrefix(a.Sid, iampolicy.ChecksSid) {
				deniedChecks = append(deniedChecks, d)
			} else {
				denied = append(denied, d)
			}
		}
	}
	fix := "attach the policy `glbootstrap iam-policy --role runner --config ...` prints to " + role
	switch {
	case len(denied) > 0:
		return Finding{Status: CheckFail, Resource: res, Problem: "the role may not " + strings.Join(append(denied, deniedChecks...), ", ") + ": the driver's or glbootstrap's calls fail and tasks may be left running",
			Fix: fix}
	case len(deniedChecks) > 0:
		return Finding{Status: CheckWarn, Resource: res, Problem: "glbootstrap's read-only checks may not " + strings.Join(deniedChecks, ", ") + ": those checks cannot run",
			Fix: fix}
	}
	detail := fmt.Sprintf("may do all %d actions of the front's policy", asked)
	if len(taskRoles) > 0 {
		detail += fmt.Sprintf(", including run, describe and stop tasks and pass %d task role(s)", len(taskRoles))
	}
	return Finding{Status: CheckOK, Resource: res, Detail: detail + " (IAM policy simulator)"}
}

// splitRoleARN splits arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME; name keeps the path.
func splitRoleARN(arn string) (partition, account, name string, ok bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iam" || !strings.HasPrefix(parts[5], "role/") {
		return "", "", "", false
	}
	return parts[1], parts[4], strings.TrimPrefix(parts[5], "role/"), true
}
