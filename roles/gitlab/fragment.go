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
	Header      string
	ExternalURL string
	// Omnibus is the row of omnibusVersions for the installed (else pinned) version; its Client
	// is the Ruby expression the nginx client settings are written under.
	Omnibus             OmnibusRow
	OmnibusVersion      string // "" when neither installed nor pinned
	LetsEncrypt         bool
	TLSFiles            string // where the certificate comes from, for the comment
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

// renderFragment renders the fragment for cfg on an instance with facts f, for the pinned
// gitlab.version (renderFragmentFor with it).
func renderFragment(cfg *Config, f Facts) ([]byte, error) {
	return renderFragmentFor(cfg, f, cfg.GitLab.Version)
}

// renderFragmentFor renders the fragment for cfg on an instance with facts f, for Omnibus version
// (x.y.z; "" when unknown: the oldest row of omnibusVersions, whose keys every version reads).
func renderFragmentFor(cfg *Config, f Facts, version string) ([]byte, error) {
	g := cfg.GitLab
	data := fragmentData{
		Header:              render.Header,
		ExternalURL:         g.URL,
		Omnibus:             omnibusFor(version),
		OmnibusVersion:      version,
		LetsEncrypt:         g.LetsEncrypt,
		ListenPort:          443,
		ListenHTTPS:         true,
		TLSTermination:      g.NLB.TLSTermination,
		ProxyProtocol:       g.NLB.ProxyProtocol,
		TrustedAddresses:    []string{f.VPCCIDR},
		SSHPort:             g.SSHPort,
		MonitoringWhitelist: append(slices.Clone(loopbackWhitelist), f.VPCCIDR),
		RootPasswordFile:    RootPasswordFile,
	}
	switch {
	case g.NLB.TLSTermination:
		data.ListenPort, data.ListenHTTPS = 80, false
	case g.LetsEncrypt:
		data.TLSFiles = "Let's Encrypt (gitlab.letsencrypt)"
	case g.TLS.CertificateParameter != "":
		data.TLSFiles = "SSM " + g.TLS.CertificateParameter + " and " + g.TLS.KeyParameter + " (gitlab.tls)"
	default:
		data.TLSFiles = "put there by the bake or the admin; apply refuses to reconfigure without them"
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
	if data.Settings, err = settingsStatements(g.Settings, data.Omnibus); err != nil {
		return nil, err
	}
	return render.Template(templates.FS, fragmentTemplate, funcs, data)
}

// settingsStatements turns gitlab.settings into statements, roots and keys in sorted order so
// the fragment only changes when a setting does. monitoring_whitelist is merged into the managed
// one instead. The nginx client settings (nginxClientKeys), written as nginx: {k: v} or as
// gitlab_rails: {nginx: {k: v}}, are rendered where row's Omnibus reads them (row.Client), one
// line per key: gitlab_rails['nginx'] = {...} would replace the whole hash, the managed
// listen_port and listen_https with it.
func settingsStatements(s Settings, row OmnibusRow) ([]string, error) {
	var out []string
	client := func(k string, v any, path string) error {
		lit, err := RubyLiteral(v)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, row.Client+"["+rubyString(k)+"] = "+lit)
		return nil
	}
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
		for _, k := range sortedKeys(m) {
			path := "gitlab.settings." + root + "." + k
			if root == "gitlab_rails" && k == "monitoring_whitelist" {
				continue
			}
			if root == "nginx" && slices.Contains(nginxClientKeys, k) {
				if err := client(k, m[k], path); err != nil {
					return nil, err
				}
				continue
			}
			if sub, ok := m[k].(map[string]any); ok && root == "gitlab_rails" && k == "nginx" {
				for _, sk := range sortedKeys(sub) {
					if slices.Contains(nginxClientKeys, sk) {
						if err := client(sk, sub[sk], path+"."+sk); err != nil {
							return nil, err
						}
						continue
					}
					lit, err := RubyLiteral(sub[sk])
					if err != nil {
						return nil, fmt.Errorf("%s.%s: %w", path, sk, err)
					}
					out = append(out, "gitlab_rails['nginx']["+rubyString(sk)+"] = "+lit)
				}
				continue
			}
			st, err := Statement(root, k, m[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
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
		return []host.Step{{Kind: "file", Target: GitLabRB, Summary: "loads " + FragmentPath,
			Warning: overrideWarning(old, r.fragment, omnibusFor(r.version))}}, nil
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
	st.Warning = overrideWarning(old, r.fragment, omnibusFor(r.version))
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

// rbAssignRE finds a gitlab.rb assignment root['key'] = or root['key']['sub'] = (also ||=) at the
// start of a line; keys are plain names (what Omnibus's settings use), in either quoting.
var rbAssignRE = regexp.MustCompile(`^[ \t]*([a-z_]+)[ \t]*\[[ \t]*["']([A-Za-z0-9_]+)["'][ \t]*\](?:[ \t]*\[[ \t]*["']([A-Za-z0-9_]+)["'][ \t]*\])?[ \t]*(?:\|\|)?=(?:[^=~]|$)`)

var externalURLRE = regexp.MustCompile(`^[ \t]*external_url\b`)

// rbSetting is a setting assigned in gitlab.rb, by where it lands: an nginx client setting is
// named by its key alone (client), since nginx['k'] and gitlab_rails['nginx']['k'] are one setting
// from Omnibus 19.2 on.
type rbSetting struct {
	name   string // as written: nginx['listen_port']
	id     string // root.key(.sub), or client.key for an nginx client setting
	client string // "nginx" or "gitlab_rails['nginx']" for a client setting, else ""
}

func parseAssign(line string) (rbSetting, bool) {
	m := rbAssignRE.FindStringSubmatch(line)
	if m == nil {
		return rbSetting{}, false
	}
	root, key, sub := m[1], m[2], m[3]
	st := rbSetting{name: root + "['" + key + "']", id: root + "." + key}
	if sub != "" {
		st.name += "['" + sub + "']"
		st.id += "." + sub
	}
	switch {
	case root == "nginx" && sub == "" && slices.Contains(nginxClientKeys, key):
		st.id, st.client = "client."+key, "nginx"
	case root == "gitlab_rails" && key == "nginx" && sub != "" && slices.Contains(nginxClientKeys, sub):
		st.id, st.client = "client."+sub, "gitlab_rails['nginx']"
	}
	return st, true
}

// overrideWarning reports the admin's gitlab.rb lines that set a setting the fragment sets too,
// by key and line number only: the lines' values may be secrets and are never printed. Which
// one wins: the later line, since the fragment is evaluated where the from_file line is; but an
// nginx client setting written as gitlab_rails['nginx'][k] beats nginx[k] wherever it is from
// Omnibus 19.2 on (gitlab_rails.rb translate_client_settings copies nginx[k] only when the
// gitlab_rails['nginx'] key is nil), and is ignored before. "" when there is nothing to report.
func overrideWarning(adminRB, fragment []byte, row OmnibusRow) string {
	if len(adminRB) == 0 {
		return ""
	}
	managed := map[string]rbSetting{}
	for _, line := range strings.Split(string(fragment), "\n") {
		if st, ok := parseAssign(line); ok {
			managed[st.id] = st
		}
	}
	lines := strings.Split(string(adminRB), "\n")
	include := len(lines) // not there yet: appended at the end
	for i, line := range lines {
		if includeRE.MatchString(line) {
			include = i
			break
		}
	}
	var out []string
	for i, line := range lines {
		if i > include && externalURLRE.MatchString(line) {
			out = append(out, fmt.Sprintf("line %d: external_url comes after the from_file line and wins over gitlab.url: remove it", i+1))
			continue
		}
		admin, ok := parseAssign(line)
		if !ok {
			continue
		}
		ours, ok := managed[admin.id]
		if !ok {
			continue
		}
		after := i > include
		var verdict string
		switch {
		case admin.client != "" && admin.client != ours.client && ours.client == "nginx":
			if row.movedClient() {
				verdict = "it wins over glbootstrap's " + ours.name + " wherever it is (Omnibus 19.2+ translate_client_settings)"
			} else {
				verdict = "Omnibus before 19.2 does not read it; glbootstrap's " + ours.name + " applies"
			}
		case admin.client != "" && admin.client != ours.client:
			verdict = "glbootstrap's " + ours.name + " wins over it, and it prints a deprecation on every reconfigure"
		case after:
			verdict = "it comes after the from_file line and wins over glbootstrap's value"
		default:
			verdict = "glbootstrap's value (loaded later) wins over it"
		}
		out = append(out, fmt.Sprintf("line %d: %s is managed by glbootstrap (%s): %s; remove the line and use the configuration", i+1, admin.name, managedBy(ours), verdict))
	}
	if len(out) == 0 {
		return ""
	}
	return GitLabRB + " sets managed settings (values not shown): " + strings.Join(out, "; ")
}

// managedBy names the configuration key that sets a fragment setting.
func managedBy(st rbSetting) string {
	id := st.id
	if st.client != "" {
		if k, ok := managedNginxClient[strings.TrimPrefix(id, "client.")]; ok {
			return k
		}
		id = "nginx." + strings.TrimPrefix(id, "client.")
	}
	if k, ok := managedSettings[id]; ok {
		return k
	}
	switch {
	case strings.HasPrefix(id, "gitlab_rails.backup_"):
		return "the backup section"
	case id == "gitlab_rails.monitoring_whitelist":
		return "gitlab.settings.gitlab_rails.monitoring_whitelist, added to the loopback and VPC CIDR"
	}
	return "gitlab.settings." + id
}
