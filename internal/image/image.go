// Package image builds the coordinator image (templates/coordinator plus the glbootstrap binary)
// through CodeBuild and keeps it in ECR under two tags: a hash of its build context, and latest,
// which the Fargate task definition runs. Pushing is idempotent: when the repository already has
// the context's hash tag and latest points to the same digest, nothing is built.
package image

import (
	"archive/zip"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	cb "github.com/glbootstrap/glbootstrap/internal/aws/codebuild"
	"github.com/glbootstrap/glbootstrap/internal/codebuild"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/templates/buildspec"
	"github.com/glbootstrap/glbootstrap/templates/coordinator"
)

// BinaryName is the glbootstrap binary's name in the build context (the Dockerfile COPYs it).
const BinaryName = "glbootstrap"

// LatestTag is the tag the task definition runs.
const LatestTag = "latest"

// File is one file of a build context.
type File struct {
	Name string // slash path in the context
	Mode fs.FileMode
	// Data is the content, or nil to read Path when zipping.
	Data []byte
	Path string
	sum  [32]byte
}

// Context is a build context: its files, its build args and the buildspec that builds it.
type Context struct {
	Files     []File
	Buildspec string
	// BuildArgs are the Dockerfile ARG values the build passes (docker build --build-arg), by
	// name; the buildspec gets them as BUILD_ARGS.
	BuildArgs map[string]string
	// Hash is the hex SHA-256 over every file's name, mode and content, the build args and the
	// buildspec: a change to any of them is a new image.
	Hash string
}

// Tag is the context's immutable tag: ctx- and the first 20 hex digits of Hash.
func (c *Context) Tag() string { return "ctx-" + c.Hash[:20] }

// Build args of templates/coordinator/Dockerfile that glbootstrap sets from the runner
// configuration (fargate.ssh.port and fargate.ssh.username: the driver only sets
// SSH_PUBLIC_KEY in the task, so the image carries the port and the user).
const (
	ArgSSHPort = "SSH_PORT"
	ArgSSHUser = "SSH_USER"
	// ArgRunnerDirs is runner.builds_dir and runner.cache_dir, comma-separated: the image makes
	// them and gives them to SSH_USER.
	ArgRunnerDirs = "RUNNER_DIRS"
)

// ArgRunnerVersion is the gitlab-runner release the image downloads (v18.5.0): the jobs'
// artifacts and cache are handled by that binary inside the task, so it follows runner.version.
const ArgRunnerVersion = "GITLAB_RUNNER_VERSION"

// DefaultRunnerVersion is the Dockerfile's default GITLAB_RUNNER_VERSION, read from the embedded
// templates/coordinator/Dockerfile ("" if the ARG line is missing).
var DefaultRunnerVersion = func() string {
	df, _ := fs.ReadFile(coordinator.FS, "Dockerfile")
	m := regexp.MustCompile(`(?m)^ARG ` + ArgRunnerVersion + `=(\S+)$`).FindSubmatch(df)
	if m == nil {
		return ""
	}
	return string(m[1])
}()

// RunnerVersionArgs are the build args that make the image's gitlab-runner release (17.9.3, or
// the package version 17.9.3-1) the front's; the Dockerfile's default is left out, so a
// configuration pinning it hashes like one without it.
func RunnerVersionArgs(release string) map[string]string {
	release, _, _ = strings.Cut(release, "-")
	if release == "" || "v"+release == DefaultRunnerVersion {
		return map[string]string{}
	}
	return map[string]string{ArgRunnerVersion: "v" + release}
}

// DefaultRunnerDirs is the Dockerfile's RUNNER_DIRS: the runner role's default builds_dir and
// cache_dir.
const DefaultRunnerDirs = "/opt/gitlab-runner/builds,/opt/gitlab-runner/cache"

// SSHArgs are the coordinator's build args for fargate.toml's [SSH] Port and Username; 0 and ""
// leave the Dockerfile's defaults (22, root) and are left out, so a configuration with the
// defaults hashes like one without them.
func SSHArgs(port int, user string) map[string]string {
	args := map[string]string{}
	if port != 0 && port != 22 {
		args[ArgSSHPort] = fmt.Sprint(port)
	}
	if user != "" && user != "root" {
		args[ArgSSHUser] = user
	}
	return args
}

// CoordinatorContext is templates/coordinator with the glbootstrap binary at binaryPath (the one
// to put in the image: it must be built for the Fargate task's architecture) and buildArgs (nil:
// the Dockerfile's defaults; see SSHArgs), built by the provided Docker buildspec. It reads the
// binary once to hash it. A build arg's name must be a Dockerfile ARG name and its value must
// have no white space (the buildspec splits BUILD_ARGS on it).
func CoordinatorContext(binaryPath string, buildArgs map[string]string) (*Context, error) {
	c := &Context{Buildspec: buildspec.Docker}
	for k, v := range buildArgs {
		if !argName.MatchString(k) {
			return nil, fmt.Errorf("image build arg %q is not a Dockerfile ARG name (letters, digits, _)", k)
		}
		if v == "" || strings.ContainsAny(v, " \t\r\n") {
			return nil, fmt.Errorf("image build arg %s=%q: the value must be non-empty without white space", k, v)
		}
		if c.BuildArgs == nil {
			c.BuildArgs = map[string]string{}
		}
		c.BuildArgs[k] = v
	}
	for _, f := range coordinator.Files {
		data, err := fs.ReadFile(coordinator.FS, f.Name)
		if err != nil {
			return nil, err
		}
		c.Files = append(c.Files, File{Name: f.Name, Mode: fs.FileMode(f.Mode), Data: data})
	}
	c.Files = append(c.Files, File{Name: BinaryName, Mode: 0o755, Path: binaryPath})
	if err := c.hash(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Context) hash() error {
	sort.Slice(c.Files, func(i, j int) bool { return c.Files[i].Name < c.Files[j].Name })
	h := sha256.New()
	for i := range c.Files {
		f := &c.Files[i]
		if f.Data != nil {
			f.sum = sha256.Sum256(f.Data)
		} else {
			r, err := os.Open(f.Path)
			if err != nil {
				return fmt.Errorf("reading %s for the image context: %w", f.Path, err)
			}
			fh := sha256.New()
			_, err = io.Copy(fh, r)
			r.Close()
			if err != nil {
				return fmt.Errorf("reading %s for the image context: %w", f.Path, err)
			}
			copy(f.sum[:], fh.Sum(nil))
		}
		fmt.Fprintf(h, "file %s %o %x\n", f.Name, f.Mode.Perm(), f.sum)
	}
	for _, a := range c.BuildArgList() {
		fmt.Fprintf(h, "arg %s\n", a)
	}
	bs := sha256.Sum256([]byte(c.Buildspec))
	fmt.Fprintf(h, "buildspec %x\n", bs)
	c.Hash = hex.EncodeToString(h.Sum(nil))
	return nil
}

// BuildArgList is BuildArgs as NAME=VALUE pairs sorted by name: what docker build gets as
// --build-arg.
func (c *Context) BuildArgList() []string {
	var out []string
	for k, v := range c.BuildArgs {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

var argName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// WriteDir writes the context's files into the directory dir (which must exist) with their
// modes, for a local build (docker build DIR, buildah bud DIR). A file read from disk must still
// have the content that was hashed.
func (c *Context) WriteDir(dir string) error {
	for _, f := range c.Files {
		data := f.Data
		if data == nil {
			var err error
			if data, err = os.ReadFile(f.Path); err != nil {
				return fmt.Errorf("reading %s for the image context: %w", f.Path, err)
			}
			if sha256.Sum256(data) != f.sum {
				return fmt.Errorf("%s changed since the image context was hashed; run again", f.Name)
			}
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.WriteFile(p, data, f.Mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.Mode); err != nil {
			return err
		}
	}
	return nil
}

// String names the context in messages.
func (c *Context) String() string { return "coordinator image context " + c.Tag() }

// WriteZip streams the context's files as a zip (codebuild.Source). A file read from disk must
// still have the content that was hashed.
func (c *Context) WriteZip(ctx context.Context, w io.Writer) (codebuild.ZipStats, error) {
	var st codebuild.ZipStats
	bw := bufio.NewWriterSize(w, 256<<10)
	zw := zip.NewWriter(bw)
	for _, f := range c.Files {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		h := &zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: time.Unix(0, 0).UTC()}
		h.SetMode(f.Mode)
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return st, err
		}
		var r io.Reader
		if f.Data != nil {
			r = strings.NewReader(string(f.Data))
		} else {
			file, err := os.Open(f.Path)
			if err != nil {
				return st, fmt.Errorf("reading %s for the image context: %w", f.Path, err)
			}
			defer file.Close()
			r = file
		}
		sum := sha256.New()
		n, err := io.Copy(io.MultiWriter(fw, sum), r)
		if err != nil {
			return st, fmt.Errorf("reading %s for the image context: %w", f.Name, err)
		}
		if string(sum.Sum(nil)) != string(f.sum[:]) {
			return st, fmt.Errorf("%s changed while the image context was uploaded; run again", f.Name)
		}
		st.Files++
		st.Bytes += n
	}
	if err := zw.Close(); err != nil {
		return st, err
	}
	return st, bw.Flush()
}

// Registry tells which digest a tag of a repository points to.
type Registry interface {
	// Digest returns the digest (sha256:…) tag points to in repository (its full URI,
	// HOST/NAME), and found false when there is no such tag.
	Digest(ctx context.Context, repository, tag string) (digest string, found bool, err error)
}

// BuildRunner runs a CodeBuild build of a source (codebuild.Run with its Deps bound).
type BuildRunner func(ctx context.Context, src codebuild.Source, o codebuild.Options) (codebuild.Result, error)

// Push describes one image push.
type Push struct {
	Registry Registry
	Build    BuildRunner
	// Repository is the ECR repository URI, ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME.
	Repository string
	// Options for the build; Env and Buildspec are set by Ensure.
	Options codebuild.Options
}

// State is what the repository holds for a context.
type State struct {
	Tag          string // the context's hash tag
	HashDigest   string // what Tag points to ("" when absent)
	LatestDigest string // what latest points to ("" when absent)
}

// Current reports whether the repository has the context's image as latest.
func (s State) Current() bool { return s.HashDigest != "" && s.HashDigest == s.LatestDigest }

// Check reads the repository's state for c.
func (p *Push) Check(ctx context.Context, c *Context) (State, error) {
	st := State{Tag: c.Tag()}
	var err error
	if st.HashDigest, _, err = p.Registry.Digest(ctx, p.Repository, st.Tag); err != nil {
		return st, err
	}
	if st.LatestDigest, _, err = p.Registry.Digest(ctx, p.Repository, LatestTag); err != nil {
		return st, err
	}
	return st, nil
}

// ErrNotPushed: the build succeeded but the repository does not show the image as latest.
var ErrNotPushed = errors.New("the build succeeded but the image is not latest in the repository")

// Ensure builds and pushes c unless the repository already has it as latest (built false). With
// force it builds anyway. After a build it checks the repository again: latest and the hash tag
// must point to the same digest.
func (p *Push) Ensure(ctx context.Context, c *Context, force bool) (st State, built bool, err error) {
	st, err = p.Check(ctx, c)
	if err != nil {
		return st, false, err
	}
	if st.Current() && !force {
		return st, false, nil
	}
	o := p.Options
	o.Buildspec = c.Buildspec
	o.Env = append(append([]cb.EnvVar(nil), o.Env...),
		cb.EnvVar{Name: "IMAGE_REPO", Value: p.Repository},
		cb.EnvVar{Name: "IMAGE_TAG", Value: st.Tag})
	if args := c.BuildArgList(); len(args) > 0 {
		o.Env = append(o.Env, cb.EnvVar{Name: "BUILD_ARGS", Value: strings.Join(args, " ")})
	}
	if _, err := p.Build(ctx, c, o); err != nil {
		return st, true, err
	}
	if st, err = p.Check(ctx, c); err != nil {
		return st, true, err
	}
	if !st.Current() {
		return st, true, fmt.Errorf("%w: %s:%s is %s, %s:latest is %s", ErrNotPushed,
			p.Repository, st.Tag, orNone(st.HashDigest), p.Repository, orNone(st.LatestDigest))
	}
	return st, true, nil
}

func orNone(s string) string {
	if s == "" {
		return "absent"
	}
	return s
}

// Coordinator binds a Push to the coordinator context: what the runner phase coordinator-image
// and `glbootstrap image push` use.
type Coordinator struct {
	Push    *Push
	Context *Context
	Force   bool
}

// Repository is the ECR repository URI.
func (c *Coordinator) Repository() string { return c.Push.Repository }

// Check reads the repository's state for the context.
func (c *Coordinator) Check(ctx context.Context) (State, error) { return c.Push.Check(ctx, c.Context) }

// Ensure builds and pushes the image unless it is already latest (or Force).
func (c *Coordinator) Ensure(ctx context.Context) (State, bool, error) {
	return c.Push.Ensure(ctx, c.Context, c.Force)
}

// Converger keeps ECR's latest the coordinator image of the current build context and
// returns the step saying what it did (Apply) or would do (Plan).
type Converger interface {
	Converge(ctx context.Context) (host.Step, error)
}

// Source is what a Converger needs of a Coordinator.
type Source interface {
	Check(ctx context.Context) (State, error)
	Ensure(ctx context.Context) (State, bool, error)
}

// Apply returns the Converger that builds and pushes through CodeBuild when needed.
func Apply(c *Coordinator) Converger { return ApplyTo(c.Repository(), c) }

// Plan returns the Converger that only reads the repository and says what apply would do.
func Plan(c *Coordinator) Converger { return PlanTo(c.Repository(), c) }

// ApplyTo is Apply for any Source of the repository URI repo.
func ApplyTo(repo string, s Source) Converger { return applyConv{repo, s} }

// PlanTo is Plan for any Source of the repository URI repo.
func PlanTo(repo string, s Source) Converger { return planConv{repo, s} }

type applyConv struct {
	repo string
	c    Source
}

func (a applyConv) Converge(ctx context.Context) (host.Step, error) {
	target := a.repo + ":" + LatestTag
	st, built, err := a.c.Ensure(ctx)
	if err != nil {
		return host.Step{Kind: "remote", Target: target, Changed: built}, fmt.Errorf("coordinator image %s: %w", st.Tag, err)
	}
	if !built {
		return host.Step{Kind: "remote", Target: target, Summary: "up to date (" + st.Tag + ", " + st.LatestDigest + ")"}, nil
	}
	return host.Step{Kind: "remote", Target: target, Changed: true,
		Summary: fmt.Sprintf("built %s with CodeBuild and pushed it as latest (%s)", st.Tag, st.LatestDigest)}, nil
}

type planConv struct {
	repo string
	c    Source
}

func (p planConv) Converge(ctx context.Context) (host.Step, error) {
	target := p.repo + ":" + LatestTag
	st, err := p.c.Check(ctx)
	if err != nil {
		return host.Step{Kind: "remote", Target: target}, fmt.Errorf("coordinator image %s: %w", st.Tag, err)
	}
	force := false
	if f, ok := p.c.(*Coordinator); ok {
		force = f.Force
	}
	if st.Current() && !force {
		return host.Step{Kind: "remote", Target: target, Summary: "up to date (" + st.Tag + ", " + st.LatestDigest + ")"}, nil
	}
	return host.Step{Kind: "remote", Target: target, Changed: true,
		Summary: fmt.Sprintf("would build %s with CodeBuild and push it as latest (latest is now %s)", st.Tag, orNone(st.LatestDigest))}, nil
}
