// Package userdata renders the EC2 user-data that turns a stock instance into a role: a POSIX sh
// script that installs glbootstrap itself (SHA-256 checked, downloads retried with backoff) and
// runs `glbootstrap apply`, logging to the console, the journal and a file.
//
// EC2 limits user-data to 16 KB before base64 encoding
// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html); Render refuses a script
// above MaxSize.
package userdata

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"text/template"
	"unicode"
)

// MaxSize is EC2's user-data limit in bytes (16 KB, before base64).
const MaxSize = 16 * 1024

//go:embed userdata.sh.tmpl
var script string

var tmpl = template.Must(template.New("userdata").Funcs(template.FuncMap{"sh": shQuote}).Parse(script))

// Options is what the script is made from.
type Options struct {
	Role    string
	Version string // glbootstrap's version making the script, for its header
	// Source is --config: ssm:/name or s3://bucket/key, read by apply at boot; or a local file,
	// whose Content is then embedded (written to /etc/glbootstrap/ROLE.yaml at boot).
	Source  string
	Content []byte
	// Binary is where the instance downloads glbootstrap: https:// (curl or wget), s3:// (the
	// AWS CLI), or http:// only with AllowHTTP (the checksum still guards the content).
	Binary    string
	SHA256    string // 64 hex digits, of the binary at Binary
	AllowHTTP bool
}

// Render returns the user-data script, or an error naming the bad option.
func Render(o Options) ([]byte, error) {
	u, err := url.Parse(o.Binary)
	switch {
	case o.Binary == "":
		return nil, fmt.Errorf("--binary is required: the https:// or s3:// URL of the glbootstrap binary for the instance's architecture (make release: dist/glbootstrap-linux-amd64 or -arm64)")
	case strings.ContainsFunc(o.Binary, unicode.IsSpace) || strings.ContainsFunc(o.Binary, unicode.IsControl):
		return nil, fmt.Errorf("--binary %q has a space or control character: encode it (%%20)", o.Binary)
	case err != nil || u.Host == "":
		return nil, fmt.Errorf("--binary %q is not a URL: give https://HOST/PATH or s3://BUCKET/KEY", o.Binary)
	case u.User != nil:
		return nil, fmt.Errorf("--binary has credentials in its URL (user:password@): they would be readable in the instance's user-data by anyone who may describe it; use a presigned S3 URL or s3:// with the instance profile")
	case u.Scheme == "https" || u.Scheme == "s3":
	case u.Scheme == "http" && o.AllowHTTP:
	case u.Scheme == "http":
		return nil, fmt.Errorf("--binary %q is plain http: use https:// or s3:// (or --allow-http for a mirror inside the VPC; the SHA-256 still checks the content)", o.Binary)
	default:
		return nil, fmt.Errorf("--binary %q: the scheme must be https:// or s3://", o.Binary)
	}
	sum := strings.ToLower(strings.TrimSpace(o.SHA256))
	if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
		return nil, fmt.Errorf("--sha256 must be the binary's SHA-256 as 64 hex digits (the line for it in the release's SHA256SUMS), got %q", o.SHA256)
	}
	if strings.ContainsFunc(o.Source, unicode.IsSpace) || strings.ContainsFunc(o.Source, unicode.IsControl) {
		return nil, fmt.Errorf("--config %q has a space or control character, which no SSM parameter name or S3 key glbootstrap reads may have", o.Source)
	}
	data := struct {
		Role, Version, Binary, SHA256, ConfigArg, Config, EOF string
	}{Role: o.Role, Version: o.Version, Binary: o.Binary, SHA256: sum, ConfigArg: o.Source}
	if o.Content != nil {
		cfg := string(o.Content)
		if !strings.HasSuffix(cfg, "\n") {
			cfg += "\n"
		}
		data.Config, data.ConfigArg = cfg, "/etc/glbootstrap/"+o.Role+".yaml"
		data.EOF = "GLB_CONFIG_END"
		for i := 0; strings.Contains(cfg, data.EOF); i++ {
			data.EOF = fmt.Sprintf("GLB_CONFIG_END_%d", i)
		}
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, err
	}
	if buf.Len() > MaxSize {
		return nil, fmt.Errorf("the user-data is %d bytes, over EC2's limit of %d: keep the configuration in SSM (--config ssm:/NAME) instead of embedding the file", buf.Len(), MaxSize)
	}
	return buf.Bytes(), nil
}

// shQuote quotes s for POSIX sh: single quotes, with each ' written as '\”.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
