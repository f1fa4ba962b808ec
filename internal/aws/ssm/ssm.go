// Package ssm reads and writes SSM Parameter Store parameters for glbootstrap: config documents
// (ssm:/path) and secrets (SecureString, always read with decryption).
//
// Errors are mapped to what the operator must do, and a parameter's value never appears in an
// error or a log line.
package ssm

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/glbootstrap/glbootstrap/internal/aws/awserr"
	"github.com/glbootstrap/glbootstrap/internal/host"
)

// Sentinels for callers that map errors to exit codes; match them with errors.Is. The SDK's own
// error stays in the chain too (errors.As with *types.ParameterNotFound or smithy.APIError).
var (
	// ErrNotFound: the parameter does not exist (SSM ParameterNotFound).
	ErrNotFound = errors.New("SSM parameter not found")
	// ErrAccessDenied: IAM refused ssm:GetParameter, or KMS refused decrypting a SecureString
	// (SSM AccessDeniedException). Errors matching it match ErrDecryptDenied or not.
	ErrAccessDenied = errors.New("access to SSM parameter denied")
	// ErrDecryptDenied: KMS refused decrypting a SecureString; also matches ErrAccessDenied.
	ErrDecryptDenied = errors.New("decrypting SSM parameter denied")
)

// Client is a thin wrapper over the SDK's SSM client.
type Client struct {
	api    *ssm.Client
	region string
}

// New returns a Client for cfg (see awscfg.Load). The endpoint follows the SDK's standard
// settings, e.g. AWS_ENDPOINT_URL_SSM.
func New(cfg aws.Config) *Client {
	return &Client{api: ssm.NewFromConfig(cfg), region: cfg.Region}
}

// Get returns the value of parameter name (GetParameter with WithDecryption=true, so String,
// StringList and SecureString all come back in plain text). Errors wrap ErrNotFound,
// ErrAccessDenied or ErrDecryptDenied with a message saying what to fix.
func (c *Client) Get(ctx context.Context, name string) (string, error) {
	out, err := c.api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if err != nil {
		return "", c.mapErr(name, "ssm:GetParameter", err)
	}
	if out.Parameter == nil || out.Parameter.Value == nil {
		return "", fmt.Errorf("reading SSM parameter %s: the answer has no value", name)
	}
	return *out.Parameter.Value, nil
}

// Put makes parameter name hold value, as a SecureString (encrypted with the account's default
// key, alias/aws/ssm) when secure is true, else as a String. It reads first and writes
// (PutParameter with Overwrite) only when the value or the type differs; changed reports whether
// it wrote. Errors are mapped like Get's.
func (c *Client) Put(ctx context.Context, name, value string, secure bool) (changed bool, err error) {
	_, _, same, err := c.compare(ctx, name, value, secure)
	if err != nil || same {
		return false, err
	}
	return true, c.write(ctx, name, value, secure)
}

// write is PutParameter with Overwrite, errors mapped.
func (c *Client) write(ctx context.Context, name, value string, secure bool) error {
	typ := types.ParameterTypeString
	if secure {
		typ = types.ParameterTypeSecureString
	}
	_, err := c.api.PutParameter(ctx, &ssm.PutParameterInput{
		Name:      aws.String(name),
		Value:     aws.String(value),
		Type:      typ,
		Overwrite: aws.Bool(true),
	})
	if err != nil {
		return c.mapErr(name, "ssm:PutParameter", err)
	}
	return nil
}

// compare reads name (with decryption) and reports its value, whether it exists, and whether
// it already holds value with the type secure asks for.
func (c *Client) compare(ctx context.Context, name, value string, secure bool) (old string, exists, same bool, err error) {
	typ := types.ParameterTypeString
	if secure {
		typ = types.ParameterTypeSecureString
	}
	out, err := c.api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if err != nil {
		if err = c.mapErr(name, "ssm:GetParameter", err); errors.Is(err, ErrNotFound) {
			return "", false, false, nil
		}
		return "", false, false, err
	}
	if p := out.Parameter; p != nil && p.Value != nil {
		return *p.Value, true, *p.Value == value && p.Type == typ, nil
	}
	return "", true, false, nil
}

// PutStep is Put returning the step that says what it did: "created: VALUE", "updated: OLD ->
// NEW", or "VALUE (unchanged)". A SecureString's value is never shown.
func (c *Client) PutStep(ctx context.Context, name, value string, secure bool) (host.Step, error) {
	st, err := c.describe(ctx, name, value, secure, "")
	if err != nil || !st.Changed {
		return st, err
	}
	// describe has read the parameter already: write without reading it again.
	return st, c.write(ctx, name, value, secure)
}

// PlanPutStep reads name and returns the step PutStep would return, prefixed "would be", and
// writes nothing (the plan's SSM).
func (c *Client) PlanPutStep(ctx context.Context, name, value string, secure bool) (host.Step, error) {
	st, err := c.describe(ctx, name, value, secure, "would be ")
	return st, err
}

func (c *Client) describe(ctx context.Context, name, value string, secure bool, verb string) (host.Step, error) {
	st := host.Step{Kind: "remote", Target: "ssm:" + name}
	old, exists, same, err := c.compare(ctx, name, value, secure)
	if err != nil {
		return st, err
	}
	show := func(v string) string {
		if secure {
			return "(SecureString)"
		}
		return v
	}
	switch {
	case same:
		st.Summary = show(value) + " (unchanged)"
	case !exists:
		st.Changed, st.Summary = true, verb+"created: "+show(value)
	default:
		st.Changed, st.Summary = true, verb+"updated: "+show(old)+" -> "+show(value)
	}
	return st, nil
}

// Error is a mapped SSM failure: Error() is the advice, Unwrap gives the sentinel and the SDK's
// error.
type Error = awserr.Error

// kmsMarkers are substrings of the AccessDeniedException messages SSM relays from KMS when
// decrypting a SecureString fails, as opposed to IAM refusing the SSM action itself. The
// parameter name is stripped from the message before matching, so a name like /app/kms-key
// cannot fool it.
var kmsMarkers = []string{
	"ciphertext refers to a customer master key",
	"ciphertext refers to a kms key",
	"service: awskms",
	"service: kms",
	"kms:decrypt",
	"kmsaccessdenied",
	"kms key",
}

// accountPlaceholder stands in the advice's ARN when AWS's message names no account.
const accountPlaceholder = "<account-id>"

var (
	ssmARNRe     = regexp.MustCompile(`arn:aws[a-z-]*:ssm:[a-z0-9-]+:(\d{12}):parameter\S*`)
	principalRe  = regexp.MustCompile(`arn:aws[a-z-]*:(?:sts|iam)::(\d{12}):`)
	notFoundHint = `create it with "aws ssm put-parameter --name %s --type SecureString --value ..." or fix the name in the config`
)

// mapErr turns SDK errors into advice; action is the IAM action to name when access is denied.
func (c *Client) mapErr(name, action string, err error) error {
	var nf *types.ParameterNotFound
	if errors.As(err, &nf) {
		return &Error{Sentinel: ErrNotFound, Cause: err,
			Msg: fmt.Sprintf("SSM parameter %s does not exist in %s: "+notFoundHint, name, c.region, name)}
	}
	var apiErr smithy.APIError
	verb := "reading"
	if action == "ssm:PutParameter" {
		verb = "writing"
	}
	if errors.Is(err, awserr.ErrNoCredentials) {
		// The request was never sent: not a network problem, and not SSM refusing it.
		var noCreds *awserr.Error
		errors.As(err, &noCreds)
		return &Error{Sentinel: awserr.ErrNoCredentials, Cause: err, Msg: fmt.Sprintf("%s SSM parameter %s: %s", verb, name, noCreds.Msg)}
	}
	if !errors.As(err, &apiErr) {
		// No answer at all: the network path, not the request.
		return &Error{Sentinel: awserr.ErrUnreachable, Cause: err,
			Msg: fmt.Sprintf("%s SSM parameter %s: SSM in %s did not answer (%v); the instance needs outbound HTTPS to SSM: a NAT gateway, or an interface VPC endpoint com.amazonaws.%s.ssm with private DNS", verb, name, c.region, err, c.region)}
	}
	if apiErr.ErrorCode() != "AccessDeniedException" {
		return fmt.Errorf("%s SSM parameter %s: %w", verb, name, err)
	}
	awsMsg := apiErr.ErrorMessage()
	lower := strings.ToLower(strings.ReplaceAll(awsMsg, name, ""))
	for _, m := range kmsMarkers {
		if strings.Contains(lower, m) {
			return &Error{Sentinel: decryptDenied{}, Cause: err,
				Msg: fmt.Sprintf("cannot decrypt SecureString %s: the instance profile needs kms:Decrypt on the parameter's KMS key (alias/aws/ssm unless the parameter names another key)%s",
					name, awsSaid(awsMsg))}
		}
	}
	may := "read"
	if action == "ssm:PutParameter" {
		may = "write"
	}
	return &Error{Sentinel: ErrAccessDenied, Cause: err,
		Msg: fmt.Sprintf("the instance profile may not %s %s: it needs %s on %s%s", may, name, action, c.paramARN(name, awsMsg), awsSaid(awsMsg))}
}

// decryptDenied matches both ErrDecryptDenied and ErrAccessDenied.
type decryptDenied struct{}

func (decryptDenied) Error() string   { return ErrDecryptDenied.Error() }
func (decryptDenied) Unwrap() []error { return []error{ErrDecryptDenied, ErrAccessDenied} }

// paramARN is the parameter's ARN, taking the account from AWS's message (the resource ARN, or
// the caller's ARN) since the client does not otherwise know it.
func (c *Client) paramARN(name, awsMsg string) string {
	if m := ssmARNRe.FindString(awsMsg); m != "" {
		return strings.TrimRight(m, ".,;)")
	}
	account := accountPlaceholder
	if m := principalRe.FindStringSubmatch(awsMsg); m != nil {
		account = m[1]
	}
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	return "arn:aws:ssm:" + c.region + ":" + account + ":parameter" + name
}

// awsSaid appends AWS's own message, which names the principal and the key; it never holds the
// parameter's value.
func awsSaid(msg string) string {
	if msg == "" {
		return ""
	}
	return " (AWS: " + msg + ")"
}
