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
			return gitlabapi.New(baseURL, caPEM)
		},
		Units:       systemd.For(rt.host),
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
		Host:     rt.host,
		Config:   rt.config,
		Facts:    gitlab.Facts{PrivateIPv4: rt.facts.PrivateIPv4, VPCCIDR: rt.facts.VPCCIDR, Region: rt.facts.Region},
		Params:   rt.aws,
		Progress: rt.progress,
		NewBackupStore: func(region string) (backup.PreflightStore, error) {
			return rt.aws.s3For(region)
		},
		Units:        systemd.For(rt.host),
		ConfigSource: rt.source,
		Binary:       binary,
	})
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
	c, err := a.config()
	if err != nil {
		return nil, err
	}
	c = c.Copy()
	c.Region = region
	return s3api.New(c), nil
}
