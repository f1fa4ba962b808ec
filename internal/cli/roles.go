package cli

import (
	"context"

	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/gitlabapi"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/systemd"
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
		Host:   rt.host,
		Config: rt.config,
		Facts: runner.Facts{Region: rt.facts.Region, InstanceID: rt.facts.InstanceID,
			PrivateIPv4: rt.facts.PrivateIPv4, SubnetID: rt.facts.SubnetID},
		Params:  rt.aws,
		Objects: rt.aws,
		NewGitLab: func(baseURL string, caPEM []byte) (runner.GitLab, error) {
			return gitlabapi.New(baseURL, caPEM)
		},
		Units:    systemd.For(rt.host),
		Progress: rt.progress,
	})
}
