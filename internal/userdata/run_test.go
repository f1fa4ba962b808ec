package userdata

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv/nspawn"
)

// fakeGlbootstrap is what the tests serve as the binary: it answers `version`, and `apply`
// prints its arguments and exits with the code in /etc/glb-test-rc (0 when absent). The user-data's
// job is around it: download, checksum, install, config, logging and the last line; a real apply
// on a stock image is the stock-image system test's.
const fakeGlbootstrap = `#!/bin/sh
case "$1" in
version) echo "glbootstrap test" ;;
apply) echo "apply called with: $*"; echo "a line on stderr" >&2; exit "$(cat /etc/glb-test-rc 2>/dev/null || echo 0)" ;;
esac
`

// TestSystemUserdataRuns runs generated user-data with Debian's dash and curl in a container of a
// stock Debian rootfs (systemd-nspawn --volatile=overlay: nothing it writes outlives the run), the
// binary served from this process over 127.0.0.1 (the container shares the network).
func TestSystemUserdataRuns(t *testing.T) {
	if os.Getenv("GLB_SYSTEM_TEST") != "1" {
		t.Skip("system test: runs systemd-nspawn as root; set GLB_SYSTEM_TEST=1 (make system-test)")
	}
	rootfs := nspawn.Prerequisites(t)
	nspawn.RequireRootfs(t, rootfs, "/usr/bin/curl", "/usr/bin/sha256sum", "/usr/bin/dash")

	body := []byte(fakeGlbootstrap)
	h := sha256.Sum256(body)
	good := hex.EncodeToString(h[:])
	var requests, failFirst atomic.Int32
	var serve atomic.Value
	serve.Store(body)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) <= failFirst.Load() {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(serve.Load().([]byte))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "http://" + ln.Addr().String() + "/glbootstrap-linux-amd64"

	dir := t.TempDir()
	render := func(sum string, attempts string) string {
		t.Helper()
		out, err := Render(Options{Role: "runner", Source: "runner.yaml", Content: []byte("runner:\n  name: front-1\n"), Binary: url, SHA256: sum, AllowHTTP: true})
		if err != nil {
			t.Fatal(err)
		}
		s := string(out)
		if attempts != "" { // only to keep the failing case short: 6 attempts wait 62 s in all
			s = strings.Replace(s, "\nATTEMPTS=6\n", "\nATTEMPTS="+attempts+"\n", 1)
		}
		p := filepath.Join(dir, "part-001")
		if err := os.WriteFile(p, []byte(s), 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// run runs cmd (sh) in a throwaway container with the script at cloud-init's path.
	run := func(script, cmd string) (string, error) {
		t.Helper()
		c := exec.Command("systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--pipe", "--volatile=overlay", "-D", rootfs,
			"--bind-ro="+script+":/var/lib/cloud/instance/scripts/part-001", "/bin/sh", "-c", "exec 2>&1\n"+cmd)
		var stderr strings.Builder
		c.Stderr = &stderr // nspawn's own messages
		out, err := c.Output()
		if err != nil {
			err = fmt.Errorf("%v: %s", err, stderr.String())
		}
		return string(out), err
	}
	lastLine := func(out string) string {
		ls := strings.Split(strings.TrimRight(out, "\n"), "\n")
		return ls[len(ls)-1]
	}

	t.Run("first boot, then again", func(t *testing.T) {
		requests.Store(0)
		failFirst.Store(1) // the mirror answers 503 once: retried
		script := render(good, "")
		out, err := run(script, `mkdir -p /var/lib/cloud/scripts/per-boot
sh /var/lib/cloud/instance/scripts/part-001; echo "rc=$?"
echo "--- config"; cat /etc/glbootstrap/runner.yaml
echo "--- per-boot"; cmp /var/lib/cloud/scripts/per-boot/glbootstrap-userdata.sh /var/lib/cloud/instance/scripts/part-001 && echo same
echo "--- log"; cat /var/log/glbootstrap-userdata.log
echo "--- again"; sh /var/lib/cloud/scripts/per-boot/glbootstrap-userdata.sh; echo "rc=$?"`)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{
			"attempt 1/6: the download of " + url + " failed; retrying in 2 s",
			"installed glbootstrap glbootstrap test at /usr/local/bin/glbootstrap",
			"apply called with: apply --role runner --config /etc/glbootstrap/runner.yaml",
			"glbootstrap-userdata: a line on stderr",
			"OK: role runner converged in",
			"rc=0\n--- config\nrunner:\n  name: front-1\n--- per-boot\nsame\n",
			"glbootstrap already installed at /usr/local/bin/glbootstrap with SHA-256 " + good,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if n := strings.Count(out, "OK: role runner converged"); n != 3 { // twice on stdout, once in the log
			t.Errorf("%d OK lines, want 3 (2 runs + the log of the first):\n%s", n, out)
		}
		if got := requests.Load(); got != 2 {
			t.Errorf("%d downloads, want 2 (a 503, then the binary; none on the second run)", got)
		}
		if !strings.HasSuffix(strings.TrimRight(out, "\n"), "rc=0") {
			t.Errorf("second run did not end with rc=0:\n%s", out)
		}
	})

	t.Run("apply fails", func(t *testing.T) {
		requests.Store(0)
		failFirst.Store(0)
		out, err := run(render(good, ""), `echo 3 > /etc/glb-test-rc; sh /var/lib/cloud/instance/scripts/part-001; echo "rc=$?"`)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		ls := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if last := ls[len(ls)-2]; !strings.Contains(last, "FAILED after") || !strings.Contains(last, "glbootstrap apply exited 3 (1 a phase failed, 3 invalid configuration") {
			t.Errorf("last line %q does not say apply failed with 3:\n%s", last, out)
		}
		if lastLine(out) != "rc=1" {
			t.Errorf("script exit: %s, want rc=1", lastLine(out))
		}
	})

	t.Run("wrong checksum installs nothing", func(t *testing.T) {
		requests.Store(0)
		serve.Store([]byte(fakeGlbootstrap + "# another build\n"))
		defer serve.Store(body)
		out, err := run(render(good, "2"), `sh /var/lib/cloud/instance/scripts/part-001; echo "rc=$?"; ls /usr/local/bin`)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{"attempt 1/2: the download's SHA-256 is ", "want " + good, "FAILED after", "2 attempts; check the URL and the checksum", "rc=1"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "apply called") || strings.Contains(out, "glbootstrap\n") {
			t.Errorf("a binary with the wrong checksum was installed or run:\n%s", out)
		}
	})
}
