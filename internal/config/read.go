package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// MaxSize is the largest configuration Read accepts, in bytes (1 MiB). A real configuration is a few
// KiB; the cap keeps a wrong S3 key or a stray pipe from filling a 1 GiB front's memory.
const MaxSize = 1 << 20

// ParameterReader reads one SSM parameter's value, decrypting a SecureString (SSM GetParameter with
// WithDecryption). internal/aws/ssm implements it.
type ParameterReader interface {
	Get(ctx context.Context, name string) (string, error)
}

// ObjectReader opens one S3 object (S3 GetObject) and returns its body and its size in bytes (-1
// when unknown). The caller closes the body.
type ObjectReader interface {
	Open(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error)
}

// sourceForms is the list of accepted sources, for error messages.
const sourceForms = `a file path, "-" for stdin, ssm:/parameter/name or s3://bucket/key`

var schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*):`)

// Read returns the raw configuration document from src:
//
//   - "-": stdin;
//   - "ssm:/name": the SSM parameter /name (String or SecureString), through params;
//   - "s3://bucket/key": the S3 object, through objects;
//   - anything else without a scheme: a file path (./name to read a file whose name has a colon).
//
// Any other "scheme:" is an error listing the accepted forms. Every source is capped at MaxSize.
// params and objects may be nil when src does not need them.
func Read(ctx context.Context, src string, stdin io.Reader, params ParameterReader, objects ObjectReader) ([]byte, error) {
	switch {
	case src == "":
		return nil, fmt.Errorf("no configuration source given; use %s", sourceForms)
	case src == "-":
		if stdin == nil {
			return nil, errors.New("reading configuration from stdin: no stdin")
		}
		data, err := readCapped(stdin, -1)
		if err != nil {
			return nil, fmt.Errorf("reading configuration from stdin: %w", err)
		}
		return data, nil
	case strings.HasPrefix(src, "ssm:"):
		return readParameter(ctx, src, params)
	case strings.HasPrefix(src, "s3:"):
		return readObject(ctx, src, objects)
	}
	if m := schemeRE.FindStringSubmatch(src); m != nil {
		return nil, fmt.Errorf("unsupported configuration source %q (scheme %q); use %s", src, m[1], sourceForms)
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	defer f.Close()
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	data, err := readCapped(f, size)
	if err != nil {
		return nil, fmt.Errorf("reading configuration from %s: %w", src, err)
	}
	return data, nil
}

func readParameter(ctx context.Context, src string, params ParameterReader) ([]byte, error) {
	name := strings.TrimPrefix(src, "ssm:")
	if !parameterNameRE.MatchString(name) || strings.HasSuffix(name, "/") {
		return nil, fmt.Errorf("configuration source %q: the parameter name must be a full path such as ssm:/glbootstrap/runner", src)
	}
	if params == nil {
		return nil, fmt.Errorf("reading configuration from %s: no SSM client", src)
	}
	v, err := params.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("reading configuration from %s: %w", src, err)
	}
	if len(v) > MaxSize {
		return nil, fmt.Errorf("reading configuration from %s: %w", src, tooLarge(int64(len(v))))
	}
	return []byte(v), nil
}

func readObject(ctx context.Context, src string, objects ObjectReader) ([]byte, error) {
	rest, ok := strings.CutPrefix(src, "s3://")
	bucket, key, _ := strings.Cut(rest, "/")
	if !ok || bucket == "" || key == "" {
		return nil, fmt.Errorf("configuration source %q: write it as s3://bucket/key", src)
	}
	if objects == nil {
		return nil, fmt.Errorf("reading configuration from %s: no S3 client", src)
	}
	body, size, err := objects.Open(ctx, bucket, key)
	if err != nil {
		return nil, fmt.Errorf("reading configuration from %s: %w", src, err)
	}
	defer body.Close()
	data, err := readCapped(body, size)
	if err != nil {
		return nil, fmt.Errorf("reading configuration from %s: %w", src, err)
	}
	return data, nil
}

// readCapped reads r to the end, refusing more than MaxSize bytes: up front when the size is known
// (size >= 0), else as soon as the reader passes the cap.
func readCapped(r io.Reader, size int64) ([]byte, error) {
	if size > MaxSize {
		return nil, tooLarge(size)
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, tooLarge(-1)
	}
	return data, nil
}

func tooLarge(size int64) error {
	if size < 0 {
		return fmt.Errorf("the configuration is larger than %d bytes (1 MiB); is this the right file?", MaxSize)
	}
	return fmt.Errorf("the configuration is %d bytes, larger than %d (1 MiB); is this the right file?", size, MaxSize)
}
