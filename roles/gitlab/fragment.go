package gitlab

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/render"
	"github.com/glbootstrap/glbootstrap/templates"
)

// Template paths in templates.FS.
const (
	fragmentTemplate     = "gitlab/glbootstrap.rb.tmpl"
	rootPasswordTemplate = "gitlab/initial-root-password.rb.tmpl"
	gitlabRBTemplate     = "gitlab/gitlab.rb.tmpl"
	sshdTemplate         = "ssh/glbootstrap.conf.tmpl"
)

// IncludeLine is the line gitlab-rb-include keeps in gitlab.rb. It is appended at the end, so the
// fragment's settings win over the same settings earlier in gitlab.rb: the package's own
// gitlab.rb sets external_url near its top.
const IncludeLine = `from_file "` + FragmentPath + `"`

// includeRE finds a from_file of the fragment that is already in gitlab.rb, in any quoting, with
// or without parentheses; a commented-out one does not count.
var includeRE = regexp.MustCompile(`(?m)^[ \t]*from_file[ \t]*\(?[ \t]*["']` + regexp.QuoteMeta(FragmentPath) + `["'][ \t]*\)?[ \t]*(#.*)?$`)

// loopbackWhitelist is Omnibus's own monitoring_whitelist default, kept because setting the key
// replaces the default.
var loopbackWhitelist = []string{"127.0.0.0/8", "::1/128"}

// funcs are the template functions: ruby renders any value as a Ruby literal (RubyLiteral).
var funcs = template.FuncMap{"ruby": RubyLiteral}

// fragmentData fills templates/gitlab/glbootstrap.rb.tmpl.
type fragmentData struct {
	Header              string
	ExternalURL         string
	ListenPort          int
	ListenHTTPS         bool
	TLSTermination      bool
	ProxyProtocol       bool
	TrustedAddresses    []string
	SSHPort             int
	MonitoringWhitelist []string
	RootPasswordFile    string
	Backup              []string // whole statements, from backupStatements
	Settings            []string // whole statements, from settingsStatements
}

// renderFragment renders the fragment for cfg on an instance with facts f.
func renderFragment(cfg *Config, f Facts) ([]byte, error) {
	g := cfg.GitLab
	data := fragmentData{
		Header:              render.Header,
		ExternalURL:         g.URL,
		ListenPort:          443,
		ListenHTTPS:         true,
		TLSTermination:      g.NLB.TLSTermination,
		ProxyProtocol:       g.NLB.ProxyProtocol,
		TrustedAddresses:    []string{f.VPCCIDR},
		SSHPort:             g.SSHPort,
		MonitoringWhitelist: append(slices.Clone(loopbackWhitelist), f.VPCCIDR),
		RootPasswordFile:    RootPasswordFile,
	}
	if g.NLB.TLSTermination {
		data.ListenPort, data.ListenHTTPS = 80, false
	}
	if data.SSHPort == 0 {
		data.SSHPort = DefaultGitLabSSHPort
	}
	if rails, ok := g.Settings.Get("gitlab_rails").(map[string]any); ok {
		if extra, ok := rails["monitoring_whitelist"].([]any); ok {
			for _, e := range extra {
				if s, ok := e.(string); ok && !slices.Contains(data.MonitoringWhitelist, s) {
					data.MonitoringWhitelist = append(data.MonitoringWhitelist, s)
				}
			}
		}
	}
	var err error
	if data.Backup, err = backupStatements(cfg, f); err != nil {
		return nil, err
	}
	if data.Settings, err = settingsStatements(g.Settings); err != nil {
		return nil, err
	}
	return render.Template(templates.FS, fragmentTemplate, funcs, data)
}

// settingsStatements turns gitlab.settings into statements, roots and keys in sorted order so
// the fragment only changes when a setting does. monitoring_whitelist is merged into the managed
// one instead.
func settingsStatements(s Settings) ([]string, error) {
	var out []string
	for _, root := range s.Roots() {
		v := s.Get(root)
		if IsCallRoot(root) {
			st, err := Statement(root, "", v)
			if err != nil {
				return nil, fmt.Errorf("gitlab.settings.%s: %w", root, err)
			}
			out = append(out, st)
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("gitlab.settings.%s: must be a mapping", root)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if root == "gitlab_rails" && k == "monitoring_whitelist" {
				continue
			}
			st, err := Statement(root, k, m[k])
			if err != nil {
				return nil, fmt.Errorf("gitlab.settings.%s.%s: %w", root, k, err)
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// gitlabFragment writes the rendered fragment, 0600 like gitlab.rb.
func (r *Role) gitlabFragment(ctx context.Context) ([]host.Step, error) {
	st, err := r.d.Host.EnsureFile(host.File{Path: FragmentPath, Data: r.fragment, Mode: 0o600})
	return []host.Step{st}, err
}

// gitlabRBInclude makes gitlab.rb load the fragment: the from_file line is appended once (with a
// comment saying why) and nothing else in the file is touched, its mode included. A missing
// gitlab.rb is created 0600 from templates/gitlab/gitlab.rb.tmpl.
//
// gitlab.rb is the admin's file, and its lines hold the admin's secrets (smtp_password,
// db_password, LDAP passwords) that glbootstrap never knows and so cannot mask: the step says
// what it does and carries no diff, because a diff's context lines would print them into SSM
// output and CloudWatch.
func (r *Role) gitlabRBInclude(ctx context.Context) ([]host.Step, error) {
	h := r.d.Host
	old, err := h.ReadFile(GitLabRB)
	var data []byte
	mode := fsMode(0o600)
	what := "from_file line for " + FragmentPath + " appended at the end; the admin's lines are kept and not shown"
	switch {
	case host.IsNotExist(err):
		head, err := render.Template(templates.FS, gitlabRBTemplate, funcs, nil)
		if err != nil {
			return nil, err
		}
		data = append(head, []byte("\n"+includeComment+IncludeLine+"\n")...)
		what = "Omnibus's template with the from_file line for " + FragmentPath
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", GitLabRB, err)
	case includeRE.Match(old):
		r.secrets = append(r.secrets, gitlabRBSecrets(old)...)
		return []host.Step{{Kind: "file", Target: GitLabRB, Summary: "loads " + FragmentPath}}, nil
	default:
		if info, err := h.Stat(GitLabRB); err == nil {
			mode = info.Mode().Perm()
		}
		data = append([]byte(nil), old...)
		if len(data) > 0 && !strings.HasSuffix(string(data), "\n") {
			data = append(data, '\n')
		}
		data = append(data, []byte("\n"+includeComment+IncludeLine+"\n")...)
	}
	// Whatever prints gitlab.rb's lines later (a Ruby syntax error in gitlab-ctl reconfigure's
	// output quotes the line) has the admin's secrets masked too.
	r.secrets = append(r.secrets, gitlabRBSecrets(old)...)
	// NoDiff: the host describes the change with what, and never diffs the admin's lines.
	st, err := h.EnsureFile(host.File{Path: GitLabRB, Data: data, Mode: mode, NoDiff: what, FollowLink: true})
	if st.Changed {
		r.includeChanged = true
	}
	return []host.Step{st}, err
}

// rbSecretRE finds Ruby string literals assigned to settings whose name says they hold a secret:
// gitlab_rails['smtp_password'] = '...', 'password' => "..." inside a hash (ldap_servers), and
// *_secret, *_token, *_key settings.
var rbSecretRE = regexp.MustCompile(`(?i)[a-z0-9_]*(?:password|passwd|secret|token|_key|key_base)[a-z0-9_]*['"]?\]?[ \t]*(?:=>|=)[ \t]*(?:'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)")`)

// gitlabRBSecrets returns the secret values in gitlab.rb's text, as written there.
func gitlabRBSecrets(b []byte) []string {
	var out []string
	for _, m := range rbSecretRE.FindAllSubmatch(b, -1) {
		if v := string(m[1]) + string(m[2]); v != "" {
			out = append(out, v)
		}
	}
	return out
}

const includeComment = "# Added by glbootstrap: its managed settings (keep this line last, so they win).\n"
