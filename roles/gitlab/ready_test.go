package gitlab

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func fastReadiness(u string, proxy bool) *readiness {
	p := newReadiness(u, proxy)
	p.initial, p.maxInterval, p.every = 10*time.Millisecond, 50*time.Millisecond, time.Second
	return p
}

func TestReadinessWaitsThroughBadGateway(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/git/-/readiness" {
			http.NotFound(w, r)
			return
		}
		if n.Add(1) < 3 {
			w.WriteHeader(http.StatusBadGateway) // nginx while puma starts
			return
		}
		w.Write([]byte(`{"status":"ok"}`))
	}))
	defer srv.Close()
	var progress []string
	err := fastReadiness(srv.URL+"/git/-/readiness", false).wait(context.Background(), 5*time.Second, func(s string) { progress = append(progress, s) })
	if err != nil {
		t.Fatal(err)
	}
	if len(progress) != 2 || !strings.Contains(progress[0], "HTTP 502") || !strings.Contains(progress[1], "attempt 2") {
		t.Errorf("progress = %q", progress)
	}
}

func TestReadinessGivesUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	start := time.Now()
	err := fastReadiness(srv.URL+"/-/readiness", false).wait(context.Background(), 300*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "not ready") || !strings.Contains(err.Error(), "HTTP 503") || !strings.Contains(err.Error(), "gitlab.ready_timeout") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("the wait took %s for a 300ms timeout", time.Since(start))
	}
}

// TestReadinessSpeaksProxyProtocol: behind an NLB with the PROXY protocol nginx refuses a
// request without the header, so the probe sends one.
func TestReadinessSpeaksProxyProtocol(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			first, _ := br.ReadString('\n')
			if strings.HasPrefix(first, "PROXY TCP4 127.0.0.1 127.0.0.1 ") && strings.HasSuffix(first, "\r\n") {
				req, err := http.ReadRequest(br)
				if err == nil && req.URL.Path == "/-/readiness" {
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
				}
			} else {
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			}
			c.Close()
		}
	}()
	u := "http://" + ln.Addr().String() + "/-/readiness"
	if err := fastReadiness(u, true).wait(context.Background(), 2*time.Second, nil); err != nil {
		t.Fatalf("with the PROXY header: %v", err)
	}
	if err := fastReadiness(u, false).wait(context.Background(), 200*time.Millisecond, nil); err == nil {
		t.Fatal("without the PROXY header the stand-in must refuse")
	}
}

// delayedServer returns the URL of a plain HTTP server answering h that refuses connections
// (nothing listens on its port) until after delay, as while GitLab boots and nginx is not up.
func delayedServer(t *testing.T, delay time.Duration, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := &http.Server{Handler: h}
	t.Cleanup(func() { srv.Close() })
	timer := time.AfterFunc(delay, func() {
		if ln, err := net.Listen("tcp", addr); err == nil {
			_ = srv.Serve(ln)
		}
	})
	t.Cleanup(func() { timer.Stop() })
	return "http://" + addr + "/-/readiness"
}

// TestReadinessWaitsThroughConnectionRefused: gitlab.ready_timeout covers GitLab still booting,
// when nothing listens yet, with a progress line per attempt; ctx cancels the wait.
func TestReadinessWaitsThroughConnectionRefused(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"status":"ok"}`)) })
	u := delayedServer(t, 500*time.Millisecond, ok)
	var progress []string
	start := time.Now()
	if err := fastReadiness(u, false).wait(context.Background(), 5*time.Second, func(s string) { progress = append(progress, s) }); err != nil {
		t.Fatalf("wait: %v (progress %q)", err, progress)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("ready after %s, before anything listened", d)
	}
	if len(progress) == 0 || !strings.Contains(progress[0], "connection refused") || !strings.Contains(progress[0], "attempt 1") {
		t.Errorf("progress = %q, want a line per refused attempt", progress)
	}

	never := delayedServer(t, time.Hour, ok)
	err := fastReadiness(never, false).wait(context.Background(), 300*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "gitlab.ready_timeout") {
		t.Errorf("never listening: err = %v, want the refused connection and the timeout to raise", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	err = fastReadiness(never, false).wait(ctx, time.Minute, nil)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Errorf("cancelled: err = %v after %s, want context.Canceled at once", err, time.Since(start))
	}
}
