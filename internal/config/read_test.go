package config

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fakeParams map[string]string

func (f fakeParams) Get(_ context.Context, name string) (string, error) {
	v, ok := f[name]
	if !ok {
		return "", errors.New("ParameterNotFound")
	}
	return v, nil
}

type fakeObjects struct {
	data        map[string][]byte
	unknownSize bool
	closed      bool
}

func (f *fakeObjects) Open(_ context.Context, bucket, key string) (io.ReadCloser, int64, error) {
	b, ok := f.data[bucket+"/"+key]
	if !ok {
		return nil, 0, errors.New("NoSuchKey")
	}
	size := int64(len(b))
	if f.unknownSize {
		size = -1
	}
	return closer{bytes.NewReader(b), &f.closed}, size, nil
}

type closer struct {
	io.Reader
	closed *bool
}

func (c closer) Close() error { *c.closed = true; return nil }

func TestRead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "runner.yaml")
	if err := os.WriteFile(file, []byte("from file"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("a"), MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	params := fakeParams{"/glb/runner": "from ssm", "/glb/big": strings.Repeat("a", MaxSize+1)}
	objects := &fakeObjects{data: map[string][]byte{"bucket/cfg/runner.yaml": []byte("from s3"), "bucket/big": bytes.Repeat([]byte("a"), MaxSize+1)}}

	tests := []struct {
		name, src, stdin string
		objects          ObjectReader
		want, wantErr    string
	}{
		{name: "file", src: file, want: "from file"},
		{name: "stdin", src: "-", stdin: "from stdin", want: "from stdin"},
		{name: "ssm", src: "ssm:/glb/runner", want: "from ssm"},
		{name: "s3", src: "s3://bucket/cfg/runner.yaml", want: "from s3"},
		{name: "s3 unknown size", src: "s3://bucket/cfg/runner.yaml", objects: &fakeObjects{data: objects.data, unknownSize: true}, want: "from s3"},

		{name: "empty source", src: "", wantErr: `no configuration source given; use a file path, "-" for stdin, ssm:/parameter/name or s3://bucket/key`},
		{name: "unknown scheme", src: "https://example.com/runner.yaml",
			wantErr: `unsupported configuration source "https://example.com/runner.yaml" (scheme "https"); use a file path, "-" for stdin, ssm:/parameter/name or s3://bucket/key`},
		{name: "missing file", src: filepath.Join(dir, "nope.yaml"), wantErr: "reading configuration: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
		{name: "file too large", src: big, wantErr: "reading configuration from " + big + ": the configuration is 1048577 bytes, larger than 1048576 (1 MiB); is this the right file?"},
		{name: "stdin too large", src: "-", stdin: strings.Repeat("a", MaxSize+1), wantErr: "reading configuration from stdin: the configuration is larger than 1048576 bytes (1 MiB); is this the right file?"},
		{name: "ssm name without slash", src: "ssm:glb/runner", wantErr: `configuration source "ssm:glb/runner": the parameter name must be a full path such as ssm:/glbootstrap/runner`},
		{name: "ssm missing", src: "ssm:/glb/none", wantErr: "reading configuration from ssm:/glb/none: ParameterNotFound"},
		{name: "ssm too large", src: "ssm:/glb/big", wantErr: "reading configuration from ssm:/glb/big: the configuration is 1048577 bytes, larger than 1048576 (1 MiB); is this the right file?"},
		{name: "s3 without key", src: "s3://bucket", wantErr: `configuration source "s3://bucket": write it as s3://bucket/key`},
		{name: "s3 missing", src: "s3://bucket/none", wantErr: "reading configuration from s3://bucket/none: NoSuchKey"},
		{name: "s3 too large", src: "s3://bucket/big", wantErr: "reading configuration from s3://bucket/big: the configuration is 1048577 bytes, larger than 1048576 (1 MiB); is this the right file?"},
		{name: "s3 too large, size unknown", src: "s3://bucket/big", objects: &fakeObjects{data: objects.data, unknownSize: true},
			wantErr: "reading configuration from s3://bucket/big: the configuration is larger than 1048576 bytes (1 MiB); is this the right file?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := tt.objects
			if objs == nil {
				objs = objects
			}
			got, err := Read(ctx, tt.src, strings.NewReader(tt.stdin), params, objs)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if !objects.closed {
		t.Error("S3 body was not closed")
	}
}

func TestReadWithoutClients(t *testing.T) {
	ctx := context.Background()
	if _, err := Read(ctx, "ssm:/glb/runner", nil, nil, nil); err == nil || err.Error() != "reading configuration from ssm:/glb/runner: no SSM client" {
		t.Errorf("ssm without client: %v", err)
	}
	if _, err := Read(ctx, "s3://b/k", nil, nil, nil); err == nil || err.Error() != "reading configuration from s3://b/k: no S3 client" {
		t.Errorf("s3 without client: %v", err)
	}
	if _, err := Read(ctx, "-", nil, nil, nil); err == nil || err.Error() != "reading configuration from stdin: no stdin" {
		t.Errorf("stdin without reader: %v", err)
	}
}
