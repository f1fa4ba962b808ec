package runner

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// A file:// driver source that is a named pipe with no writer used to block apply (and SIGINT)
// in open(2); now it is refused at once with what to fix.
func TestFileDriverRefusesAPipeAtOnce(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "srv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "srv/fargate"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "srv/driver"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Role{d: Deps{Host: newHost(t, root)}}
	done := make(chan error, 1)
	go func() {
		rc, err := r.openDriver(context.Background(), "file:///srv/fargate")
		if rc != nil {
			rc.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "/srv/fargate is not a regular file (a named pipe)") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("opening a named pipe blocked")
	}
	rc, err := r.openDriver(context.Background(), "file:///srv/driver")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "#!/bin/sh\n" {
		t.Fatalf("regular file: %q, %v", b, err)
	}
}

// trickle serves a driver that sends its headers and first bytes, then one byte per tick until
// the client goes away: a slow mirror.
func trickle(tick time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.WriteHeader(http.StatusOK)
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(tick):
			}
		}
	}
}

// trusting returns the production driver client, trusting srv's test certificate.
func trusting(srv *httptest.Server) *http.Client {
	c := driverClient()
	c.Transport.(*http.Transport).TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
	return c
}

func TestHTTPSDriverStopsWhenCancelled(t *testing.T) {
	srv := httptest.NewTLSServer(trickle(20 * time.Millisecond))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	body, err := httpsDriver(ctx, trusting(srv), srv.URL+"/fargate", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	n, err := io.Copy(io.Discard, body)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("copy: %d bytes, %v; want context.Canceled", n, err)
	}
	if n == 0 || time.Since(start) > 3*time.Second {
		t.Errorf("copied %d bytes in %s", n, time.Since(start))
	}
}

func TestHTTPSDriverStall(t *testing.T) {
	srv := httptest.NewTLSServer(trickle(time.Hour)) // one byte, then silence
	defer srv.Close()
	body, err := httpsDriver(context.Background(), trusting(srv), srv.URL+"/fargate", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	_, err = io.Copy(io.Discard, body)
	if err == nil || !strings.Contains(err.Error(), "sent nothing for 200ms: the download stalled") {
		t.Fatalf("err = %v", err)
	}
}

// A server that accepts the request and never answers: cancelling the context ends the wait for
// the response header (which driverHeaderTimeout bounds otherwise).
func TestHTTPSDriverCancelledWhileWaitingForHeaders(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := httpsDriver(ctx, trusting(srv), srv.URL+"/fargate", time.Minute)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 3*time.Second {
		t.Fatalf("after %s: %v; want context.Canceled at once", time.Since(start), err)
	}
	tr := driverClient().Transport.(*http.Transport)
	if tr.ResponseHeaderTimeout <= 0 || tr.TLSHandshakeTimeout <= 0 || tr.Proxy == nil {
		t.Errorf("driver transport lacks timeouts or the environment's proxy: %+v", tr)
	}
}

func TestCtxBodyStopsBetweenReads(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	body := ctxBody(ctx, io.NopCloser(strings.NewReader(strings.Repeat("x", 1<<20))))
	buf := make([]byte, 1024)
	if _, err := body.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
}

// A driver path that is the running program (here the test binary, reached under a root that is
// its own directory) is refused before anything is fetched or written, in plan and in apply; any
// other executable at the path is not taken for it.
func TestDriverNeverReplacesTheRunningProgram(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err = filepath.EvalSymlinks(exe)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	drv := Driver{Version: "v0.5.1", SHA256: strings.Repeat("a", 64), URL: "file:///no/such/driver", Path: "/" + filepath.Base(exe)}
	for _, plan := range []bool{true, false} {
		h, err := host.New(filepath.Dir(exe), plan)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		r := &Role{d: Deps{Host: h}, cfg: &Config{Fargate: &Fargate{Driver: drv}}}
		_, err = r.installDriver(context.Background())
		if err == nil || !strings.Contains(err.Error(), "is the glbootstrap program that is running now: installing the driver there would replace glbootstrap itself") {
			t.Errorf("plan %v: err = %v", plan, err)
		}
	}
	if after, err := os.ReadFile(exe); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("the running program changed: %v", err)
	}

	// Another program at the path is an earlier driver, replaced as usual.
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "fargate"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	drv.Path = "/fargate"
	r := &Role{d: Deps{Host: newHost(t, root)}, cfg: &Config{Fargate: &Fargate{Driver: drv}}}
	if _, err := r.installDriver(context.Background()); err == nil || strings.Contains(err.Error(), "running now") {
		t.Errorf("another program: err = %v", err)
	}
}

// A file:// driver source that does not exist says where it was looked for: the path under
// --root, and the fix.
func TestFileDriverMissingNamesThePathUnderTheRoot(t *testing.T) {
	root := t.TempDir()
	r := &Role{d: Deps{Host: newHost(t, root)}}
	rc, err := r.openDriver(context.Background(), "file:///srv/driver/fargate-linux-amd64")
	if rc != nil {
		rc.Close()
	}
	want := "fargate.driver.url file:///srv/driver/fargate-linux-amd64: " + filepath.Join(root, "srv/driver/fargate-linux-amd64") +
		" does not exist (file:// paths are read under --root " + root + "): put the driver there or fix fargate.driver.url"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}
