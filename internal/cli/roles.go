package cli

import (
	"context"
	"os"

	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
	s3api "github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/aws/ssm"
	"github.com/glbootstrap/glbootstrap/internal/backup"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/gitlabapi"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/systemd"
	"github.com/glbootstrap/glbootstrap/roles/gitlab"
	"github.com/glbootstrap/glbootstrap/roles/runner"
)

// runtime is what the CLI hands a role to prepare it: the host, the valid
// configuration, instance facts, AWS clients and a progress sink.
type runtime struct {
	host     *host.Host
	config   *config.Config
	facts    imds.Facts
	aws      *awsClients
	progress func(string)
	// source is the --config value, absolute when it is a file.
	source string
	// bakeOnly is true when every selected phase is a bake phase.
	bakeOnly bool
	// plan wires the implementations of every effect (host, systemd, GitLab, SSM, S3,
	// CodeBuild) that only read and record; roles never see it.
	plan bool
}

// prepared is a role ready to converge.
type prepared interface {
	Phases() []engine.Phase
	// Secrets are the secret values known so far, masked in all output.
	Secrets() []string
}

// roleDef is one role of this build. To add a role: a package under roles/
// and one entry in roles below.
type roleDef struct {
	name string
	// phases lists the phases without resolving anything ("phases", and
	// checking --phase before any network call).
	phases func() []engine.Phase
	// prepare resolves the role's inputs; an error means nothing changed.
	prepare func(ctx context.Context, rt runtime) (prepared, error)
}

var roles = []roleDef{
	{name: runner.Name, phases: runner.PhaseList, prepare: prepareRunner},
	{name: gitlab.Name, phases: gitlab.PhaseList, prepare: prepareGitLab},
}

func roleNames() []string {
	var out []string
	for _, r := range roles {
		out = append(out, r.name)
	}
	return out
}

func findRole(name string) (roleDef, bool) {
	for _, r := range roles {
		if r.name == name {
			return r, true
		}
	}
	return roleDef{}, false
}

func prepareRunner(ctx context.Context, rt runtime) (prepared, error) {
	return runner.Prepare(ctx, runner.Deps{
		Host:    rt.host,
		Config:  rt.config,
		Facts:   runnerFacts(rt.facts),
		Params:  rt.aws,
		Objects: rt.aws,
		NewPreflight: func(region string) (runner.AWSReaders, error) {
			return rt.aws.preflightReaders(region)
		},
		NewGitLab: func(baseURL string, caPEM []byte) (runner.GitLab, error) {
			c, err := gitlabapi.New(baseURL, caPEM)
			if err != nil {
				return nil, err
			}
			if rt.plan {
				return gitlabapi.Plan(c), nil
			}
			return gitlabapi.Apply(c), nil
		},
		Units:       systemd.For(rt.host, rt.plan),
		Progress:    rt.progress,
		Coordinator: coordinatorFor(rt),
		BakeOnly:    rt.bakeOnly,
	})
}

func prepareGitLab(ctx context.Context, rt runtime) (prepared, error) {
	binary := ""
	if rt.host.Live() {
		// The backup service runs this very binary; under --root the bake's path.
		binary, _ = os.Executable()
	}
	return gitlab.Prepare(ctx, gitlab.Deps{
		Host:         rt.host,
		Config:       rt.config,
		Facts:        gitlab.Facts{PrivateIPv4: rt.facts.PrivateIPv4, VPCCIDR: rt.facts.VPCCIDR, Region: rt.facts.Region},
		Params:       &ssmParams{a: rt.aws, plan: rt.plan},
		Progress:     rt.progress,
		BackupCheck:  backupCheck(rt),
		Units:        systemd.For(rt.host, rt.plan),
		ConfigSource: rt.source,
		Binary:       binary,
	})
}

// ssmParams is the gitlab role's Parameters: reads through the lazily made SSM client; Put
// writes only when the value differs, or under plan only reads (SSM is AWS, not the host, so
// --root alone does not stop it).
type ssmParams struct {
	a    *awsClients
	plan bool
}

func (p *ssmParams) Get(ctx context.Context, name string) (string, error) { return p.a.Get(ctx, name) }

func (p *ssmParams) Put(ctx context.Context, name, value string, secure bool) (host.Step, error) {
	if p.a.ssm == nil {
		c, err := p.a.config()
		if err != nil {
			return host.Step{Kind: "remote", Target: "ssm:" + name}, err
		}
		p.a.ssm = ssm.New(c)
	}
	if p.plan {
		return p.a.ssm.PlanPutStep(ctx, name, value, secure)
	}
	return p.a.ssm.PutStep(ctx, name, value, secure)
}

// backupCheck is the backup-preflight check for rt: the full write check, or under plan the
// region check only.
func backupCheck(rt runtime) backup.Checker {
	newStore := func(region string) (backup.PreflightStore, error) { return rt.aws.s3For(region) }
	if rt.plan {
		return backup.PlanCheck(newStore)
	}
	return backup.ApplyCheck(newStore)
}

// s3For returns an S3 client for region (the backup bucket's, which may
// differ from the instance's).
func (a *awsClients) s3For(region string) (*s3api.Client, error) {
	c, err := a.config()
	if err != nil {
		return nil, err
	}
	c = c.Copy()
	c.Region = region
	return s3api.New(c), nil
}
