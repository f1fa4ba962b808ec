package testenv

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
)

func ssmClient(s *SSM, region string) *ssm.Client {
	return ssm.NewFromConfig(aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(s.URL()),
	})
}

func TestSSMProtocolThroughSDK(t *testing.T) {
	ctx := context.Background()
	s := NewSSM()
	defer s.Close()
	c := ssmClient(s, "eu-west-3")

	// Create, then refuse to create again, then overwrite (without Type) and see the version move.
	put, err := c.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/a/secret"), Value: aws.String("s3cr3t"), Type: types.ParameterTypeSecureString})
	if err != nil || put.Version != 1 {
		t.Fatalf("PutParameter = %+v, %v", put, err)
	}
	_, err = c.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/a/secret"), Value: aws.String("x"), Type: types.ParameterTypeSecureString})
	var exists *types.ParameterAlreadyExists
	if !errors.As(err, &exists) {
		t.Fatalf("second PutParameter without Overwrite: %v, want ParameterAlreadyExists", err)
	}
	put, err = c.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/a/secret"), Value: aws.String("s3cr3t2"), Overwrite: aws.Bool(true)})
	if err != nil || put.Version != 2 {
		t.Fatalf("overwriting PutParameter = %+v, %v", put, err)
	}
	if v, _ := s.Value("/a/secret"); v != "s3cr3t2" {
		t.Fatalf("Value = %q", v)
	}

	// Without decryption a SecureString reads as an opaque blob, with it as plain text.
	got, err := c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/a/secret")})
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Parameter; p.Type != types.ParameterTypeSecureString || strings.Contains(*p.Value, "s3cr3t") || *p.Value == "" ||
		*p.ARN != "arn:aws:ssm:eu-west-3:123456789012:parameter/a/secret" || p.Version != 2 || p.LastModifiedDate == nil {
		t.Errorf("GetParameter without decryption = %+v", p)
	}
	got, err = c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/a/secret"), WithDecryption: aws.Bool(true)})
	if err != nil || *got.Parameter.Value != "s3cr3t2" {
		t.Fatalf("GetParameter with decryption = %v, %v", got, err)
	}

	s.Put("/a/plain", "hello", false)
	many, err := c.GetParameters(ctx, &ssm.GetParametersInput{Names: []string{"/a/plain", "/a/secret", "/a/nope"}, WithDecryption: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if len(many.Parameters) != 2 || *many.Parameters[0].Value != "hello" || *many.Parameters[1].Value != "s3cr3t2" ||
		strings.Join(many.InvalidParameters, ",") != "/a/nope" {
		t.Errorf("GetParameters = %+v", many)
	}

	// Denials: KMS on decryption only, IAM on any read; both AccessDeniedException.
	s.DenyDecrypt("/a/secret")
	if _, err := c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/a/secret")}); err != nil {
		t.Errorf("read without decryption of a DenyDecrypt parameter: %v", err)
	}
	_, err = c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/a/secret"), WithDecryption: aws.Bool(true)})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDeniedException" || !strings.HasPrefix(apiErr.ErrorMessage(), "The ciphertext refers to a customer master key") {
		t.Errorf("decrypt denied: %v", err)
	}
	s.DenyRead("/a/plain")
	_, err = c.GetParameters(ctx, &ssm.GetParametersInput{Names: []string{"/a/plain"}})
	var denied *types.AccessDeniedException
	if !errors.As(err, &denied) || !strings.Contains(denied.ErrorMessage(), "ssm:GetParameters on resource: arn:aws:ssm:eu-west-3:123456789012:parameter/a/plain") {
		t.Errorf("read denied: %v", err)
	}

	if _, err := c.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String("/a/secret")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String("/a/secret")})
	var nf *types.ParameterNotFound
	if !errors.As(err, &nf) {
		t.Errorf("second DeleteParameter: %v, want ParameterNotFound", err)
	}
	if _, ok := s.Value("/a/secret"); ok {
		t.Error("deleted parameter still has a value")
	}
	if s.Calls("PutParameter") != 3 || s.Calls("DeleteParameter") != 2 {
		t.Errorf("Calls: put %d delete %d", s.Calls("PutParameter"), s.Calls("DeleteParameter"))
	}

	// An operation the stand-in does not model fails like an unknown one would.
	_, err = c.DescribeParameters(ctx, &ssm.DescribeParametersInput{})
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "UnknownOperationException" {
		t.Errorf("DescribeParameters: %v", err)
	}
}
