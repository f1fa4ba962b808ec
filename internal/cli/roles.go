package cli

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"

	s3api "github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/aws/ssm"
	"github.com/glbootstrap/glbootstrap/internal/backup"
	"github.com/glbootstrap/glbootstrap/internal/gitlabapi"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/image"
	"github.com/glbootstrap/glbootstrap/internal/role"
	"github.com/glbootstrap/glbootstrap/internal/systemd"
)

// The roles come from the registry Main is given (roles.All in the product): the commands that
// converge, validate or list phases look a role up there and hand it a role.Env; none of them
// names a role. Commands that belong to one role (doctor, backup, runner unregister) import it.

// roleEnv is what every role's Prepare gets from a command; selected are the phases that will
// run (nil: all).
func (e *env) roleEnv(s *session, clients *awsClients, source string, bakeOnly bool, selected []string) role.Env {
	return role.Env{
		AllowDowngrade: e.allowDowngrade,
		Plan:           s.plan,
		Selected:       selected,
		Host:           s.host,
		Facts:          clients.facts,
		AWS:            clients,
		Images: func(spec role.ImageSpec) image.Converger {
			l := newLazyImage(clients, spec, s.out.progress)
			if s.plan {
				return image.PlanTo(spec.Repository, l)
			}
			return image.ApplyTo(spec.Repository, l)
		},
		Units: systemd.For(s.host, s.plan),
		GitLab: func(baseURL string, caPEM []byte) (gitlabapi.Lifecycle, error) {
			c, err := gitlabapi.New(baseURL, caPEM)
			if err != nil {
				return nil, err
			}
			if s.plan {
				return gitlabapi.Plan(c), nil
			}
			return gitlabapi.Apply(c), nil
		},
		BackupCheck: backupCheck(clients, s.plan),
		Progress:    s.out.progress,
		Source:      absSource(source),
		BakeOnly:    bakeOnly,
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
// private URL with it); under plan (a.plan) it only reads and says what it would write. Under
// --root it still runs: SSM is AWS, not the host.
func (a *awsClients) Put(ctx context.Context, name, value string, secure bool) (host.Step, error) {
	if a.ssm == nil {
		c, err := a.config()
		if err != nil {
			return host.Step{Kind: "remote", Target: "ssm:" + name}, err
		}
		a.ssm = ssm.New(c)
	}
	if a.plan {
		return a.ssm.PlanPutStep(ctx, name, value, secure)
	}
	return a.ssm.PutStep(ctx, name, value, secure)
}

// backupCheck is the backup-preflight check: the full write check, or under plan the region
// check only.
func backupCheck(a *awsClients, plan bool) backup.Checker {
	newStore := func(region string) (backup.PreflightStore, error) { return a.s3For(region) }
	if plan {
		return backup.PlanCheck(newStore)
	}
	return backup.ApplyCheck(newStore)
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
