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
// the error names it.
func (l *Lazy) Or(ctx context.Context, given, key string, pick func(Facts) string) (string, error) {
	if given != "" {
		return given, nil
	}
	f, err := l.Get(ctx)
	if err != nil {
		return "", missing(key, err)
	}
	return pick(f), nil
}

// OrList is Or for a list fact (the security groups).
func (l *Lazy) OrList(ctx context.Context, given []string, key string, pick func(Facts) []string) ([]string, error) {
	if len(given) > 0 {
		return given, nil
	}
	f, err := l.Get(ctx)
	if err != nil {
		return nil, missing(key, err)
	}
	return pick(f), nil
}

func missing(key string, err error) error {
	return fmt.Errorf("set %s in the configuration, or run where instance metadata answers: %s is not set and %w", key, key, err)
}

// Given returns a Lazy that never reads metadata and answers f: for tests and callers that know
// the facts already.
func Given(f Facts) *Lazy {
	return NewLazy(func(context.Context) (Facts, error) { return f, nil })
}
