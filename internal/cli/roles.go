package cli

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"

	s3api "github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/aws/ssm"
	"github.com/glbootstrap/glbootstrap/internal/role"
)

// The roles come from the registry Main is given (roles.All in the product): the commands that
// converge, validate or list phases look a role up there and hand it a role.Env; none of them
// names a role. Commands that belong to one role (doctor, backup, runner unregister) import it.

// roleEnv is what every role's Prepare gets from a command; selected are the phases that will
// run (nil: all).
func (e *env) roleEnv(s *session, clients *awsClients, source string, bakeOnly bool, selected []string) role.Env {
	return role.Env{
		Selected: selected,
		Host:     s.host,
		Facts:    clients.facts,
		AWS:      clients,
		Images:   func(spec role.ImageSpec) role.Image { return newLazyImage(clients, spec, s.out.progress) },
		Progress: s.out.progress,
		Source:   absSource(source),
		BakeOnly: bakeOnly,
	}
}

// Config returns the AWS configuration, with region when it is not "" (the Fargate cluster's or
// the backup bucket's region, which may differ from the instance's).
func (a *awsClients) Config(region string) (aws.Config, error) {
	c, err := a.config()
	if err != nil {
		return aws.Config{}, err
	}
	if region != "" {
		c = c.Copy()
		c.Region = region
	}
	return c, nil
}

// Put writes an SSM parameter only when its value differs (the gitlab role publishes its
// private URL with it). Under --root it still runs: SSM is AWS, not the host.
func (a *awsClients) Put(ctx context.Context, name, value string, secure bool) (bool, error) {
	if a.ssm == nil {
		c, err := a.config()
		if err != nil {
			return false, err
		}
		a.ssm = ssm.New(c)
	}
	return a.ssm.Put(ctx, name, value, secure)
}

// s3For returns an S3 client for region (the backup bucket's, which may
// differ from the instance's).
func (a *awsClients) s3For(region string) (*s3api.Client, error) {
	c, err := a.Config(region)
	if err != nil {
		return nil, err
	}
	return s3api.New(c), nil
}
