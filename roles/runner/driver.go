package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/render"
)

// maxDriverBytes bounds a driver download (the release binaries are ~20 MB).
const maxDriverBytes = 256 << 20

// installDriver installs the pinned driver: when the file at driver.path
// already has the pinned SHA-256 nothing is downloaded; otherwise the
// download streams into a temp file beside the target, is hashed on the
// way, and replaces the old binary only when the hash matches.
func (r *Role) installDriver(ctx context.Context) ([]host.Step, error) {
	drv := r.cfg.Fargate.Driver
	st := host.Step{Kind: "download", Target: drv.Path}
	// Hashing a named pipe would wait for a writer forever; nothing but a file is a driver.
	if info, err := r.d.Host.Stat(drv.Path); err == nil && !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not the driver binary: move it away or fix fargate.driver.path", drv.Path, fileKind(info.Mode()))
	} else if err == nil && isRunningExecutable(info) {
		// Validation refuses the names glbootstrap is installed under; this catches any other
		// name (a link, a copy renamed, --root over the running system's own tree).
		return nil, fmt.Errorf("%s is the glbootstrap program that is running now: installing the driver there would replace glbootstrap itself; set fargate.driver.path to the driver's own file, such as %s", drv.Path, DefaultDriverPath)
	}
	have, err := r.d.Host.FileSHA256(drv.Path)
	if err != nil {
		return nil, err
	}
	src := drv.DownloadURL(runtime.GOARCH)
	if have == drv.SHA256 {
		// Right bytes; make sure it is still executable.
		mst, err := r.d.Host.EnsureMode(drv.Path, 0o755)
		if err != nil || mst.Changed {
			return []host.Step{mst}, err
		}
		st.Summary = "unchanged (" + drv.Version + ", sha256 " + drv.SHA256[:12] + ")"
		return []host.Step{st}, nil
	}
	if have != "" {
		// Never replace something that is not a program: a mistyped driver.path must not
		// overwrite a config file or a database.
		if info, err := r.d.Host.Stat(drv.Path); err == nil && info.Mode().Perm()&0o111 == 0 {
			return nil, fmt.Errorf("%s exists and is not executable, so it is not an earlier driver: refusing to replace it; move it away or fix fargate.driver.path", drv.Path)
		}
	}
	if have == "" {
		st.Summary = fmt.Sprintf("installed %s from %s", drv.Version, src)
	} else {
		st.Summary = fmt.Sprintf("replaced (sha256 %s) with %s from %s", have[:12], drv.Version, src)
	}
	// The download starts on the first read: a plan reads nothing, so it downloads nothing.
	body := &lazyBody{open: func() (io.ReadCloser, error) {
		rc, err := r.openDriver(ctx, src)
		if err != nil {
			return nil, fmt.Errorf("downloading the Fargate driver %s: %w", drv.Version, err)
		}
		return rc, nil
	}}
	defer body.Close()
	sum := sha256.New()
	in := io.TeeReader(io.LimitReader(body, maxDriverBytes+1), sum)
	var n int64
	counted := &countingReader{r: in, n: &n}
	st, err = r.d.Host.Replace(st, drv.Path, counted, 0o755, host.Owner{}, func(string) error {
		if n > maxDriverBytes {
			return fmt.Errorf("%s is larger than %d MiB: is fargate.driver.url the driver binary?", src, maxDriverBytes>>20)
		}
		got := hex.EncodeToString(sum.Sum(nil))
		if got != drv.SHA256 {
			kept := "nothing was installed"
			if have != "" {
				kept = "the driver already at " + drv.Path + " was left in place"
			}
			return fmt.Errorf("SHA-256 mismatch for %s: downloaded %s, fargate.driver.sha256 is %s; %s. "+
				"If you changed fargate.driver.version, put the new release's checksum (sha256sum of the binary) in fargate.driver.sha256; "+
				"otherwise the download was altered or the mirror holds another build", src, got, drv.SHA256, kept)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return []host.Step{st}, nil
}

// isRunningExecutable reports whether info (a file under the root, links followed) is the file
// this process runs from (os.Executable; the same file however it is reached, by a symbolic or a
// hard link). When the executable cannot be found it reports false: the check is a second line
// behind validation's.
func isRunningExecutable(info fs.FileInfo) bool {
	exe, err := os.Executable()
	if err != nil {
		return false
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	self, err := os.Stat(exe)
	return err == nil && os.SameFile(info, self)
}

// lazyBody opens its source on the first Read.
type lazyBody struct {
	open func() (io.ReadCloser, error)
	rc   io.ReadCloser
}

func (l *lazyBody) Read(p []byte) (int, error) {
	if l.rc == nil {
		rc, err := l.open()
		if err != nil {
			return 0, err
		}
		l.rc = rc
	}
	return l.rc.Read(p)
}

func (l *lazyBody) Close() error {
	if l.rc == nil {
		return nil
	}
	return l.rc.Close()
}

// openDriver opens https://, s3://bucket/key or file:// (a path under the
// root) sources. Every body it returns stops with ctx's error once ctx is
// cancelled (a signal), whatever the source.
func (r *Role) openDriver(ctx context.Context, src string) (io.ReadCloser, error) {
	u, err := url.Parse(src)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "s3":
		if r.d.Objects == nil {
			return nil, errors.New("no S3 client")
		}
		rc, _, err := r.d.Objects.Open(ctx, u.Host, strings.TrimPrefix(u.Path, "/"))
		if err != nil {
			return nil, err
		}
		return ctxBody(ctx, rc), nil
	case "file":
		f, err := r.d.Host.Open(u.Path)
		if errors.Is(err, fs.ErrNotExist) {
			if r.d.Host.Live() {
				return nil, fmt.Errorf("fargate.driver.url %s: %s does not exist: put the driver there or fix fargate.driver.url", src, u.Path)
			}
			return nil, fmt.Errorf("fargate.driver.url %s: %s does not exist (file:// paths are read under --root %s): put the driver there or fix fargate.driver.url",
				src, filepath.Join(r.d.Host.Root, u.Path), r.d.Host.Root)
		}
		if err != nil {
			return nil, err
		}
		if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
			f.Close()
			if err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%s is not a regular file (%s): fargate.driver.url file:// must name the driver binary itself", u.Path, fileKind(info.Mode()))
		}
		return ctxBody(ctx, f), nil
	case "https":
		return httpsDriver(ctx, driverClient(), src, driverStall)
	default:
		return nil, fmt.Errorf("unsupported scheme %q in %s", u.Scheme, src)
	}
}

// Timeouts of a driver download. None bounds the whole transfer (a 20 MB binary over a slow NAT
// may take minutes); instead driverStall bounds how long the body may send nothing.
const (
	driverDialTimeout   = 30 * time.Second
	driverTLSTimeout    = 15 * time.Second
	driverHeaderTimeout = 30 * time.Second
	driverStall         = 60 * time.Second
)

// driverClient is the HTTP client of https:// driver downloads: the proxy from the environment
// (HTTPS_PROXY, NO_PROXY: fronts often reach the internet through one), the system's roots
// (SSL_CERT_FILE / SSL_CERT_DIR override them), and connect, TLS handshake and response header
// timeouts, so a black-holed mirror fails with a message instead of hanging an apply forever.
// Redirects are followed (GitLab's bucket answers directly; a mirror may redirect).
func driverClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: driverDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   driverTLSTimeout,
		ResponseHeaderTimeout: driverHeaderTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1,
		IdleConnTimeout:       10 * time.Second,
	}}
}

// httpsDriver GETs src with client. The body stops with ctx's error when ctx is cancelled, and
// with a "sent nothing for STALL" error when the server goes quiet for stall.
func httpsDriver(ctx context.Context, client *http.Client, src string, stall time.Duration) (io.ReadCloser, error) {
	host := src
	if u, err := url.Parse(src); err == nil {
		host = u.Host
	}
	rctx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, src, nil)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel(nil)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w (the front needs HTTPS egress to %s, or set fargate.driver.url to a mirror: s3://bucket/key)", err, host)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel(nil)
		return nil, fmt.Errorf("GET %s: HTTP %d; check fargate.driver.version (a release tag such as v0.5.1) and fargate.driver.url", src, resp.StatusCode)
	}
	stalled := fmt.Errorf("%s sent nothing for %s: the download stalled; check the front's egress to %s (or its proxy), or use an s3:// mirror", src, stall, host)
	timer := time.AfterFunc(stall, func() { cancel(stalled) })
	return &watchedBody{ctx: rctx, r: resp.Body, stalled: stalled, touch: func() { timer.Reset(stall) }, close: func() error {
		timer.Stop()
		cancel(nil)
		return resp.Body.Close()
	}}, nil
}

// fileKind names a non-regular file type for a message.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return m.Type().String()
}

// ctxBody makes rc's reads fail with ctx's error once ctx is cancelled. Reads from a regular file
// or an S3 body return quickly, so checking between reads stops a copy within one buffer.
func ctxBody(ctx context.Context, rc io.ReadCloser) io.ReadCloser {
	return &watchedBody{ctx: ctx, r: rc, touch: func() {}, close: rc.Close}
}

// watchedBody is a download body that checks ctx before each read and reports progress (touch)
// after each read that returned bytes. When ctx was cancelled because the transfer stalled, the
// read fails with the stalled error, else with ctx's error.
type watchedBody struct {
	ctx     context.Context
	r       io.Reader
	stalled error
	touch   func()
	close   func() error
}

func (w *watchedBody) Read(p []byte) (int, error) {
	if w.ctx.Err() != nil {
		return 0, w.err()
	}
	n, err := w.r.Read(p)
	if n > 0 {
		w.touch()
	}
	if err != nil && err != io.EOF && w.ctx.Err() != nil {
		return n, w.err()
	}
	return n, err
}

func (w *watchedBody) err() error {
	if w.stalled != nil && context.Cause(w.ctx) == w.stalled {
		return w.stalled
	}
	return w.ctx.Err()
}

func (w *watchedBody) Close() error { return w.close() }

type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

func fsMode(m uint32) fs.FileMode { return fs.FileMode(m) }

func renderTOML(v any) ([]byte, error) { return render.TOML(v) }
