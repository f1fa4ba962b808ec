package engine

import "errors"

// NotApplicable is what a phase's Run returns when the configuration leaves it nothing to do on
// this host (an optional section is absent). Run reports the phase Skipped with Reason, counts it
// as skipped rather than unchanged, and goes on with the next phase.
type NotApplicable struct{ Reason string }

func (n *NotApplicable) Error() string { return "not applicable: " + n.Reason }

// Skip returns a *NotApplicable with reason, e.g. "not configured (no coordinator section)".
func Skip(reason string) error { return &NotApplicable{Reason: reason} }

func notApplicable(err error) (string, bool) {
	var na *NotApplicable
	if errors.As(err, &na) {
		return na.Reason, true
	}
	return "", false
}
