package preflight

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// checkCapacity: concurrent, limit, request_concurrency and the subnet's free addresses fit
// together. Every awsvpc task takes one address of the subnet for its network interface.
func checkCapacity(ctx context.Context, in checkInput) Finding {
	rc := in.Runner
	res := "subnet " + in.Subnet
	jobs := rc.Concurrent
	if rc.Limit > 0 && rc.Limit < jobs {
		jobs = rc.Limit
	}
	var fs findings
	fs.warnOnly = true
	if jobs > 1 && rc.RequestConcurrency <= 1 {
		fs.add(fmt.Sprintf("runner.request_concurrency is 1 for up to %d jobs at once: the runner asks GitLab for one job at a time and jobs queue behind one another", jobs),
			"raise runner.request_concurrency (the reference setup uses 4)")
	}
	// limit above concurrent and request_concurrency above limit are the config validator's
	// warnings (with their lines); here only what it cannot see.
	if rc.Limit == 0 && rc.RequestConcurrency > jobs {
		fs.add(fmt.Sprintf("runner.request_concurrency %d is above the %d jobs the runner may run", rc.RequestConcurrency, jobs),
			fmt.Sprintf("lower runner.request_concurrency to at most %d", jobs))
	}
	sn, err := in.subnetInfo(ctx)
	free := int32(-1)
	switch {
	case err == nil:
		free = aws.ToInt32(sn.AvailableIpAddressCount)
		switch {
		case free == 0:
			fs.warnOnly = false
			fs.add("the subnet has no free address: no task can start", "free addresses in the subnet or use another one in fargate.subnet")
		case int(free) < jobs:
			fs.add(fmt.Sprintf("the subnet (%s) has %d free addresses but up to %d tasks (concurrent %d, limit %d) each take one: at full load the rest fail to start",
				aws.ToString(sn.CidrBlock), free, jobs, rc.Concurrent, rc.Limit),
				fmt.Sprintf("use a larger subnet for fargate.subnet (a /22 has 1019 usable addresses) or lower runner.concurrent to %d", free))
		}
	case isDenied(err):
		fs.add("could not check the subnet's free addresses: "+err.Error(), "allow ec2:DescribeSubnets (read-only) to the instance profile")
	case isNotFound(err):
		// subnet-egress reports it.
	default:
		fs.add("could not read the subnet: "+err.Error(), "make sure this host reaches the EC2 API")
	}
	status := CheckFail
	if fs.warnOnly {
		status = CheckWarn
	}
	return fs.result(res, status, fmt.Sprintf("concurrent %d, limit %d, request_concurrency %d, %d free addresses", rc.Concurrent, rc.Limit, rc.RequestConcurrency, free))
}
