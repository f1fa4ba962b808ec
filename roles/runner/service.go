package runner

import (
	"context"
	"fmt"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// runnerConfig renders config.toml (0600: it holds the token) with one
// [[runners]] whose url and clone_url are GitLab's private URL. Run alone
// (--phase runner-config) it takes the token from config.toml or the state
// file without asking GitLab.
func (r *Role) runnerConfig(ctx context.Context) ([]host.Step, error) {
	if r.token == "" {
		tok, obtained, expires, err := r.existingToken()
		if err != nil {
			return nil, err
		}
		if tok == "" {
			st, err := r.loadState()
			if err != nil {
				return nil, err
			}
			tok, obtained, expires = st.Token, st.TokenObtainedAt, st.TokenExpiresAt
		}
		if tok == "" {
			if r.d.Host.DryRun {
				return []host.Step{{Kind: "file", Target: ConfigTOML, Changed: true,
					Summary: "would be written once the runner is registered"}}, nil
			}
			return nil, errNoToken
		}
		r.token, r.obtainedAt, r.expiresAt = tok, obtained, expires
	}
	data, err := renderTOML(r.runnerConfigFile())
	if err != nil {
		return nil, err
	}
	st, err := r.d.Host.EnsureFile(host.File{Path: ConfigTOML, Data: data, Mode: 0o600, Secrets: append(r.Secrets(), fileSecrets(r.d.Host, ConfigTOML)...)})
	return []host.Step{st}, err
}

// runnerConfigFile is config.toml's content for the token in r.
func (r *Role) runnerConfigFile() RunnerConfigFile {
	rc := r.cfg.Runner
	return RunnerConfigFile{
		Concurrent:    rc.Concurrent,
		CheckInterval: rc.CheckInterval,
		Runners: []RunnerSection{{
			Name:               r.name,
			URL:                r.privateURL,
			CloneURL:           r.privateURL,
			Token:              r.token,
			TokenObtainedAt:    r.obtainedAt.UTC(),
			TokenExpiresAt:     zeroTime(r.expiresAt),
			TLSCAFile:          r.cfg.GitLab.CAFile,
			Executor:           "custom",
			BuildsDir:          rc.BuildsDir,
			CacheDir:           rc.CacheDir,
			Limit:              rc.Limit,
			RequestConcurrency: rc.RequestConcurrency,
			Custom:             customSection(r.cfg.Fargate.Driver.Path),
		}},
	}
}

// zeroTime normalizes "never expires" to the zero time in UTC, which is
// how gitlab-runner itself writes it (0001-01-01T00:00:00Z).
func zeroTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// service enables and starts gitlab-runner. gitlab-runner watches
// config.toml and reloads it, so a changed config never needs a restart.
func (r *Role) service(ctx context.Context) ([]host.Step, error) {
	h := r.d.Host
	if !h.Exists(RunnerBinary) {
		return nil, fmt.Errorf("gitlab-runner is not installed (%s is missing): install the gitlab-runner package "+
			"when baking the AMI, or now, from GitLab's repository "+
			"(https://docs.gitlab.com/runner/install/linux-repository/), then run apply again", RunnerBinary)
	}
	if r.d.Units == nil {
		return nil, fmt.Errorf("no systemd manager available")
	}
	var steps []host.Step
	st, err := r.d.Units.Enable(ctx, ServiceUnit)
	steps = append(steps, st)
	if err != nil {
		return steps, err
	}
	st, err = r.d.Units.Start(ctx, ServiceUnit)
	steps = append(steps, st)
	return steps, err
}
