package gitlab

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// adminRB is a gitlab.rb an admin has edited, secrets last (where a diff of the appended line
// would show them as context).
const adminRB = `external_url 'http://gitlab.example.com'
gitlab_rails['smtp_enable'] = true
gitlab_rails['ldap_servers'] = { 'main' => { 'bind_dn' => 'cn=gitlab', "password" => "ldap-pw-of-the-admin" } }
gitlab_rails['db_password'] = 'db-pw-of-the-admin'
gitlab_rails['smtp_password'] = 'smtp-pw-of-the-admin'`

// TestIncludeNeverPrintsTheAdminsLines: gitlab-rb-include says what it does to gitlab.rb and
// carries no diff, under plan and apply, whether it appends the line or creates the file; no
// line of the admin's file reaches the step (and so the output).
func TestIncludeNeverPrintsTheAdminsLines(t *testing.T) {
	for _, tc := range []struct {
		name, existing, want string
	}{
		{"admin's file", adminRB, "from_file line for " + FragmentPath + " appended at the end; the admin's lines are kept and not shown"},
		{"no gitlab.rb", "", "created: Omnibus's template with the from_file line for " + FragmentPath},
	} {
		for _, dry := range []bool{true, false} {
			t.Run(tc.name+map[bool]string{true: " plan", false: " apply"}[dry], func(t *testing.T) {
				root := t.TempDir()
				p := filepath.Join(root, GitLabRB)
				if err := os.MkdirAll(filepath.Dir(p), 0o775); err != nil {
					t.Fatal(err)
				}
				if tc.existing != "" {
					if err := os.WriteFile(p, []byte(tc.existing), 0o640); err != nil {
						t.Fatal(err)
					}
				}
				h, err := host.New(root, dry)
				if err != nil {
					t.Fatal(err)
				}
				r := &Role{d: Deps{Host: h}}
				steps, err := r.gitlabRBInclude(context.Background())
				if err != nil || len(steps) != 1 {
					t.Fatalf("steps %+v, err %v", steps, err)
				}
				st := steps[0]
				if !st.Changed || st.Diff != "" || !strings.Contains(st.Summary, tc.want) {
					t.Errorf("step = %+v, want changed, no diff, summary with %q", st, tc.want)
				}
				if dry != strings.HasPrefix(st.Summary, "would be ") {
					t.Errorf("summary %q under dry-run %v", st.Summary, dry)
				}
				out, _ := json.Marshal(st)
				for _, l := range strings.Split(tc.existing, "\n") {
					if l != "" && strings.Contains(string(out), l) {
						t.Errorf("the step carries the admin's line %q: %s", l, out)
					}
				}
				got, _ := os.ReadFile(p)
				switch {
				case dry && string(got) != tc.existing:
					t.Errorf("plan changed gitlab.rb:\n%s", got)
				case !dry && (!strings.HasPrefix(string(got), tc.existing) || !strings.HasSuffix(string(got), IncludeLine+"\n")):
					t.Errorf("gitlab.rb after apply:\n%s", got)
				}
				if !dry && tc.existing != "" {
					if info, _ := os.Stat(p); info.Mode().Perm() != 0o640 {
						t.Errorf("mode %v, want the admin's 0640 kept", info.Mode().Perm())
					}
				}
			})
		}
	}
}

// TestIncludeMasksTheAdminsSecrets: the secrets in the admin's gitlab.rb join the role's secrets,
// so anything that prints a line of gitlab.rb later (gitlab-ctl reconfigure's output on a Ruby
// error) has them masked; settings that are not secrets do not.
func TestIncludeMasksTheAdminsSecrets(t *testing.T) {
	for _, withLine := range []bool{false, true} {
		root := t.TempDir()
		p := filepath.Join(root, GitLabRB)
		if err := os.MkdirAll(filepath.Dir(p), 0o775); err != nil {
			t.Fatal(err)
		}
		rb := adminRB + "\n"
		if withLine {
			rb += IncludeLine + "\n"
		}
		if err := os.WriteFile(p, []byte(rb), 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := host.New(root, true)
		if err != nil {
			t.Fatal(err)
		}
		r := &Role{d: Deps{Host: h}}
		if _, err := r.gitlabRBInclude(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := r.Secrets()
		want := []string{"ldap-pw-of-the-admin", "db-pw-of-the-admin", "smtp-pw-of-the-admin"}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("from_file line present %v: Secrets() = %q, want %q", withLine, got, want)
		}
	}
}
