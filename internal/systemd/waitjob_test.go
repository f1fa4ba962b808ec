package systemd

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A systemd job that never finishes (a unit stuck in its start, TimeoutStartSec=infinity) must
// not hold a cancelled run: waitJob returns as soon as ctx ends.
func TestWaitJobStopsWithContext(t *testing.T) {
	done := make(chan string, 1) // never sent on, like a job systemd is still running
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	res, err := waitJob(ctx, done, "start", "gitlab-runner.service")
	if !errors.Is(err, context.Canceled) || res != "" {
		t.Fatalf("waitJob = %q, %v; want context.Canceled", res, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("waitJob returned after %s", d)
	}
	if !strings.Contains(err.Error(), "systemctl status gitlab-runner.service") {
		t.Errorf("error does not say where to look: %v", err)
	}

	done <- "failed"
	if res, err := waitJob(context.Background(), done, "start", "x.service"); res != "failed" || err != nil {
		t.Errorf("a finished job: %q, %v", res, err)
	}
}
