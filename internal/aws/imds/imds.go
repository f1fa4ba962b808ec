// Package imds reads the instance facts glbootstrap defaults from EC2 instance metadata, IMDSv2
// only, through aws-sdk-go-v2's feature/ec2/imds client.
//
// The endpoint is the SDK's: http://169.254.169.254, or http://[fd00:ec2::254] with
// AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6, or whatever AWS_EC2_METADATA_SERVICE_ENDPOINT names
// (tests and the demo point it at AWS's amazon-ec2-metadata-mock).
package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Bounds for Fetch. Off EC2, 169.254.169.254 does not answer; with these limits (and the SDK's
// own 250 ms dial and 500 ms response-header timeouts) the agent gives up in about a second
// instead of hanging, and never takes more than fetchTimeout in total.
const (
	fetchTimeout = 5 * time.Second
	maxAttempts  = 2
	maxBackoff   = 200 * time.Millisecond
)

// The SDK's default endpoints (feature/ec2/imds, api_client.go).
const (
	defaultIPv4Endpoint = "http://169.254.169.254"
	defaultIPv6Endpoint = "http://[fd00:ec2::254]"
)

// Facts are the instance facts read from metadata. Fetch never returns an empty field.
type Facts struct {
	Region         string   // placement/region, e.g. us-east-2
	InstanceID     string   // instance-id, e.g. i-0123456789abcdef0
	InstanceType   string   // instance-type, e.g. t3.micro
	PrivateIPv4    string   // local-ipv4: the primary interface's private address
	MAC            string   // mac: the primary interface, the key for the per-interface paths
	SubnetID       string   // network/interfaces/macs/<mac>/subnet-id
	VPCID          string   // network/interfaces/macs/<mac>/vpc-id
	VPCCIDR        string   // network/interfaces/macs/<mac>/vpc-ipv4-cidr-block: the VPC's primary IPv4 CIDR
	SecurityGroups []string // network/interfaces/macs/<mac>/security-group-ids (served newline-separated), in IMDS order
}

// ErrUnreachable marks a Fetch failure to reach instance metadata at all (no IMDS, a hop limit of
// 1 in a container, IMDSv2 token refused), as opposed to a missing or empty value.
var ErrUnreachable = errors.New("instance metadata (IMDSv2) is not reachable")

// Fetch reads Facts from instance metadata with IMDSv2 (the SDK does the token PUT; there is no
// fallback to IMDSv1). It takes at most 5 s and retries each request once, so a machine that is
// not on EC2 fails fast with an error wrapping ErrUnreachable that says what to do. A path that
// is missing or empty is an error naming the path.
func Fetch(ctx context.Context) (Facts, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()

	opts := imds.Options{
		// IMDSv2 only: without this the SDK silently retries without a token when the token PUT
		// is refused with 403/404/405.
		EnableFallback: aws.FalseTernary,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = maxAttempts
			o.MaxBackoff = maxBackoff
		}),
		// Otherwise imds.New wraps the retryer with its own backoff of up to 1 s.
		DisableDefaultMaxBackoff: true,
	}
	// imds.New reads AWS_EC2_METADATA_SERVICE_ENDPOINT itself but the endpoint mode only from
	// shared config sources, which this package does not load.
	if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"), "IPv6") {
		opts.EndpointMode = imds.EndpointModeStateIPv6
	}
	r := reader{client: imds.New(opts), endpoint: endpoint(opts.EndpointMode)}

	var f Facts
	var err error
	for _, v := range []struct {
		path string
		dst  *string
	}{
		// The first request also fetches the token, so it is the one that finds out whether
		// IMDS is there at all. placement/region rather than the SDK's GetRegion, which parses
		// the identity document.
		{"placement/region", &f.Region},
		{"instance-id", &f.InstanceID},
		{"instance-type", &f.InstanceType},
		{"local-ipv4", &f.PrivateIPv4},
		{"mac", &f.MAC},
	} {
		if *v.dst, err = r.get(ctx, v.path); err != nil {
			return Facts{}, err
		}
	}
	mac := "network/interfaces/macs/" + f.MAC + "/"
	for _, v := range []struct {
		path string
		dst  *string
	}{
		{mac + "subnet-id", &f.SubnetID},
		{mac + "vpc-id", &f.VPCID},
		{mac + "vpc-ipv4-cidr-block", &f.VPCCIDR},
	} {
		if *v.dst, err = r.get(ctx, v.path); err != nil {
			return Facts{}, err
		}
	}
	sgs, err := r.get(ctx, mac+"security-group-ids")
	if err != nil {
		return Facts{}, err
	}
	for _, sg := range strings.Split(sgs, "\n") {
		if sg = strings.TrimSpace(sg); sg != "" {
			f.SecurityGroups = append(f.SecurityGroups, sg)
		}
	}
	return f, nil
}

func endpoint(mode imds.EndpointModeState) string {
	if v := os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT"); v != "" {
		return v
	}
	if mode == imds.EndpointModeStateIPv6 {
		return defaultIPv6Endpoint
	}
	return defaultIPv4Endpoint
}

type reader struct {
	client   *imds.Client
	endpoint string
}

// get reads one meta-data path and trims it; an empty value is an error.
func (r reader) get(ctx context.Context, path string) (string, error) {
	out, err := r.client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", r.fail(path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, 64<<10))
	if err != nil {
		return "", fmt.Errorf("reading instance metadata %s: %w", path, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", emptyErr(path)
	}
	return v, nil
}

// fail tells an answer about a path (an HTTP status on the GET, e.g. 404) from not reaching
// IMDS at all (connection refused or timed out, or the token PUT refused).
func (r reader) fail(path string, err error) error {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil && re.Response.Request != nil &&
		re.Response.Request.URL.Path != "/latest/api/token" {
		return fmt.Errorf("reading instance metadata %s (HTTP %d from %s): %w", path, re.HTTPStatusCode(), r.endpoint, err)
	}
	return &unreachableError{endpoint: r.endpoint, cause: err}
}

func emptyErr(path string) error {
	return fmt.Errorf("instance metadata %s is empty", path)
}

type unreachableError struct {
	endpoint string
	cause    error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("%s at %s: %v; run this on EC2 with IMDS enabled (hop limit >= 2 in containers), or set AWS_EC2_METADATA_SERVICE_ENDPOINT",
		ErrUnreachable, e.endpoint, e.cause)
}

func (e *unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.cause} }
