package testenv

import (
	"encoding/json"
	"fmt"
	"testing"
)

// TestLeaksFindsEveryEncoding: a secret is found as printed in text, in a JSON line, %q-quoted
// and as a Ruby literal; a masked or absent one is not; any glrt-/glpat- token is.
func TestLeaksFindsEveryEncoding(t *testing.T) {
	pw := Secret{Source: "root password", Value: StackRootPasswordVal} // has ' " # { }
	plain := Secret{Source: "smtp", Value: AdminSMTPPassword}
	secrets := []Secret{pw, plain}
	jsonLine, _ := json.Marshal(map[string]string{"diff": "+pw = " + pw.Value})
	for name, out := range map[string]string{
		"text":  "password: " + pw.Value + "\n",
		"json":  string(jsonLine),
		"%q":    fmt.Sprintf("error: %q", pw.Value),
		"ruby":  `gitlab_rails['initial_root_password'] = 'demo-Root-pw\'"#{1}-0001'`,
		"query": "GET /x?p=demo-Root-pw%27%22%23%7B1%7D-0001",
	} {
		if got := Leaks(out, secrets); len(got) != 1 || got[0] != pw {
			t.Errorf("%s: Leaks(%q) = %v, want the root password", name, out, got)
		}
	}
	if got := Leaks("password: [MASKED]", secrets); len(got) != 0 {
		t.Errorf("masked output: %v", got)
	}
	if got := Leaks("token glrt-AbCdEf0123456789xyz_ and glpat-zzzzzzzzzz", nil); len(got) != 2 {
		t.Errorf("token pattern: %v", got)
	}
	if got := Leaks("put its current glrt- token in SSM", nil); len(got) != 0 {
		t.Errorf("a mention of the prefix is not a token: %v", got)
	}
}

// TestStackSecretsCoverEverySource: the stack's secrets include each SSM secret (also after a
// test replaced or deleted it), every runner token GitLab handed out (also of deleted runners
// and reset tokens) and the host files' secrets.
func TestStackSecretsCoverEverySource(t *testing.T) {
	s := &Stack{SSM: NewSSM()}
	defer s.SSM.Close()
	var err error
	if s.GitLab, err = NewGitLab(GitLabOptions{}); err != nil {
		t.Fatal(err)
	}
	defer s.GitLab.Close()
	s.SSM.Put(StackCreateToken, "first-token", true)
	s.SSM.Put("/not/secret", "config text", true)
	s.SSM.MarkSecret(StackCreateToken)
	s.SSM.Put(StackCreateToken, "second-token", true)
	s.SSM.Delete(StackCreateToken)
	s.SSM.Put(StackCreateToken, "third-token", true)
	s.GitLab.AddAccessToken("glpat-access", "api")
	rn := s.GitLab.AddRunner(GitLabRunner{})
	reset := s.GitLab.ResetToken(rn.ID)

	have := map[string]bool{}
	for _, sec := range s.Secrets() {
		have[sec.Value] = true
	}
	for _, want := range []string{"first-token", "second-token", "third-token", "glpat-access", rn.Token, reset,
		AdminSMTPPassword, AdminDBPassword, AdminLDAPPassword, GitLabSecretsJSONKey, StackAWSSecretKey} {
		if !have[want] {
			t.Errorf("Secrets lacks %q", want)
		}
	}
	if have["config text"] {
		t.Error("an unmarked parameter counts as a secret")
	}
}
