package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	"github.com/glbootstrap/glbootstrap/internal/aws/ec2"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecr"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecs"
	"github.com/glbootstrap/glbootstrap/internal/aws/iam"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/roles/runner/preflight"
)

// TestPreflightPhase runs the phase on the reference setup (the checks themselves are tested in
// roles/runner/preflight): the directories the directories phase makes are the ones the check
// looks at (one list), every check passes but capacity (187 free addresses for concurrent 200)
// and iam (no instance metadata here, so it could not check), both warnings, so the phase
// succeeds and changes nothing; a failing check fails the phase with the check and its fix.
func TestPreflightPhase(t *testing.T) {
	v := testenv.DefaultIMDSValues()
	st := &testenv.Stack{}
	st.StartFargate(v)
	t.Cleanup(func() { st.ECS.Close(); st.EC2.Close(); st.ECR.Close(); st.IAM.Close() })
	const driver = "#!/bin/sh\necho driver\n"
	sum := sha256.Sum256([]byte(driver))
	st.DriverSHA256, st.DriverURL = hex.EncodeToString(sum[:]), "s3://bucket/fargate"
	cfg, ps := parseDoc([]byte(st.RunnerConfig(testenv.CreateAuth, "")), Name)
	if cfg == nil {
		t.Fatal(ps.Err())
	}
	testenv.SetAWSEnv(t, map[string]string{
		"AWS_REGION": v.Region, "AWS_MAX_ATTEMPTS": "1", "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_ENDPOINT_URL_ECS": st.ECS.URL(), "AWS_ENDPOINT_URL_EC2": st.EC2.URL(),
		"AWS_ENDPOINT_URL_ECR": st.ECR.URL(), "AWS_ENDPOINT_URL_IAM": st.IAM.URL(),
	})
	awsCfg, err := awscfg.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := testenv.SeedRunnerRoot(root, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "opt/gitlab-runner"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, cfg.Fargate.Driver.Path), []byte(driver), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := host.New(root, false)
	if err != nil {
		t.Fatal(err)
	}
	r := &Role{cfg: cfg, facts: Facts{Region: v.Region, SubnetID: v.SubnetID, InstanceID: v.InstanceID, PrivateIPv4: v.LocalIPv4, SecurityGroups: v.SecurityGroupIDs},
		d: Deps{Host: h, Config: cfg, NewPreflight: func(string) (preflight.Readers, error) {
			return preflight.Readers{ECS: ecs.New(awsCfg), EC2: ec2.New(awsCfg), ECR: ecr.New(awsCfg), IAM: iam.New(awsCfg)}, nil
		}}}
	if _, err := r.directories(context.Background()); err != nil {
		t.Fatal(err)
	}
	steps, err := r.preflight(context.Background())
	if err != nil {
		t.Fatalf("preflight on the reference setup: %v", err)
	}
	var warnings []string
	dirsOK := false
	for _, s := range steps {
		if s.Kind != "check" || s.Changed {
			t.Errorf("step %+v", s)
		}
		if s.Warning != "" {
			warnings = append(warnings, strings.Fields(s.Summary)[0])
		}
		dirsOK = dirsOK || strings.HasPrefix(s.Summary, "directories ok")
	}
	if len(steps) != preflight.Len() || strings.Join(warnings, ",") != "capacity,iam" || !dirsOK {
		t.Fatalf("%d steps, warnings %v: %+v", len(steps), warnings, steps)
	}

	st.ECS.PutCluster(testenv.ECSCluster{Name: "ci-cluster"})
	_, err = r.preflight(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 preflight check(s) failed") ||
		!strings.Contains(err.Error(), "[cluster] cluster ci-cluster: it has no default capacity provider strategy") ||
		!strings.Contains(err.Error(), "fix: aws ecs put-cluster-capacity-providers") {
		t.Fatalf("err = %v", err)
	}
}
