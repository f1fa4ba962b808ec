package main

// --root is a boundary (issue 9): links inside the root that point outside it, absolute or
// relative, are followed within the root, so the real binary converging a root never writes
// outside it; a --root that does not exist is a usage error and nothing creates it.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

func TestApplyUnderRootNeverWritesThroughLinks(t *testing.T) {
	for name, target := range map[string]func(outside string) string{
		"absolute links": func(outside string) string { return outside },
		"relative links": func(outside string) string {
			return strings.Repeat("../", 12) + strings.TrimPrefix(outside, "/")
		},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, testenv.IMDSValues{})
			outside := t.TempDir()
			before := fullSnapshot(t, outside)
			for _, l := range []string{"etc/gitlab-runner", "var/lib/glbootstrap", "opt/gitlab-runner"} {
				dir := filepath.Join(w.root, l)
				// etc/gitlab-runner holds the CA file the seed put there: keep it, behind the link.
				moved := filepath.Join(w.root, strings.TrimPrefix(outside, "/"), filepath.Base(l))
				if err := os.MkdirAll(filepath.Dir(moved), 0o755); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(dir); err == nil {
					if err := os.Rename(dir, moved); err != nil {
						t.Fatal(err)
					}
				} else if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join(target(outside), filepath.Base(l)), dir); err != nil {
					t.Fatal(err)
				}
			}
			r := w.apply()
			if r.code != 0 {
				t.Fatalf("apply through links: %s", r)
			}
			if after := fullSnapshot(t, outside); after != before {
				t.Fatalf("apply wrote outside the root:\n%s", treeDiff(before, after))
			}
			// The files are where the links lead when the root is taken as "/".
			inside := filepath.Join(w.root, strings.TrimPrefix(outside, "/"))
			for _, p := range []string{"gitlab-runner/config.toml", "gitlab-runner/fargate.toml", "glbootstrap/runner.json", "gitlab-runner/fargate"} {
				if _, err := os.Stat(filepath.Join(inside, p)); err != nil {
					t.Errorf("%s not written behind the link inside the root: %v", p, err)
				}
			}
			if r := w.apply(); r.code != 0 || !strings.Contains(r.stdout, "0 changed") {
				t.Fatalf("second apply: %s", r)
			}
		})
	}
}

func TestMissingRootIsAUsageErrorAndStaysMissing(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	missing := filepath.Join(t.TempDir(), "no", "such", "root")
	for _, verb := range []string{"apply", "plan"} {
		r := w.run(verb, "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam, "--root", missing)
		if r.code != 2 || !strings.Contains(r.stderr, "does not exist") {
			t.Errorf("%s with a missing --root: %s", verb, r)
		}
	}
	if _, err := os.Stat(filepath.Dir(filepath.Dir(missing))); !os.IsNotExist(err) {
		t.Fatalf("something created the missing root's parents: %v", err)
	}
}
