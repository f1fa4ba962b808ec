package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// imdsMockPackage is AWS's metadata mock, declared as a tool in go.mod so `go build` resolves it
// at the module's pinned version.
const imdsMockPackage = "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock"

// IMDSValues are the instance facts the metadata mock serves. Empty fields take the values of
// DefaultIMDSValues (the reference setup), so a test sets only what it cares about.
type IMDSValues struct {
	Region           string   // placement/region, e.g. us-east-2
	InstanceID       string   // instance-id
	InstanceType     string   // instance-type (and instanceType in the identity document)
	LocalIPv4        string   // local-ipv4
	MAC              string   // mac; the network/interfaces/macs/<MAC>/... paths are served under it
	SubnetID         string   // .../subnet-id
	SecurityGroupIDs []string // .../security-group-ids, served newline-separated
	VPCID            string   // .../vpc-id
	VPCCIDR          string   // .../vpc-ipv4-cidr-block (and vpc-ipv4-cidr-blocks)
	AccountID        string   // accountId in dynamic/instance-identity/document
}

// DefaultIMDSValues returns the reference setup's instance facts.
func DefaultIMDSValues() IMDSValues {
	return IMDSValues{
		Region:           "us-east-2",
		InstanceID:       "i-0123456789abcdef0",
		InstanceType:     "t3.small",
		LocalIPv4:        "10.0.1.20",
		MAC:              "0e:49:61:0f:c3:11",
		SubnetID:         "subnet-0123456789abcdef0",
		SecurityGroupIDs: []string{"sg-0aaaaaaaaaaaaaaaa"},
		VPCID:            "vpc-0123456789abcdef0",
		VPCCIDR:          "10.0.0.0/16",
		AccountID:        "123456789012",
	}
}

func (v IMDSValues) withDefaults() IMDSValues {
	d := DefaultIMDSValues()
	set := func(p *string, def string) {
		if *p == "" {
			*p = def
		}
	}
	set(&v.Region, d.Region)
	set(&v.InstanceID, d.InstanceID)
	set(&v.InstanceType, d.InstanceType)
	set(&v.LocalIPv4, d.LocalIPv4)
	set(&v.MAC, d.MAC)
	set(&v.SubnetID, d.SubnetID)
	set(&v.VPCID, d.VPCID)
	set(&v.VPCCIDR, d.VPCCIDR)
	set(&v.AccountID, d.AccountID)
	if len(v.SecurityGroupIDs) == 0 {
		v.SecurityGroupIDs = d.SecurityGroupIDs
	}
	return v
}

// imdsMockConfig renders the mock's JSON config (same shape as its
// pkg/config/defaults/aemm-metadata-default-values.json). The mock rewrites the MAC inside the
// mac-* paths itself when metadata.values.mac changes, but only by replacing its default MAC
// string; the paths are written out explicitly so the result does not depend on that.
func imdsMockConfig(v IMDSValues) ([]byte, error) {
	macPath := "/latest/meta-data/network/interfaces/macs/" + v.MAC + "/"
	sgs := strings.Join(v.SecurityGroupIDs, "\n")
	cfg := map[string]any{
		"metadata": map[string]any{
			"paths": map[string]any{
				"mac-device-number":                macPath + "device-number",
				"mac-local-ipv4s":                  macPath + "local-ipv4s",
				"mac-mac":                          macPath + "mac",
				"mac-network-interface-id":         macPath + "interface-id",
				"mac-network-interface-card-index": macPath + "network-card-index",
				"mac-owner-id":                     macPath + "owner-id",
				"mac-security-group-ids":           macPath + "security-group-ids",
				"mac-subnet-id":                    macPath + "subnet-id",
				"mac-vpc-id":                       macPath + "vpc-id",
				"mac-vpc-ipv4-cidr-block":          macPath + "vpc-ipv4-cidr-block",
				"mac-vpc-ipv4-cidr-blocks":         macPath + "vpc-ipv4-cidr-blocks",
			},
			"values": map[string]any{
				"placement-region":            v.Region,
				"placement-availability-zone": v.Region + "a",
				"instance-id":                 v.InstanceID,
				"instance-type":               v.InstanceType,
				"local-ipv4":                  v.LocalIPv4,
				"mac":                         v.MAC,
				"mac-mac":                     v.MAC,
				"mac-local-ipv4s":             v.LocalIPv4,
				"mac-owner-id":                v.AccountID,
				"mac-subnet-id":               v.SubnetID,
				"mac-security-group-ids":      sgs,
				"mac-vpc-id":                  v.VPCID,
				"mac-vpc-ipv4-cidr-block":     v.VPCCIDR,
				"mac-vpc-ipv4-cidr-blocks":    v.VPCCIDR,
			},
		},
		"dynamic": map[string]any{
			"values": map[string]any{
				// The whole document: the mock decodes it into a struct, not key by key.
				"instance-identity-document": map[string]any{
					"accountId":               v.AccountID,
					"imageId":                 "ami-0123456789abcdef0",
					"availabilityZone":        v.Region + "a",
					"ramdiskId":               nil,
					"kernelId":                nil,
					"devpayProductCodes":      nil,
					"marketplaceProductCodes": nil,
					"version":                 "2017-09-30",
					"privateIp":               v.LocalIPv4,
					"billingProducts":         nil,
					"instanceId":              v.InstanceID,
					"pendingTime":             "2024-01-01T00:00:00Z",
					"architecture":            "x86_64",
					"instanceType":            v.InstanceType,
					"region":                  v.Region,
				},
			},
		},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// IMDS is a running amazon-ec2-metadata-mock process serving IMDSv2 only.
type IMDS struct {
	endpoint string
	cmd      *exec.Cmd
	dir      string
	out      *imdsOutputBuffer
	done     chan struct{} // closed when the process has exited
	waitErr  error
	once     sync.Once
}

// Endpoint is the base URL to put in AWS_EC2_METADATA_SERVICE_ENDPOINT, e.g. http://127.0.0.1:41236.
func (m *IMDS) Endpoint() string { return m.endpoint }

// Output returns what the mock printed so far (stdout and stderr), for test failure messages.
func (m *IMDS) Output() string { return m.out.String() }

// Close kills the mock, waits for it and removes its config. Safe to call more than once.
func (m *IMDS) Close() {
	m.once.Do(func() {
		if m.cmd.Process != nil {
			_ = m.cmd.Process.Kill()
		}
		<-m.done
		_ = os.RemoveAll(m.dir)
	})
}

// StartIMDS runs the metadata mock (see IMDSMockBinary) with IMDSv2 only (-I) on a free
// 127.0.0.1 port, serving v (empty fields take DefaultIMDSValues), and waits until it hands out
// tokens. The process is killed when ctx ends or Close is called.
func StartIMDS(ctx context.Context, v IMDSValues) (*IMDS, error) {
	bin, err := IMDSMockBinary()
	if err != nil {
		return nil, err
	}
	cfg, err := imdsMockConfig(v.withDefaults())
	if err != nil {
		return nil, fmt.Errorf("rendering metadata mock config: %w", err)
	}
	// The free port is found by binding and releasing it, so another process can take it in
	// between; a mock that exits at once is retried on a new port.
	var lastErr error
	for range 3 {
		m, err := startIMDSOnce(ctx, bin, cfg)
		if err == nil {
			return m, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func startIMDSOnce(ctx context.Context, bin string, cfg []byte) (*IMDS, error) {
	port, err := imdsFreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "glb-imds-mock-")
	if err != nil {
		return nil, fmt.Errorf("creating metadata mock dir: %w", err)
	}
	cfgPath := filepath.Join(dir, "aemm-config.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("writing metadata mock config: %w", err)
	}

	m := &IMDS{
		endpoint: "http://127.0.0.1:" + strconv.Itoa(port),
		dir:      dir,
		out:      &imdsOutputBuffer{},
		done:     make(chan struct{}),
	}
	m.cmd = exec.CommandContext(ctx, bin, "-I", "-n", "127.0.0.1", "-p", strconv.Itoa(port), "-c", cfgPath)
	m.cmd.Dir = dir
	// The mock reads AEMM_* variables over its config and $HOME/aemm-config.json when -c is
	// missing; give it a clean slate so the machine's environment cannot change what it serves.
	m.cmd.Env = append(imdsFilterEnv(os.Environ(), "AEMM_"), "HOME="+dir)
	m.cmd.Stdout = m.out
	m.cmd.Stderr = m.out
	if err := m.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting metadata mock %s: %w", bin, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.done)
	}()

	if err := m.waitReady(ctx, 15*time.Second); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// waitReady polls the token endpoint: the mock is ready when a PUT /latest/api/token succeeds.
func (m *IMDS) waitReady(ctx context.Context, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, m.endpoint+"/latest/api/token", nil)
		if err != nil {
			return err
		}
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-m.done:
			return fmt.Errorf("metadata mock exited before serving (%v); output:\n%s", m.waitErr, m.out.String())
		case <-ctx.Done():
			return fmt.Errorf("waiting for metadata mock at %s: %w", m.endpoint, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("metadata mock at %s did not answer within %s; output:\n%s", m.endpoint, limit, m.out.String())
		}
	}
}

// IMDSMockBinary returns the path of an amazon-ec2-metadata-mock executable: $GLB_IMDS_MOCK when
// set, else one built with `go build` from the module's tool dependency into
// os.UserCacheDir()/glbootstrap/ec2-metadata-mock/<version>/. The build runs once per version;
// concurrent callers (parallel test packages) serialise on a file lock and the binary is built
// to a temporary name and renamed, so nobody ever runs a half-written file. Must run inside the
// module (tests do) and needs the go command.
func IMDSMockBinary() (string, error) {
	if p := os.Getenv("GLB_IMDS_MOCK"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("GLB_IMDS_MOCK: %w", err)
		}
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding a cache dir for the metadata mock (or set GLB_IMDS_MOCK): %w", err)
	}
	version, err := imdsGoOutput("list", "-m", "-f", "{{.Version}}", "github.com/aws/amazon-ec2-metadata-mock")
	if err != nil {
		return "", fmt.Errorf("finding the metadata mock's version in go.mod: %w", err)
	}
	dir := filepath.Join(cache, "glbootstrap", "ec2-metadata-mock", version)
	bin := filepath.Join(dir, "ec2-metadata-mock")
	if imdsIsExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	lock := flock.New(filepath.Join(dir, ".build.lock"))
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if ok, err := lock.TryLockContext(lctx, 200*time.Millisecond); err != nil || !ok {
		return "", fmt.Errorf("locking %s to build the metadata mock: %v", dir, err)
	}
	defer func() { _ = lock.Unlock() }()
	if imdsIsExecutable(bin) { // built by whoever held the lock before us
		return bin, nil
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	if _, err := imdsGoOutput("build", "-o", tmp, imdsMockPackage); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("building the metadata mock: %w", err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("installing the metadata mock: %w", err)
	}
	return bin, nil
}

func imdsGoOutput(args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func imdsIsExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func imdsFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func imdsFilterEnv(env []string, prefix string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(strings.ToUpper(kv), prefix) && !strings.HasPrefix(kv, "HOME=") {
			out = append(out, kv)
		}
	}
	return out
}

// imdsOutputBuffer collects a child's output while tests read it.
type imdsOutputBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *imdsOutputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 64<<10 { // the mock logs every request; keep memory bounded
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *imdsOutputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
