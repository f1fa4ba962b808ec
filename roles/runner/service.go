package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/systemd"
)

// runnerConfig renders config.toml (0600: it holds the token) with one
// [[runners]] whose url and clone_url are GitLab's private URL. Run alone
// (--phase runner-config) it takes the token from config.toml or the state
// file without asking GitLab.
func (r *Role) runnerConfig(ctx context.Context) ([]host.Step, error) {
	if r.token == "" {
		cur, err := r.existingToken()
		if err != nil {
			return nil, err
		}
		tok, id, obtained, expires := cur.Token, cur.ID, cur.TokenObtainedAt, cur.TokenExpiresAt
		if tok == "" || id == 0 {
			st, err := r.loadState()
			if err != nil {
				return nil, err
			}
			if tok == "" {
				tok, obtained, expires = st.Token, st.TokenObtainedAt, st.TokenExpiresAt
			}
			if st.Token == tok {
				id = st.RunnerID
			}
		}
		if tok == "" {
			return nil, errNoToken
		}
		r.token, r.runnerID, r.obtainedAt, r.expiresAt = tok, id, obtained, expires
	}
	data, err := renderTOML(r.runnerConfigFile())
	if err != nil {
		return nil, err
	}
	st, err := r.d.Host.EnsureFile(host.File{Path: ConfigTOML, Data: data, Mode: 0o600, HideOldLines: true, Secrets: append(r.Secrets(), fileSecrets(r.d.Host, ConfigTOML)...)})
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
			ID:                 r.runnerID,
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
			Cache:              cacheSection(rc.Cache, r.region),
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

// service enables and starts gitlab-runner. gitlab-runner watches config.toml and reloads it,
// so a changed config needs no restart; but when this run gave the runner manager a new system
// id or token (r.identity) and gitlab-runner was already running, it is restarted, so the
// process that polls GitLab is the manager glbootstrap recorded. That is the baked AMI's first
// boot: the package's enabled unit starts before user-data and writes an s_ id of its own
// (17.9.3's commands/config.go does re-read .runner_system_id when config.toml changes, so the
// restart makes that certain rather than relying on the reload of each version).
func (r *Role) service(ctx context.Context) ([]host.Step, error) {
	if err := r.checkRunnable(ctx); err != nil {
		return nil, err
	}
	var steps []host.Step
	st, err := r.d.Units.Enable(ctx, ServiceUnit)
	steps = append(steps, st)
	if err != nil {
		return steps, err
	}
	st, err = r.d.Units.Start(ctx, ServiceUnit)
	steps = append(steps, st)
	if err != nil || st.Changed || len(r.identity) == 0 || !r.d.Host.Live() {
		return steps, err
	}
	slices.Sort(r.identity)
	st, err = r.d.Units.Restart(ctx, ServiceUnit)
	st.Summary = strings.Replace(st.Summary, "unit file changed", "new runner manager "+strings.Join(r.identity, " and "), 1)
	return append(steps, st), err
}

// checkRunnable checks, changing nothing, that gitlab-runner is installed (its binary, and
// a unit systemd can start): the register phase asks before it creates a runner on GitLab, so
// a host that cannot run the runner never leaves one there.
func (r *Role) checkRunnable(ctx context.Context) error {
	const install = "install the gitlab-runner package when baking the AMI, or now, from GitLab's repository " +
		"(https://docs.gitlab.com/runner/install/linux-repository/), then run apply again"
	info, err := r.d.Host.Stat(RunnerBinary)
	switch {
	case host.IsNotExist(err):
		return fmt.Errorf("gitlab-runner is not installed (%s is missing): %s", RunnerBinary, install)
	case err != nil:
		return fmt.Errorf("checking %s: %w", RunnerBinary, err)
	case !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not an executable file (%s): reinstall the gitlab-runner package", RunnerBinary, info.Mode())
	}
	if r.d.Units == nil {
		return fmt.Errorf("no systemd manager available")
	}
	if err := r.d.Units.Installed(ctx, ServiceUnit); err != nil {
		if errors.Is(err, systemd.ErrNoUnit) {
			return fmt.Errorf("gitlab-runner is installed but its service is not (%v): run \"gitlab-runner install --user gitlab-runner --working-directory /home/gitlab-runner\", or reinstall the package", err)
		}
		return err
	}
	return nil
}
