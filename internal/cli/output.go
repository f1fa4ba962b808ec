package cli

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
)

// printer writes a run's results: one line per phase with its steps (and
// diffs) in text, or one JSON object per line with --output json. Progress
// goes to stderr through slog. Every string passes through mask first.
type printer struct {
	e       *env
	json    bool
	dryRun  bool
	secrets func() []string
	log     *slog.Logger
}

func newPrinter(e *env, output string, dryRun bool) *printer {
	p := &printer{e: e, json: output == "json", dryRun: dryRun, secrets: func() []string { return nil }}
	if p.json {
		p.log = slog.New(slog.NewJSONHandler(e.stderr, nil))
	} else {
		p.log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		}))
	}
	return p
}

func (p *printer) mask(s string) string { return host.Mask(s, p.secrets()) }

func (p *printer) progress(msg string) { p.log.Info(p.mask(msg)) }

// header names the command ("apply --role runner") and where it runs.
func (p *printer) header(verb string, h *host.Host) {
	if p.json {
		return
	}
	where := "the live system"
	if !h.Live() {
		where = "root " + h.Root
	}
	fmt.Fprintf(p.e.stdout, "glbootstrap %s on %s\n", verb, where)
}

func (p *printer) phase(r engine.PhaseResult) {
	for i := range r.Steps {
		r.Steps[i].Summary = p.mask(r.Steps[i].Summary)
		r.Steps[i].Diff = p.mask(r.Steps[i].Diff)
		r.Steps[i].Warning = p.mask(r.Steps[i].Warning)
	}
	r.Error = p.mask(r.Error)
	if p.json {
		b, _ := json.Marshal(struct {
			Type string `json:"type"`
			engine.PhaseResult
		}{"phase", r})
		fmt.Fprintln(p.e.stdout, string(b))
		return
	}
	status := string(r.Status)
	if p.dryRun && r.Status == engine.Changed {
		status = "would change"
	}
	fmt.Fprintf(p.e.stdout, "[%s] %-19s %-13s %s\n", r.Role, r.Phase, status, fmtDur(r.Duration))
	for _, s := range r.Steps {
		if s.Changed || s.Warning != "" || s.Kind == "remote" || s.Kind == "service" || s.Kind == "command" {
			fmt.Fprintf(p.e.stdout, "    %-8s %s: %s\n", s.Kind, s.Target, s.Summary)
		}
		if s.Warning != "" {
			fmt.Fprintf(p.e.stdout, "    warning: %s\n", s.Warning)
		}
		// A file created by apply is printed whole by plan; here it is noise.
		if s.Diff != "" && (p.dryRun || !strings.HasSuffix(s.Summary, "created")) {
			for _, line := range strings.Split(strings.TrimRight(s.Diff, "\n"), "\n") {
				fmt.Fprintf(p.e.stdout, "      %s\n", line)
			}
		}
	}
	if r.Reason != "" {
		fmt.Fprintf(p.e.stdout, "    %s\n", r.Reason)
	}
	if r.Error != "" {
		fmt.Fprintf(p.e.stdout, "    error: %s\n", r.Error)
	}
	if r.AfterFailed != "" {
		fmt.Fprintf(p.e.stdout, "    (after the failed %s: apply would stop there; this is what it would do once that is fixed)\n", r.AfterFailed)
	}
}

func (p *printer) summary(rep engine.Report) {
	if p.json {
		b, _ := json.Marshal(struct {
			Type string `json:"type"`
			engine.Report
		}{"summary", rep})
		fmt.Fprintln(p.e.stdout, string(b))
		return
	}
	verb := "changed"
	if p.dryRun {
		verb = "to change"
	}
	interrupted := ""
	if rep.Interrupted != "" {
		interrupted = ", interrupted in " + rep.Interrupted
	}
	fmt.Fprintf(p.e.stdout, "%d %s, %d unchanged, %d failed%s in %s\n", rep.Changed, verb, rep.Unchanged, rep.Failed, interrupted, fmtDur(rep.Duration))
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
}
