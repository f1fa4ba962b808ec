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
	"os"
	"runtime"
	"strings"

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
	have, err := r.d.Host.FileSHA256(drv.Path)
	if err != nil {
		return nil, err
	}
	src := drv.DownloadURL(runtime.GOARCH)
	if have == drv.SHA256 {
		// Right bytes; make sure it is still executable.
		mst, err := r.ensureMode(drv.Path, 0o755)
		if err != nil || mst.Changed {
			return []host.Step{mst}, err
		}
		st.Summary = "unchanged (" + drv.Version + ", sha256 " + drv.SHA256[:12] + ")"
		return []host.Step{st}, nil
	}
	if have != "" {
		// Never replace something that is not a program: a mistyped driver.path must not
		// overwrite a config file or a database.
		if info, err := os.Stat(r.d.Host.Path(drv.Path)); err == nil && info.Mode().Perm()&0o111 == 0 {
			return nil, fmt.Errorf("%s exists and is not executable, so it is not an earlier driver: refusing to replace it; move it away or fix fargate.driver.path", drv.Path)
		}
	}
	st.Changed = true
	if have == "" {
		st.Summary = fmt.Sprintf("installed %s from %s", drv.Version, src)
	} else {
		st.Summary = fmt.Sprintf("replaced (sha256 %s) with %s from %s", have[:12], drv.Version, src)
	}
	if r.d.Host.DryRun {
		st.Summary = "would be " + st.Summary
		return []host.Step{st}, nil
	}
	body, err := r.openDriver(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("downloading the Fargate driver %s: %w", drv.Version, err)
	}
	defer body.Close()
	sum := sha256.New()
	in := io.TeeReader(io.LimitReader(body, maxDriverBytes+1), sum)
	var n int64
	counted := &countingReader{r: in, n: &n}
	err = r.d.Host.WriteAtomic(drv.Path, counted, 0o755, host.Owner{}, func(string) error {
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
		return os.Open(r.d.Host.Path(u.Path))
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

// ensureMode fixes only the permission bits of an existing file.
func (r *Role) ensureMode(p string, mode fs.FileMode) (host.Step, error) {
	st := host.Step{Kind: "file", Target: p}
	info, err := os.Stat(r.d.Host.Path(p))
	if err != nil {
		return st, err
	}
	if info.Mode().Perm() == mode {
		return st, nil
	}
	st.Changed = true
	st.Summary = fmt.Sprintf("mode %04o -> %04o", info.Mode().Perm(), mode)
	if r.d.Host.DryRun {
		st.Summary = "would be " + st.Summary
		return st, nil
	}
	return st, os.Chmod(r.d.Host.Path(p), mode)
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
