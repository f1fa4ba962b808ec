package testenv

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Secret is one secret value the stand-ins were seeded with or handed out, with where it came
// from ("SSM /glbootstrap/runner/create-token", "gitlab.rb smtp_password", ...), so a test that
// finds it in glbootstrap's output can say which source leaked.
type Secret struct {
	Source string
	Value  string
}

// The secrets the stand-ins hold by default. Each is distinct and recognisable, so that any of
// them in glbootstrap's output is a leak and names its source; tests that need other values put
// their own (and mark them with SSM.MarkSecret when the parameter is not one of these).
const (
	// StackRunnerTokenVal is the glrt- runner authentication token in SSM StackRunnerToken
	// (runner.token_parameter). No runner on the GitLab stand-in has it: tests that use
	// token_parameter put the token of a runner they add.
	StackRunnerTokenVal = "glrt-seeded-token-parameter-0001"
	// StackRegistrationToken holds a legacy registration token
	// (runner.registration_token_parameter); the GitLab stand-in accepts none by default.
	StackRegistrationToken    = "/glbootstrap/runner/registration-token"
	StackRegistrationTokenVal = "GR1348941seeded-registration-token-0001"
	// StackAWSSecretKey is AWS_SECRET_ACCESS_KEY in Stack.Env.
	StackAWSSecretKey = "seeded-aws-secret-access-key-0001"
)

// Secrets of the GitLab host's own files: the admin's lines in gitlab.rb (AdminGitLabRB) and the
// gitlab-secrets.json that standin.SimulateReconfigure writes (its secret_key_base, db_key_base
// and otp_key_base).
const (
	AdminSMTPPassword    = "seeded-smtp-password-0001"
	AdminDBPassword      = "seeded-db-password-0001"
	AdminLDAPPassword    = "seeded-ldap-bind-password-0001"
	GitLabSecretsJSONKey = "seeded-secret-key-base-0001"
)

// hostFileSecrets are the secrets in the GitLab host's files, by source.
var hostFileSecrets = []Secret{
	{"gitlab.rb smtp_password", AdminSMTPPassword},
	{"gitlab.rb db_password", AdminDBPassword},
	{"gitlab.rb ldap password", AdminLDAPPassword},
	{"gitlab-secrets.json", GitLabSecretsJSONKey},
}

// SeededSecrets are the fixed secrets StartStack and the seeding functions put in place (without
// the runner tokens its GitLab hands out at random, which Stack.Secrets adds): what a test that
// only sees the output of a whole demo run looks for.
func SeededSecrets() []Secret {
	return append([]Secret{
		{"SSM " + StackCreateToken, StackAccessTokenVal},
		{"SSM " + StackRunnerToken, StackRunnerTokenVal},
		{"SSM " + StackRegistrationToken, StackRegistrationTokenVal},
		{"SSM " + StackRootPasswordParam, StackRootPasswordVal},
		{"AWS_SECRET_ACCESS_KEY", StackAWSSecretKey},
	}, hostFileSecrets...)
}

// Secrets returns every secret the stack holds or has held: the values of its secret SSM
// parameters (StackCreateToken, StackRunnerToken, StackRegistrationToken,
// StackRootPasswordParam and any a test marked), every token its GitLab knows or handed out,
// the AWS secret key of Env, and the secrets of the GitLab host's files (AdminGitLabRB,
// gitlab-secrets.json). A test whose output contains any of them (see Leaks) found a leak.
func (s *Stack) Secrets() []Secret {
	out := append(s.SSM.Secrets(), s.GitLab.Secrets()...)
	out = append(out, Secret{Source: "AWS_SECRET_ACCESS_KEY", Value: StackAWSSecretKey})
	return append(out, hostFileSecrets...)
}

// tokenRE matches GitLab tokens by their documented prefixes (runner authentication glrt-,
// personal access glpat-): glbootstrap's output never holds one, masked or not.
var tokenRE = regexp.MustCompile(`gl(rt|pat)-[A-Za-z0-9_-]{8,}`)

// Leaks returns the secrets that appear in out, in any form glbootstrap could print them: as
// is, inside a JSON string (--output json), a Go-quoted string (%q), a Ruby single-quoted
// literal (gitlab.rb) or a URL query. Any glrt-/glpat- token in out is a leak too, known or not
// (source "GitLab token pattern").
func Leaks(out string, secrets []Secret) []Secret {
	var found []Secret
	seen := map[string]bool{}
	for _, s := range secrets {
		if s.Value == "" || seen[s.Value] {
			continue
		}
		for _, form := range forms(s.Value) {
			if strings.Contains(out, form) {
				found = append(found, s)
				seen[s.Value] = true
				break
			}
		}
	}
	for _, m := range tokenRE.FindAllString(out, -1) {
		if !seen[m] {
			found = append(found, Secret{Source: "GitLab token pattern", Value: m})
			seen[m] = true
		}
	}
	return found
}

// forms are the spellings of v that output may carry.
func forms(v string) []string {
	out := []string{v}
	add := func(f string) {
		for _, o := range out {
			if o == f {
				return
			}
		}
		out = append(out, f)
	}
	jsonInner := func(escapeHTML bool) string {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(escapeHTML)
		_ = enc.Encode(v)
		s := strings.TrimSuffix(b.String(), "\n")
		return s[1 : len(s)-1]
	}
	add(jsonInner(true))
	add(jsonInner(false))
	q := strconv.Quote(v)
	add(q[1 : len(q)-1])
	add(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v))
	add(url.QueryEscape(v))
	return out
}
