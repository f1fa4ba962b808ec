// Package awscfg loads the aws-sdk-go-v2 configuration every AWS client of glbootstrap shares.
//
// Everything is redirected through the SDK's standard environment variables and shared config
// files, never through flags of our own: AWS_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
// AWS_SESSION_TOKEN or AWS_PROFILE, AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> (for example
// AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL_S3), AWS_EC2_METADATA_SERVICE_ENDPOINT for the instance
// metadata client that the default credential chain uses for the instance profile, and
// AWS_MAX_ATTEMPTS / AWS_RETRY_MODE for retries.
// See https://docs.aws.amazon.com/sdkref/latest/guide/settings-reference.html.
package awscfg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/glbootstrap/glbootstrap/internal/aws/awserr"
)

// Retry policy when the environment does not choose one: a first boot races IAM instance
// profile propagation and API throttling, so allow a few more attempts than the SDK's 3 with a
// short backoff. Every attempt is bounded (dial and TLS 5 s, response headers 8 s; AWS APIs answer
// in milliseconds), so an endpoint that never answers fails in under a minute (5 × 8 s plus
// backoff), not never.
const (
	maxAttempts = 5
	maxBackoff  = 3 * time.Second

	dialTimeout   = 5 * time.Second
	headerTimeout = 8 * time.Second
)

// ErrNoRegion is returned by Load when neither the caller nor the environment names a region.
var ErrNoRegion = errors.New("no AWS region: set it in the config, set AWS_REGION, or run on EC2 so instance metadata provides it")

// Load returns the default SDK configuration (environment, shared config files, then the instance
// profile through IMDSv2 only, see imdsv2OnlyCredentials) with region overriding any configured
// region when it is not empty. A failure to get credentials is an error wrapping
// awserr.ErrNoCredentials that says what to do.
// Unless AWS_MAX_ATTEMPTS or AWS_RETRY_MODE is set, clients retry with the standard retryer,
// up to 5 attempts with at most 5 s between them. It fails with ErrNoRegion when no region
// results; it does no network I/O (credentials are fetched on first use).
func Load(ctx context.Context, region string) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	if os.Getenv("AWS_MAX_ATTEMPTS") == "" && os.Getenv("AWS_RETRY_MODE") == "" {
		opts = append(opts, config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = maxAttempts
				o.MaxBackoff = maxBackoff
			})
		}))
	}
	// An endpoint that accepts the connection and never answers must not hang a boot forever:
	// bound the dial, the TLS handshake and the wait for response headers. The body of a large
	// upload or download is not bounded (ResponseHeaderTimeout starts after the request is sent).
	opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = dialTimeout }).
		WithTransportOptions(func(t *http.Transport) {
			t.TLSHandshakeTimeout = dialTimeout
			t.ResponseHeaderTimeout = headerTimeout
		})))
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading AWS configuration: %w", err)
	}
	imdsv2OnlyCredentials(&cfg)
	if cfg.Credentials != nil {
		cfg.Credentials = markedCredentials{cfg.Credentials}
	}
	if cfg.Region == "" {
		return aws.Config{}, ErrNoRegion
	}
	return cfg, nil
}

// imdsv2OnlyCredentials makes the instance profile's credentials, when the default chain ends
// there, come from IMDSv2 only, as every other metadata read of glbootstrap (internal/aws/imds).
// The SDK's metadata client otherwise falls back to tokenless IMDSv1 requests when the token
// PUT is refused with 403, 404 or 405, and prints "WARN falling back to IMDSv1" on stderr
// (feature/ec2/imds v1.20.9, token_provider.go; Options.EnableFallback, "By default fallback to
// IMDSv1 is enabled"). With it off, such an instance fails to get credentials with the token
// error instead. The client is otherwise the one the SDK builds (imds.NewFromConfig: endpoint
// and mode from AWS_EC2_METADATA_SERVICE_ENDPOINT(_MODE) or the shared config, the bounded HTTP
// client and retryer above). Credentials from the environment, a profile or a container
// endpoint are left alone.
func imdsv2OnlyCredentials(cfg *aws.Config) {
	if !aws.IsCredentialsProvider(cfg.Credentials, (*ec2rolecreds.Provider)(nil)) {
		return
	}
	client := imds.NewFromConfig(*cfg, func(o *imds.Options) { o.EnableFallback = aws.FalseTernary })
	cfg.Credentials = aws.NewCredentialsCache(ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }))
}

// markedCredentials marks a failure to get credentials with awserr.ErrNoCredentials and says what
// to do, so a wrapper does not mistake it for a service that did not answer: the SDK reports it
// inside the operation's error ("get identity: get credentials: ...") with no type of its own.
// A cancelled or expired context is passed through unmarked.
type markedCredentials struct{ aws.CredentialsProvider }

// noCredentialsHint is the advice of an ErrNoCredentials failure.
const noCredentialsHint = "on EC2 attach an instance profile (with IMDSv2 reachable: a container needs a metadata hop limit of 2), elsewhere set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"

func (m markedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := m.CredentialsProvider.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		return creds, &awserr.Error{Sentinel: awserr.ErrNoCredentials, Cause: err,
			Msg: fmt.Sprintf("no AWS credentials: %s (%v)", noCredentialsHint, err)}
	}
	return creds, err
}

// IsCredentialsProvider lets aws.IsCredentialsProvider see the wrapped provider.
func (m markedCredentials) IsCredentialsProvider(target aws.CredentialsProvider) bool {
	return aws.IsCredentialsProvider(m.CredentialsProvider, target)
}
