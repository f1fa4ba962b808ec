package testenv

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// S3 is an in-process S3 (gofakes3 with its in-memory backend) speaking the real S3 REST/XML
// protocol. Point the SDK at it with AWS_ENDPOINT_URL_S3=URL(); the client must use path-style
// addressing, since http://bucket.127.0.0.1:port cannot resolve.
type S3 struct {
	backend *s3mem.Backend
	srv     *httptest.Server
}

// NewS3 starts the stand-in on a random 127.0.0.1 port. Close it when done.
func NewS3() *S3 {
	s := &S3{backend: s3mem.New()}
	s.srv = httptest.NewServer(s.Handler())
	return s
}

// URL is the endpoint to put in AWS_ENDPOINT_URL_S3, e.g. http://127.0.0.1:41235.
func (s *S3) URL() string { return s.srv.URL }

// Close stops the server.
func (s *S3) Close() { s.srv.Close() }

// Handler is the protocol handler, for mounting the stand-in in another server. Each call builds
// a new gofakes3 front over the same backend.
func (s *S3) Handler() http.Handler {
	return gofakes3.New(s.backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
}

// CreateBucket creates a bucket. It panics on error (an invalid name or a duplicate), which is a
// mistake in the test.
func (s *S3) CreateBucket(name string) {
	if err := s.backend.CreateBucket(name); err != nil {
		panic(fmt.Sprintf("testenv: creating bucket %s: %v", name, err))
	}
}

// PutObject stores data at bucket/key, replacing any object there. It panics on error (the bucket
// does not exist), which is a mistake in the test.
func (s *S3) PutObject(bucket, key string, data []byte) {
	if _, err := s.backend.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		panic(fmt.Sprintf("testenv: putting s3://%s/%s: %v", bucket, key, err))
	}
}
