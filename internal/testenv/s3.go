package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// S3 is an in-process S3 (gofakes3 with its in-memory backend) speaking the real S3 REST/XML
// protocol. Point the SDK at it with AWS_ENDPOINT_URL_S3=URL(); the client must use path-style
// addressing, since http://bucket.127.0.0.1:port cannot resolve.
type S3 struct {
	backend *s3mem.Backend
	srv     *httptest.Server

	mu         sync.Mutex
	regions    map[string]string // bucket → region for GetBucketLocation (gofakes3 has none)
	deniedKMS  map[string]bool   // KMS key ids the "instance profile" may not use
	failPartNo int               // fail every UploadPart of this part number (0 = never)
	lifecycle  map[string][]byte // bucket → its lifecycle configuration XML (gofakes3 has none)
	truncate   map[string]int64  // bucket/key → bytes GetObject sends before it hangs up
}

// NewS3 starts the stand-in on a random 127.0.0.1 port. Close it when done.
func NewS3() *S3 {
	s := &S3{backend: s3mem.New(), regions: map[string]string{}, deniedKMS: map[string]bool{},
		lifecycle: map[string][]byte{}, truncate: map[string]int64{}}
	s.srv = httptest.NewServer(s.Handler())
	return s
}

// URL is the endpoint to put in AWS_ENDPOINT_URL_S3, e.g. http://127.0.0.1:41235.
func (s *S3) URL() string { return s.srv.URL }

// Close stops the server.
func (s *S3) Close() { s.srv.Close() }

// Handler is the protocol handler, for mounting the stand-in in another server: gofakes3 over
// the shared backend, plus what gofakes3 lacks and AWS does: GetBucketLocation answering the
// bucket's region (CreateBucketIn), AccessDenied for a KMS key the caller may not use
// (DenyKMSKey), and an injected UploadPart failure (FailUploadPart).
func (s *S3) Handler() http.Handler {
	inner := gofakes3.New(s.backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		region, hasRegion := s.regions[bucket]
		lifecycle, hasLifecycle := s.lifecycle[bucket]
		cut, truncated := s.truncate[bucket+"/"+key]
		denied := s.deniedKMS[r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id")]
		failPart := r.Method == http.MethodPut && s.failPartNo > 0 && r.URL.Query().Get("partNumber") == fmt.Sprint(s.failPartNo)
		s.mu.Unlock()
		switch {
		case r.URL.Query().Has("lifecycle") && key == "":
			s.serveLifecycle(w, r, bucket, lifecycle, hasLifecycle)
		case r.Method == http.MethodGet && truncated:
			s.serveTruncated(w, r, inner, cut)
		case r.Method == http.MethodGet && r.URL.Query().Has("location") && hasRegion:
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">%s</LocationConstraint>`, region)
		case denied:
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `<Error><Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/gitlab/i-0123456789abcdef0 is not authorized to perform: kms:GenerateDataKey on resource: %s because no identity-based policy allows the kms:GenerateDataKey action</Message></Error>`, r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"))
		case failPart:
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again. (injected fault)</Message></Error>`)
		default:
			inner.ServeHTTP(w, r)
		}
	})
}

// serveLifecycle answers Get/Put/DeleteBucketLifecycleConfiguration as S3 does: the stored XML,
// or 404 NoSuchLifecycleConfiguration for a bucket without one (gofakes3 has no lifecycle).
func (s *S3) serveLifecycle(w http.ResponseWriter, r *http.Request, bucket string, cfg []byte, has bool) {
	w.Header().Set("Content-Type", "application/xml")
	switch r.Method {
	case http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		s.SetLifecycle(bucket, string(b))
	case http.MethodDelete:
		s.mu.Lock()
		delete(s.lifecycle, bucket)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet:
		if !has {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Error><Code>NoSuchLifecycleConfiguration</Code><Message>The lifecycle configuration does not exist</Message><BucketName>%s</BucketName></Error>`, bucket)
			return
		}
		_, _ = w.Write(cfg)
	}
}

// serveTruncated sends an object's headers (the full Content-Length) and its first cut bytes,
// then hangs up: a download cut off half way.
func (s *S3) serveTruncated(w http.ResponseWriter, r *http.Request, inner http.Handler, cut int64) {
	rec := httptest.NewRecorder()
	inner.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	body := rec.Body.Bytes()
	if int64(len(body)) > cut {
		body = body[:cut]
	}
	_, _ = w.Write(body)
	if hj, ok := w.(http.Hijacker); ok {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
		}
	}
}

// SetLifecycle stores a bucket lifecycle configuration (the XML body of
// PutBucketLifecycleConfiguration), as "aws s3api put-bucket-lifecycle-configuration" does.
func (s *S3) SetLifecycle(bucket, xml string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifecycle[bucket] = []byte(xml)
}

// TruncateDownload makes every GetObject of bucket/key send the object's full Content-Length
// but only its first n bytes, then close the connection: a download cut off half way.
func (s *S3) TruncateDownload(bucket, key string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate[bucket+"/"+key] = n
}

// CreateBucketIn creates a bucket that GetBucketLocation reports in region.
func (s *S3) CreateBucketIn(name, region string) {
	s.CreateBucket(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.regions[name] = region
}

// DenyKMSKey makes uploads that ask for SSE-KMS with key id fail with AccessDenied naming
// kms:GenerateDataKey, as S3 answers for a key the caller may not use.
func (s *S3) DenyKMSKey(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deniedKMS[id] = true
}

// FailUploadPart makes every upload of part number n fail with a 500 (retries too): an
// upload that breaks half way.
func (s *S3) FailUploadPart(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failPartNo = n
}

// Objects lists the keys under prefix with their sizes (bytes).
func (s *S3) Objects(bucket, prefix string) map[string]int64 {
	out := map[string]int64{}
	list, err := s.backend.ListBucket(bucket, &gofakes3.Prefix{Prefix: prefix, HasPrefix: true}, gofakes3.ListBucketPage{})
	if err != nil {
		return out
	}
	for _, o := range list.Contents {
		out[o.Key] = o.Size
	}
	return out
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

// VirtualHostHandler serves virtual-hosted-style requests, the AWS SDKs' default addressing
// and what gitlab-runner's cache presigns (https://BUCKET.s3[.dualstack].REGION.amazonaws.com/KEY):
// the bucket is what comes before ".s3." in the Host, and the request is served by Handler as
// the path-style /BUCKET/KEY. A host without ".s3." is served as path-style as it is.
func (s *S3) VirtualHostHandler() http.Handler {
	h := s.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
			host = host[:i]
		}
		if bucket, _, ok := strings.Cut(host, ".s3."); ok && bucket != "" {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/" + bucket + r.URL.Path
			r2.URL.RawPath = ""
			h.ServeHTTP(w, r2)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Object returns the content of s3://bucket/key. It panics when there is none, which is a
// mistake in the test.
func (s *S3) Object(bucket, key string) []byte {
	obj, err := s.backend.GetObject(bucket, key, nil)
	if err != nil {
		panic(fmt.Sprintf("testenv: getting s3://%s/%s: %v", bucket, key, err))
	}
	defer obj.Contents.Close()
	b, err := io.ReadAll(obj.Contents)
	if err != nil {
		panic(fmt.Sprintf("testenv: reading s3://%s/%s: %v", bucket, key, err))
	}
	return b
}

// DeleteObject removes s3://bucket/key (no error when it does not exist).
func (s *S3) DeleteObject(bucket, key string) {
	_, _ = s.backend.DeleteObject(bucket, key)
}
