package runner

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
)

// TestFactsAreReadOnlyWhenNeeded: instance metadata is read only for a fact the configuration
// does not give and a selected phase needs, and a fact it cannot give names the key to set.
func TestFactsAreReadOnlyWhenNeeded(t *testing.T) {
	data := "version: 1\ngitlab: {url: https://g.example.com, private_url: https://10.0.1.10}\n" +
		"runner: {concurrent: 1, token_parameter: /glb/token}\n" +
		"fargate: {cluster: c, security_group: sg-0123abcd, task_definition: td, driver: {version: v0.5.1, sha256: \"" + strings.Repeat("a", 64) + "\"}%s}\n%s"
	given := ", region: us-east-2, subnet: subnet-0123abcd"
	instance := "instance: {id: i-0123456789abcdef0, private_ipv4: 10.0.1.20, security_groups: [sg-0aaaaaaaaaaaaaaaa]}\n"
	unreachable := errors.New("instance metadata (IMDSv2) is not reachable at http://127.0.0.1:1")
	for _, tc := range []struct {
		name             string
		doc              string
		selected         []string
		wantReads        int
		wantErr          string
		wantID, wantSubn string
	}{
		{"every fact given", strings.Replace(data, "%s}\n%s", given+"}\n"+instance, 1), nil, 0, "", "i-0123456789abcdef0", "subnet-0123abcd"},
		{"bake phases need none", strings.Replace(data, "%s}\n%s", "}\n", 1), []string{"directories"}, 0, "", "", ""},
		{"fargate-config needs region and subnet", strings.Replace(data, "%s}\n%s", "}\n", 1), []string{"fargate-config"}, 1, "set fargate.region in the configuration", "", ""},
		{"register needs the instance id", strings.Replace(data, "%s}\n%s", given+"}\n", 1), []string{"register"}, 1, "set instance.id in the configuration", "", ""},
		{"preflight needs the front's groups", strings.Replace(data, "%s}\n%s", given+"}\ninstance: {private_ipv4: 10.0.1.20}\n", 1), []string{"preflight"}, 1, "set instance.security_groups in the configuration", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ps := parseDoc([]byte(tc.doc), Name)
			if cfg == nil {
				t.Fatalf("config: %v\n%s", ps.Err(), tc.doc)
			}
			reads := 0
			meta := imds.NewLazy(func(context.Context) (imds.Facts, error) { reads++; return imds.Facts{}, unreachable })
			selected := tc.selected
			if selected == nil {
				selected = allPhaseNames()
			}
			r, err := prepareFacts(context.Background(), Deps{Config: cfg, Facts: meta, Selected: selected})
			if reads != tc.wantReads {
				t.Errorf("instance metadata read %d times, want %d", reads, tc.wantReads)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "not reachable")):
				t.Fatalf("error = %v, want %q and the cause", err, tc.wantErr)
			case err == nil && (r.facts.InstanceID != tc.wantID || r.subnet != tc.wantSubn):
				t.Errorf("facts %+v subnet %q", r.facts, r.subnet)
			}
		})
	}
}

// allPhaseNames are the names of every phase, in order.
func allPhaseNames() []string {
	var out []string
	for _, p := range PhaseList() {
		out = append(out, p.Name)
	}
	return out
}
