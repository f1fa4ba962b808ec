package imds

import (
	"context"
	"fmt"
	"sync"
)

// Lazy reads Facts from instance metadata once, on the first Get, and keeps the answer or the
// error: a run whose configuration gives every fact it needs never talks to IMDS, so it works off
// EC2 (tests, --root on a workstation) without waiting for a metadata service that is not there.
// It is safe for concurrent use.
type Lazy struct {
	fetch func(context.Context) (Facts, error)
	once  sync.Once
	f     Facts
	err   error
}

// NewLazy returns a Lazy reading with fetch (Fetch when nil).
func NewLazy(fetch func(context.Context) (Facts, error)) *Lazy {
	if fetch == nil {
		fetch = Fetch
	}
	return &Lazy{fetch: fetch}
}

// Get returns the facts, reading them on the first call.
func (l *Lazy) Get(ctx context.Context) (Facts, error) {
	l.once.Do(func() { l.f, l.err = l.fetch(ctx) })
	return l.f, l.err
}

// Or returns given when it is set, else the fact pick selects from instance metadata. key is the
// configuration key that gives the fact instead (fargate.subnet): when metadata cannot be read,
// the error says to set it.
func (l *Lazy) Or(ctx context.Context, given, key string, pick func(Facts) string) (string, error) {
	if given != "" {
		return given, nil
	}
	f, err := l.Get(ctx)
	if err != nil {
		return "", fmt.Errorf("%s is not set, and instance metadata that would give it could not be read: %w; set %s in the configuration to run without it", key, err, key)
	}
	return pick(f), nil
}

// Given returns a Lazy that never reads metadata and answers f: for tests and callers that know
// the facts already.
func Given(f Facts) *Lazy {
	return NewLazy(func(context.Context) (Facts, error) { return f, nil })
}
