package preflight

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// checkSecurityGroup: the task security group exists in the subnet's VPC and admits the SSH
// port from the front (one of its security groups, or a CIDR holding its private address), and
// the front's security groups let that traffic out.
func checkSecurityGroup(ctx context.Context, in checkInput) Finding {
	sgID := in.SecurityGroup
	port := int32(in.SSHPort)
	res := "security group " + sgID
	groups, err := in.AWS.EC2.SecurityGroups(ctx, sgID)
	switch {
	case isNotFound(err):
		return Finding{Status: CheckFail, Resource: res, Problem: err.Error(), Fix: "create it or fix fargate.security_group"}
	case err != nil:
		return apiFinding(res, "ec2:DescribeSecurityGroups", err)
	}
	sg := groups[0]
	var fs findings
	frontIP, _ := netip.ParseAddr(in.Front.PrivateIPv4)
	var from []string
	public := false
	for _, p := range sg.IpPermissions {
		if !coversPort(p, port) {
			continue
		}
		for _, g := range p.UserIdGroupPairs {
			if slices.Contains(in.Front.SecurityGroups, aws.ToString(g.GroupId)) {
				from = append(from, "the front's "+aws.ToString(g.GroupId))
			}
		}
		for _, r := range p.IpRanges {
			pfx, err := netip.ParsePrefix(aws.ToString(r.CidrIp))
			if err == nil && frontIP.IsValid() && pfx.Contains(frontIP) {
				from = append(from, pfx.String())
				public = public || pfx.Bits() == 0
			}
		}
	}
	ingressFix := fmt.Sprintf("aws ec2 authorize-security-group-ingress --group-id %s --protocol tcp --port %d --source-group %s",
		sgID, port, firstNonEmpty(append(slices.Clone(in.Front.SecurityGroups), "<front-sg>")...))
	switch {
	case len(from) == 0:
		fs.add(fmt.Sprintf("it does not admit tcp/%d from the front (security groups %s, address %s): the job hangs in prepare with an SSH timeout",
			port, strings.Join(in.Front.SecurityGroups, ", "), in.Front.PrivateIPv4), ingressFix)
	case in.EnablePublicIP && public:
		fs.warnOnly = true
		fs.add(fmt.Sprintf("with enable_public_ip it admits tcp/%d from 0.0.0.0/0: every task's SSH port is open to the internet", port),
			"admit the port only from the front's security group, or set fargate.enable_public_ip: false")
	}
	if sn, err := in.subnetInfo(ctx); err == nil && aws.ToString(sn.VpcId) != aws.ToString(sg.VpcId) {
		fs.warnOnly = false
		fs.add(fmt.Sprintf("it is in %s but subnet %s is in %s: RunTask refuses a security group of another VPC", aws.ToString(sg.VpcId), in.Subnet, aws.ToString(sn.VpcId)),
			"use a security group of "+aws.ToString(sn.VpcId)+" in fargate.security_group")
	}
	// The front's side: its security groups must let the connection out.
	if len(in.Front.SecurityGroups) > 0 {
		front, err := in.AWS.EC2.SecurityGroups(ctx, in.Front.SecurityGroups...)
		if err == nil && !egressAllows(front, sgID, port) {
			fs.warnOnly = false
			fs.add(fmt.Sprintf("the front's security groups (%s) allow no egress to tcp/%d of %s", strings.Join(in.Front.SecurityGroups, ", "), port, sgID),
				fmt.Sprintf("aws ec2 authorize-security-group-egress --group-id %s --protocol tcp --port %d --source-group %s", in.Front.SecurityGroups[0], port, sgID))
		}
	}
	status := CheckFail
	if fs.warnOnly {
		status = CheckWarn
	}
	return fs.result(res, status, fmt.Sprintf("admits tcp/%d from %s", port, strings.Join(from, ", ")))
}

func coversPort(p ec2types.IpPermission, port int32) bool {
	proto := aws.ToString(p.IpProtocol)
	if proto == "-1" {
		return true
	}
	return (proto == "tcp" || proto == "6") && aws.ToInt32(p.FromPort) <= port && port <= aws.ToInt32(p.ToPort)
}

// egressAllows reports whether any of groups lets tcp/port out to taskSG: by group, or to any
// CIDR (glbootstrap does not know the tasks' addresses in advance, so a CIDR rule counts).
func egressAllows(groups []ec2types.SecurityGroup, taskSG string, port int32) bool {
	for _, g := range groups {
		for _, p := range g.IpPermissionsEgress {
			if !coversPort(p, port) {
				continue
			}
			if len(p.IpRanges) > 0 || len(p.PrefixListIds) > 0 {
				return true
			}
			for _, pair := range p.UserIdGroupPairs {
				if aws.ToString(pair.GroupId) == taskSG {
					return true
				}
			}
		}
	}
	return false
}

// checkEgress: the task subnet reaches ECR (api and dkr), S3 (image layers) and, when a
// container logs with awslogs, CloudWatch Logs: through a NAT gateway (private tasks), an
// internet gateway (tasks with a public IP), or VPC endpoints.
func checkEgress(ctx context.Context, in checkInput) Finding {
	res := "subnet " + in.Subnet
	sn, err := in.subnetInfo(ctx)
	switch {
	case isNotFound(err):
		return Finding{Status: CheckFail, Resource: res, Problem: err.Error(), Fix: "fix fargate.subnet (default: the front's own subnet)"}
	case err != nil:
		return apiFinding(res, "ec2:DescribeSubnets", err)
	}
	vpc := aws.ToString(sn.VpcId)
	rt, _, err := in.AWS.EC2.RouteTable(ctx, in.Subnet, vpc)
	if err != nil {
		if isNotFound(err) {
			return Finding{Status: CheckFail, Resource: res, Problem: err.Error(), Fix: "associate a route table with a default route with the subnet"}
		}
		return apiFinding(res, "ec2:DescribeRouteTables", err)
	}
	rtID := aws.ToString(rt.RouteTableId)
	var nat, igw, other string
	for _, r := range rt.Routes {
		if aws.ToString(r.DestinationCidrBlock) != "0.0.0.0/0" || r.State == ec2types.RouteStateBlackhole {
			continue
		}
		switch gw := aws.ToString(r.GatewayId); {
		case aws.ToString(r.NatGatewayId) != "":
			nat = aws.ToString(r.NatGatewayId)
		case strings.HasPrefix(gw, "igw-"):
			igw = gw
		default:
			other = firstNonEmpty(gw, aws.ToString(r.TransitGatewayId), aws.ToString(r.NetworkInterfaceId), aws.ToString(r.InstanceId), aws.ToString(r.VpcPeeringConnectionId), "another target")
		}
	}
	publicIP := in.EnablePublicIP
	switch {
	case !publicIP && nat != "":
		return Finding{Status: CheckOK, Resource: res, Detail: fmt.Sprintf("private tasks reach ECR, S3 and CloudWatch Logs through %s (0.0.0.0/0 in %s)", nat, rtID)}
	case publicIP && igw != "":
		return Finding{Status: CheckOK, Resource: res, Detail: fmt.Sprintf("tasks with a public IP reach ECR, S3 and CloudWatch Logs through %s (0.0.0.0/0 in %s)", igw, rtID)}
	case publicIP && nat != "":
		return Finding{Status: CheckWarn, Resource: res,
			Problem: fmt.Sprintf("enable_public_ip gives tasks a public IP, but %s routes 0.0.0.0/0 to %s: the public IP is never used for egress and cannot be reached from outside", rtID, nat),
			Fix:     "set fargate.enable_public_ip: false (private tasks through the NAT gateway), or use a subnet whose default route is an internet gateway"}
	}
	// No usable default route: only VPC endpoints can carry the traffic.
	needed := []string{"ecr.api", "ecr.dkr", "s3"}
	if td, err := in.taskDefinition(ctx); err != nil || usesAWSLogs(td) {
		needed = append(needed, "logs")
	}
	eps, err := in.AWS.EC2.VPCEndpoints(ctx, vpc)
	if err != nil {
		return apiFinding(res, "ec2:DescribeVpcEndpoints", err)
	}
	var missing []string
	for _, svc := range needed {
		if !endpointCovers(eps, "com.amazonaws."+in.Region+"."+svc, rtID) {
			missing = append(missing, svc)
		}
	}
	if len(missing) == 0 {
		return Finding{Status: CheckOK, Resource: res, Detail: "tasks reach " + strings.Join(needed, ", ") + " through VPC endpoints of " + vpc}
	}
	why := "no default route"
	switch {
	case igw != "":
		why = fmt.Sprintf("its default route is internet gateway %s but tasks get no public IP (enable_public_ip false)", igw)
	case other != "":
		return Finding{Status: CheckWarn, Resource: res,
			Problem: fmt.Sprintf("%s routes 0.0.0.0/0 to %s, which glbootstrap cannot follow, and %s has no VPC endpoint for %s", rtID, other, vpc, strings.Join(missing, ", ")),
			Fix:     "make sure that route reaches the internet, or add VPC endpoints for " + strings.Join(missing, ", ")}
	}
	fix := fmt.Sprintf("route 0.0.0.0/0 of %s to a NAT gateway, or add VPC endpoints for %s (s3 as a gateway endpoint on %s)", rtID, strings.Join(missing, ", "), rtID)
	if igw != "" {
		fix = "set fargate.enable_public_ip: true, or " + fix
	}
	return Finding{Status: CheckFail, Resource: res,
		Problem: fmt.Sprintf("%s and %s has no VPC endpoint for %s: tasks cannot pull the image or write logs", why, vpc, strings.Join(missing, ", ")),
		Fix:     fix}
}

// endpointCovers: an available endpoint for service; a gateway endpoint only for the route
// tables it is attached to, an interface endpoint only with private DNS (else the SDKs in the
// task still resolve the public name).
func endpointCovers(eps []ec2types.VpcEndpoint, service, routeTable string) bool {
	for _, ep := range eps {
		if aws.ToString(ep.ServiceName) != service || ep.State != ec2types.StateAvailable && ep.State != "available" {
			continue
		}
		switch ep.VpcEndpointType {
		case ec2types.VpcEndpointTypeGateway:
			if slices.Contains(ep.RouteTableIds, routeTable) {
				return true
			}
		default:
			if aws.ToBool(ep.PrivateDnsEnabled) {
				return true
			}
		}
	}
	return false
}
