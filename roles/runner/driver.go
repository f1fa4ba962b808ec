package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"runtime"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/render"
)

// maxDriverBytes bounds a driver download (the release binaries are ~20 MB).
const maxDriverBytes = 256 << 20

// fargateDriver installs the pinned driver: when the file at driver.path
// already has the pinned SHA-256 nothing is downloaded; otherwise the
// download streams into a temp file beside the target, is hashed on the
// way, and replaces the old binary only when the hash matches.
func (r *Role) fargateDriver(ctx context.Context) ([]host.Step, error) {
	drv := r.cfg.Fargate.Driver
	st := host.Step{Kind: "download", Target: drv.Path}
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
// root) sources.
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
		return rc, err
	case "file":
		return r.d.Host.Open(u.Path)
	case "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, err
		}
		client := r.d.HTTP
		if client == nil {
			client = http.DefaultClient
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%w (the front needs HTTPS egress to %s, or set fargate.driver.url to a mirror: s3://bucket/key)", err, u.Host)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: HTTP %d; check fargate.driver.version (a release tag such as v0.5.1) and fargate.driver.url", src, resp.StatusCode)
		}
		return resp.Body, nil
	default:
		return nil, fmt.Errorf("unsupported scheme %q in %s", u.Scheme, src)
	}
}

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
