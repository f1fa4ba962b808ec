package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// TestIAMPolicyBinary runs the real binary on the stand-in stack as on the front: the
// configuration from SSM, the account from the instance identity document of AWS's metadata mock,
// the task roles from ECS. The printed policy is valid IAM and grants reading the configuration
// parameter and passing the reference task definition's roles (TestDoctor shows the iam check
// passing when it simulates this same policy for the stack's front role).
func TestIAMPolicyBinary(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	r := w.run("iam-policy", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam)
	if r.code != 0 {
		t.Fatalf("iam-policy: %s", r)
	}
	var p iampolicy.Policy
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("stdout is not a policy: %v\n%s", err, r.stdout)
	}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"arn:aws:ssm:` + testenv.DefaultIMDSValues().Region + `:123456789012:parameter` + testenv.StackConfigParam + `"`,
		`"` + testenv.StackTaskRole + `"`, `"` + testenv.StackExecutionRole + `"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("policy lacks %s:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "REPLACE-WITH") || strings.Contains(r.stderr, "could not be looked up") {
		t.Errorf("the task roles were not looked up: %s", r)
	}
}
