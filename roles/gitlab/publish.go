package gitlab

import (
	"context"
	"fmt"

	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
)

// publishPrivateURL writes GitLab's private URL to gitlab.publish_private_url_parameter (a
// String: an address is no secret), where the runner role's gitlab.private_url_parameter reads
// it. It writes only when the value differs (PutParameter with Overwrite). SSM is AWS, not the
// host, so --root does not stop it; under plan the Parameters wired in only read.
func (r *Role) publishPrivateURL(ctx context.Context) ([]host.Step, error) {
	param := r.cfg.GitLab.PublishPrivateURLParameter
	if param == "" {
		return nil, engine.Skip("not configured (gitlab.publish_private_url_parameter is not set): nothing published")
	}
	st, err := r.d.Params.Put(ctx, param, r.privateURL, false)
	if err != nil {
		return []host.Step{st}, fmt.Errorf("publishing the private URL (gitlab.publish_private_url_parameter): %w", err)
	}
	return []host.Step{st}, nil
}
