// Package awserr is the one error shape of glbootstrap's AWS wrappers: a
// message that says what failed and what to do, a sentinel callers test with
// errors.Is (not found, access denied, ...), and the SDK's own error, still
// reachable with errors.As.
package awserr

import "errors"

// ErrUnreachable marks a call that got no answer from the service at all (connection refused,
// timeouts, DNS): a network path problem, not a problem with the request.
var ErrUnreachable = errors.New("AWS service not reachable")

// Error is a mapped AWS failure: Error() is the advice, Unwrap gives the
// sentinel and the SDK's error (Cause may be nil).
type Error struct {
	Msg      string
	Sentinel error
	Cause    error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the sentinel and, when there is one, the cause.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Sentinel}
	}
	return []error{e.Sentinel, e.Cause}
}

// ErrNoCredentials marks a call that could not be signed: the SDK's credential chain found no
// credentials (no instance profile, nothing in the environment or the shared files) or could not
// fetch them. The request was never sent, so it says nothing about the network path to the service.
var ErrNoCredentials = errors.New("no AWS credentials")
