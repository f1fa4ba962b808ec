package main

// Blackbox tests of SIGINT / SIGTERM: the real binary, stopped in a long wait (GitLab's readiness,
// a slow driver mirror), must exit 130 / 143 saying "interrupted", release the lock and leave no
// temp file behind.

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// syncBuffer is an output stream a test reads while the process writes it; changed gets a
// token after every write, and writes records when each write ended.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	writes  []stamp
	changed chan struct{}
	// onWrite, when set, sees the whole output after each write, in the goroutine that copies
	// the process's output: the quickest a test can react to a line.
	onWrite func(out string)
}

// stamp is the buffer's length after a write, and when that write came.
type stamp struct {
	end int
	at  time.Time
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	n, err := s.b.Write(p)
	s.writes = append(s.writes, stamp{s.b.Len(), time.Now()})
	if s.onWrite != nil {
		s.onWrite(s.b.String())
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return n, err
}

// seen is when text first reached the buffer (zero if it never did).
func (s *syncBuffer) seen(text string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := strings.Index(s.b.String(), text)
	if i < 0 {
		return time.Time{}
	}
	for _, w := range s.writes {
		if w.end >= i+len(text) {
			return w.at
		}
	}
	return time.Time{}
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a glbootstrap process started in its own process group (so a kill reaches the
// programs it runs too, like systemctl).
type proc struct {
	t        testing.TB
	cmd      *exec.Cmd
	out, err *syncBuffer
	done     chan struct{}
	code     int
	started  time.Time
}

func (w *world) start(args ...string) *proc {
	w.t.Helper()
	return w.startWith(nil, args...)
}

// startWith starts glbootstrap with onOut watching its stdout (see syncBuffer.onWrite).
func (w *world) startWith(onOut func(p *proc, out string), args ...string) *proc {
	w.t.Helper()
	p := &proc{t: w.t, out: newSyncBuffer(), err: newSyncBuffer(), done: make(chan struct{})}
	if onOut != nil {
		p.out.onWrite = func(out string) { onOut(p, out) }
	}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = w.env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.err
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		w.t.Fatalf("starting glbootstrap: %v", err)
	}
	p.started = time.Now()
	go func() {
		err := p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		} else if err != nil && p.code < 0 {
			p.code = -1
		}
		close(p.done)
	}()
	w.t.Cleanup(func() { p.kill(); <-p.done })
	return p
}

func (w *world) startApply(extra ...string) *proc {
	w.t.Helper()
	return w.start(append([]string{"apply", "--role", "runner", "--config", "ssm:" + testenv.StackConfigParam, "--root", w.root}, extra...)...)
}

// signal sends sig to glbootstrap itself (not its group), as a supervisor or kill(1) does.
func (p *proc) signal(sig syscall.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Logf("signal %v: %v", sig, err)
	}
}

// kill SIGKILLs the whole process group, unless glbootstrap has ended.
func (p *proc) kill() {
	if !p.exited() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitOutput waits until stdout+stderr contain s, failing the test after timeout or when the
// process ends first.
func (p *proc) waitOutput(s string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.After(timeout)
	for !strings.Contains(p.out.String()+p.err.String(), s) {
		select {
		case <-p.out.changed:
		case <-p.err.changed:
		case <-p.done:
			if strings.Contains(p.out.String()+p.err.String(), s) {
				return
			}
			p.t.Fatalf("glbootstrap ended before printing %q: %s", s, p.result())
		case <-deadline:
			p.t.Fatalf("no %q after %s: %s", s, timeout, p.result())
		}
	}
}

// wait waits for the process to end, at most timeout, and returns how long that took.
func (p *proc) wait(timeout time.Duration) (result, time.Duration) {
	p.t.Helper()
	start := time.Now()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		<-p.done
		p.t.Fatalf("glbootstrap still running %s after the signal: %s", timeout, p.result())
	}
	return p.result(), time.Since(start)
}

func (p *proc) result() result {
	code := -2 // still running
	if p.exited() {
		code = p.code
	}
	return result{code: code, stdout: p.out.String(), stderr: p.err.String()}
}

var tempFile = regexp.MustCompile(`^\..+\.glb-`)

// tempFiles lists the temp files of atomic writes (.NAME.glb-*) under root.
func tempFiles(t testing.TB, root string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if tempFile.MatchString(d.Name()) {
			rel, _ := filepath.Rel(root, p)
			found = append(found, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// lockIsFree checks that no process holds the run lock under root.
func lockIsFree(t testing.TB, root string) {
	t.Helper()
	fl := flock.New(filepath.Join(root, "run/glbootstrap.lock"))
	ok, err := fl.TryLock()
	if err != nil || !ok {
		t.Errorf("the run lock is still held after the run ended: %v", err)
		return
	}
	_ = fl.Unlock()
}

// stuckGitLab points the world's runner at a second GitLab that stays "starting" (503 on
// /-/readiness) for good, with a readiness timeout of an hour; restore points it back.
func stuckGitLab(t *testing.T, w *world) (restore func()) {
	t.Helper()
	stuck, err := testenv.NewGitLab(testenv.GitLabOptions{NotReadyFor: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stuck.Close)
	caPath := filepath.Join(w.root, testenv.StackCAFile)
	origCA, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPath, stuck.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	w.stack.SSM.Put(testenv.StackPrivateURL, stuck.URL(), false)
	cfg := w.stack.RunnerConfig(testenv.CreateAuth, "")
	w.setConfig(strings.Replace(cfg, "ready_timeout: 20s", "ready_timeout: 1h", 1))
	return func() {
		if err := os.WriteFile(caPath, origCA, 0o644); err != nil {
			t.Fatal(err)
		}
		w.stack.SSM.Put(testenv.StackPrivateURL, w.stack.GitLab.URL(), false)
		w.setConfig(cfg)
	}
}

// afterInterrupt checks what every interrupted run must leave: no temp file, a free lock, and a
// following apply that runs to the end.
func afterInterrupt(t *testing.T, w *world, restore func()) {
	t.Helper()
	if tmp := tempFiles(t, w.root); len(tmp) > 0 {
		t.Errorf("temp files left behind: %v", tmp)
	}
	lockIsFree(t, w.root)
	restore()
	if r := w.apply(); r.code != 0 {
		t.Fatalf("apply after the interrupted one: %s", r)
	}
}

func TestSIGINTDuringReadinessWait(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	restore := stuckGitLab(t, w)
	p := w.startApply()
	p.waitOutput("is not ready (attempt 2", 30*time.Second)
	p.signal(syscall.SIGINT)
	r, took := p.wait(10 * time.Second)
	if r.code != 130 {
		t.Fatalf("exit %d, want 130: %s", r.code, r)
	}
	if took > 3*time.Second {
		t.Errorf("took %s to stop after SIGINT", took)
	}
	for _, want := range []string{
		"error: interrupted by SIGINT: phase register: waiting for GitLab at ",
		"run the same command again to finish",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r)
		}
	}
	for _, want := range []string{"[runner] register            interrupted", ", interrupted in register in "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.stdout, "[runner] runner-config") {
		t.Errorf("a phase after the interrupted one ran:\n%s", r)
	}
	afterInterrupt(t, w, restore)
}

func TestSIGTERMDuringAPhaseWithJSONOutput(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	restore := stuckGitLab(t, w)
	p := w.startApply("--output", "json")
	p.waitOutput(`is not ready (attempt 1`, 30*time.Second)
	p.signal(syscall.SIGTERM)
	r, _ := p.wait(10 * time.Second)
	if r.code != 143 {
		t.Fatalf("exit %d, want 143: %s", r.code, r)
	}
	var phase, summary, errLine map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		switch m["type"] {
		case "phase":
			if m["phase"] == "register" {
				phase = m
			}
		case "summary":
			summary = m
		case "error":
			errLine = m
		}
	}
	if phase == nil || phase["status"] != "interrupted" {
		t.Errorf("register phase line: %v\n%s", phase, r)
	}
	if summary == nil || summary["interrupted"] != "register" {
		t.Errorf("summary: %v", summary)
	}
	if errLine == nil || errLine["exit_code"] != float64(143) || errLine["signal"] != "SIGTERM" ||
		!strings.HasPrefix(fmt.Sprint(errLine["error"]), "interrupted by SIGTERM: phase register") {
		t.Errorf("error line: %v", errLine)
	}
	afterInterrupt(t, w, restore)
}

// slowMirror serves a driver over https with a certificate from its own CA (trusted by the
// binary through SSL_CERT_FILE, as an operator would with a private mirror), sending a first
// 64 KiB and then 1 KiB every 50 ms: a 20 MB driver would take 15 minutes. sending is closed
// once the first bytes are out.
func slowMirror(t *testing.T, w *world) (url string, sending <-chan struct{}) {
	t.Helper()
	ca, err := testenv.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var once sync.Once
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Length", "20000000")
		rw.WriteHeader(http.StatusOK)
		chunk := bytes.Repeat([]byte{0x7f}, 64<<10)
		for {
			if _, err := rw.Write(chunk); err != nil {
				return
			}
			rw.(http.Flusher).Flush()
			once.Do(func() { close(started) })
			chunk = chunk[:1<<10]
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "mirror-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	w.env = append(w.env, "SSL_CERT_FILE="+caFile)
	return srv.URL + "/fargate/v0.5.1/fargate-linux-amd64", started
}

func TestSIGINTDuringDriverDownload(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	url, sending := slowMirror(t, w)
	cfg := w.stack.RunnerConfig(testenv.CreateAuth, "")
	w.setConfig(strings.Replace(cfg, "url: "+w.stack.DriverURL, "url: "+url, 1))
	p := w.startApply()
	select {
	case <-sending:
	case <-time.After(30 * time.Second):
		t.Fatalf("the download never started: %s", p.result())
	}
	time.Sleep(100 * time.Millisecond) // some bytes into the temp file
	if tmp := tempFiles(t, w.root); len(tmp) != 1 || tmp[0] != "opt/gitlab-runner/.fargate.glb-"+strings.TrimPrefix(tmp[0], "opt/gitlab-runner/.fargate.glb-") {
		t.Fatalf("want the download's temp file under opt/gitlab-runner while it runs, have %v", tmp)
	}
	p.signal(syscall.SIGINT)
	// A second signal while stopping must not cut the cleanup short.
	p.signal(syscall.SIGINT)
	r, took := p.wait(10 * time.Second)
	if r.code != 130 || !strings.Contains(r.stderr, "error: interrupted by SIGINT: phase fargate-driver: writing /opt/gitlab-runner/fargate: context canceled") {
		t.Fatalf("want exit 130 and the interrupted download: %s", r)
	}
	if took > 3*time.Second {
		t.Errorf("took %s to stop after SIGINT", took)
	}
	if _, err := os.Stat(filepath.Join(w.root, "opt/gitlab-runner/fargate")); !os.IsNotExist(err) {
		t.Errorf("a driver was installed from an interrupted download: %v", err)
	}
	afterInterrupt(t, w, func() { w.setConfig(cfg) })
}

// A file:// driver source that is a named pipe used to hold apply (and SIGINT) until a writer
// came; it is now refused at once.
func TestDriverFromANamedPipeIsRefused(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	if err := syscall.Mkfifo(filepath.Join(w.root, "driver.pipe"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	w.setConfig(strings.Replace(w.stack.RunnerConfig(testenv.CreateAuth, ""), "url: "+w.stack.DriverURL, "url: file:///driver.pipe", 1))
	start := time.Now()
	r := w.apply()
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "/driver.pipe is not a regular file (a named pipe): fargate.driver.url file:// must name the driver binary itself") {
		t.Fatalf("%s", r)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
}
