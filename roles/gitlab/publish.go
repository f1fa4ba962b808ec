package gitlab

import (
	"context"
	"errors"
	"fmt"
	"github.com/glbootstrap/glbootstrap/internal/engine"

	"github.com/glbootstrap/glbootstrap/internal/aws/ssm"
	"github.com/glbootstrap/glbootstrap/internal/host"
)

// publishPrivateURL writes GitLab's private URL to gitlab.publish_private_url_parameter (a
// String: an address is no secret), where the runner role's gitlab.private_url_parameter reads
// it. It writes only when the value differs (PutParameter with Overwrite). SSM is AWS, not the
// host, so --root does not stop it; plan only reads.
func (r *Role) publishPrivateURL(ctx context.Context) ([]host.Step, error) {
	param := r.cfg.GitLab.PublishPrivateURLParameter
	if param == "" {
		return nil, engine.Skip("not configured (gitlab.publish_private_url_parameter is not set): nothing published")
	}
	st := host.Step{Kind: "remote", Target: "ssm:" + param}
	if r.d.Host.DryRun {
		cur, err := r.d.Params.Get(ctx, param)
		switch {
		case errors.Is(err, ssm.ErrNotFound):
			st.Changed, st.Summary = true, "would be created: "+r.privateURL
		case err != nil:
			return []host.Step{st}, fmt.Errorf("reading gitlab.publish_private_url_parameter: %w", err)
		case cur == r.privateURL:
			st.Summary = r.privateURL + " (unchanged)"
		default:
			st.Changed, st.Summary = true, fmt.Sprintf("would be updated: %s -> %s", cur, r.privateURL)
		}
		return []host.Step{st}, nil
	}
	changed, err := r.d.Params.Put(ctx, param, r.privateURL, false)
	if err != nil {
		return []host.Step{st}, fmt.Errorf("publishing the private URL (gitlab.publish_private_url_parameter): %w", err)
	}
	st.Changed = changed
	if changed {
		st.Summary = "published " + r.privateURL
	} else {
		st.Summary = r.privateURL + " (unchanged)"
	}
	return []host.Step{st}, nil
}
