package config

import (
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// secretKinds are the GitLab token prefixes (GitLab docs, "Token prefixes") and where such a token
// belongs instead. The registration token prefix GR1348941 has no dash.
var secretKinds = []struct {
	prefix, what, field string
}{
	{"glrt-", "a runner authentication token", "runner.token_parameter"},
	{"glpat-", "a personal access token", "runner.create.access_token_parameter"},
	{"GR1348941", "a runner registration token", "runner.registration_token_parameter"},
	{"gloas-", "an OAuth application secret", ""},
	{"gldt-", "a deploy token", ""},
	{"glptt-", "a pipeline trigger token", ""},
	{"glcbt-", "a CI/CD job token", ""},
	{"glft-", "a feed token", ""},
	{"glimt-", "an incoming mail token", ""},
	{"glagent-", "an agent for Kubernetes token", ""},
	{"glsoat-", "a SCIM OAuth token", ""},
	{"glffct-", "a feature flags client token", ""},
}

// secretRE finds a token: a known prefix followed by at least 8 token characters, at the start of
// the text or after a character that cannot be part of an SSM parameter name, so a parameter named
// /ci/glrt-runner-token is not mistaken for the token itself while https://u:glpat-…@host is caught.
var secretRE = func() *regexp.Regexp {
	alts := make([]string, len(secretKinds))
	for i, k := range secretKinds {
		alts[i] = regexp.QuoteMeta(k.prefix)
	}
	return regexp.MustCompile(`(?:^|[^A-Za-z0-9_./-])((?:` + strings.Join(alts, "|") + `)[A-Za-z0-9_.-]{8,})`)
}()

// maskSecrets replaces each token in s with its prefix and asterisks.
func maskSecrets(s string) string {
	idx := secretRE.FindAllStringSubmatchIndex(s, -1)
	if idx == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range idx {
		start, end := m[2], m[3]
		b.WriteString(s[last:start])
		b.WriteString(secretKindOf(s[start:end]).prefix + "********")
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

func secretKindOf(tok string) (k struct{ prefix, what, field string }) {
	for _, k := range secretKinds {
		if strings.HasPrefix(tok, k.prefix) {
			return k
		}
	}
	return k
}

// scanSecrets reports every scalar, key or value, anywhere in the document (known keys or not) that
// contains a GitLab token. Aliases are not followed: their anchor is scanned where it is written.
func (p *parser) scanSecrets(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := path
			if k.Kind == yaml.ScalarNode {
				kp = joinPath(path, k.Value)
			}
			p.scanSecrets(k, kp)
			p.scanSecrets(v, kp)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p.scanSecrets(item, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.ScalarNode:
		m := secretRE.FindStringSubmatch(n.Value)
		if m == nil {
			return
		}
		k := secretKindOf(m[1])
		where := "an SSM SecureString parameter and put the parameter's name in the config"
		switch {
		case strings.HasSuffix(path, "_parameter"):
			where = "an SSM SecureString parameter and put the parameter's name here"
		case strings.HasPrefix(path, "gitlab.settings"):
			where = "gitlab.rb on the host (gitlab.settings holds settings that are not secret)"
		case k.field != "":
			where = fmt.Sprintf("an SSM SecureString parameter and put the parameter's name in %s", k.field)
		}
		p.bad[path] = true
		p.errf(path, n.Line, "holds what looks like %s (%s); secrets never go in the configuration: store it in %s",
			k.what, maskSecrets(m[1]), where)
	}
}
