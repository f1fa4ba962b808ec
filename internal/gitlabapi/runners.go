package gitlabapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// ErrRegistrationTokensDisabled is returned (wrapped) by RegisterLegacy when
// GitLab answers 410 Gone: registration tokens are disabled by default since
// GitLab 17.0 (Admin > Settings > CI/CD > "Allow runner registration token").
var ErrRegistrationTokensDisabled = errors.New("registration tokens are disabled on this GitLab (HTTP 410 Gone): use a glrt- runner authentication token (runner.token_parameter) or let glbootstrap create the runner (runner.create)")

// ErrRunnerTokenRejected is returned (wrapped) by DeleteRunnerByToken when
// GitLab answers 403: no runner has that token any more, because the runner
// was deleted or its token was reset.
var ErrRunnerTokenRejected = errors.New("GitLab does not accept this runner token (HTTP 403): the runner was deleted or its token was reset")

// CreateOptions describe a runner to create (POST /user/runners) or register
// (POST /runners). See https://docs.gitlab.com/api/users/#create-a-runner-linked-to-a-user.
type CreateOptions struct {
	// RunnerType is instance_type, group_type (needs GroupID) or project_type
	// (needs ProjectID). Ignored by RegisterLegacy, where the registration
	// token decides the scope.
	RunnerType string
	GroupID    int64
	ProjectID  int64
	// Description is the runner's name in the UI.
	Description string
	// Tags are the runner's tags; with RunUntagged false GitLab requires at
	// least one.
	Tags        []string
	RunUntagged bool
	// Locked keeps a project runner from being enabled in other projects.
	Locked bool
	// MaintenanceNote is the runner's maintenance note (free text, at most 1024 characters):
	// glbootstrap puts a per-request marker there, by which a later run recognises a runner
	// whose create answer was lost.
	MaintenanceNote string
}

// Registered is a runner as GitLab returned it on creation. Token is the
// runner authentication token (glrt-… for created runners), shown only once:
// the caller must store it before anything else can fail.
type Registered struct {
	ID    int64
	Token string
	// ExpiresAt is nil when the token does not expire.
	ExpiresAt *time.Time
}

// verifyOptions is the body of POST /runners/verify. client-go's
// VerifyRegisteredRunnerOptions lacks system_id, which GitLab needs to attach
// a runner manager to a glrt- runner.
type verifyOptions struct {
	Token    string `json:"token"`
	SystemID string `json:"system_id,omitempty"`
}

// Verify asks GitLab whether token is a valid runner authentication token
// (POST /runners/verify). systemID identifies this runner manager (the
// content of .runner_system_id); GitLab records it for glrt- tokens, which is
// what gitlab-runner itself sends, and ignores it otherwise. An empty systemID
// still verifies the token but registers no manager.
//
// It returns true for 200 and false for 403. Any other outcome, including a
// network error, is an error and never false: false makes the caller
// register a new runner. On 200 the Registered holds what GitLab >= 15.10
// answers (Entities::Ci::RunnerRegistrationDetails: the runner's id, its token
// and token_expires_at, GitLab MR 112168; gitlab-runner's VerifyRunnerResponse);
// an older GitLab answers 200 with no JSON body, and then ID is 0.
func (c *Client) Verify(ctx context.Context, token, systemID string) (Registered, bool, error) {
	if token == "" {
		return Registered{}, false, errors.New("verifying runner token: the token is empty")
	}
	req, err := c.gl.NewRequest(http.MethodPost, "runners/verify", &verifyOptions{Token: token, SystemID: systemID},
		[]gitlab.RequestOptionFunc{gitlab.WithContext(ctx)})
	if err != nil {
		return Registered{}, false, redact(fmt.Errorf("building runner verify request: %w", err), token)
	}
	// Verifying twice is harmless, so client-go's retries on 5xx and
	// connection errors stay on. The body is read raw: an older GitLab's is not JSON.
	var body bytes.Buffer
	resp, err := c.gl.Do(req, &body)
	switch code := statusOf(resp, err); code {
	case http.StatusOK:
		var v struct {
			ID             int64      `json:"id"`
			TokenExpiresAt *time.Time `json:"token_expires_at"`
		}
		if json.Unmarshal(body.Bytes(), &v) != nil {
			return Registered{Token: token}, true, nil
		}
		return Registered{ID: v.ID, Token: token, ExpiresAt: v.TokenExpiresAt}, true, nil
	case http.StatusForbidden:
		return Registered{}, false, nil
	case 0:
		return Registered{}, false, redact(fmt.Errorf("verifying runner token at %s: %w", c.URL(), c.explainRequestError(err)), token)
	default:
		return Registered{}, false, redact(answered(err, "verifying runner token at %s: GitLab answered %s, expected 200 or 403",
			c.URL(), httpStatus(code, err)), token)
	}
}

// CreateRunner creates a runner with an access token that has the
// create_runner scope (POST /user/runners, GitLab >= 15.10) and returns its
// glrt- token. It is never retried: a retry after a lost answer would create
// a second runner whose token nobody knows.
func (c *Client) CreateRunner(ctx context.Context, accessToken string, o CreateOptions) (Registered, error) {
	if accessToken == "" {
		return Registered{}, errors.New("creating runner: the access token is empty")
	}
	opts := &gitlab.CreateUserRunnerOptions{
		Locked:      gitlab.Ptr(o.Locked),
		RunUntagged: gitlab.Ptr(o.RunUntagged),
	}
	if o.RunnerType != "" { // absent rather than "": GitLab then says "runner_type is missing"
		opts.RunnerType = gitlab.Ptr(o.RunnerType)
	}
	if o.GroupID != 0 {
		opts.GroupID = gitlab.Ptr(o.GroupID)
	}
	if o.ProjectID != 0 {
		opts.ProjectID = gitlab.Ptr(o.ProjectID)
	}
	if o.Description != "" {
		opts.Description = gitlab.Ptr(o.Description)
	}
	if len(o.Tags) > 0 {
		opts.TagList = gitlab.Ptr(o.Tags)
	}
	if o.MaintenanceNote != "" {
		opts.MaintenanceNote = gitlab.Ptr(o.MaintenanceNote)
	}
	r, resp, err := c.gl.Users.CreateUserRunner(opts,
		gitlab.WithContext(ctx), gitlab.WithToken(gitlab.PrivateToken, accessToken), noRetry)
	if err != nil {
		out := redact(c.createError(resp, err, o), accessToken)
		if code := statusOf(resp, err); code >= 400 && code < 500 {
			out = refusedError{out}
		}
		return Registered{}, out
	}
	if r == nil || r.Token == "" || r.ID == 0 {
		return Registered{}, fmt.Errorf("creating runner at %s: GitLab's answer has no runner id or token", c.URL())
	}
	return Registered{ID: r.ID, Token: r.Token, ExpiresAt: r.TokenExpiresAt}, nil
}

func (c *Client) createError(resp *gitlab.Response, err error, o CreateOptions) error {
	code := statusOf(resp, err)
	switch {
	case code == 0:
		return fmt.Errorf("creating runner at %s (it may have been created; check Admin > CI/CD > Runners): %w",
			c.URL(), c.explainRequestError(err))
	case code == http.StatusUnauthorized:
		return answered(err, "creating runner: GitLab rejected the access token (%s): it is unknown, expired or revoked; "+
			"create a personal, group or project access token with the create_runner scope", httpStatus(code, err))
	case code == http.StatusForbidden && strings.Contains(messageOf(err), "insufficient_scope"):
		return fmt.Errorf("creating runner: the access token lacks the create_runner scope (HTTP 403): "+
			"create one with the create_runner (or api) scope: %w", err)
	case code == http.StatusForbidden:
		return answered(err, "creating runner: the access token's user may not create a %s runner (%s): "+
			"instance runners need an administrator, group runners the group's Owner, project runners a Maintainer",
			o.RunnerType, httpStatus(code, err))
	case code == http.StatusBadRequest:
		return answered(err, "creating runner: GitLab rejected the runner settings (%s): check runner_type "+
			"(instance_type, group_type with group_id, project_type with project_id), that the group or project exists, "+
			"and that run_untagged=false comes with at least one tag", httpStatus(code, err))
	case code == http.StatusNotFound:
		return fmt.Errorf("creating runner: %s has no POST /api/v4/user/runners (HTTP 404): it needs GitLab 15.10 or later; "+
			"check gitlab.private_url, including any relative URL root: %w", c.URL(), err)
	}
	return answered(err, "creating runner at %s: GitLab answered %s", c.URL(), httpStatus(code, err))
}

// RegisterLegacy registers a runner with a registration token (POST /runners,
// deprecated). o.RunnerType, GroupID and ProjectID are ignored: the token
// decides the scope. When GitLab has registration tokens disabled (HTTP 410,
// the default since 17.0) the error wraps ErrRegistrationTokensDisabled. It
// is never retried, like CreateRunner.
func (c *Client) RegisterLegacy(ctx context.Context, registrationToken string, o CreateOptions) (Registered, error) {
	if registrationToken == "" {
		return Registered{}, errors.New("registering runner: the registration token is empty")
	}
	opts := &gitlab.RegisterNewRunnerOptions{
		Token:       gitlab.Ptr(registrationToken),
		Locked:      gitlab.Ptr(o.Locked),
		RunUntagged: gitlab.Ptr(o.RunUntagged),
	}
	if o.Description != "" {
		opts.Description = gitlab.Ptr(o.Description)
	}
	if len(o.Tags) > 0 {
		opts.TagList = gitlab.Ptr(o.Tags)
	}
	if o.MaintenanceNote != "" {
		opts.MaintenanceNote = gitlab.Ptr(o.MaintenanceNote)
	}
	r, resp, err := c.gl.Runners.RegisterNewRunner(opts, gitlab.WithContext(ctx), noRetry)
	if err != nil {
		var out error
		switch code := statusOf(resp, err); code {
		case 0:
			out = fmt.Errorf("registering runner at %s (it may have been registered; check Admin > CI/CD > Runners): %w",
				c.URL(), c.explainRequestError(err))
		case http.StatusGone:
			out = fmt.Errorf("registering runner at %s: %w: %w", c.URL(), ErrRegistrationTokensDisabled, err)
		case http.StatusForbidden:
			out = answered(err, "registering runner: GitLab rejected the registration token (%s): copy the current one "+
				"from the runners page, or better use a glrt- runner authentication token (runner.token_parameter)", httpStatus(code, err))
		case http.StatusBadRequest:
			out = answered(err, "registering runner: GitLab rejected the runner settings (%s): "+
				"run_untagged=false needs at least one tag", httpStatus(code, err))
		default:
			out = answered(err, "registering runner at %s: GitLab answered %s", c.URL(), httpStatus(code, err))
		}
		out = redact(out, registrationToken)
		if code := statusOf(resp, err); code >= 400 && code < 500 {
			out = refusedError{out}
		}
		return Registered{}, out
	}
	if r == nil || r.Token == "" || r.ID == 0 {
		return Registered{}, fmt.Errorf("registering runner at %s: GitLab's answer has no runner id or token", c.URL())
	}
	return Registered{ID: r.ID, Token: r.Token, ExpiresAt: r.TokenExpiresAt}, nil
}

// DeleteRunner deletes runner id with an access token of an administrator,
// group Owner or project Maintainer with the api or manage_runner scope
// (DELETE /runners/:id, REST API "Runners"; the manage_runner scope came with
// gitlab-org/gitlab!153285).
// A runner that does not exist (404) is already gone: nil.
func (c *Client) DeleteRunner(ctx context.Context, accessToken string, id int64) error {
	if accessToken == "" {
		return fmt.Errorf("deleting runner %d: the access token is empty", id)
	}
	resp, err := c.gl.Runners.RemoveRunner(id, gitlab.WithContext(ctx), gitlab.WithToken(gitlab.PrivateToken, accessToken))
	if err == nil {
		return nil
	}
	var out error
	switch code := statusOf(resp, err); code {
	case http.StatusNotFound:
		return nil
	case 0:
		out = fmt.Errorf("deleting runner %d at %s: %w", id, c.URL(), c.explainRequestError(err))
	case http.StatusUnauthorized:
		out = answered(err, "deleting runner %d: GitLab rejected the access token (%s): it is unknown, expired or revoked",
			id, httpStatus(code, err))
	case http.StatusForbidden:
		out = answered(err, "deleting runner %d: the access token may not delete it (%s): it needs the api or manage_runner scope "+
			"(a create_runner-only token cannot delete) and an administrator, the group's Owner or a project Maintainer",
			id, httpStatus(code, err))
	default:
		out = answered(err, "deleting runner %d at %s: GitLab answered %s", id, c.URL(), httpStatus(code, err))
	}
	return redact(out, accessToken)
}

// deleteByTokenOptions is the body of DELETE /runners.
type deleteByTokenOptions struct {
	Token string `json:"token"`
}

// DeleteRunnerByToken deletes the runner that token authenticates (DELETE
// /runners), for every runner manager that shares the token. The token goes
// in a JSON body, as gitlab-runner sends it, never in the URL where proxies
// and access logs would keep it. A token GitLab no longer knows (403) returns
// an error wrapping ErrRunnerTokenRejected.
func (c *Client) DeleteRunnerByToken(ctx context.Context, token string) error {
	if token == "" {
		return errors.New("deleting runner by token: the token is empty")
	}
	body, err := json.Marshal(deleteByTokenOptions{Token: token})
	if err != nil {
		return fmt.Errorf("encoding runner delete request: %w", err)
	}
	req, err := c.gl.NewRequest(http.MethodDelete, "runners", nil, []gitlab.RequestOptionFunc{
		gitlab.WithContext(ctx),
		gitlab.WithHeader("Content-Type", "application/json"),
	})
	if err == nil {
		err = req.SetBody(body)
	}
	if err != nil {
		return redact(fmt.Errorf("building runner delete request: %w", err), token)
	}
	resp, err := c.gl.Do(req, nil)
	if err == nil {
		return nil
	}
	var out error
	switch code := statusOf(resp, err); code {
	case 0:
		out = fmt.Errorf("deleting runner by token at %s: %w", c.URL(), c.explainRequestError(err))
	case http.StatusForbidden:
		out = fmt.Errorf("deleting runner by token at %s: %w: %w", c.URL(), ErrRunnerTokenRejected, err)
	default:
		out = answered(err, "deleting runner by token at %s: GitLab answered %s", c.URL(), httpStatus(code, err))
	}
	return redact(out, token)
}

// explainRequestError explains an error that left no HTTP answer: TLS and
// connection problems get CheckTLS's advice, anything else is returned as is.
func (c *Client) explainRequestError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return c.explainConnError(c.addr(), err)
}

// ErrCannotList means the access token may not list runners (HTTP 401/403 on the runner list):
// it needs the read_api (or api) scope besides create_runner.
var ErrCannotList = errors.New("the access token may not list runners")

// refusedError marks an error GitLab answered with a 4xx status to a create or register
// request: the runner was certainly not created.
type refusedError struct{ error }

func (e refusedError) Unwrap() error { return e.error }

// Refused reports whether err is GitLab's 4xx answer to a create or register request, so no
// runner was created; a network error or a 5xx leaves that unknown.
func Refused(err error) bool {
	var r refusedError
	return errors.As(err, &r)
}

// Orphans lists the ids of the runners a create request with options o left behind when its
// answer was lost (the process killed before it saved the token): runners of o's type (and
// group or project) described o.Description that no runner manager ever contacted GitLab for
// (status never_contacted) and whose maintenance note contains marker, the request's own. It
// uses GET /api/v4/runners/all, /groups/:id/runners or /projects/:id/runners with type and
// status filters, following pages, then GET /api/v4/runners/:id for each candidate's note
// (REST API "Runners"). Errors wrap ErrCannotList when the token may not read runners.
func (c *Client) Orphans(ctx context.Context, accessToken string, o CreateOptions, marker string) ([]int64, error) {
	typ := o.RunnerType
	if typ == "" {
		typ = "instance_type"
	}
	var ids []int64
	for page := int64(1); page > 0; {
		lo := gitlab.ListOptions{Page: page, PerPage: 100}
		var (
			list []*gitlab.Runner
			resp *gitlab.Response
			err  error
		)
		opts := []gitlab.RequestOptionFunc{gitlab.WithContext(ctx), gitlab.WithToken(gitlab.PrivateToken, accessToken), noRetry}
		switch typ {
		case "group_type":
			list, resp, err = c.gl.Runners.ListGroupsRunners(o.GroupID, &gitlab.ListGroupsRunnersOptions{ListOptions: lo,
				Type: gitlab.Ptr(typ), Status: gitlab.Ptr("never_contacted")}, opts...)
		case "project_type":
			list, resp, err = c.gl.Runners.ListProjectRunners(o.ProjectID, &gitlab.ListProjectRunnersOptions{ListOptions: lo,
				Type: gitlab.Ptr(typ), Status: gitlab.Ptr("never_contacted")}, opts...)
		default:
			list, resp, err = c.gl.Runners.ListAllRunners(&gitlab.ListRunnersOptions{ListOptions: lo,
				Type: gitlab.Ptr(typ), Status: gitlab.Ptr("never_contacted")}, opts...)
		}
		if err != nil {
			switch code := statusOf(resp, err); code {
			case http.StatusUnauthorized, http.StatusForbidden:
				return nil, redact(fmt.Errorf("%w (%s): it needs the read_api or api scope", ErrCannotList, httpStatus(code, err)), accessToken)
			case 0:
				return nil, redact(fmt.Errorf("listing runners at %s: %w", c.URL(), c.explainRequestError(err)), accessToken)
			default:
				return nil, redact(answered(err, "listing runners at %s: GitLab answered %s", c.URL(), httpStatus(code, err)), accessToken)
			}
		}
		for _, r := range list {
			if r.Description == o.Description && (r.Status == "" || r.Status == "never_contacted") {
				ids = append(ids, r.ID)
			}
		}
		page = 0
		if resp != nil {
			page = resp.NextPage
		}
	}
	var out []int64
	for _, id := range ids {
		d, resp, err := c.gl.Runners.GetRunnerDetails(id, gitlab.WithContext(ctx), gitlab.WithToken(gitlab.PrivateToken, accessToken), noRetry)
		if err != nil {
			if code := statusOf(resp, err); code == http.StatusUnauthorized || code == http.StatusForbidden {
				return nil, redact(fmt.Errorf("%w (%s on runner %d): it needs the read_api or api scope", ErrCannotList, httpStatus(code, err), id), accessToken)
			} else if code == http.StatusNotFound {
				continue
			}
			return nil, redact(fmt.Errorf("reading runner %d at %s: %w", id, c.URL(), err), accessToken)
		}
		if marker != "" && strings.Contains(d.MaintenanceNote, marker) {
			out = append(out, id)
		}
	}
	return out, nil
}
