package runner

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/image"
	"github.com/glbootstrap/glbootstrap/internal/role"
	"github.com/glbootstrap/glbootstrap/templates/coordinator"
)

type fakeImage struct {
	st      image.State
	err     error
	ensured int
}

// Check and Ensure make fakeImage an image.Coordinator-like source for image.Apply/Plan's
// step wording, which the phase passes through unchanged.
func (f *fakeImage) Check(context.Context) (image.State, error) { return f.st, f.err }
func (f *fakeImage) Ensure(context.Context) (image.State, bool, error) {
	f.ensured++
	if f.err != nil {
		return f.st, false, f.err
	}
	if f.st.Current() {
		return f.st, false, nil
	}
	f.st.HashDigest, f.st.LatestDigest = "sha256:new", "sha256:new"
	return f.st, true, nil
}

const fakeRepo = "123456789012.dkr.ecr.us-east-2.amazonaws.com/ci-coordinator"

func TestCoordinatorImagePhase(t *testing.T) {
	coord := &Coordinator{Repository: "123456789012.dkr.ecr.us-east-2.amazonaws.com/ci-coordinator", CodeBuildProject: "p", Bucket: "b"}
	for _, tc := range []struct {
		name     string
		section  *Coordinator
		dryRun   bool
		st       image.State
		err      error
		status   engine.Status
		summary  string
		ensured  int
		errorHas string
	}{
		{name: "not configured", status: engine.Skipped},
		{name: "up to date", section: coord, st: image.State{Tag: "ctx-1", HashDigest: "sha256:a", LatestDigest: "sha256:a"},
			status: engine.Unchanged, summary: "up to date (ctx-1, sha256:a)", ensured: 1},
		{name: "builds", section: coord, st: image.State{Tag: "ctx-1", LatestDigest: "sha256:old"},
			status: engine.Changed, summary: "built ctx-1 with CodeBuild and pushed it as latest (sha256:new)", ensured: 1},
		{name: "plan", section: coord, dryRun: true, st: image.State{Tag: "ctx-1"},
			status: engine.Changed, summary: "would build ctx-1 with CodeBuild and push it as latest (latest is now absent)"},
		{name: "build fails", section: coord, st: image.State{Tag: "ctx-1"}, err: errors.New("build x ended FAILED"),
			status: engine.Failed, errorHas: "coordinator image ctx-1: build x ended FAILED", ensured: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := host.New(t.TempDir(), tc.dryRun)
			if err != nil {
				t.Fatal(err)
			}
			fake := &fakeImage{st: tc.st, err: tc.err}
			var conv CoordinatorImage = image.ApplyTo(fakeRepo, fake)
			if tc.dryRun {
				conv = image.PlanTo(fakeRepo, fake)
			}
			r := &Role{cfg: &Config{Coordinator: tc.section}, d: Deps{Host: h, Coordinator: conv}}
			var got engine.PhaseResult
			_, _ = engine.Run(context.Background(), Name, r.Phases(), engine.Options{Only: []string{"coordinator-image"},
				Observe: func(pr engine.PhaseResult) { got = pr }})
			if got.Status != tc.status {
				t.Fatalf("status %s, want %s (%+v)", got.Status, tc.status, got)
			}
			if tc.summary != "" && (len(got.Steps) != 1 || got.Steps[0].Summary != tc.summary) {
				t.Errorf("steps %+v, want %q", got.Steps, tc.summary)
			}
			if tc.status == engine.Skipped && got.Reason != "not configured (no coordinator section)" {
				t.Errorf("reason %q", got.Reason)
			}
			if tc.errorHas != "" && !strings.Contains(got.Error, tc.errorHas) {
				t.Errorf("error %q, want %q", got.Error, tc.errorHas)
			}
			if fake.ensured != tc.ensured {
				t.Errorf("Ensure called %d times, want %d", fake.ensured, tc.ensured)
			}
		})
	}
}

// fargate.ssh reaches the coordinator image as build args: the driver tells the task nothing but
// SSH_PUBLIC_KEY, so the image's sshd must be built for the configured port and user.
func TestCoordinatorBuildArgs(t *testing.T) {
	for _, tc := range []struct {
		ssh  SSH
		want string
	}{
		{SSH{}, ""},
		{SSH{Username: "root", Port: 22}, ""},
		{SSH{Username: "ci", Port: 2222}, "SSH_PORT=2222 SSH_USER=ci"},
		{SSH{Username: "root", Port: 2022}, "SSH_PORT=2022"},
	} {
		bin := t.TempDir() + "/glbootstrap"
		if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
		c, err := image.CoordinatorContext(bin, coordinatorBuildArgs(&Config{Fargate: &Fargate{SSH: tc.ssh},
			Runner: &Runner{BuildsDir: DefaultBuildsDir, CacheDir: DefaultCacheDir}}))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(c.BuildArgList(), " "); got != tc.want {
			t.Errorf("%+v: build args %q, want %q", tc.ssh, got, tc.want)
		}
	}
	if coordinatorBuildArgs(&Config{}) != nil {
		t.Error("no fargate section: want no build args")
	}
	// Other builds and cache directories are made in the image for the SSH user.
	args := coordinatorBuildArgs(&Config{Fargate: &Fargate{}, Runner: &Runner{BuildsDir: "/builds", CacheDir: "/cache"}})
	if args[image.ArgRunnerDirs] != "/builds,/cache" {
		t.Errorf("RUNNER_DIRS = %q", args[image.ArgRunnerDirs])
	}
	df, _ := fs.ReadFile(coordinator.FS, "Dockerfile")
	if !strings.Contains(string(df), "ARG RUNNER_DIRS="+image.DefaultRunnerDirs+"\n") ||
		image.DefaultRunnerDirs != DefaultBuildsDir+","+DefaultCacheDir {
		t.Error("the Dockerfile's RUNNER_DIRS default is not the role's builds_dir and cache_dir defaults")
	}
}

// The role hands the image builder those build args with the coordinator section's repository.
func TestCoordinatorImageSpec(t *testing.T) {
	cfg := &Config{Fargate: &Fargate{SSH: SSH{Username: "ci", Port: 2222}},
		Coordinator: &Coordinator{Repository: fakeRepo, CodeBuildProject: "p", Bucket: "b"}}
	var got *role.ImageSpec
	env := role.Env{Images: func(s role.ImageSpec) image.Converger { got = &s; return image.PlanTo(s.Repository, &fakeImage{}) }}
	func() {
		defer func() { _ = recover() }() // only the spec matters here, not the rest of prepare
		_, _ = prepare(context.Background(), env, cfg)
	}()
	if got == nil {
		t.Fatal("prepare did not ask for the image builder")
	}
	if got.Repository != fakeRepo || got.BuildArgs["SSH_PORT"] != "2222" || got.BuildArgs["SSH_USER"] != "ci" {
		t.Errorf("image spec %+v", *got)
	}
}
