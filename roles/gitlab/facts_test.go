package gitlab

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
)

// TestFactsAreReadOnlyWhenNeeded: the GitLab host reads instance metadata only for a fact its
// configuration does not give, and a fact metadata cannot give names the key to set.
func TestFactsAreReadOnlyWhenNeeded(t *testing.T) {
	unreachable := errors.New("instance metadata (IMDSv2) is not reachable at http://127.0.0.1:1")
	for _, tc := range []struct {
		name      string
		gitlab    string // keys added to the gitlab section
		top       string // sections added at the top level
		wantReads int
		wantErr   string
	}{
		{"every fact given", "", "instance: {vpc_cidr: 10.0.0.0/16}\n", 0, ""},
		{"published URL given, backup region given", "  private_url: https://10.0.1.20\n  publish_private_url_parameter: /glb/u\n",
			"backup: {bucket: b-ucket, region: us-east-2}\ninstance: {vpc_cidr: 10.0.0.0/16}\n", 0, ""},
		{"no VPC CIDR", "", "", 1, "set instance.vpc_cidr in the configuration"},
		{"no private URL to publish", "  publish_private_url_parameter: /glb/u\n", "instance: {vpc_cidr: 10.0.0.0/16}\n", 1,
			"set gitlab.private_url (or instance.private_ipv4) in the configuration"},
		{"no backup region", "", "backup: {bucket: b-ucket}\ninstance: {vpc_cidr: 10.0.0.0/16}\n", 1, "set backup.region in the configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := baseDoc + tc.gitlab + tc.top
			cfg := parse(t, doc)
			reads := 0
			meta := imds.NewLazy(func(context.Context) (imds.Facts, error) { reads++; return imds.Facts{}, unreachable })
			f, err := resolveFacts(context.Background(), Deps{Config: cfg, Facts: meta})
			if reads != tc.wantReads {
				t.Errorf("instance metadata read %d times, want %d", reads, tc.wantReads)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "not reachable")):
				t.Fatalf("error = %v, want %q and the cause", err, tc.wantErr)
			case err == nil && f.VPCCIDR != "10.0.0.0/16":
				t.Errorf("facts %+v", f)
			}
		})
	}
}
