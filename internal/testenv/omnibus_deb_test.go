package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// The package's scripts are valid sh, and MIN_VERSION follows the table.
func TestOmnibusDebScripts(t *testing.T) {
	p := OmnibusDeb("ee", "18.5.1")
	if p.Version != "18.5.1-ee.0" || !strings.Contains(p.Preinst, "MIN_VERSION=18.2\n") || p.Conflicts != "gitlab-ce, gitlab-fips, gitlab" {
		t.Errorf("gitlab-ee 18.5.1: version %q, conflicts %q, preinst:\n%s", p.Version, p.Conflicts, p.Preinst)
	}
	scripts := map[string]string{"preinst": p.Preinst, "postinst": p.Postinst, "postrm": p.Postrm}
	for path, body := range p.Files {
		if strings.HasPrefix(body, "#!/bin/sh") {
			scripts[path] = body
		}
	}
	for name, body := range scripts {
		if out, err := exec.Command("sh", "-n", "-c", body).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v\n%s", name, err, out)
		}
	}
	calls := ParseOmnibusDebCalls("gitlab-ctl upgrade | script=postinst parent=postinst EXTERNAL_URL=empty GITLAB_ROOT_PASSWORD=unset fragment=no\n" +
		"gitlab-ctl reconfigure | script=- parent=glbootstrap EXTERNAL_URL=unset GITLAB_ROOT_PASSWORD=unset fragment=yes\n")
	if len(calls) != 2 || calls[0].Script != "postinst" || calls[0].ExternalURL != "empty" || calls[0].Command != "gitlab-ctl upgrade" ||
		calls[1].Script != "" || calls[1].Parent != "glbootstrap" || calls[1].Fragment != "yes" {
		t.Errorf("ParseOmnibusDebCalls: %+v", calls)
	}
}
