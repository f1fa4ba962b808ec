// Package nspawn boots a Debian rootfs with systemd-nspawn for system tests
// and runs commands in it, so a test can drive the real systemd (over D-Bus,
// with systemctl) of a booted machine.
//
// It needs root, systemd-nspawn (Debian package systemd-container), nsenter
// (util-linux) and a rootfs made by
//
//	debootstrap --variant=minbase --include=systemd,dbus,systemd-sysv,openssh-server bookworm DIR http://deb.debian.org/debian
//	systemctl --root=DIR disable ssh.service
//
// at GLB_NSPAWN_ROOT (default /var/tmp/glb-nspawn); openssh-server is for the
// GitLab role's test (RequireRootfs), ssh.service is disabled because the
// containers share the host's network. The rootfs is never
// written: the container runs with --volatile=overlay, so everything a test
// changes lives in a tmpfs and is gone at power-off (Writable boots a copy the
// test made instead, for an image bake). The host's PID 1 need
// not be systemd: the container is started with --register=no --keep-unit,
// so neither machined nor a host D-Bus is used, and commands are run in it
// with nsenter into all namespaces of its PID 1.
package nspawn

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultRoot is the rootfs used when GLB_NSPAWN_ROOT is not set.
const DefaultRoot = "/var/tmp/glb-nspawn"

// debootstrapCmd is how the rootfs is made, for the messages.
const debootstrapCmd = "debootstrap --variant=minbase --include=systemd,dbus,systemd-sysv,openssh-server,curl,ca-certificates bookworm %[1]s http://deb.debian.org/debian && systemctl --root=%[1]s disable ssh.service"

// Prerequisites fails t unless containers can be booted here: root,
// systemd-nspawn, nsenter, the extra host tools the test needs (tools), and a
// rootfs with systemd, dbus-daemon and sleep. It returns the rootfs
// (GLB_NSPAWN_ROOT, default DefaultRoot). Call it after the test decided to
// run: a missing prerequisite is a failure, not a skip.
func Prerequisites(t testing.TB, tools ...string) string {
	t.Helper()
	rootfs := os.Getenv("GLB_NSPAWN_ROOT")
	if rootfs == "" {
		rootfs = DefaultRoot
	}
	if os.Geteuid() != 0 {
		t.Fatal("GLB_SYSTEM_TEST=1 needs root: systemd-nspawn and nsenter do")
	}
	for _, tool := range append([]string{"systemd-nspawn", "nsenter"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("GLB_SYSTEM_TEST=1 needs %s (systemd-nspawn: Debian package systemd-container; nsenter: util-linux): %v", tool, err)
		}
	}
	for _, f := range []string{"/usr/lib/systemd/systemd", "/usr/bin/dbus-daemon", "/bin/sleep"} {
		if _, err := os.Stat(filepath.Join(rootfs, f)); err != nil {
			t.Fatalf("rootfs %[1]s has no %[2]s: create it with "+debootstrapCmd+" (make system-test does)", rootfs, f)
		}
	}
	return rootfs
}

// RequireRootfs fails t unless rootfs holds each of files (absolute paths in
// the container, e.g. /usr/sbin/sshd of openssh-server), saying how to make
// the rootfs again: a cache debootstrapped before a package was added lacks
// it (make system-test replaces such a cache).
func RequireRootfs(t testing.TB, rootfs string, files ...string) {
	t.Helper()
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(rootfs, f)); err != nil {
			t.Fatalf("rootfs %[1]s has no %[2]s (a cache made before openssh-server was included?): make it again with "+
				"rm -rf %[1]s && "+debootstrapCmd+" (make system-test does)", rootfs, f)
		}
	}
}

// Option changes how Boot starts the container.
type Option func(*options)

type options struct {
	name           string
	privateNetwork bool
	writable       bool
	binds          []string
}

// Writable boots rootfs itself, without the tmpfs overlay: what the container writes stays in
// rootfs after power-off. Only for a copy of the rootfs the test owns (an image being baked);
// the shared rootfs must never be written.
func Writable() Option { return func(o *options) { o.writable = true } }

// BindRO bind-mounts hostPath read-only at containerPath.
func BindRO(hostPath, containerPath string) Option {
	return func(o *options) { o.binds = append(o.binds, hostPath+":"+containerPath) }
}

// PrivateNetwork gives the container its own network namespace with only
// a loopback device. Without it the container shares the host's network
// namespace, so 127.0.0.1 in the container is the test process's 127.0.0.1
// (servers a test starts on loopback are reachable from inside).
func PrivateNetwork() Option { return func(o *options) { o.privateNetwork = true } }

// Name sets the machine name (default glb-<pid>-<n>).
func Name(name string) Option { return func(o *options) { o.name = name } }

// BaseEnv is the environment Exec starts from: what a root shell on a
// Debian host has, not the test process's environment.
var BaseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
}

// ExecTimeout bounds one command run in the container.
const ExecTimeout = 3 * time.Minute

// Container is a booted systemd-nspawn container.
type Container struct {
	Name string
	// Leader is the PID (in the host's PID namespace) of the container's PID 1.
	Leader int

	t      testing.TB
	cmd    *exec.Cmd
	exited chan error
	log    *syncBuffer
	once   sync.Once
}

var booted struct {
	sync.Mutex
	n int
}

// Boot boots rootfs (read-only below a tmpfs overlay) and waits until its
// systemd reports ready and the system is running. The container is powered
// off by Close, which runs when the test ends at the latest; systemd-nspawn's
// output is logged then if the test failed.
func Boot(t testing.TB, rootfs string, opts ...Option) *Container {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.name == "" {
		booted.Lock()
		booted.n++
		o.name = "glb-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(booted.n)
		booted.Unlock()
	}

	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	args := []string{
		"--directory=" + rootfs, "--boot", "--machine=" + o.name,
		// No machined and no scope unit: the host's PID 1 need not be systemd.
		"--register=no", "--keep-unit",
	}
	if !o.writable {
		args = append(args, "--volatile=overlay")
	}
	if o.privateNetwork {
		args = append(args, "--private-network")
	}
	for _, b := range o.binds {
		args = append(args, "--bind-ro="+b)
	}
	// READY=1 on NOTIFY_SOCKET once the container's systemd finished booting.
	args = append(args, "--notify-ready=yes", "--quiet")
	cmd := exec.Command("systemd-nspawn", args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	if os.Getenv("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY") == "" {
		// A pure cgroup v2 container, as on an EC2 Debian 12 host, also when
		// this host mounts the hybrid v1 layout.
		cmd.Env = append(cmd.Env, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	}
	c := &Container{Name: o.name, t: t, cmd: cmd, exited: make(chan error, 1), log: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() { c.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			t.Logf("systemd-nspawn output (%s):\n%s", c.Name, c.log)
		}
	})

	buf := make([]byte, 4096)
	ready := false
	for !ready {
		_ = l.SetReadDeadline(time.Now().Add(90 * time.Second))
		n, err := l.Read(buf)
		if err != nil {
			select {
			case werr := <-c.exited:
				c.exited <- werr
				t.Fatalf("systemd-nspawn exited before the container was ready: %v\n%s", werr, c.log)
			default:
			}
			t.Fatalf("waiting for the container to boot: %v\n%s", err, c.log)
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if v, ok := strings.CutPrefix(line, "X_NSPAWN_LEADER_PID="); ok {
				c.Leader, _ = strconv.Atoi(v)
			}
			if line == "READY=1" {
				ready = true
			}
		}
	}
	if c.Leader == 0 {
		t.Fatalf("systemd-nspawn sent READY=1 without X_NSPAWN_LEADER_PID\n%s", c.log)
	}
	if got := strings.TrimSpace(c.Sh(t, "systemctl is-system-running --wait || true")); got != "running" {
		t.Errorf("container state %q, want running; failed units:\n%s", got, c.Sh(t, "systemctl --failed --no-legend"))
	}
	t.Logf("container %s (leader pid %d) booted in %s", c.Name, c.Leader, time.Since(start).Round(time.Millisecond))
	return c
}

// Close powers the container off (SIGTERM to systemd-nspawn, which shuts
// it down cleanly) and waits for that, killing it after 30s. It may be
// called more than once.
func (c *Container) Close() {
	c.once.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-c.exited:
			c.exited <- err
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			c.exited <- <-c.exited
			c.t.Errorf("container %s did not power off within 30s; killed", c.Name)
		}
		// nspawn leaves this behind when /run is not a tmpfs.
		_ = os.RemoveAll("/run/systemd/nspawn/propagate/" + c.Name)
	})
}

// Log is what systemd-nspawn (and the container's console) printed so far.
func (c *Container) Log() string { return c.log.String() }

// Run runs argv in the container with stdin and the environment BaseEnv
// followed by env (a later entry wins), and returns stdout, stderr and the
// error of the nsenter process (an *exec.ExitError for a non-zero exit).
func (c *Container) Run(stdin string, env []string, argv ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--target", strconv.Itoa(c.Leader), "--all", "--"}, argv...)...)
	cmd.Env = append(append([]string{}, BaseEnv...), env...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return out.String(), errb.String(), err
}

// Exec runs argv in the container with env (see Run) and returns stdout,
// stderr and the exit code; -1 when it could not be run or did not end
// within ExecTimeout (stderr then says why).
func (c *Container) Exec(env []string, argv ...string) (stdout, stderr string, code int) {
	stdout, stderr, err := c.Run("", env, argv...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout, stderr, 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0 && !errors.Is(err, context.DeadlineExceeded):
		return stdout, stderr, ee.ExitCode()
	default:
		return stdout, stderr + "\nnsenter: " + err.Error(), -1
	}
}

// Sh runs a shell script in the container that must succeed and returns
// its stdout.
func (c *Container) Sh(t testing.TB, script string) string {
	t.Helper()
	out, stderr, err := c.Run("", nil, "/bin/sh", "-c", script)
	if err != nil {
		t.Fatalf("in the container: %s: %v\n%s%s", script, err, out, stderr)
	}
	return out
}

// Write writes content to path in the container (the directory must exist).
func (c *Container) Write(t testing.TB, path, content string) {
	t.Helper()
	if _, stderr, err := c.Run(content, nil, "/bin/sh", "-c", `cat > "$1"`, "sh", path); err != nil {
		t.Fatalf("writing %s in the container: %v\n%s", path, err, stderr)
	}
}

// Systemctl returns the trimmed output of a query (is-enabled, is-active)
// whose exit status only encodes the answer.
func (c *Container) Systemctl(verb, unit string) string {
	out, _, _ := c.Run("", nil, "systemctl", verb, unit)
	return strings.TrimSpace(out)
}

// Show returns the value of one property of unit (systemctl show --value).
func (c *Container) Show(t testing.TB, unit, prop string) string {
	t.Helper()
	return strings.TrimSpace(c.Sh(t, "systemctl show --value -p "+prop+" "+unit))
}

// syncBuffer is a bytes.Buffer safe for the writer goroutines of exec and a
// reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
