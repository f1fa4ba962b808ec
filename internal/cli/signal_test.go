package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A command cut short by a signal exits 128+signal and says "interrupted", in text and in the
// JSON error line, whatever error the cut-short work returned (here: instance metadata, which a
// cancelled context cannot read).
func TestInterruptedExitCodes(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(&Interrupt{Signal: sig})
		var out, errb bytes.Buffer
		code := Main(ctx, []string{"apply", "--role", "runner", "--config", "../../examples/runner.yaml", "--root", t.TempDir(), "--output", "json"},
			strings.NewReader(""), &out, &errb)
		want := map[syscall.Signal]int{syscall.SIGINT: 130, syscall.SIGTERM: 143}[sig]
		name := (&Interrupt{Signal: sig}).Name()
		if code != want || !strings.Contains(errb.String(), "error: interrupted by "+name+": ") {
			t.Fatalf("%s: exit %d, stderr %q; want %d and interrupted", name, code, errb.String(), want)
		}
		var line struct {
			Type     string `json:"type"`
			ExitCode int    `json:"exit_code"`
			Error    string `json:"error"`
			Signal   string `json:"signal"`
		}
		if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &line); err != nil {
			t.Fatalf("stdout %q: %v", out.String(), err)
		}
		if line.Type != "error" || line.ExitCode != want || line.Signal != name || !strings.HasPrefix(line.Error, "interrupted by "+name) {
			t.Errorf("JSON line %+v", line)
		}
	}

	// A command that finished before it noticed the signal did its whole work: exit 0.
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(&Interrupt{Signal: syscall.SIGINT})
	var out bytes.Buffer
	if code := Main(ctx, []string{"version"}, strings.NewReader(""), &out, &out); code != 0 {
		t.Errorf("version after a signal: exit %d %q", code, out.String())
	}
}

func TestSignalContext(t *testing.T) {
	ctx, stop := SignalContext(context.Background())
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not cancel the context")
	}
	in := interruptOf(ctx)
	if in == nil || in.Signal != syscall.SIGTERM || in.ExitCode() != ExitTerminated {
		t.Fatalf("cause = %v", context.Cause(ctx))
	}
	// A second signal while stopping is swallowed (this test process survives it) and does not
	// change the cause.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if in := interruptOf(ctx); in == nil || in.Signal != syscall.SIGTERM {
		t.Errorf("cause after a second signal = %v", context.Cause(ctx))
	}
}
