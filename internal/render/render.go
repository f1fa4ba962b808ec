// Package render turns typed values into the bytes of managed files: TOML
// from structs (what gitlab-runner and the Fargate driver decode, with
// BurntSushi/toml) and text templates that fail on a missing key.
package render

import (
	"bytes"
	"fmt"
	"io/fs"
	"text/template"

	"github.com/BurntSushi/toml"
)

// Header is the first line of every file glbootstrap renders, so an admin
// who opens it knows edits will be overwritten and where to make them.
const Header = "# Managed by glbootstrap: edits are overwritten on the next apply; change the glbootstrap config instead.\n"

// TOML encodes v (a struct with toml tags) with BurntSushi/toml, two-space
// indentation, behind Header. Field order is the struct's, so the output is
// deterministic and a re-render of the same value is byte-identical.
func TOML(v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(Header)
	enc := toml.NewEncoder(&buf)
	enc.Indent = "  "
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding TOML: %w", err)
	}
	return buf.Bytes(), nil
}

// Template executes the named template from fsys with data. A key missing
// from data is an error (missingkey=error), never an empty string in a file.
func Template(fsys fs.FS, name string, funcs template.FuncMap, data any) ([]byte, error) {
	t, err := template.New(pathBase(name)).Option("missingkey=error").Funcs(funcs).ParseFS(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("parsing template %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("rendering template %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

func pathBase(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			return name[i+1:]
		}
	}
	return name
}
