package gitlab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/render"
	"github.com/glbootstrap/glbootstrap/templates"
)

// rootPassword writes the initial root password for GitLab's first configuration into a 0600
// file that the fragment loads with from_file (only while it exists). This keeps the password
// out of argv, the environment of every process, the fragment (whose diff is printed) and the
// state file; reconfigure removes the file once it has run. On a configured GitLab the phase
// only makes sure no such file is left behind.
func (r *Role) rootPassword(ctx context.Context) ([]host.Step, error) {
	h := r.d.Host
	if r.state.Configured {
		st, err := h.EnsureAbsent(RootPasswordFile, "GitLab is configured; the initial root password is used only once")
		return []host.Step{st}, err
	}
	if r.password == "" {
		return []host.Step{{Kind: "note", Target: "initial root password",
			Summary: "gitlab.initial_root_password_parameter is not set: Omnibus generates one into " + OmnibusPasswordFile + " (kept 24 hours)"}}, nil
	}
	data, err := render.Template(templates.FS, rootPasswordTemplate, funcs, struct {
		Header, Parameter, Password string
	}{render.Header, r.cfg.GitLab.InitialRootPasswordParameter, r.password})
	if err != nil {
		return nil, err
	}
	st, err := h.EnsureFile(host.File{Path: RootPasswordFile, Data: data, Mode: 0o600, Secrets: r.secrets})
	return []host.Step{st}, err
}

// fragmentSHA256 is the hex SHA-256 of the desired fragment.
func (r *Role) fragmentSHA256() string {
	s := sha256.Sum256(r.fragment)
	return hex.EncodeToString(s[:])
}

// reconfigureReason says why gitlab-ctl reconfigure must run, or "" when it need not: GitLab was
// never configured, the fragment differs from the one the last reconfigure applied (or that
// reconfigure failed), or gitlab.rb has just gained the from_file line. The admin's own edits to
// gitlab.rb are theirs to apply.
func (r *Role) reconfigureReason() string {
	switch {
	case !r.state.Configured:
		return "GitLab was never configured"
	case r.state.FragmentSHA256 != r.fragmentSHA256():
		return "the managed fragment changed"
	case r.includeChanged:
		return "gitlab.rb did not load the fragment"
	case r.state.UpgradedTo != "":
		return "the Omnibus package was upgraded to " + r.state.UpgradedTo
	}
	return ""
}

// reconfigure runs gitlab-ctl reconfigure when reconfigureReason says so, records what it applied
// in the state file, removes the initial root password, and waits for /-/readiness.
//
// The command goes through the Host: under plan it is only recorded ("would run"). Under a
// --root other than / it cannot run (it belongs to the machine the tree is for): the state then
// records the fragment as pending, never as configured, and the root password file stays, so
// the first apply on the live system runs it. A second apply under the same root changes
// nothing.
func (r *Role) reconfigure(ctx context.Context) ([]host.Step, error) {
	h := r.d.Host
	why := r.reconfigureReason()
	cmd := GitLabCtl + " reconfigure"
	if why == "" {
		return []host.Step{{Kind: "command", Target: cmd,
			Summary: "not needed: the applied fragment is current (sha256 " + r.fragmentSHA256()[:12] + ")"}}, nil
	}
	if err := r.certificateReady(); err != nil {
		return nil, err
	}
	if r.d.Progress != nil && h.Live() {
		r.d.Progress("gitlab-ctl reconfigure (" + why + "); the first one takes several minutes")
	}
	act, _, err := h.Run(ctx, nil, GitLabCtl, "reconfigure")
	step := host.Step{Kind: "command", Target: cmd, Changed: act.Ran || act.Planned(), Summary: act.Summary(why)}
	switch {
	case act.Planned():
		return []host.Step{step}, nil
	case !act.Ran:
		step.Summary += "; recorded as pending: the first apply on the live system runs it"
		pending := r.state
		pending.PendingSHA256 = r.fragmentSHA256()
		st, err := r.writeState(pending)
		return []host.Step{step, st}, err
	case err != nil:
		steps := []host.Step{step}
		if r.state.Configured {
			// Forget what was applied, so the next apply reconfigures even if nothing changes.
			failed := r.state
			failed.FragmentSHA256 = ""
			st, werr := r.writeState(failed)
			steps = append(steps, st)
			if werr != nil {
				return steps, fmt.Errorf("%w; recording the failure: %v", err, werr)
			}
		}
		steps[0].Summary = "failed: " + why
		return steps, fmt.Errorf("gitlab-ctl reconfigure failed; fix the cause (the output above, /var/log/gitlab/reconfigure/) and run apply again: %w", err)
	}
	steps := []host.Step{step}
	wasConfigured := r.state.Configured
	r.state = State{Configured: true, FragmentSHA256: r.fragmentSHA256(), ReconfiguredAt: time.Now().UTC().Truncate(time.Second)}
	st, err := r.writeState(r.state)
	steps = append(steps, st)
	if err != nil {
		return steps, err
	}
	if st, err := h.EnsureAbsent(RootPasswordFile, "only the first reconfigure needs it"); err != nil || st.Changed {
		steps = append(steps, st)
		if err != nil {
			return steps, err
		}
	}
	if r.password != "" && !wasConfigured {
		// Omnibus keeps a copy only of a password it generated; never of the one given here.
		// Remove one all the same: it would hold the password from SSM.
		if st, err := h.EnsureAbsent(OmnibusPasswordFile, "it would hold the initial root password"); err != nil || st.Changed {
			steps = append(steps, st)
			if err != nil {
				return steps, err
			}
		}
	}
	wait := r.d.WaitReady
	if wait == nil {
		wait = loopbackReadiness(r.cfg).wait
	}
	t := time.Now()
	if err := wait(ctx, time.Duration(r.cfg.GitLab.ReadyTimeout), r.d.Progress); err != nil {
		return steps, err
	}
	steps = append(steps, host.Step{Kind: "remote", Target: "/-/readiness", Summary: fmt.Sprintf("ready after %s", time.Since(t).Round(time.Second))})
	return steps, nil
}
