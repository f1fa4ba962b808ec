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
	err := waitJob(ctx, done, "starting", "gitlab-runner.service")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("waitJob = %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("waitJob returned after %s", d)
	}
	if !strings.Contains(err.Error(), "systemctl status gitlab-runner.service") {
		t.Errorf("error does not say where to look: %v", err)
	}

	done <- "failed"
	if err := waitJob(context.Background(), done, "starting", "x.service"); err == nil || !strings.Contains(err.Error(), "job failed") {
		t.Errorf("a failed job: %v", err)
	}
	done <- "done"
	if err := waitJob(context.Background(), done, "starting", "x.service"); err != nil {
		t.Errorf("a finished job: %v", err)
	}
}
