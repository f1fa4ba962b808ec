package testenv

// The coordinator image as tests run it: built from the product's own build context
// (internal/image.CoordinatorContext: templates/coordinator's Dockerfile, entrypoint and
// sshd_config plus a glbootstrap binary) with Debian's buildah, on a debootstrap rootfs imported
// under the Dockerfile's FROM name, its gitlab-runner download served by a local mirror holding
// the real 17.9.3 binary (../shared/consumers). ImageLauncher runs that image's entrypoint as the
// ECS stand-in's tasks.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	// BaseRootEnv names a debootstrap rootfs to use as the image's base instead of
	// DefaultBaseRoot.
	BaseRootEnv = "GLB_BASE_ROOT"
	// DefaultBaseRoot is where the base rootfs is cached (debootstrap --variant=minbase
	// bookworm), made when missing.
	DefaultBaseRoot = "/var/tmp/glb-base"
	// ImageRunnerVersion is the gitlab-runner release the test mirror serves (GITLAB_RUNNER_VERSION).
	ImageRunnerVersion = "v17.9.3"
	// ImageRunnerFixture is that release's binary in ConsumersDir.
	ImageRunnerFixture = "gitlab-runner-17.9.3-linux-amd64.xz"
	// CoordinatorTestRepo is the local repository test images are tagged in.
	CoordinatorTestRepo = "localhost/glb-coordinator-test"

	imageLockFile = "/var/tmp/glb-coordinator-image.lock"
	// mirrorAddr is the test mirror's fixed address, so buildah's layer cache (keyed on the
	// build args, the mirror's URL among them) survives between builds; a random port is used
	// when it is taken.
	mirrorAddr = "127.0.0.1:47816"
)

// ImageContext is what BuildCoordinatorImage needs of a build context: internal/image's
// *Context (image.CoordinatorContext: templates/coordinator, a glbootstrap binary and the
// product's build args). An interface because testenv cannot import internal/image
// (internal/codebuild's tests import testenv).
type ImageContext interface {
	// Tag is the context's hash tag (ctx-...).
	Tag() string
	// BuildArgList is the product's build args, NAME=VALUE.
	BuildArgList() []string
	// WriteDir writes the context's files into dir.
	WriteDir(dir string) error
}

// CoordinatorImageOptions says what to build.
type CoordinatorImageOptions struct {
	// Context is the build context (image.CoordinatorContext). Required. The helper adds the
	// build args GITLAB_RUNNER_VERSION and GITLAB_RUNNER_DOWNLOADS (its mirror).
	Context ImageContext
	// Log receives buildah's and debootstrap's output; nil: it is shown only when they fail.
	Log io.Writer
}

// CoordinatorImage is a built coordinator image in local containers-storage.
type CoordinatorImage struct {
	// Name is CoordinatorTestRepo:TAG, TAG being the build context's tag (image.Context.Tag,
	// which hashes the Dockerfile, entrypoint, sshd_config, binary and the product's build args)
	// and a hash of the base image and the runner version.
	Name string
	// Base is the FROM name (the Dockerfile's BASE_IMAGE default) the rootfs was imported as.
	Base string
	// Entrypoint and Env are the image's config (buildah inspect).
	Entrypoint []string
	Env        []string
	// Built is false when an image with Name was already there; BuildTime is how long the
	// build took (0 when cached), MirrorRequests what the mirror served ("GET /v17.9.3/...").
	Built          bool
	BuildTime      time.Duration
	MirrorRequests []string
}

// imageTool fails (GLB_REQUIRE_TOOLS=1) or skips t when a tool is missing.
func imageTool(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("GLB_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg + "; GLB_REQUIRE_TOOLS=1 requires it")
	}
	t.Skip(msg)
}

// BuildCoordinatorImage builds the coordinator image from the product's build context, or
// reuses the one already built from the same context, build args and base. It needs root and
// buildah (and debootstrap when the base rootfs is missing): without them the test is skipped,
// or fails under GLB_REQUIRE_TOOLS=1. Builds are serialised between test processes by a lock
// file under /var/tmp.
func BuildCoordinatorImage(t testing.TB, o CoordinatorImageOptions) *CoordinatorImage {
	t.Helper()
	if os.Geteuid() != 0 {
		imageTool(t, "building and running the coordinator image with buildah needs root")
	}
	if _, err := exec.LookPath("buildah"); err != nil {
		imageTool(t, "buildah is not installed (Debian package buildah)")
	}
	if o.Context == nil {
		t.Fatal("BuildCoordinatorImage: no build context")
	}
	var logBuf bytes.Buffer
	log := io.Writer(&logBuf)
	if o.Log != nil {
		log = io.MultiWriter(&logBuf, o.Log)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		out := logBuf.String()
		if len(out) > 8000 {
			out = "...\n" + out[len(out)-8000:]
		}
		t.Fatalf(format+"\n%s", append(args, out)...)
	}

	unlock, err := lockFile(imageLockFile)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()

	dir := t.TempDir()
	if err := o.Context.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ARG BASE_IMAGE=(\S+)$`).FindSubmatch(df)
	if m == nil {
		t.Fatal("the context's Dockerfile has no ARG BASE_IMAGE=NAME default")
	}
	img := &CoordinatorImage{Base: string(m[1])}
	baseID, err := ensureBaseImage(img.Base, log)
	if err != nil {
		fail("base image %s: %v", img.Base, err)
	}

	ictx := o.Context
	key := sha256.Sum256([]byte(baseID + "\n" + ImageRunnerVersion))
	img.Name = CoordinatorTestRepo + ":" + ictx.Tag() + "-" + hex.EncodeToString(key[:])[:12]
	if err := img.inspect(); err == nil {
		return img
	}

	// Not built yet: the mirror, the context directory, buildah bud.
	runner := Consumer(t, ImageRunnerFixture, "gitlab-runner-linux-amd64")
	mirror, err := newRunnerMirror(runner)
	if err != nil {
		t.Fatal(err)
	}
	defer mirror.close()
	args := []string{"bud", "--isolation", "chroot", "--network", "host", "--pull=never", "--layers", "-t", img.Name}
	for _, a := range append(ictx.BuildArgList(),
		"GITLAB_RUNNER_VERSION="+ImageRunnerVersion, "GITLAB_RUNNER_DOWNLOADS="+mirror.url) {
		args = append(args, "--build-arg", a)
	}
	start := time.Now()
	if err := runLogged(log, "buildah", append(args, dir)...); err != nil {
		fail("building the coordinator image from templates/coordinator: %v", err)
	}
	img.Built, img.BuildTime, img.MirrorRequests = true, time.Since(start), mirror.requests()
	if err := img.inspect(); err != nil {
		fail("%v", err)
	}
	return img
}

// inspect reads the image's entrypoint and environment; an error when it does not exist.
func (c *CoordinatorImage) inspect() error {
	out, err := exec.Command("buildah", "inspect", "--type", "image", c.Name).Output()
	if err != nil {
		return fmt.Errorf("buildah inspect %s: %w", c.Name, err)
	}
	var v struct {
		OCIv1 struct {
			Config struct {
				Entrypoint, Cmd, Env []string
			} `json:"config"`
		}
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return fmt.Errorf("buildah inspect %s: %w", c.Name, err)
	}
	c.Entrypoint, c.Env = v.OCIv1.Config.Entrypoint, v.OCIv1.Config.Env
	if len(c.Entrypoint) == 0 {
		return fmt.Errorf("image %s has no entrypoint", c.Name)
	}
	return nil
}

// EnvValue is the image's environment variable name ("" when unset).
func (c *CoordinatorImage) EnvValue(name string) string {
	for _, kv := range c.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// ensureBaseImage makes sure the local storage has an image named name, importing the
// debootstrap rootfs (made when missing) under it, and returns its ID.
func ensureBaseImage(name string, log io.Writer) (string, error) {
	if id, err := imageID(name); err == nil {
		return id, nil
	}
	root := os.Getenv(BaseRootEnv)
	if root == "" {
		root = DefaultBaseRoot
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/apt-get")); err != nil {
		if _, err := exec.LookPath("debootstrap"); err != nil {
			return "", fmt.Errorf("no base rootfs at %s and debootstrap is not installed (Debian package debootstrap)", root)
		}
		_ = os.RemoveAll(root + ".new")
		if err := runLogged(log, "debootstrap", "--variant=minbase", "bookworm", root+".new", "http://deb.debian.org/debian"); err != nil {
			return "", fmt.Errorf("debootstrap of %s: %w", root, err)
		}
		_ = os.RemoveAll(root)
		if err := os.Rename(root+".new", root); err != nil {
			return "", err
		}
	}
	// buildah has no import: copy the rootfs into an empty container and commit it.
	out, err := exec.Command("buildah", "from", "scratch").Output()
	if err != nil {
		return "", fmt.Errorf("buildah from scratch: %w", err)
	}
	ctr := strings.TrimSpace(string(out))
	defer exec.Command("buildah", "rm", ctr).Run()
	out, err = exec.Command("buildah", "mount", ctr).Output()
	if err != nil {
		return "", fmt.Errorf("buildah mount: %w", err)
	}
	mnt := strings.TrimSpace(string(out))
	if err := runLogged(log, "cp", "-a", root+"/.", mnt+"/"); err != nil {
		return "", fmt.Errorf("copying %s into the base image: %w", root, err)
	}
	if err := runLogged(log, "buildah", "umount", ctr); err != nil {
		return "", err
	}
	if err := runLogged(log, "buildah", "commit", "-q", ctr, name); err != nil {
		return "", fmt.Errorf("buildah commit %s: %w", name, err)
	}
	return imageID(name)
}

func imageID(name string) (string, error) {
	out, err := exec.Command("buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", name).Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func runLogged(log io.Writer, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	fmt.Fprintf(log, "+ %s %s\n", name, strings.Join(args, " "))
	return cmd.Run()
}

// lockFile takes an exclusive flock on path (created) and returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// runnerMirror serves GitLab's runner download layout for one release:
// /VERSION/binaries/gitlab-runner-linux-amd64 and /VERSION/release.sha256, each line "HEX *PATH"
// (sha256sum's binary mode), as a private mirror of gitlab-runner-downloads would.
type runnerMirror struct {
	srv *http.Server
	url string
	mu  sync.Mutex
	log []string
}

func newRunnerMirror(binary string) (*runnerMirror, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	// A second file, so the Dockerfile must pick its architecture's line, not the first one.
	other := []byte("gitlab-runner linux/arm64 is not served by this test mirror\n")
	files := map[string][]byte{
		"binaries/gitlab-runner-linux-arm64": other,
		"binaries/gitlab-runner-linux-amd64": data,
	}
	var sums strings.Builder
	for _, p := range []string{"binaries/gitlab-runner-linux-arm64", "binaries/gitlab-runner-linux-amd64"} {
		fmt.Fprintf(&sums, "%x *%s\n", sha256.Sum256(files[p]), p)
	}
	files["release.sha256"] = []byte(sums.String())
	m := &runnerMirror{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.log = append(m.log, r.Method+" "+r.URL.Path)
		m.mu.Unlock()
		rel, ok := strings.CutPrefix(r.URL.Path, "/"+ImageRunnerVersion+"/")
		b, found := files[rel]
		if !ok || !found || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	})
	ln, err := net.Listen("tcp", mirrorAddr)
	if err != nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.url = "http://" + ln.Addr().String()
	go func() { _ = m.srv.Serve(ln) }()
	return m, nil
}

func (m *runnerMirror) requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.log...)
}

func (m *runnerMirror) close() { _ = m.srv.Close() }

// ImageLauncher is an ECSLauncher whose tasks run a CoordinatorImage: per task a buildah
// container (buildah from), in which `buildah run --isolation chroot --network host` starts the
// image's entrypoint with the task's environment overrides (SSH_PUBLIC_KEY) and, after the task
// definition's command (Command), `-o ListenAddress=TASK-IP` for sshd (and a second one for
// the task's public address, ECSLaunch.PublicIP, when it has one): every task shares this
// machine's network namespace, its own loopback address standing in for its ENI. The port is the
// image's (SSH_PORT); Launch waits until the container's first mapped port (22 when it maps none)
// accepts connections, or sshd says it listens elsewhere (the task then runs, as on ECS, where
// the port mapping of an awsvpc task does not check what the container listens on). Needs root
// and buildah.
type ImageLauncher struct {
	Image *CoordinatorImage
	// Command is what a task definition's command adds to the entrypoint (sshd options).
	Command []string
	// Env is what ECS itself sets in every container of a task (AWS_REGION,
	// AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, ECS_CONTAINER_METADATA_URI_V4, ...); RunTask's
	// overrides win over it.
	Env map[string]string
	// Volumes are buildah run -v HOST:CONTAINER[:OPTIONS] mounts (a test CA file, say).
	Volumes []string
	// StartDelay leaves a RUNNING task without its entrypoint for this long, as a slow start
	// would (connections are refused meanwhile); Launch then returns at once.
	StartDelay time.Duration
	// Wait bounds how long Launch waits for the port; default 30s.
	Wait time.Duration
	// Log, when set, receives each task's output (the entrypoint's and sshd's -e log), each line
	// prefixed with the task's address.
	Log io.Writer

	mu      sync.Mutex
	started atomic.Int32
}

// Started is how many task containers were started.
func (il *ImageLauncher) Started() int { return int(il.started.Load()) }

// Launch starts the image for l and returns once its port accepts connections (or at once
// with StartDelay). The returned stop kills the container's whole process tree and removes the
// container.
func (il *ImageLauncher) Launch(l ECSLaunch) (func(), error) {
	port := int32(22)
	if len(l.Container.Ports) > 0 {
		port = l.Container.Ports[0]
	}
	addr := net.JoinHostPort(l.IP, fmt.Sprint(port))
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	name := "glb-task-" + l.TaskARN[strings.LastIndex(l.TaskARN, "/")+1:] + "-" + hex.EncodeToString(suffix[:])
	if out, err := exec.Command("buildah", "from", "--pull-never", "--name", name, il.Image.Name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("buildah from %s: %v: %s", il.Image.Name, err, out)
	}
	remove := func() { _ = exec.Command("buildah", "rm", name).Run() }

	args := []string{"run", "--isolation", "chroot", "--network", "host"}
	env := map[string]string{}
	for k, v := range il.Env {
		env[k] = v
	}
	for k, v := range l.Env {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-e", k+"="+env[k])
	}
	for _, v := range il.Volumes {
		args = append(args, "-v", v)
	}
	args = append(append(append(args, name, "--"), il.Image.Entrypoint...), il.Command...)
	args = append(args, "-o", "ListenAddress="+l.IP)
	if l.PublicIP != "" {
		args = append(args, "-o", "ListenAddress="+l.PublicIP)
	}

	var out bytes.Buffer
	var w io.Writer = &syncBuffer{b: &out, mu: &il.mu}
	if il.Log != nil {
		w = io.MultiWriter(w, &prefixWriter{w: il.Log, mu: &il.mu, prefix: "task " + l.IP + ": "})
	}
	cmd := exec.Command("buildah", args...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done := make(chan struct{})
	cancelled := make(chan struct{})
	var once sync.Once
	start := func() error {
		if err := cmd.Start(); err != nil {
			close(done)
			return fmt.Errorf("buildah run: %w", err)
		}
		il.started.Add(1)
		go func() { _ = cmd.Wait(); close(done) }()
		return nil
	}
	stop := func() {
		once.Do(func() {
			close(cancelled)
			if cmd.Process != nil {
				killTree(cmd.Process.Pid, done)
			}
			<-done
			remove()
		})
	}
	if il.StartDelay > 0 {
		go func() {
			select {
			case <-time.After(il.StartDelay):
				_ = start()
			case <-cancelled:
				close(done)
			}
		}()
		return stop, nil
	}
	if err := start(); err != nil {
		remove()
		return nil, err
	}
	wait := il.Wait
	if wait == 0 {
		wait = 30 * time.Second
	}
	for deadline := time.Now().Add(wait); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return stop, nil
		}
		// sshd up on another port (an image built for another fargate.ssh.port): ECS reports
		// such a task RUNNING all the same; the driver finds out when it connects.
		il.mu.Lock()
		listening := strings.Contains(out.String(), "Server listening on ")
		il.mu.Unlock()
		if listening {
			return stop, nil
		}
		select {
		case <-done:
			stop()
			il.mu.Lock()
			msg := strings.TrimSpace(out.String())
			il.mu.Unlock()
			return nil, fmt.Errorf("the coordinator's entrypoint exited at start: %s", msg)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			il.mu.Lock()
			msg := strings.TrimSpace(out.String())
			il.mu.Unlock()
			return nil, fmt.Errorf("the coordinator does not listen on %s (the task definition's port) after %s: %v; its output: %s", addr, wait, err, msg)
		}
	}
}

// killTree ends pid and every process below it: SIGTERM first (buildah run passes it on),
// then, after 5 s or once pid exited, SIGKILL to whatever of the tree is left (the tree is read
// before pid exits, since its children are then re-parented).
func killTree(pid int, done <-chan struct{}) {
	tree := descendants(pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	for _, p := range append(tree, descendants(pid)...) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// descendants lists the processes below pid (from /proc/*/stat).
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer written under mu.
type syncBuffer struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
