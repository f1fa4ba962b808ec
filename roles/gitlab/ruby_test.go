package gitlab

import (
	"math"
	"strings"
	"testing"
)

func TestRubyLiteral(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{"plain", `'plain'`},
		{`it's`, `'it\'s'`},
		{`back\slash`, `'back\\slash'`},
		{`#{system('id')}`, `'#{system(\'id\')}'`},
		{"two\nlines", `"two\nlines"`},
		{"quote\" hash# \\ \n", `"quote\" hash\# \\ \n"`},
		{"nul\x00del\x7f", `"nul\x00del\x7F"`},
		{"Grüße", `"Gr\u{FC}\u{DF}e"`},
		{"", `''`},
		{true, `true`},
		{int64(-42), `-42`},
		{7, `7`},
		{1.0, `1.0`},
		{1.5e300, `1.5e+300`},
		{-0.25, `-0.25`},
		{[]any{"a", int64(1), []any{}}, `['a', 1, []]`},
		{map[string]any{"b": false, "a'": "x"}, `{ 'a\'' => 'x', 'b' => false }`},
		{map[string]any{}, `{}`},
	} {
		got, err := RubyLiteral(c.in)
		if err != nil || got != c.want {
			t.Errorf("RubyLiteral(%#v) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []any{nil, math.NaN(), math.Inf(1), []any{"a", nil}, map[string]any{"k": math.Inf(-1)}, struct{}{}} {
		if got, err := RubyLiteral(bad); err == nil {
			t.Errorf("RubyLiteral(%#v) = %s, want an error", bad, got)
		}
	}
}

func TestStatementRefusesUnknownRoots(t *testing.T) {
	if got, err := Statement("gitlab_rails", "time_zone", "UTC"); err != nil || got != `gitlab_rails['time_zone'] = 'UTC'` {
		t.Errorf("got %s %v", got, err)
	}
	if got, err := Statement("registry_external_url", "", "https://r.example.com"); err != nil || got != `registry_external_url 'https://r.example.com'` {
		t.Errorf("got %s %v", got, err)
	}
	for _, root := range []string{"system", "exit", "`id`", "gitlab_rails; exit", "Kernel"} {
		if got, err := Statement(root, "k", "v"); err == nil || strings.Contains(got, root) {
			t.Errorf("Statement(%q) = %q, %v; want an error", root, got, err)
		}
	}
	if _, err := Statement("registry_external_url", "k", "v"); err == nil {
		t.Error("a call root as a hash must be refused")
	}
}
