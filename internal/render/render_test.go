package render

import (
	"strings"
	"testing"
	"testing/fstest"
)

// A key missing from the data must fail the render, never leave an empty
// value in a managed file (a unit with "ExecStart= backup run").
func TestTemplateMissingKeyIsAnError(t *testing.T) {
	fsys := fstest.MapFS{"u.tmpl": {Data: []byte("ExecStart={{.Binary}} backup run\n")}}
	out, err := Template(fsys, "u.tmpl", nil, map[string]string{"Binary": "/usr/local/bin/glbootstrap"})
	if err != nil || string(out) != "ExecStart=/usr/local/bin/glbootstrap backup run\n" {
		t.Fatalf("render: %q %v", out, err)
	}
	_, err = Template(fsys, "u.tmpl", nil, map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "rendering template u.tmpl") {
		t.Fatalf("missing key: %v", err)
	}
}

func TestTOMLIsDeterministicWithHeader(t *testing.T) {
	type doc struct {
		B int    `toml:"b"`
		A string `toml:"a"`
	}
	one, err := TOML(doc{B: 1, A: "x"})
	if err != nil {
		t.Fatal(err)
	}
	two, _ := TOML(doc{B: 1, A: "x"})
	if string(one) != string(two) || !strings.HasPrefix(string(one), Header) || !strings.Contains(string(one), "b = 1\na = \"x\"\n") {
		t.Fatalf("toml:\n%s", one)
	}
}
