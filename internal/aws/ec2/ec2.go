// Package ec2 reads the VPC resources GitLab's Fargate driver's tasks depend on (security
// groups, the subnet, its route table, VPC endpoints) for glbootstrap's preflight checks.
// Read-only: Describe* calls only.
package ec2

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/glbootstrap/glbootstrap/internal/aws/awserr"
)

// Sentinels for callers; match them with errors.Is. The SDK's error stays in the chain.
var (
	// ErrNotFound: a security group or subnet does not exist (InvalidGroup.NotFound,
	// InvalidSubnetID.NotFound, or an empty answer).
	ErrNotFound = errors.New("EC2 resource not found")
	// ErrAccessDenied: IAM refused the call (EC2 answers UnauthorizedOperation).
	ErrAccessDenied = errors.New("access to EC2 denied")
)

// Client is a thin wrapper over the SDK's EC2 client.
type Client struct {
	api    *ec2.Client
	region string
}

// New returns a Client for cfg (see awscfg.Load); the endpoint follows the SDK's standard
// settings, e.g. AWS_ENDPOINT_URL_EC2.
func New(cfg aws.Config) *Client {
	return &Client{api: ec2.NewFromConfig(cfg), region: cfg.Region}
}

// SecurityGroups describes the security groups ids (DescribeSecurityGroups), in the order EC2
// returns them. Any id that does not exist makes the whole call ErrNotFound, as in EC2.
func (c *Client) SecurityGroups(ctx context.Context, ids ...string) ([]types.SecurityGroup, error) {
	out, err := c.api.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: ids})
	what := "security group(s) " + strings.Join(ids, ", ")
	if err != nil {
		return nil, c.mapErr("ec2:DescribeSecurityGroups", what, err)
	}
	if len(out.SecurityGroups) == 0 {
		return nil, &Error{Sentinel: ErrNotFound, Msg: fmt.Sprintf("%s do(es) not exist in %s", what, c.region)}
	}
	return out.SecurityGroups, nil
}

// Subnet describes one subnet (DescribeSubnets).
func (c *Client) Subnet(ctx context.Context, id string) (types.Subnet, error) {
	out, err := c.api.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{id}})
	if err != nil {
		return types.Subnet{}, c.mapErr("ec2:DescribeSubnets", "subnet "+id, err)
	}
	if len(out.Subnets) == 0 {
		return types.Subnet{}, &Error{Sentinel: ErrNotFound, Msg: fmt.Sprintf("subnet %s does not exist in %s", id, c.region)}
	}
	return out.Subnets[0], nil
}

// RouteTable returns the route table that routes subnetID's traffic: the one explicitly
// associated with it, else the main route table of vpcID (explicit is then false)
// (DescribeRouteTables filtered on association.subnet-id, then on vpc-id and association.main).
func (c *Client) RouteTable(ctx context.Context, subnetID, vpcID string) (rt types.RouteTable, explicit bool, err error) {
	out, err := c.api.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: []types.Filter{
		{Name: aws.String("association.subnet-id"), Values: []string{subnetID}},
	}})
	if err != nil {
		return rt, false, c.mapErr("ec2:DescribeRouteTables", "the route table of subnet "+subnetID, err)
	}
	if len(out.RouteTables) > 0 {
		return out.RouteTables[0], true, nil
	}
	out, err = c.api.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: []types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{vpcID}},
		{Name: aws.String("association.main"), Values: []string{"true"}},
	}})
	if err != nil {
		return rt, false, c.mapErr("ec2:DescribeRouteTables", "the main route table of "+vpcID, err)
	}
	if len(out.RouteTables) == 0 {
		return rt, false, &Error{Sentinel: ErrNotFound, Msg: fmt.Sprintf("no route table routes subnet %s (and %s has no main route table)", subnetID, vpcID)}
	}
	return out.RouteTables[0], false, nil
}

// VPCEndpoints lists the VPC endpoints of vpcID (DescribeVpcEndpoints filtered on vpc-id),
// following pagination.
func (c *Client) VPCEndpoints(ctx context.Context, vpcID string) ([]types.VpcEndpoint, error) {
	var all []types.VpcEndpoint
	p := ec2.NewDescribeVpcEndpointsPaginator(c.api, &ec2.DescribeVpcEndpointsInput{Filters: []types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{vpcID}},
	}})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, c.mapErr("ec2:DescribeVpcEndpoints", "the VPC endpoints of "+vpcID, err)
		}
		all = append(all, out.VpcEndpoints...)
	}
	return all, nil
}

// Error is a mapped EC2 failure: Error() says what failed, Unwrap gives the sentinel and the
// SDK's error.
type Error = awserr.Error

func (c *Client) mapErr(action, what string, err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		switch {
		case code == "UnauthorizedOperation" || code == "AccessDenied" || code == "AccessDeniedException":
			return &Error{Sentinel: ErrAccessDenied, Cause: err,
				Msg: fmt.Sprintf("reading %s: not allowed to call %s (AWS: %s)", what, action, apiErr.ErrorMessage())}
		case strings.HasSuffix(code, ".NotFound") || strings.HasSuffix(code, ".Malformed"):
			return &Error{Sentinel: ErrNotFound, Cause: err,
				Msg: fmt.Sprintf("%s: %s in %s (AWS: %s)", what, code, c.region, apiErr.ErrorMessage())}
		}
	}
	return fmt.Errorf("reading %s (%s): %w", what, action, err)
}
