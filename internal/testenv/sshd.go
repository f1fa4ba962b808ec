package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// SSHDLauncher is an ECSLauncher whose tasks are real OpenSSH sshd processes, one per task,
// each listening on the task's own loopback address (and its public one, ECSLaunch.PublicIP, when
// it has one) and the container's first mapped port (22 when it maps none), so concurrent tasks can all use the same port as on Fargate. Like the
// coordinator image's entrypoint, it takes the login key from the SSH_PUBLIC_KEY environment
// override and generates a fresh ed25519 host key per task. It runs sshd as the calling user:
// logging in as root (the driver's default SSH.Username) needs the tests to run as root.
type SSHDLauncher struct {
	// Dir holds a directory per task: host key, authorized_keys, sshd_config.
	Dir string
	// SSHD is the sshd binary; default /usr/sbin/sshd (Debian's openssh-server).
	SSHD string
	// Options are sshd_config lines that come first, so they win over Include ("for each
	// keyword, the first obtained value will be used", sshd_config(5)).
	Options []string
	// Include are sshd_config files read next: the coordinator image's own sshd config, as the
	// image's /etc/ssh/sshd_config includes sshd_config.d/*.conf first.
	Include []string
	// StartDelay leaves a RUNNING task without sshd for this long (SSH connections are
	// refused meanwhile), as a slow entrypoint would.
	StartDelay time.Duration
	// Log, when set, receives every sshd's log (-e), each line prefixed with the task's address.
	Log io.Writer

	mu sync.Mutex
}

// Launch starts sshd for l and returns once it accepts connections (or at once with
// StartDelay). The returned stop kills it.
func (s *SSHDLauncher) Launch(l ECSLaunch) (func(), error) {
	key := strings.TrimSpace(l.Env["SSH_PUBLIC_KEY"])
	if key == "" {
		return nil, errors.New("coordinator: SSH_PUBLIC_KEY is empty: the Fargate driver sets it only for the container named ci-coordinator; check the task definition's container name")
	}
	port := int32(22)
	if len(l.Container.Ports) > 0 {
		port = l.Container.Ports[0]
	}
	dir := filepath.Join(s.Dir, l.TaskARN[strings.LastIndex(l.TaskARN, "/")+1:])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// sshd's privilege separation directory (Debian's build: /run/sshd); the entrypoint makes it too.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", hostKey).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("generating the host key: %v: %s", err, out)
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(key+"\n"), 0o600); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(l.IP, fmt.Sprint(port))
	var cfg strings.Builder
	for _, o := range s.Options {
		cfg.WriteString(o + "\n")
	}
	// The task's own host key before the image's config: HostKey adds up, and sshd serves the
	// first key of each type (the image names /etc/ssh/ssh_host_ed25519_key, this machine's).
	fmt.Fprintf(&cfg, "ListenAddress %s\n", addr)
	if l.PublicIP != "" {
		fmt.Fprintf(&cfg, "ListenAddress %s\n", net.JoinHostPort(l.PublicIP, fmt.Sprint(port)))
	}
	fmt.Fprintf(&cfg, "HostKey %s\nAuthorizedKeysFile %s\nPidFile none\n", hostKey, authKeys)
	for _, inc := range s.Include {
		fmt.Fprintf(&cfg, "Include %s\n", inc)
	}
	// The task directory lives under a world-writable /tmp, which StrictModes rejects.
	cfg.WriteString("StrictModes no\n")
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(cfg.String()), 0o600); err != nil {
		return nil, err
	}
	sshd := s.SSHD
	if sshd == "" {
		sshd = "/usr/sbin/sshd"
	}
	if out, err := exec.Command(sshd, "-t", "-f", conf).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sshd -t rejects the task's config: %v: %s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, sshd, "-D", "-e", "-f", conf)
	if s.Log != nil {
		cmd.Stderr = &prefixWriter{w: s.Log, mu: &s.mu, prefix: "sshd " + addr + ": "}
	}
	done := make(chan struct{})
	start := func() error {
		if err := cmd.Start(); err != nil {
			close(done)
			return fmt.Errorf("starting sshd: %w", err)
		}
		go func() { _ = cmd.Wait(); close(done) }()
		return nil
	}
	stop := func() {
		cancel()
		<-done
	}
	if s.StartDelay > 0 {
		go func() {
			select {
			case <-time.After(s.StartDelay):
				_ = start()
			case <-ctx.Done():
				close(done)
			}
		}()
		return stop, nil
	}
	if err := start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return stop, nil
		}
		select {
		case <-done:
			return nil, fmt.Errorf("sshd on %s exited at start", addr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("sshd on %s not listening after 10s: %v", addr, err)
		}
	}
}

// prefixWriter writes each line to w with prefix, whole lines only, under mu.
type prefixWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		_, _ = io.WriteString(p.w, p.prefix+string(p.buf[:i+1]))
		p.buf = p.buf[i+1:]
	}
}
