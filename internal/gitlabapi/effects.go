package gitlabapi

import (
	"context"
	"fmt"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// Lifecycle is the runner lifecycle as the runner role asks for it. Reads (CheckTLS,
// WaitReady, Verify) always ask GitLab; each change returns the step that says what was done,
// or, from Plan, what would be done (nothing is sent). Errors are the Client's.
type Lifecycle interface {
	CheckTLS(ctx context.Context) error
	WaitReady(ctx context.Context, timeout time.Duration, progress func(string)) error
	// Verify is POST /api/v4/runners/verify: true with the runner's id (0 from GitLab < 15.10)
	// when GitLab accepts token, false on 403.
	Verify(ctx context.Context, token, systemID string) (Registered, bool, error)
	// Orphans lists the runners a create request with o and marker in its maintenance note
	// left behind, never contacted (errors wrap ErrCannotList without the read_api scope).
	Orphans(ctx context.Context, accessToken string, o CreateOptions, marker string) ([]int64, error)
	// Create is POST /api/v4/user/runners with a create_runner access token.
	Create(ctx context.Context, accessToken string, o CreateOptions) (Registered, host.Step, error)
	// Register is the legacy POST /api/v4/runners with a registration token.
	Register(ctx context.Context, registrationToken string, o CreateOptions) (Registered, host.Step, error)
	// Delete is DELETE /api/v4/runners/:id with an access token.
	Delete(ctx context.Context, accessToken string, id int64) (host.Step, error)
	// DeleteByToken is DELETE /api/v4/runners with the runner's own token.
	DeleteByToken(ctx context.Context, token string) (host.Step, error)
}

// PlannedToken stands for the runner authentication token GitLab will return when apply
// creates the runner; plan renders it where the token goes, so the diff shows the whole file.
const PlannedToken = "glrt-(returned-by-GitLab-at-apply)"

// Apply returns the Lifecycle that acts on GitLab.
func Apply(c *Client) Lifecycle { return applyLC{c} }

// Plan returns the Lifecycle that reads from GitLab and only describes changes.
func Plan(c *Client) Lifecycle { return planLC{c} }

type applyLC struct{ *Client }

func (a applyLC) step(target, summary string) host.Step {
	return host.Step{Kind: "remote", Target: a.URL() + target, Changed: true, Summary: summary}
}

func (a applyLC) Create(ctx context.Context, tok string, o CreateOptions) (Registered, host.Step, error) {
	reg, err := a.CreateRunner(ctx, tok, o)
	return reg, a.step("/api/v4/user/runners", fmt.Sprintf("created runner #%d %q", reg.ID, o.Description)), err
}

func (a applyLC) Register(ctx context.Context, tok string, o CreateOptions) (Registered, host.Step, error) {
	reg, err := a.RegisterLegacy(ctx, tok, o)
	return reg, a.step("/api/v4/runners", fmt.Sprintf("registered runner #%d %q", reg.ID, o.Description)), err
}

func (a applyLC) Delete(ctx context.Context, tok string, id int64) (host.Step, error) {
	return a.step(fmt.Sprintf("/api/v4/runners/%d", id), fmt.Sprintf("deleted runner #%d", id)), a.DeleteRunner(ctx, tok, id)
}

func (a applyLC) DeleteByToken(ctx context.Context, tok string) (host.Step, error) {
	return a.step("/api/v4/runners", "deleted the runner of this token"), a.DeleteRunnerByToken(ctx, tok)
}

type planLC struct{ *Client }

func (p planLC) step(target, summary string) host.Step {
	return host.Step{Kind: "remote", Target: p.URL() + target, Changed: true, Summary: summary}
}

func (p planLC) Create(_ context.Context, _ string, o CreateOptions) (Registered, host.Step, error) {
	return Registered{Token: PlannedToken}, p.step("/api/v4/user/runners", fmt.Sprintf("would create runner %q", o.Description)), nil
}

func (p planLC) Register(_ context.Context, _ string, o CreateOptions) (Registered, host.Step, error) {
	return Registered{Token: PlannedToken}, p.step("/api/v4/runners", fmt.Sprintf("would register runner %q", o.Description)), nil
}

func (p planLC) Delete(_ context.Context, _ string, id int64) (host.Step, error) {
	return p.step(fmt.Sprintf("/api/v4/runners/%d", id), fmt.Sprintf("would delete runner #%d", id)), nil
}

func (p planLC) DeleteByToken(context.Context, string) (host.Step, error) {
	return p.step("/api/v4/runners", "would delete the runner of this token"), nil
}
