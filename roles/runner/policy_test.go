package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/glbootstrap/glbootstrap/internal/aws/awscfg"
	"github.com/glbootstrap/glbootstrap/internal/aws/ec2"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecr"
	"github.com/glbootstrap/glbootstrap/internal/aws/ecs"
	"github.com/glbootstrap/glbootstrap/internal/aws/iam"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
	"github.com/glbootstrap/glbootstrap/internal/role"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/roles/runner/preflight"
)

const (
	testAccount = "123456789012"
	testSHA     = "1ea4b551b3c4e28f897f168e1de8347c95c2d047062cda3a42ce8d1ef5cb6776"
)

// policyCase is one configuration of the golden tests.
type policyCase struct {
	yaml  string
	facts PolicyFacts
	// notes are substrings the notes must hold, in order.
	notes []string
}

func policyCases() map[string]policyCase {
	st := &testenv.Stack{DriverSHA256: testSHA, DriverURL: "s3://glbootstrap-demo-artifacts/fargate/v0.5.1/fargate-linux-amd64"}
	reference := st.RunnerConfig(testenv.CreateAuth, "")
	st.DriverURL = "https://gitlab-runner-custom-fargate-downloads.s3.amazonaws.com/v0.5.1/fargate-linux-amd64"
	full := st.RunnerConfig("  token_parameter: /ci/runner-token\n", "")
	full = strings.Replace(full, "  private_url_parameter: /glbootstrap/gitlab/private-url\n", "  private_url: https://10.0.1.10\n", 1)
	full = strings.Replace(full, "  cluster: ci-cluster\n", "  cluster: arn:aws:ecs:eu-west-1:210987654321:cluster/ci-cluster\n  region: eu-west-1\n", 1)
	full = strings.Replace(full, "  task_definition: ci-coordinator:1\n", "  task_definition: ci-coordinator\n", 1)
	full = strings.Replace(full, "  enable_public_ip: false\n", "  enable_public_ip: true\n", 1)
	full = strings.Replace(full, "runner:\n", "runner:\n  cache: {bucket: ci-cache, path: gitlab-runner/cache/, shared: true}\n", 1)
	full += "coordinator:\n  repository: 210987654321.dkr.ecr.eu-west-1.amazonaws.com/ci/coordinator\n" +
		"  codebuild_project: ci-coordinator-build\n  bucket: ci-build-contexts\n"
	place := iampolicy.Place{Region: "us-east-2", Account: testAccount}
	return map[string]policyCase{
		"reference": {yaml: reference, facts: PolicyFacts{Place: place, Source: "ssm:/glbootstrap/runner/config",
			InstanceRole: "glbootstrap-runner-front", TaskRoles: []string{testenv.StackTaskRole, testenv.StackExecutionRole}},
			notes: []string{"no kms:Decrypt is granted", "without a coordinator section"}},
		"full": {yaml: full, facts: PolicyFacts{Place: place, FargateRegion: "eu-west-1", Source: "s3://ci-config/runner.yaml"},
			notes: []string{"no kms:Decrypt", "could not be looked up: replace the placeholder", "CoordinatorBuildLogs assumes project ci-coordinator-build", "every role of the account"}},
	}
}

// TestPolicyGolden: the policy of each configuration is testdata/policy-<case>.json (refresh
// with -update and review the diff), IAM's grammar holds (iampolicy.Check), the JSON parses, and
// the notes say what the policy could not know.
func TestPolicyGolden(t *testing.T) {
	for name, tc := range policyCases() {
		t.Run(name, func(t *testing.T) {
			cfg, ps := parseDoc([]byte(tc.yaml), Name)
			if cfg == nil || ps.Err() != nil {
				t.Fatalf("config: %v", ps.Err())
			}
			d := policy(cfg, tc.facts)
			if err := d.Policy.Check(); err != nil {
				t.Fatal(err)
			}
			got, err := d.Policy.JSON()
			if err != nil {
				t.Fatal(err)
			}
			var back iampolicy.Policy
			dec := json.NewDecoder(bytes.NewReader(got))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&back); err != nil || back.Version != iampolicy.Version || len(back.Statement) != len(d.Policy.Statement) {
				t.Fatalf("the JSON does not read back: %v\n%s", err, got)
			}
			golden := filepath.Join("testdata", "policy-"+name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("policy differs from %s (run with -update and review the diff):\n%s", golden, got)
			}
			notes := strings.Join(d.Notes, "\n")
			last := 0
			for _, n := range tc.notes {
				i := strings.Index(notes[last:], n)
				if i < 0 {
					t.Errorf("notes lack %q (in order):\n%s", n, notes)
					break
				}
				last += i + len(n)
			}
			// Same configuration, same bytes.
			again, _ := policy(cfg, tc.facts).Policy.JSON()
			if !bytes.Equal(again, got) {
				t.Error("the policy is not deterministic")
			}
		})
	}
}

// TestPolicyFollowsConfig: what each setting adds or removes, for the statements a golden file
// would only show once.
func TestPolicyFollowsConfig(t *testing.T) {
	cases := policyCases()
	cfg, _ := parseDoc([]byte(cases["reference"].yaml), Name)
	f := cases["reference"].facts
	sids := func(p iampolicy.Policy) []string {
		var out []string
		for _, s := range p.Statement {
			out = append(out, s.Sid)
		}
		return out
	}
	ref := policy(cfg, f).Policy
	if slices.Contains(sids(ref), "FindTaskPublicIP") || slices.Contains(sids(ref), "CoordinatorBuild") {
		t.Errorf("reference: %v", sids(ref))
	}
	f.TaskRoles = []string{}
	if slices.Contains(sids(policy(cfg, f).Policy), "PassTaskRoles") {
		t.Error("a task definition without roles still passes roles")
	}
	f.Source = "/etc/glbootstrap/runner.yaml"
	for _, s := range policy(cfg, f).Policy.Statement {
		for _, r := range s.Resource {
			if strings.Contains(r, "runner/config") {
				t.Errorf("a file source still grants %s", r)
			}
		}
	}
}

// recordingIAM asks the IAM stand-in through the real SDK client and records every question.
type recordingIAM struct {
	*iam.Client
	role string
	asks []iampolicy.Ask
}

func (r *recordingIAM) InstanceRole(context.Context) (string, error) { return r.role, nil }

func (r *recordingIAM) Simulate(ctx context.Context, principal string, a iampolicy.Ask) ([]iamtypes.EvaluationResult, error) {
	r.asks = append(r.asks, a)
	return r.Client.Simulate(ctx, principal, a)
}

// TestPreflightAsksExactlyThePolicy runs the preflight phase as apply wires it on the reference
// setup and checks that the IAM simulator was asked every action of the policy iam-policy prints
// for the same configuration, on that statement's resources, and nothing else: the two cannot
// drift. The reference role of the stand-in has that policy, so the iam check passes.
func TestPreflightAsksExactlyThePolicy(t *testing.T) {
	v := testenv.DefaultIMDSValues()
	st := &testenv.Stack{}
	st.StartFargate(v)
	t.Cleanup(func() { st.ECS.Close(); st.EC2.Close(); st.ECR.Close(); st.IAM.Close() })
	const driver = "#!/bin/sh\necho driver\n"
	st.DriverSHA256, st.DriverURL = sha256Hex(driver), "s3://glbootstrap-demo-artifacts/fargate"
	for name, extra := range map[string]string{
		"reference": "",
		"coordinator and public IP": "coordinator:\n  repository: " + testAccount + ".dkr.ecr." + v.Region + ".amazonaws.com/ci-coordinator\n" +
			"  codebuild_project: ci-coordinator-build\n  bucket: glbootstrap-demo-artifacts\n",
	} {
		t.Run(name, func(t *testing.T) {
			doc := st.RunnerConfig(testenv.CreateAuth, "") + extra
			if extra != "" {
				doc = strings.Replace(doc, "enable_public_ip: false", "enable_public_ip: true", 1)
			}
			cfg, ps := parseDoc([]byte(doc), Name)
			if cfg == nil || ps.Err() != nil {
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
			h, err := host.New(root, false)
			if err != nil {
				t.Fatal(err)
			}
			rec := &recordingIAM{Client: iam.New(awsCfg), role: testenv.StackFrontRole}
			const source = "ssm:/glbootstrap/runner/config"
			r := &Role{cfg: cfg, facts: Facts{Region: v.Region, SubnetID: v.SubnetID, InstanceID: v.InstanceID, PrivateIPv4: v.LocalIPv4, SecurityGroups: v.SecurityGroupIDs},
				d: Deps{Host: h, Config: cfg, Source: source, NewPreflight: func(string) (preflight.Readers, error) {
					return preflight.Readers{ECS: ecs.New(awsCfg), EC2: ec2.New(awsCfg), ECR: ecr.New(awsCfg), IAM: rec}, nil
				}}}
			steps, _ := r.preflight(context.Background()) // the driver is not installed here: that check fails
			var iamStep string
			for _, s := range steps {
				if strings.HasPrefix(s.Summary, "iam ") {
					iamStep = s.Summary + s.Warning
				}
			}
			if !strings.HasPrefix(iamStep, "iam ok") {
				t.Errorf("iam check: %q", iamStep)
			}

			d, err := Policy(context.Background(), cfg, role.PolicyInput{
				Place:  iampolicy.Place{Region: v.Region, Account: testAccount},
				Source: source, InstanceRole: "glbootstrap-runner-front",
				TaskRoles: func(context.Context, string, string) ([]string, error) {
					return []string{testenv.StackTaskRole, testenv.StackExecutionRole}, nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			want := askSet(d.Policy.Asks())
			got := askSet(rec.asks)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("the preflight asked:\n  %s\nthe policy lists:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			actions := map[string]bool{}
			for _, a := range rec.asks {
				actions[a.Action] = true
			}
			for _, a := range d.Policy.Actions() {
				if !actions[a] {
					t.Errorf("policy action %s was not asked", a)
				}
			}
			if len(actions) != len(d.Policy.Actions()) {
				t.Errorf("asked %d actions, the policy has %d", len(actions), len(d.Policy.Actions()))
			}
		})
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// askSet is each question as "action resources context", sorted.
func askSet(asks []iampolicy.Ask) []string {
	var out []string
	for _, a := range asks {
		out = append(out, fmt.Sprintf("%s %v %v", a.Action, a.Resources, a.Context))
	}
	sort.Strings(out)
	return out
}
