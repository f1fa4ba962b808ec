package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/role"
)

// TestDriverVersionNeedsItsChecksum: the fargate-driver phase records the release it installed;
// a configuration that then changes fargate.driver.version but keeps the old SHA-256 (so the
// phase would keep the old binary and say nothing) is refused as invalid before anything runs,
// naming both keys; changing both is fine.
func TestDriverVersionNeedsItsChecksum(t *testing.T) {
	const binary = "#!/bin/sh\necho driver v0.5.1\n"
	sum := sha256.Sum256([]byte(binary))
	sha := hex.EncodeToString(sum[:])
	root := t.TempDir()
	src := filepath.Join(root, "srv/fargate-v0.5.1")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte(binary), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := func(version, sha string) *Config {
		cfg, ps := parseDoc([]byte("version: 1\ngitlab: {url: https://g.example.com, private_url: https://10.0.1.10}\n"+
			"runner: {concurrent: 1, token_parameter: /glb/token}\n"+
			"fargate: {cluster: c, security_group: sg-0123abcd, task_definition: td, region: us-east-2, subnet: subnet-0123abcd,\n"+
			"  driver: {version: "+version+", sha256: \""+sha+"\", url: \"file:///srv/fargate-v0.5.1\"}}\n"), Name)
		if cfg == nil {
			t.Fatal(ps.Err())
		}
		return cfg
	}
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	r := &Role{cfg: doc("v0.5.1", sha), d: Deps{Host: h}}
	steps, err := r.fargateDriver(context.Background())
	if err != nil || len(steps) != 2 || !steps[0].Changed || !steps[1].Changed || steps[1].Target != DriverRecord {
		t.Fatalf("first install: %v %+v", err, steps)
	}
	if steps, err = r.fargateDriver(context.Background()); err != nil || steps[0].Changed || steps[1].Changed {
		t.Fatalf("second run changed something: %v %+v", err, steps)
	}
	if got, _ := recordedVersion(h, r.cfg.Fargate.Driver); got != "v0.5.1" {
		t.Errorf("recorded %q", got)
	}

	_, err = Prepare(context.Background(), Deps{Host: h, Config: doc("v0.5.2", sha), BakeOnly: true})
	var ce *role.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "fargate.driver.version is v0.5.2 but fargate.driver.sha256 is the SHA-256 of the v0.5.1 binary") ||
		!strings.Contains(err.Error(), "put the SHA-256 of the v0.5.2 release") {
		t.Errorf("version changed without its checksum: %v", err)
	}
	if _, err := Prepare(context.Background(), Deps{Host: h, Config: doc("v0.5.2", strings.Repeat("b", 64)), BakeOnly: true}); err != nil {
		t.Errorf("version and checksum changed together: %v", err)
	}
	if _, err := Prepare(context.Background(), Deps{Host: h, Config: doc("v0.5.1", sha), BakeOnly: true}); err != nil {
		t.Errorf("unchanged pin: %v", err)
	}
}
