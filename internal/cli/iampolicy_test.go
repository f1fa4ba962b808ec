package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// iamPolicyWorld writes the reference runner configuration to a file and starts the ECS stand-in
// with the reference task definition (its task and execution roles).
func iamPolicyWorld(t *testing.T) (cfgPath string, st *testenv.Stack) {
	t.Helper()
	v := testenv.DefaultIMDSValues()
	st = &testenv.Stack{DriverSHA256: strings.Repeat("ab", 32), DriverURL: "s3://glbootstrap-demo-artifacts/fargate"}
	st.StartFargate(v)
	t.Cleanup(func() { st.ECS.Close(); st.EC2.Close(); st.ECR.Close(); st.IAM.Close() })
	cfgPath = filepath.Join(t.TempDir(), "runner.yaml")
	if err := os.WriteFile(cfgPath, []byte(st.RunnerConfig(testenv.CreateAuth, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, st
}

// decodePolicy parses stdout as an IAM policy and checks IAM's grammar.
func decodePolicy(t *testing.T, stdout string) iampolicy.Policy {
	t.Helper()
	var p iampolicy.Policy
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("stdout is not a policy: %v\n%s", err, stdout)
	}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	return p
}

func statement(p iampolicy.Policy, sid string) iampolicy.Statement {
	for _, s := range p.Statement {
		if s.Sid == sid {
			return s
		}
	}
	return iampolicy.Statement{}
}

// TestIAMPolicyCommand runs "glbootstrap iam-policy" in-process: the task definition's roles are
// looked up through the real SDK's ECS client (on the stand-in), --task-role replaces the
// look-up, an unreachable ECS gives a placeholder and a note, and the account comes from the
// instance identity document of AWS's metadata mock when --account is not given.
func TestIAMPolicyCommand(t *testing.T) {
	cfgPath, st := iamPolicyWorld(t)
	base := []string{"iam-policy", "--role", "runner", "--config", cfgPath}

	t.Run("roles looked up", func(t *testing.T) {
		testenv.SetAWSEnv(t, map[string]string{"AWS_ENDPOINT_URL_ECS": st.ECS.URL(), "AWS_MAX_ATTEMPTS": "1"})
		code, stdout, stderr := run(t, "", append(base, "--account", "123456789012", "--instance-role", "front")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		p := decodePolicy(t, stdout)
		if got := strings.Join(statement(p, "PassTaskRoles").Resource, " "); got != testenv.StackTaskRole+" "+testenv.StackExecutionRole {
			t.Errorf("PassTaskRoles %q", got)
		}
		if got := statement(p, "GlbootstrapChecksSimulate").Resource; len(got) != 1 || got[0] != "arn:aws:iam::123456789012:role/front" {
			t.Errorf("simulate on %v", got)
		}
		if strings.Contains(stderr, "could not be looked up") || !strings.Contains(stderr, "note: no kms:Decrypt") {
			t.Errorf("stderr: %s", stderr)
		}
		// The source is a file: nothing grants reading it; the driver mirror is granted.
		if got := strings.Join(statement(p, "ReadObjects").Resource, " "); got != "arn:aws:s3:::glbootstrap-demo-artifacts/fargate" {
			t.Errorf("ReadObjects %q", got)
		}
	})

	t.Run("task roles given", func(t *testing.T) {
		testenv.SetAWSEnv(t, map[string]string{"AWS_ENDPOINT_URL_ECS": "http://127.0.0.1:1", "AWS_MAX_ATTEMPTS": "1"})
		code, stdout, stderr := run(t, "", append(base, "--account", "123456789012", "--task-role", "arn:aws:iam::123456789012:role/t")...)
		if code != 0 || strings.Join(statement(decodePolicy(t, stdout), "PassTaskRoles").Resource, " ") != "arn:aws:iam::123456789012:role/t" {
			t.Errorf("exit %d: %s\n%s", code, stdout, stderr)
		}
		code, _, stderr = run(t, "", append(base, "--account", "123456789012", "--task-role", "ci-task")...)
		if code != ExitUsage || !strings.Contains(stderr, "is not a role ARN") {
			t.Errorf("bad --task-role: exit %d, %s", code, stderr)
		}
	})

	t.Run("ECS unreachable: placeholder and note", func(t *testing.T) {
		testenv.SetAWSEnv(t, map[string]string{"AWS_ENDPOINT_URL_ECS": "http://127.0.0.1:1", "AWS_MAX_ATTEMPTS": "1"})
		code, stdout, stderr := run(t, "", append(base, "--account", "123456789012")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if got := statement(decodePolicy(t, stdout), "PassTaskRoles").Resource; len(got) != 1 || !strings.Contains(got[0], "REPLACE-WITH-THE-ROLES-OF-TASK-DEFINITION-ci-coordinator") {
			t.Errorf("PassTaskRoles %v", got)
		}
		for _, want := range []string{"note: the task and execution roles of task definition ci-coordinator:1 could not be looked up", "note: looking up the task definition's roles:", "--instance-role"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
	})

	t.Run("off EC2 without --account", func(t *testing.T) {
		testenv.SetAWSEnv(t, nil)
		code, stdout, stderr := run(t, "", base...)
		if code != ExitUsage || stdout != "" || !strings.Contains(stderr, "give --account and --region") {
			t.Errorf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
		}
		code, _, stderr = run(t, "", append(base, "--account", "12345")...)
		if code != ExitUsage || !strings.Contains(stderr, "not a 12-digit AWS account id (--account)") {
			t.Errorf("short account: exit %d, %s", code, stderr)
		}
	})

	t.Run("account and region from the identity document", func(t *testing.T) {
		v := testenv.DefaultIMDSValues()
		v.AccountID, v.Region = "210987654321", "eu-west-1"
		m, err := testenv.StartIMDS(context.Background(), v)
		if err != nil {
			t.Skipf("AWS's metadata mock is not available: %v", err)
		}
		defer m.Close()
		testenv.SetAWSEnv(t, map[string]string{"AWS_REGION": "", "AWS_EC2_METADATA_DISABLED": "false",
			"AWS_EC2_METADATA_SERVICE_ENDPOINT": m.Endpoint(), "AWS_ENDPOINT_URL_ECS": st.ECS.URL(), "AWS_MAX_ATTEMPTS": "1"})
		code, stdout, stderr := run(t, "", append(base, "--task-role", testenv.StackTaskRole)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		run := statement(decodePolicy(t, stdout), "RunCoordinatorTask")
		if len(run.Resource) != 1 || run.Resource[0] != "arn:aws:ecs:eu-west-1:210987654321:task-definition/ci-coordinator:1" {
			t.Errorf("RunTask on %v", run.Resource)
		}
	})
}

// TestIAMPolicyGitLab: a GitLab host that calls no AWS API gets no policy (IAM refuses an empty
// one) and a note; with a backup section it gets the backup statements.
func TestIAMPolicyGitLab(t *testing.T) {
	testenv.SetAWSEnv(t, nil)
	dir := t.TempDir()
	minimal := filepath.Join(dir, "gitlab.yaml")
	os.WriteFile(minimal, []byte("version: 1\ngitlab:\n  url: https://gitlab.example.com\n"), 0o644)
	code, stdout, stderr := run(t, "", "iam-policy", "--role", "gitlab", "--config", minimal, "--account", "123456789012")
	if code != 0 || stdout != "" || !strings.Contains(stderr, "note: this configuration makes the GitLab host call no AWS API") {
		t.Errorf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	backup := filepath.Join(dir, "backup.yaml")
	os.WriteFile(backup, []byte("version: 1\ngitlab:\n  url: https://gitlab.example.com\nbackup:\n  bucket: b-backups\n"), 0o644)
	code, stdout, stderr = run(t, "", "iam-policy", "--role", "gitlab", "--config", backup, "--account", "123456789012")
	if code != 0 || strings.Join(statement(decodePolicy(t, stdout), "BackupWrite").Resource, " ") != "arn:aws:s3:::b-backups/gitlab/*" {
		t.Errorf("exit %d: %s\n%s", code, stdout, stderr)
	}
}
