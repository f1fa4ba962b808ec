package pkg

import (
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// The Omnibus variables leave glbootstrap's process, so a child (here env(1), as gitlab-ctl
// would be) does not see them; the note names them and never prints a value.
func TestScrubOmnibusEnv(t *testing.T) {
	t.Setenv("GITLAB_ROOT_PASSWORD", "s3cr3t-from-userdata")
	t.Setenv("EXTERNAL_URL", "http://gitlab.example.com")
	t.Setenv("GLB_UNRELATED", "kept")
	got := ScrubOmnibusEnv()
	if want := []string{"EXTERNAL_URL", "GITLAB_ROOT_PASSWORD"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("scrubbed %v, want %v", got, want)
	}
	out, err := exec.Command("env").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range OmnibusScriptEnv {
		if strings.Contains(string(out), v+"=") {
			t.Errorf("a child process still sees %s", v)
		}
	}
	if os.Getenv("GLB_UNRELATED") != "kept" {
		t.Error("an unrelated variable was removed")
	}
	note := ScrubOmnibusEnvNote(got)
	if !strings.Contains(note, "EXTERNAL_URL, GITLAB_ROOT_PASSWORD") || strings.Contains(note, "s3cr3t") || !strings.Contains(note, "gitlab.url") {
		t.Errorf("note: %q", note)
	}
	if ScrubOmnibusEnv() != nil || ScrubOmnibusEnvNote(nil) != "" {
		t.Error("a second scrub found something")
	}
}
