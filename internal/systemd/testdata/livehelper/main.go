// Command livehelper is built by TestLiveSystemd and run inside a booted
// systemd-nspawn container: it calls the manager systemd.For picks for the
// live root ("/"), which must be *systemd.Live, and prints the step as one
// JSON line.
//
//	livehelper [-dry] enable|start|restart|stop|disable UNIT
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/systemd"
)

type result struct {
	Step  host.Step `json:"step"`
	Error string    `json:"error,omitempty"`
}

func main() {
	dry := flag.Bool("dry", false, "plan: report, change nothing")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: livehelper [-dry] enable|start|restart|stop|disable UNIT")
		os.Exit(2)
	}
	h, err := host.New("/", *dry)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	m := systemd.For(h, *dry)
	if _, ok := m.(*systemd.Live); !ok {
		fmt.Fprintf(os.Stderr, "systemd.For(Root: /) = %T, want *systemd.Live\n", m)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var st host.Step
	switch action, unit := flag.Arg(0), flag.Arg(1); action {
	case "enable":
		st, err = m.Enable(ctx, unit)
	case "start":
		st, err = m.Start(ctx, unit)
	case "restart":
		st, err = m.Restart(ctx, unit)
	case "stop":
		st, err = m.Stop(ctx, unit)
	case "disable":
		st, err = m.Disable(ctx, unit)
	default:
		fmt.Fprintf(os.Stderr, "unknown action %q\n", action)
		os.Exit(2)
	}
	r := result{Step: st}
	if err != nil {
		r.Error = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		os.Exit(2)
	}
	if r.Error != "" {
		os.Exit(1)
	}
}
