package userdata

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestRenderRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no binary", Options{Role: "runner", Source: "ssm:/c", SHA256: sum}, "--binary is required"},
		{"short sum", Options{Role: "runner", Source: "ssm:/c", Binary: "https://h/glb", SHA256: "abc"}, "64 hex digits"},
		{"not hex", Options{Role: "runner", Source: "ssm:/c", Binary: "https://h/glb", SHA256: strings.Repeat("z", 64)}, "64 hex digits"},
		{"plain http", Options{Role: "runner", Source: "ssm:/c", Binary: "http://h/glb", SHA256: sum}, "--allow-http"},
		{"ftp", Options{Role: "runner", Source: "ssm:/c", Binary: "ftp://h/glb", SHA256: sum}, "https:// or s3://"},
		{"credentials", Options{Role: "runner", Source: "ssm:/c", Binary: "https://u:p@h/glb", SHA256: sum}, "credentials in its URL"},
		{"space in URL", Options{Role: "runner", Source: "ssm:/c", Binary: "https://h/a b", SHA256: sum}, "space or control character"},
		{"space in source", Options{Role: "runner", Source: "ssm:/x y", Binary: "https://h/glb", SHA256: sum}, "--config"},
		{"no host", Options{Role: "runner", Source: "ssm:/c", Binary: "glbootstrap", SHA256: sum}, "not a URL"},
		{"too big", Options{Role: "runner", Source: "c.yaml", Content: []byte(strings.Repeat("# padding\n", 2000)), Binary: "https://h/glb", SHA256: sum}, "over EC2's limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestScriptIsPOSIX parses every form of the script with dash, Debian's /bin/sh (POSIX only),
// and checks the size and the quoting of hostile values.
func TestScriptIsPOSIX(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash not installed")
	}
	hostile := "ssm:/it's$(reboot)`x`"
	for name, o := range map[string]Options{
		"ssm":      {Role: "runner", Source: hostile, Binary: "https://example.com/glb?a=1&b='2'", SHA256: strings.ToUpper(sum)},
		"s3":       {Role: "gitlab", Source: "s3://b/k.yaml", Binary: "s3://bucket/glbootstrap-linux-arm64", SHA256: sum},
		"embedded": {Role: "runner", Source: "c.yaml", Content: []byte("runner:\n  name: x\nGLB_CONFIG_END\n"), Binary: "https://h/glb", SHA256: sum},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := Render(o)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) > MaxSize {
				t.Fatalf("%d bytes", len(out))
			}
			p := filepath.Join(t.TempDir(), "ud.sh")
			if err := os.WriteFile(p, out, 0o600); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(dash, "-n", p).CombinedOutput(); err != nil {
				t.Fatalf("dash -n: %v\n%s\n%s", err, b, out)
			}
			s := string(out)
			if !strings.HasPrefix(s, "#!/bin/sh\n") {
				t.Errorf("no #!/bin/sh first line")
			}
			if !strings.Contains(s, "BINARY_SHA256='"+sum+"'") {
				t.Errorf("the checksum is not in lower case in the script")
			}
			// What sh makes of the assignments must be the values, byte for byte.
			assign := ""
			for _, l := range strings.Split(s, "\n") {
				if strings.HasPrefix(l, "CONFIG=") || strings.HasPrefix(l, "BINARY_URL=") {
					assign += l + "\n"
				}
			}
			got, err := exec.Command(dash, "-c", assign+`printf '%s\n%s' "$CONFIG" "$BINARY_URL"`).Output()
			if err != nil {
				t.Fatal(err)
			}
			wantCfg := o.Source
			if o.Content != nil {
				wantCfg = "/etc/glbootstrap/" + o.Role + ".yaml"
				if !strings.Contains(s, "\nGLB_CONFIG_END\nGLB_CONFIG_END_0\n") {
					t.Errorf("the heredoc delimiter is not unique:\n%s", s)
				}
			}
			if string(got) != wantCfg+"\n"+o.Binary {
				t.Errorf("sh reads %q, want %q", got, wantCfg+"\n"+o.Binary)
			}
		})
	}
}
