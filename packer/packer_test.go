// Package packer holds the HCL2 templates of both AMIs; this test parses them with
// hashicorp/hcl/v2 (what packer itself parses with) and checks what the bake must and must not
// leave in an image.
package packer

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

var templateSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "packer"}, {Type: "variable", LabelNames: []string{"name"}},
	{Type: "source", LabelNames: []string{"type", "name"}}, {Type: "build"},
}}

func TestTemplatesParseAndLeaveNoIdentity(t *testing.T) {
	for file, must := range map[string][]string{
		"runner.pkr.hcl": {
			// bake seals the image (cmd/glbootstrap TestBakeSealsTheImage checks what it leaves).
			"sudo /tmp/glbootstrap bake --yes --role runner --config /tmp/glbootstrap-bake.yaml",
			`required_version = ">= 1.10.0"`,
		},
		"gitlab.pkr.hcl": {
			"sudo /tmp/glbootstrap bake --yes --role gitlab --config /tmp/glbootstrap-bake.yaml",
			`required_version = ">= 1.10.0"`,
		},
	} {
		t.Run(file, func(t *testing.T) {
			p := hclparse.NewParser()
			f, diags := p.ParseHCLFile(file)
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			content, diags := f.Body.Content(templateSchema)
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			kinds := map[string]int{}
			for _, b := range content.Blocks {
				kinds[b.Type]++
				if b.Type == "source" && b.Labels[0] != "amazon-ebs" {
					t.Errorf("source %v: want amazon-ebs", b.Labels)
				}
			}
			if kinds["packer"] != 1 || kinds["source"] != 1 || kinds["build"] != 1 || kinds["variable"] < 2 {
				t.Errorf("blocks = %v", kinds)
			}
			text, _ := os.ReadFile(file)
			for _, want := range must {
				if !strings.Contains(string(text), want) {
					t.Errorf("%s lacks %q", file, want)
				}
			}
			// The packages come from bake's packages phase (pinned key, exact version, held),
			// never from a shell install: GitLab's script.deb.sh trusts whatever key it fetches.
			for _, never := range []string{"script.deb.sh", "apt-get install", "curl ", "apt-mark"} {
				if strings.Contains(string(text), never) {
					t.Errorf("%s installs packages with shell (%q): bake's packages phase does it", file, never)
				}
			}
			if !strings.Contains(string(text), `http_tokens                 = "required"`) {
				t.Errorf("%s does not require IMDSv2", file)
			}
			// Debian's packer (1.6) predates required_plugins; a newer one validates for real.
			if pk, err := exec.LookPath("packer"); err == nil {
				out, err := exec.Command(pk, "version").Output()
				if err == nil && !strings.Contains(string(out), "v1.6") {
					if out, err := exec.Command(pk, "validate", "-syntax-only", file).CombinedOutput(); err != nil {
						t.Errorf("packer validate -syntax-only: %v\n%s", err, out)
					}
				}
			}
		})
	}
}
