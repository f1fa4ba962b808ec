package config

import (
	"errors"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path is the field path, dotted with list indexes (runner.tags[2]); "" for the whole document.
	Path string
	// Line is the 1-based line in the YAML document; 0 when unknown (e.g. a missing top-level
	// section).
	Line int
	// Message says what is wrong and, where the fix is the user's, what to do. It never contains a
	// secret value.
	Message string
	// Warning marks a problem that does not stop glbootstrap.
	Warning bool
}

// String renders "runner.concurrent (line 12): must be > 0"; the line is left out when unknown and
// warnings start with "warning: ".
func (p Problem) String() string {
	var b strings.Builder
	if p.Warning {
		b.WriteString("warning: ")
	}
	switch {
	case p.Path != "" && p.Line > 0:
		b.WriteString(p.Path + " (line " + strconv.Itoa(p.Line) + "): ")
	case p.Path != "":
		b.WriteString(p.Path + ": ")
	case p.Line > 0:
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found in one document, in document order.
type Problems []Problem

// Errors returns the problems that are not warnings.
func (ps Problems) Errors() Problems { return ps.filter(false) }

// Warnings returns the warnings.
func (ps Problems) Warnings() Problems { return ps.filter(true) }

func (ps Problems) filter(warning bool) Problems {
	var out Problems
	for _, p := range ps {
		if p.Warning == warning {
			out = append(out, p)
		}
	}
	return out
}

// Err returns nil when there is no error (warnings alone are fine), else one error whose message is
// every error, one per line.
func (ps Problems) Err() error {
	errs := ps.Errors()
	if len(errs) == 0 {
		return nil
	}
	lines := make([]string, len(errs))
	for i, p := range errs {
		lines[i] = p.String()
	}
	return errors.New(strings.Join(lines, "\n"))
}
