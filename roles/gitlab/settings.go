package gitlab

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/glbootstrap/glbootstrap/internal/config"
)

// Settings are the extra gitlab.rb settings of gitlab.settings, decoded into plain typed values:
// a mapping from a gitlab.rb root to, for a hash root (gitlab_rails, nginx, ...), a
// map[string]any of its keys, or, for a call root (registry_external_url, roles), the value the
// method is called with.
//
// Values are string, int64, float64 (finite), bool, []any and map[string]any, nothing else. In
// particular there is no null: in YAML an empty value is nearly always a forgotten one, and a nil
// in gitlab.rb means "Omnibus's default", which is what leaving the key out already gives. NaN
// and infinities are refused because Ruby has no literal for them. Each of these is reported with
// its path and line by Parse.
//
// The root names are Ruby code in gitlab.rb (method calls), never literals, so they are limited
// to GitLabRBHashRoots and GitLabRBCallRoots. Keys below a root are only ever rendered as Ruby
// string literals.
//
// config.Parse checks the section through CheckNode (a config.NodeChecker), so each problem
// comes with its path and line.
//
// Settings is a small struct around a pointer so that GitLab stays comparable with ==; the zero
// value holds no settings.
type Settings struct{ t *settingsTree }

type settingsTree struct{ roots map[string]any }

// Roots returns the roots that are set, sorted, so the rendered fragment is the same for the
// same settings however the YAML orders them.
func (s Settings) Roots() []string {
	if s.t == nil {
		return nil
	}
	keys := make([]string, 0, len(s.t.roots))
	for k := range s.t.roots {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Get returns the value of root: a map[string]any for a hash root, any value for a call root,
// nil when it is not set.
func (s Settings) Get(root string) any {
	if s.t == nil {
		return nil
	}
	return s.t.roots[root]
}

// Len is the number of roots set.
func (s Settings) Len() int {
	if s.t == nil {
		return 0
	}
	return len(s.t.roots)
}

// NewSettings builds Settings from roots (for tests and callers that build a Config in Go);
// values must follow the rules above.
func NewSettings(roots map[string]any) Settings { return Settings{&settingsTree{roots: roots}} }

// GitLabRBHashRoots are the gitlab.rb roots that are hashes (nginx['listen_port'] = 443), from
// Omnibus's files/gitlab-config-template/gitlab.rb.template. A root Omnibus adds later needs an
// entry here before it can be set through gitlab.settings.
var GitLabRBHashRoots = []string{
	"alertmanager", "consul", "crond", "geo_logcursor", "geo_postgresql", "geo_secondary", "gitaly",
	"gitlab_exporter", "gitlab_kas", "gitlab_pages", "gitlab_rails", "gitlab_shell", "gitlab_sshd",
	"gitlab_workhorse", "high_availability", "letsencrypt", "logging", "logrotate", "mailroom",
	"manage_accounts", "manage_storage_directories", "mattermost", "mattermost_nginx", "nginx",
	"node_exporter", "package", "pages_nginx", "patroni", "pgbouncer", "pgbouncer_exporter",
	"postgres_exporter", "postgresql", "praefect", "prometheus", "puma", "redis", "redis_exporter",
	"registry", "registry_nginx", "sentinel", "sidekiq", "spamcheck", "storage_check", "user",
	"web_server",
}

// GitLabRBCallRoots are the gitlab.rb settings written as a method call with one value
// (registry_external_url 'https://registry.example.com', roles ['redis_sentinel_role']).
var GitLabRBCallRoots = []string{
	"gitlab_kas_external_url", "mattermost_external_url", "pages_external_url",
	"registry_external_url", "roles",
}

// managedSettings are the settings glbootstrap writes itself, and the configuration key that
// sets each instead.
var managedSettings = map[string]string{
	"external_url":                                "gitlab.url",
	"gitlab_rails.gitlab_shell_ssh_port":          "gitlab.ssh_port",
	"gitlab_rails.initial_root_password":          "gitlab.initial_root_password_parameter (an SSM SecureString)",
	"gitlab_rails.store_initial_root_password":    "gitlab.initial_root_password_parameter",
	"letsencrypt.enable":                          "gitlab.letsencrypt",
	"nginx.listen_port":                           "gitlab.nlb.tls_termination",
	"nginx.listen_https":                          "gitlab.nlb.tls_termination",
	"nginx.proxy_protocol":                        "gitlab.nlb.proxy_protocol",
	"nginx.real_ip_trusted_addresses":             "gitlab.nlb.proxy_protocol (the VPC CIDR is trusted)",
	"gitlab_rails.backup_upload_connection":       "the backup section",
	"gitlab_rails.backup_upload_remote_directory": "the backup section",
}

// secretKeyRE matches setting keys that hold secrets (smtp_password, db_password, ldap
// servers' password, secret_key_base, ...). Secrets never go in the configuration.
var secretKeyRE = regexp.MustCompile(`(?i)(password|secret|private_key|key_base|(^|_)token$)`)

var integerText = regexp.MustCompile(`^[-+]?[0-9_]+$`)

// UnmarshalYAML converts the mapping with the rules of Settings; problems come back as a
// *yaml.TypeError (Parse reports them earlier, with paths, through CheckNode).
func (s *Settings) UnmarshalYAML(n *yaml.Node) error {
	var errs []string
	v, ok := convertSettings(n, "gitlab.settings", func(path string, line int, msg string) {
		errs = append(errs, fmt.Sprintf("line %d: %s: %s", line, path, msg))
	})
	if !ok {
		return &yaml.TypeError{Errors: errs}
	}
	*s = v
	return nil
}

// CheckNode checks gitlab.settings during config.Parse's structural walk, reporting every
// problem with its path and line (config.NodeChecker).
func (s *Settings) CheckNode(n *yaml.Node, path string, report func(path string, line int, msg string)) bool {
	_, ok := convertSettings(n, path, report)
	return ok
}

// convertSettings turns the settings mapping into Settings, calling report for each problem.
func convertSettings(n *yaml.Node, path string, report func(path string, line int, msg string)) (Settings, bool) {
	// Aliases are refused here: settings are copied value by value, so nested aliases would
	// multiply (a few hundred bytes of "billion laughs" YAML expand to gigabytes).
	if a := firstAlias(n); a != nil {
		report(path, a.Line, "YAML aliases (*name) are not allowed in gitlab.settings: write the values out")
		return Settings{}, false
	}
	n = deref(n)
	if isNull(n) {
		return Settings{}, true
	}
	if n.Kind != yaml.MappingNode {
		report(path, n.Line, fmt.Sprintf("must be a mapping of gitlab.rb roots (gitlab_rails:, nginx:, ...), got %s", config.DescribeNode(n)))
		return Settings{}, false
	}
	out := map[string]any{}
	ok := true
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			report(path, k.Line, "keys must be plain names")
			ok = false
			continue
		}
		root := k.Value
		rp := joinPath(path, root)
		if first, dup := seen[root]; dup {
			report(rp, k.Line, fmt.Sprintf("duplicated key; it is already set on line %d", first))
			ok = false
			continue
		}
		seen[root] = k.Line
		switch {
		case managedSettings[root] != "":
			report(rp, k.Line, fmt.Sprintf("is set by glbootstrap; use %s instead", managedSettings[root]))
			ok = false
		case slices.Contains(GitLabRBHashRoots, root):
			if v.Kind != yaml.MappingNode {
				report(rp, v.Line, fmt.Sprintf("must be a mapping of %s keys (%s: {key: value}), got %s", root, root, config.DescribeNode(v)))
				ok = false
				continue
			}
			m, good := convertMap(v, rp, root, report)
			ok = ok && good
			out[root] = m
		case slices.Contains(GitLabRBCallRoots, root):
			val, good := convertValue(v, rp, report)
			ok = ok && good
			out[root] = val
		default:
			report(rp, k.Line, "is not a gitlab.rb setting glbootstrap knows; "+suggestRoot(root))
			ok = false
		}
	}
	return NewSettings(out), ok
}

// suggestRoot names the closest known root, or lists them all.
func suggestRoot(root string) string {
	all := append(slices.Clone(GitLabRBHashRoots), GitLabRBCallRoots...)
	best, bestDist := config.Nearest(root, all)
	// Two edits, not one: a swapped pair of letters (ngnix) is the usual typo.
	if bestDist >= 0 && bestDist <= max(2, min(3, len(root)/4)) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	sort.Strings(all)
	return "known roots: " + strings.Join(all, ", ")
}

// convertMap converts a mapping below a hash root (root != "") or inside a value (root == "").
func convertMap(n *yaml.Node, path, root string, report func(string, int, string)) (map[string]any, bool) {
	out := map[string]any{}
	ok := true
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || isNull(k) {
			report(path, k.Line, "keys must be plain strings")
			ok = false
			continue
		}
		kp := joinPath(path, k.Value)
		if k.Value == "<<" {
			report(path, k.Line, "merge keys (<<) are not supported; write the keys out")
			ok = false
			continue
		}
		if first, dup := seen[k.Value]; dup {
			report(kp, k.Line, fmt.Sprintf("duplicated key; it is already set on line %d", first))
			ok = false
			continue
		}
		seen[k.Value] = k.Line
		if root != "" {
			if instead := managedSettings[root+"."+k.Value]; instead != "" {
				report(kp, k.Line, fmt.Sprintf("%s['%s'] is set by glbootstrap; use %s instead", root, k.Value, instead))
				ok = false
				continue
			}
			if root+"."+k.Value == "gitlab_rails.monitoring_whitelist" {
				if !stringList(v) {
					report(kp, v.Line, "must be a list of addresses or CIDRs; they are added to 127.0.0.0/8, ::1/128 and the VPC CIDR")
					ok = false
					continue
				}
			}
		}
		if secretKeyRE.MatchString(k.Value) {
			report(kp, k.Line, "looks like a secret; secrets never go in the configuration: set it in /etc/gitlab/gitlab.rb "+
				"on the host (glbootstrap leaves the admin's own lines alone) or in a file loaded from there")
			ok = false
			continue
		}
		val, good := convertValue(v, kp, report)
		ok = ok && good
		out[k.Value] = val
	}
	return out, ok
}

func stringList(n *yaml.Node) bool {
	if n.Kind != yaml.SequenceNode {
		return false
	}
	for _, it := range n.Content {
		it = deref(it)
		if it.Kind != yaml.ScalarNode || it.ShortTag() != "!!str" {
			return false
		}
	}
	return true
}

// convertValue converts one value: a scalar, a list or a mapping.
func convertValue(n *yaml.Node, path string, report func(string, int, string)) (any, bool) {
	n = deref(n)
	switch n.Kind {
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		ok := true
		for i, it := range n.Content {
			v, good := convertValue(it, fmt.Sprintf("%s[%d]", path, i), report)
			ok = ok && good
			out = append(out, v)
		}
		return out, ok
	case yaml.MappingNode:
		return convertMap(n, path, "", report)
	case yaml.ScalarNode:
	default:
		report(path, n.Line, "is not a value gitlab.rb can hold")
		return nil, false
	}
	switch n.ShortTag() {
	case "!!str", "!!timestamp":
		// A timestamp stays the text the user wrote: gitlab.rb takes dates as strings.
		return n.Value, true
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			report(path, n.Line, fmt.Sprintf("%q is not true or false", n.Value))
			return nil, false
		}
		return b, true
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			report(path, n.Line, fmt.Sprintf("%s is out of range for a 64-bit integer; quote it to make it a string", n.Value))
			return nil, false
		}
		return i, true
	case "!!float":
		if integerText.MatchString(n.Value) {
			// YAML resolves an integer too big for 64 bits as a float; do not round it silently.
			report(path, n.Line, fmt.Sprintf("%s is out of range for a 64-bit integer; quote it to make it a string", n.Value))
			return nil, false
		}
		var f float64
		if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			report(path, n.Line, fmt.Sprintf("%s has no Ruby literal (NaN and infinities are not representable in gitlab.rb); write a finite number or quote it as a string", n.Value))
			return nil, false
		}
		return f, true
	case "!!null":
		report(path, n.Line, "is empty (null), which gitlab.rb has no use for: nil means Omnibus's default, so remove the key, or write a value (quote \"\" for an empty string)")
		return nil, false
	default:
		report(path, n.Line, fmt.Sprintf("has YAML tag %s, which is not representable in gitlab.rb; use a string, number, true/false, list or mapping", n.ShortTag()))
		return nil, false
	}
}

// IsHashRoot reports whether root is one of GitLabRBHashRoots.
func IsHashRoot(root string) bool { return slices.Contains(GitLabRBHashRoots, root) }

// IsCallRoot reports whether root is one of GitLabRBCallRoots.
func IsCallRoot(root string) bool { return slices.Contains(GitLabRBCallRoots, root) }

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// firstAlias returns the first alias node in n's subtree, without following any.
func firstAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		return n
	}
	for _, c := range n.Content {
		if a := firstAlias(c); a != nil {
			return a
		}
	}
	return nil
}

// managedNginxClient are the nginx client settings glbootstrap writes (under nginx[...] or
// gitlab_rails['nginx'][...] by version, see omnibusVersions), and the configuration key that sets
// each instead.
var managedNginxClient = map[string]string{
	"listen_port":               "gitlab.nlb.tls_termination",
	"listen_https":              "gitlab.nlb.tls_termination",
	"proxy_protocol":            "gitlab.nlb.proxy_protocol",
	"real_ip_trusted_addresses": "gitlab.nlb.proxy_protocol (the VPC CIDR is trusted)",
}

// nginxClientKeys are the nginx settings that Omnibus 19.2 moved to gitlab_rails['nginx'][...]:
// the keys of OmnibusGitlab::NginxHelper#client_default_values (omnibus-gitlab 19.2.0+ee.0
// files/gitlab-cookbooks/nginx/libraries/helpers/nginx_helper.rb), which translate_client_settings
// (files/gitlab-cookbooks/gitlab/libraries/gitlab_rails.rb) copies from nginx[...] with a
// deprecation message on every reconfigure, and only when the gitlab_rails['nginx'] key is nil.
var nginxClientKeys = []string{
	"client_max_body_size", "custom_gitlab_server_config", "error_log_level", "hsts_include_subdomains",
	"hsts_max_age", "http2_enabled", "listen_addresses", "listen_https", "listen_port",
	"proxy_connect_timeout", "proxy_custom_buffer_size", "proxy_protocol", "proxy_read_timeout",
	"proxy_set_headers", "real_ip_header", "real_ip_recursive", "real_ip_trusted_addresses",
	"redirect_http_to_https", "redirect_http_to_https_port", "referrer_policy",
	"request_buffering_off_path_regex", "ssl_certificate", "ssl_certificate_key", "ssl_ciphers",
	"ssl_client_certificate", "ssl_conf_command", "ssl_dhparam", "ssl_ecdh_curve", "ssl_password_file",
	"ssl_prefer_server_ciphers", "ssl_protocols", "ssl_session_cache", "ssl_session_tickets",
	"ssl_session_timeout", "ssl_verify_client", "ssl_verify_depth",
	// Moved the same way, by translate_rails_nginx_settings' own list.
	"custom_error_pages", "default_server_enabled",
}

// OmnibusRow is one row of omnibusVersions: how the Omnibus versions from Since on read the
// settings glbootstrap manages.
type OmnibusRow struct {
	// Since is the first Omnibus version (x.y.z) the row applies to.
	Since string
	// Client is the Ruby expression of the hash that holds the GitLab nginx client settings
	// (listen_port, listen_https, proxy_protocol, ssl_certificate, ...): nginx, or
	// gitlab_rails['nginx'] from 19.2 on. A constant: never built from the configuration.
	Client string
	// Keys is the file in testdata/gitlab-rb-keys (generate.sh there) with the keys of that
	// version's gitlab.rb.template.
	Keys string
	// Source is where in omnibus-gitlab the row comes from.
	Source string
}

// omnibusVersions is the table of Omnibus layouts, oldest first. A version before the first row's
// Since (or an unknown version) uses the first row: the nginx[...] keys, which 19.2 and later still
// accept through translate_client_settings, with a deprecation message.
var omnibusVersions = []OmnibusRow{
	{Since: "18.5.1", Client: "nginx", Keys: "18.5.1.txt",
		Source: "omnibus-gitlab 18.5.1+ee.0 files/gitlab-cookbooks/gitlab/libraries/gitlab_rails.rb parse_external_url " +
			"(Gitlab['nginx']['ssl_certificate'] ||= /etc/gitlab/ssl/<host>.crt) and letsencrypt/libraries/lets_encrypt.rb (reads Gitlab['nginx'])"},
	{Since: "19.2.0", Client: "gitlab_rails['nginx']", Keys: "19.2.0.txt",
		Source: "omnibus-gitlab 19.2.0+ee.0 files/gitlab-cookbooks/gitlab/libraries/gitlab_rails.rb translate_client_settings " +
			"(nginx[...] deprecated, loses to gitlab_rails['nginx'][...]) and doc/settings/nginx.md"},
}

// gitlabRBKeys are the generated key lists of omnibusVersions.
//
//go:embed testdata/gitlab-rb-keys/*.txt
var gitlabRBKeys embed.FS

var (
	keysOnce sync.Once
	keysByV  map[string]map[string][]string // Keys file -> root -> sorted keys
)

// loadKeys parses the embedded key lists ("root key" a line, # comments).
func loadKeys() map[string]map[string][]string {
	keysOnce.Do(func() {
		keysByV = map[string]map[string][]string{}
		for _, row := range omnibusVersions {
			b, err := gitlabRBKeys.ReadFile("testdata/gitlab-rb-keys/" + row.Keys)
			if err != nil {
				panic("embedded key list missing: " + err.Error())
			}
			m := map[string][]string{}
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				root, key, ok := strings.Cut(sc.Text(), " ")
				if ok && !strings.HasPrefix(root, "#") {
					m[root] = append(m[root], key)
				}
			}
			keysByV[row.Keys] = m
		}
	})
	return keysByV
}

// known reports whether root[key] is in the row's gitlab.rb.template, and returns the root's
// known keys. A root the template lists no keys for knows every key (nothing to compare with).
func (row OmnibusRow) known(root, key string) ([]string, bool) {
	keys := loadKeys()[row.Keys][root]
	if len(keys) == 0 {
		return nil, true
	}
	if root == "gitlab_rails" && key == "nginx" {
		// Written where the version reads it, whichever form (settingsStatements).
		return keys, true
	}
	_, found := slices.BinarySearch(keys, key)
	return keys, found
}

// label names the version the row's key list is for.
func (row OmnibusRow) label(version string) string {
	if version == "" {
		return row.Since + " (gitlab.version is not set)"
	}
	return row.Since
}

// movedClient reports whether the row keeps the nginx client settings under gitlab_rails.
func (row OmnibusRow) movedClient() bool { return row.Client != "nginx" }

// omnibusFor returns the row for version x.y.z (installed or gitlab.version); "" or a version
// that does not parse gives the first row.
func omnibusFor(version string) OmnibusRow {
	row := omnibusVersions[0]
	v, ok := parseVersion(version)
	if !ok {
		return row
	}
	for _, r := range omnibusVersions {
		if since, _ := parseVersion(r.Since); !versionLess(v, since) {
			row = r
		}
	}
	return row
}

func parseVersion(s string) ([3]int, bool) {
	var out [3]int
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

func versionLess(a, b [3]int) bool { return slices.Compare(a[:], b[:]) < 0 }

// suggestKey returns ` (did you mean "x"?)` for the nearest known key, or "".
func suggestKey(key string, known []string) string {
	best, d := config.Nearest(key, known)
	if d >= 0 && d <= max(2, min(3, len(key)/4)) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// settingAt returns the setting at a dotted path (nginx.ssl_certificate,
// gitlab_rails.nginx.ssl_certificate) and whether it is set.
func settingAt(s Settings, path string) (any, bool) {
	parts := strings.Split(path, ".")
	v := s.Get(parts[0])
	for _, p := range parts[1:] {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		v, ok = m[p]
		if !ok {
			return nil, false
		}
	}
	return v, v != nil
}
