package runner

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/glbootstrap/glbootstrap/internal/gitlabapi"
	"github.com/glbootstrap/glbootstrap/internal/host"
)

// State is what glbootstrap remembers about this front's registration, in
// /var/lib/glbootstrap/runner.json (0600: it holds the runner
// authentication token, which GitLab shows only once at creation).
type State struct {
	InstanceID string `json:"instance_id"` // the instance that wrote this state
	SystemID   string `json:"system_id"`   // this runner manager's system_id
	// RunnerID is the runner's numeric id, from the create or register answer or from
	// POST /runners/verify (GitLab >= 15.10 answers it); 0 when unknown. It becomes
	// config.toml's id (for gitlab-runner reset-token --id). "runner unregister" deletes
	// by it only when Source is create.
	RunnerID        int64     `json:"runner_id,omitempty"`
	Source          string    `json:"source"` // parameter | create | registration | config.toml
	Token           string    `json:"token"`
	TokenObtainedAt time.Time `json:"token_obtained_at"`
	TokenExpiresAt  time.Time `json:"token_expires_at"`
	URL             string    `json:"url"`
	// Creating is set, durably, just before glbootstrap asks GitLab to create or register a
	// runner, and cleared once its token is saved: when it is found set, a run was killed in
	// between and GitLab may hold a runner whose token nobody has (see recoverOrphans).
	Creating *CreateIntent `json:"create_in_progress,omitempty"`
}

// CreateIntent records a create or register request that was sent.
type CreateIntent struct {
	Description string    `json:"description"`
	Since       time.Time `json:"since"`
	// Marker is the request's own random marker, sent in the runner's maintenance note.
	Marker string `json:"marker"`
}

// systemIDPattern is gitlab-runner's format for .runner_system_id
// (s_ derived from /etc/machine-id, r_ random: commands/internal/configfile in
// https://gitlab.com/gitlab-org/gitlab-runner).
var systemIDPattern = regexp.MustCompile(`^[sr]_[0-9a-zA-Z]{12}$`)

// loadState reads the state file; a missing file is the zero State.
func (r *Role) loadState() (State, error) {
	var s State
	b, err := r.d.Host.ReadFile(StateFile)
	if host.IsNotExist(err) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("reading %s: %w", StateFile, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("reading %s: %w; move the file away to start over (the runner on GitLab may then need deleting by hand)", StateFile, err)
	}
	return s, nil
}

func (r *Role) saveState(s State) (host.Step, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return host.Step{}, err
	}
	return r.d.Host.EnsureFile(host.File{Path: StateFile, Data: append(b, '\n'), Mode: 0o600, Secrets: []string{s.Token}})
}

// existingToken returns the token of the first [[runners]] in config.toml,
// with the times gitlab-runner recorded for it.
func (r *Role) existingToken() (RunnerSection, error) {
	b, err := r.d.Host.ReadFile(ConfigTOML)
	if host.IsNotExist(err) {
		return RunnerSection{}, nil
	}
	if err != nil {
		return RunnerSection{}, fmt.Errorf("reading %s: %w", ConfigTOML, err)
	}
	var f RunnerConfigFile
	if _, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&f); err != nil {
		// A broken file is rewritten by runner-config; its token is lost.
		return RunnerSection{}, nil
	}
	if len(f.Runners) == 0 {
		return RunnerSection{}, nil
	}
	return f.Runners[0], nil
}

// register finds a runner authentication token that GitLab accepts for
// this runner manager, in this order, so that re-running never creates a
// second runner: the token already in config.toml, the one in the state
// file, the glrt- token from SSM; only when none verifies does it create
// (POST /user/runners) or register (legacy POST /runners) a runner, and it
// records the new token in the state file before anything else.
func (r *Role) register(ctx context.Context) ([]host.Step, error) {
	var steps []host.Step
	st, err := r.loadState()
	if err != nil {
		return nil, err
	}

	sysID, sysChange, err := r.systemID(st)
	if err != nil {
		return nil, err
	}
	st.InstanceID, st.SystemID = r.facts.InstanceID, sysID
	// persist writes the system id (when new) and the state together, and
	// only once GitLab has accepted a token with that id: a failed attempt
	// leaves both files as they were, so a retry changes nothing more.
	// before, once this run recorded a create intent, rewrites the state file's step to show the
	// change from the file as the run found it.
	var before func(host.Step, State) host.Step
	persist := func(st State) ([]host.Step, error) {
		var out []host.Step
		if sysChange != "" {
			step, err := r.d.Host.EnsureFile(host.File{Path: SystemIDFile, Data: []byte(sysID + "\n"), Mode: 0o600})
			if err != nil {
				return out, err
			}
			step.Summary += " (" + sysChange + ")"
			if step.Changed {
				r.identity = append(r.identity, "system id")
			}
			out = append(out, step)
		}
		s, err := r.saveState(st)
		if s.Changed {
			if before != nil {
				// This run wrote the create intent first: show the change from the file as the
				// run found it, not from its own intermediate record.
				s = before(s, st)
			}
			out = append(out, s)
		}
		return out, err
	}

	// Before GitLab hears of this front at all: a host that cannot run gitlab-runner must not
	// leave a runner on GitLab that nothing polls for.
	if err := r.checkRunnable(ctx); err != nil {
		return steps, err
	}
	gl, err := r.d.NewGitLab(r.privateURL, r.caPEM)
	if err != nil {
		return steps, err
	}
	// Readiness first: it retries a GitLab still booting (connection refused) until
	// ready_timeout, and stops at once on a certificate problem, explained as CheckTLS does.
	if err := gl.WaitReady(ctx, time.Duration(r.cfg.GitLab.ReadyTimeout), r.progress); err != nil {
		return steps, err
	}
	if err := gl.CheckTLS(ctx); err != nil {
		return steps, err
	}

	cur, err := r.existingToken()
	if err != nil {
		return steps, err
	}
	existing := cur.Token
	rc := r.cfg.Runner
	type candidate struct {
		token, source    string
		obtained, expire time.Time
	}
	var cands []candidate
	if existing != "" {
		cands = append(cands, candidate{existing, "config.toml", cur.TokenObtainedAt, cur.TokenExpiresAt})
	}
	if st.Token != "" && st.Token != existing {
		cands = append(cands, candidate{st.Token, st.Source, st.TokenObtainedAt, st.TokenExpiresAt})
	}
	if rc.TokenParameter != "" && r.secret != existing && r.secret != st.Token {
		cands = append(cands, candidate{r.secret, "parameter", time.Time{}, time.Time{}})
	}
	for _, c := range cands {
		r.secrets = append(r.secrets, c.token)
		v, ok, err := gl.Verify(ctx, c.token, sysID)
		if err != nil {
			// Never fall through to creating a runner on an error that is
			// not a clear "invalid token": that is how duplicates happen.
			return steps, fmt.Errorf("verifying the runner token from %s: %w", describeSource(c.source, rc.TokenParameter), err)
		}
		if !ok {
			r.progress(fmt.Sprintf("the runner token from %s was rejected by GitLab (403 on POST /api/v4/runners/verify)", describeSource(c.source, rc.TokenParameter)))
			continue
		}
		if c.obtained.IsZero() {
			c.obtained = time.Now().UTC().Truncate(time.Second)
		}
		r.token, r.obtainedAt, r.expiresAt = c.token, c.obtained, c.expire
		if c.source != "config.toml" {
			r.identity = append(r.identity, "token")
		}
		if c.source == "config.toml" && st.Token != c.token {
			st.Source = firstNonEmpty(st.Source, "config.toml")
		} else if c.source != "config.toml" {
			st.Source = c.source
		}
		switch {
		case v.ID != 0 && st.RunnerID != 0 && v.ID != st.RunnerID:
			// Another runner than the one glbootstrap created: unregister must not delete it by id.
			st.Source = c.source
			st.RunnerID = v.ID
		case v.ID != 0:
			st.RunnerID = v.ID
		case st.Token != c.token:
			st.RunnerID = 0 // GitLab < 15.10 does not say which runner a token is
		}
		r.runnerID = st.RunnerID
		st.Token, st.TokenObtainedAt, st.TokenExpiresAt, st.URL = r.token, r.obtainedAt, r.expiresAt, r.privateURL
		steps = append(steps, host.Step{Kind: "remote", Target: r.privateURL, Summary: "runner token verified (from " + describeSource(c.source, rc.TokenParameter) + ")"})
		ps, err := persist(st)
		return append(steps, ps...), err
	}

	if rc.TokenParameter != "" {
		return steps, fmt.Errorf("the runner authentication token in SSM %s was rejected by GitLab (HTTP 403 on POST /api/v4/runners/verify): "+
			"the runner was deleted or its token was reset; put its current glrt- token in %s (GitLab: Admin area > CI/CD > Runners) and run apply again",
			rc.TokenParameter, rc.TokenParameter)
	}

	opts := gitlabapi.CreateOptions{
		Description: r.name, Tags: rc.Tags, RunUntagged: rc.RunUntagged, Locked: rc.Locked,
	}
	verb := "registered"
	if rc.Create != nil {
		opts.RunnerType, opts.GroupID, opts.ProjectID = rc.Create.RunnerType, rc.Create.GroupID, rc.Create.ProjectID
		verb = "created"
	}
	// The files that will hold the token must be writable before GitLab creates a runner whose
	// token it shows only once (a link or a directory where one of them belongs is refused now,
	// not after the create).
	probe := r.d.Host.AsPlan()
	for _, p := range []string{StateFile, SystemIDFile, ConfigTOML} {
		if _, err := probe.EnsureFile(host.File{Path: p, Mode: 0o600}); err != nil {
			return steps, fmt.Errorf("%w; glbootstrap keeps the new runner's token there, so it creates no runner until that is fixed", err)
		}
	}
	if st.Creating != nil {
		rs, err := r.recoverOrphans(ctx, gl, opts, *st.Creating)
		steps = append(steps, rs...)
		if err != nil {
			return steps, err
		}
	}
	// Record the request before sending it: if this process dies before the token is saved,
	// the next run knows GitLab may hold a runner nobody has the token of.
	prev, hadState := st, r.d.Host.Exists(StateFile)
	prev.Creating = nil
	found, _ := r.d.Host.ReadFile(StateFile)
	before = func(s host.Step, final State) host.Step {
		now, err := json.MarshalIndent(final, "", "  ")
		if err != nil {
			return s
		}
		s.Diff = host.Diff(StateFile, found, append(now, '\n'), hadState, append(r.Secrets(), final.Token))
		if !hadState {
			s.Summary = strings.Replace(s.Summary, "updated", "created", 1)
		}
		return s
	}
	marker, err := randomMarker()
	if err != nil {
		return steps, err
	}
	st.Creating = &CreateIntent{Description: r.name, Since: time.Now().UTC().Truncate(time.Second), Marker: marker}
	opts.MaintenanceNote = fmt.Sprintf("Created by glbootstrap for runner manager %s on instance %s (request %s).", sysID, r.facts.InstanceID, marker)
	if _, err := r.saveState(st); err != nil {
		return steps, err
	}
	var (
		reg  gitlabapi.Registered
		step host.Step
	)
	// A signal must not cut this request short: GitLab may already have created the runner,
	// and its token, shown only in this answer, would be lost (a second runner next run).
	// The request gets its own bound instead, and the run stops right after it is saved.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	if rc.Create != nil {
		reg, step, err = gl.Create(cctx, r.secret, opts)
	} else {
		reg, step, err = gl.Register(cctx, r.secret, opts)
	}
	if err != nil {
		if gitlabapi.Refused(err) {
			// GitLab said no: nothing was created, so nothing is pending either. The state file
			// goes back to what it was, and a retry changes nothing more than this one.
			if hadState {
				_, _ = r.saveState(prev)
			} else {
				_, _ = r.d.Host.EnsureAbsent(StateFile, "the create request was refused")
			}
		}
		if rc.Create == nil {
			return steps, fmt.Errorf("registering with the token in SSM %s (runner.registration_token_parameter): %w", rc.RegistrationTokenParameter, err)
		}
		return steps, fmt.Errorf("creating the runner with the access token in SSM %s (runner.create.access_token_parameter): %w", rc.Create.AccessTokenParameter, err)
	}
	r.secrets = append(r.secrets, reg.Token)
	r.token, r.obtainedAt = reg.Token, time.Now().UTC().Truncate(time.Second)
	r.identity = append(r.identity, "token")
	r.expiresAt = time.Time{}
	if reg.ExpiresAt != nil {
		r.expiresAt = reg.ExpiresAt.UTC()
	}
	st.RunnerID, st.Token, st.TokenObtainedAt, st.TokenExpiresAt, st.URL = reg.ID, reg.Token, r.obtainedAt, r.expiresAt, r.privateURL
	r.runnerID = reg.ID
	st.Source = "create"
	if rc.Create == nil {
		st.Source = "registration"
	}
	st.Creating = nil
	// The token is shown once: keep it before doing anything else.
	steps = append(steps, step)
	ps, err := persist(st)
	if err != nil {
		return append(steps, ps...), fmt.Errorf("runner #%d was %s but its token could not be saved (delete the runner in GitLab before retrying): %w", reg.ID, verb, err)
	}
	return append(steps, ps...), nil
}

// createTimeout bounds the request that creates or registers the runner, which a signal does not
// cancel (see register).
const createTimeout = time.Minute

// systemID returns this runner manager's system id: the one in
// .runner_system_id when the state says it was made on this very instance,
// else (first boot, or an AMI that carried the file) a new random r_ id,
// so every instance is its own runner manager on GitLab. change is "" when
// the file is kept, else the summary of replacing or creating it.
func (r *Role) systemID(st State) (id, change string, err error) {
	cur := ""
	if b, err := r.d.Host.ReadFile(SystemIDFile); err == nil {
		cur = strings.TrimSpace(string(b))
	} else if !host.IsNotExist(err) {
		return "", "", fmt.Errorf("reading %s: %w", SystemIDFile, err)
	}
	if cur != "" && systemIDPattern.MatchString(cur) && st.InstanceID == r.facts.InstanceID && st.SystemID == cur {
		return cur, "", nil
	}
	if id, err = randomSystemID(); err != nil {
		return "", "", err
	}
	switch {
	case cur == "":
		change = "new runner manager " + id
	case st.InstanceID != "" && st.InstanceID != r.facts.InstanceID:
		change = fmt.Sprintf("new runner manager %s replaces %s: it was made on instance %s (an AMI carried it)", id, cur, st.InstanceID)
	default:
		change = fmt.Sprintf("new runner manager %s replaces %s: not recorded as made on this instance (an AMI may have carried it)", id, cur)
	}
	return id, change, nil
}

const alnum = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// randomSystemID returns "r_" + 12 random alphanumerics, gitlab-runner's own
// format for a manager without a machine-id.
func randomSystemID() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return "r_" + string(b), nil
}

func describeSource(source, param string) string {
	switch source {
	case "parameter":
		return "SSM " + param
	case "config.toml":
		return ConfigTOML
	case "create", "registration":
		return StateFile + " (runner created by glbootstrap)"
	default:
		return source
	}
}

func (r *Role) progress(msg string) {
	if r.d.Progress != nil {
		r.d.Progress(msg)
	}
}

// errNoToken is returned by runner-config when no token is known yet.
var errNoToken = errors.New("no runner authentication token is known yet: run the register phase first (glbootstrap apply without --phase)")

// recoverOrphans handles a create or register request an earlier run sent but did not live to
// save the answer of (State.Creating): GitLab may hold a runner whose token nobody has, and
// which no runner manager will ever poll. With an access token that may read runners (read_api)
// and delete them (manage_runner or api), each runner of this name that never contacted GitLab
// and carries the request's marker in its maintenance note is deleted, so creating again leaves
// exactly one; another front's runner of the same name is never touched. Otherwise the step is a warning that names
// the runner to delete by hand; creating goes on (a front without a runner helps nobody).
func (r *Role) recoverOrphans(ctx context.Context, gl GitLab, o gitlabapi.CreateOptions, in CreateIntent) ([]host.Step, error) {
	what := fmt.Sprintf("an earlier apply was interrupted after asking GitLab (at %s) to create runner %q, before it could save the token",
		in.Since.Format(time.RFC3339), in.Description)
	manual := fmt.Sprintf("delete the runner %q that never contacted GitLab (Admin area > CI/CD > Runners, or the group's or project's runners page)", in.Description)
	note := host.Step{Kind: "remote", Target: r.privateURL + "/api/v4/runners", Summary: "an orphaned runner may be left on GitLab"}
	if r.cfg.Runner.Create == nil {
		note.Warning = what + "; a registration token cannot look it up: " + manual
		return []host.Step{note}, nil
	}
	o.Description = in.Description
	ids, err := gl.Orphans(ctx, r.secret, o, in.Marker)
	if errors.Is(err, gitlabapi.ErrCannotList) {
		note.Warning = what + "; the access token in " + r.cfg.Runner.Create.AccessTokenParameter +
			" may not list runners, so glbootstrap cannot find it: " + manual + ", or give the token the read_api and manage_runner scopes"
		return []host.Step{note}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s; looking for it: %w", what, err)
	}
	var steps []host.Step
	for _, id := range ids {
		st, err := gl.Delete(ctx, r.secret, id)
		st.Summary += " (left by an interrupted apply: GitLab created it, its token was lost)"
		if err != nil {
			st.Changed, st.Warning = false, fmt.Sprintf("%s; deleting runner #%d failed (%v): %s", what, id, err, manual)
		}
		steps = append(steps, st)
	}
	if len(steps) == 0 {
		steps = append(steps, host.Step{Kind: "remote", Target: note.Target,
			Summary: fmt.Sprintf("%s: GitLab created none (no runner %q that never contacted it)", what, in.Description)})
	}
	return steps, nil
}

// randomMarker returns 16 random hex digits for a create request's maintenance note.
func randomMarker() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
