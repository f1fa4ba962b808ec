package imds

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestLazyReadsOnceAndOnlyWhenAsked(t *testing.T) {
	reads := 0
	l := NewLazy(func(context.Context) (Facts, error) {
		reads++
		return Facts{Region: "us-east-2", SecurityGroups: []string{"sg-1"}}, nil
	})
	ctx := context.Background()
	if v, err := l.Or(ctx, "eu-west-1", "fargate.region", func(f Facts) string { return f.Region }); v != "eu-west-1" || err != nil || reads != 0 {
		t.Fatalf("given value: %q %v, %d reads", v, err, reads)
	}
	for range 3 {
		if v, err := l.Or(ctx, "", "fargate.region", func(f Facts) string { return f.Region }); v != "us-east-2" || err != nil {
			t.Fatalf("from metadata: %q %v", v, err)
		}
	}
	if v, err := l.OrList(ctx, nil, "instance.security_groups", func(f Facts) []string { return f.SecurityGroups }); len(v) != 1 || err != nil {
		t.Fatalf("list from metadata: %v %v", v, err)
	}
	if reads != 1 {
		t.Errorf("metadata read %d times, want once", reads)
	}

	failing := NewLazy(func(context.Context) (Facts, error) { return Facts{}, ErrUnreachable })
	_, err := failing.Or(ctx, "", "instance.id", func(f Facts) string { return f.InstanceID })
	if !errors.Is(err, ErrUnreachable) || !strings.HasPrefix(err.Error(), "set instance.id in the configuration") {
		t.Errorf("err = %v", err)
	}
}
