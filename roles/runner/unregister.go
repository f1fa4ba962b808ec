package runner

import (
	"context"
	"errors"
	"fmt"

	"github.com/glbootstrap/glbootstrap/internal/gitlabapi"
	"github.com/glbootstrap/glbootstrap/internal/host"
)

// ErrSharedToken refuses to delete a runner whose glrt- token came from
// SSM: other fronts may use the same runner.
var ErrSharedToken = errors.New("this front uses the runner authentication token from SSM, which other fronts may share")

// Unregister removes this front's runner from GitLab and its token from
// the host, for an instance that is going away (an Auto Scaling lifecycle
// hook, or by hand before terminating). A runner glbootstrap created is
// deleted by id with the create access token (which needs the api or
// manage_runner scope for that); a legacy-registered runner by its own token; a runner whose
// token came from SSM only with force, since deleting it removes it for
// every front that shares the token. Then config.toml and the state file
// are removed, so a later apply starts clean. Without a recorded
// registration it does nothing and says so.
func (r *Role) Unregister(ctx context.Context, force bool) ([]host.Step, error) {
	st, err := r.loadState()
	if err != nil {
		return nil, err
	}
	cur, err := r.existingToken()
	if err != nil {
		return nil, err
	}
	token := firstNonEmpty(st.Token, cur.Token)
	if token == "" {
		return []host.Step{{Kind: "remote", Target: r.privateURL, Summary: "no runner registered on this front: nothing to unregister"}}, nil
	}
	r.secrets = append(r.secrets, token)
	gl, err := r.d.NewGitLab(r.privateURL, r.caPEM)
	if err != nil {
		return nil, err
	}
	var step host.Step
	switch {
	case st.Source == "create" && st.RunnerID != 0:
		step, err = gl.Delete(ctx, r.secret, st.RunnerID)
	case st.Source == "parameter" || r.cfg.Runner.TokenParameter != "":
		if !force {
			return nil, fmt.Errorf("%w (%s): deleting it would remove the runner for all of them; "+
				"run with --force to delete it anyway, or just terminate this instance (GitLab shows its runner manager as stale)", ErrSharedToken, r.cfg.Runner.TokenParameter)
		}
		step, err = gl.DeleteByToken(ctx, token)
		step.Summary += " (the token from SSM, --force)"
	default:
		step, err = gl.DeleteByToken(ctx, token)
	}
	if errors.Is(err, gitlabapi.ErrRunnerTokenRejected) {
		step.Changed, step.Summary, err = false, "already gone from GitLab (its token is no longer valid)", nil
	}
	if err != nil {
		return nil, err
	}
	steps := []host.Step{step}
	for _, p := range []string{ConfigTOML, StateFile} {
		s, err := r.d.Host.EnsureAbsent(p, "the runner is unregistered")
		if err != nil {
			return steps, err
		}
		steps = append(steps, s)
	}
	return steps, nil
}
