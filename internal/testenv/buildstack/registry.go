package buildstack

import (
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is go-containerregistry's in-process OCI registry standing in for an ECR registry's
// image side, tied to an ECR API stand-in: every image pushed through Push is also recorded in
// the ECR stand-in, so DescribeImages answers what the registry holds.
//
// Repositories are named as in ECR; Ref maps an ECR URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME)
// to this registry's host, so tests can check with go-containerregistry what a "push" left.
type Registry struct {
	srv *httptest.Server
	ecr *testenv.ECR
}

// NewRegistry starts the registry on a random 127.0.0.1 port, recording pushes in ecr (which may
// be nil). Close it when done.
func NewRegistry(ecr *testenv.ECR) *Registry {
	return &Registry{srv: httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)))), ecr: ecr}
}

// Host is the registry's host:port.
func (r *Registry) Host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// Close stops the server.
func (r *Registry) Close() { r.srv.Close() }

// Ref is repository:tag in this registry; repository may be an ECR URI, whose host part is
// replaced.
func (r *Registry) Ref(repository, tag string) (name.Tag, error) {
	if i := strings.IndexByte(repository, '/'); i >= 0 && strings.Contains(repository[:i], ".") {
		repository = repository[i+1:]
	}
	return name.NewTag(r.Host()+"/"+repository+":"+tag, name.Insecure)
}

// Push writes a new random image (a stand-in for a docker build's result) to repository under
// every tag and returns its digest.
func (r *Registry) Push(repository string, tags ...string) (string, error) {
	img, err := random.Image(1024, 2)
	if err != nil {
		return "", err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	for _, t := range tags {
		ref, err := r.Ref(repository, t)
		if err != nil {
			return "", err
		}
		if err := remote.Write(ref, img); err != nil {
			return "", fmt.Errorf("pushing %s: %w", ref, err)
		}
		if r.ecr != nil {
			r.ecr.SetTag(ecrName(repository), t, digest.String())
		}
	}
	return digest.String(), nil
}

// Digest returns what repository:tag points to in the registry (a manifest HEAD), or "" when the
// tag does not exist.
func (r *Registry) Digest(repository, tag string) (string, error) {
	ref, err := r.Ref(repository, tag)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(ref)
	if err != nil {
		if strings.Contains(err.Error(), "MANIFEST_UNKNOWN") || strings.Contains(err.Error(), "404") {
			return "", nil
		}
		return "", err
	}
	return desc.Digest.String(), nil
}

// ecrName is the repository name of an ECR URI (or the name itself).
func ecrName(repository string) string {
	if i := strings.IndexByte(repository, '/'); i >= 0 && strings.Contains(repository[:i], ".") {
		return repository[i+1:]
	}
	return repository
}
