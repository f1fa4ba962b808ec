package main

import (
	"net"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// closedEndpoint returns an http:// endpoint on 127.0.0.1 that refuses connections: an
// instance metadata service that is not there, as on a workstation.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestOffEC2WithEveryFactInTheConfig: with instance metadata unreachable and every fact the
// runner front needs in its configuration (fargate.region, fargate.subnet and the instance
// section), validate, plan and apply --root work; without one of them the error names the key to
// set and nothing changes. The AWS region for SSM is the SDK's own AWS_REGION.
func TestOffEC2WithEveryFactInTheConfig(t *testing.T) {
	w := newWorld(t, testenv.IMDSValues{})
	v := testenv.DefaultIMDSValues()
	w.env = append(w.env, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+closedEndpoint(t), "AWS_REGION="+v.Region)
	base := w.stack.RunnerConfig(testenv.CreateAuth, "")
	facts := strings.Replace(base, "  cluster: ci-cluster\n", "  region: "+v.Region+"\n  subnet: "+v.SubnetID+"\n  cluster: ci-cluster\n", 1)
	instance := "instance:\n  id: " + v.InstanceID + "\n  private_ipv4: " + v.LocalIPv4 + "\n  security_groups: [" + strings.Join(v.SecurityGroupIDs, ", ") + "]\n"
	w.setConfig(facts + instance)

	if r := w.run("validate", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam); r.code != 0 {
		t.Fatalf("validate: %s", r)
	}
	if r := w.plan(); r.code != 10 || !strings.Contains(r.stdout, "[runner] register") {
		t.Fatalf("plan off EC2: %s", r)
	}
	r := w.apply()
	if r.code != 0 || !strings.Contains(r.stdout, "created runner #") {
		t.Fatalf("apply off EC2: %s", r)
	}
	// The IAM check asks instance metadata for the instance profile: off EC2 it says it could not.
	if !strings.Contains(r.stdout, "could not check") {
		t.Errorf("apply off EC2: the iam check did not say it could not check:\n%s", r.stdout)
	}
	if !strings.Contains(w.read("/etc/gitlab-runner/fargate.toml"), `Subnet = "`+v.SubnetID+`"`) {
		t.Errorf("fargate.toml lacks the configured subnet:\n%s", w.read("/etc/gitlab-runner/fargate.toml"))
	}
	if again := w.apply(); again.code != 0 || !strings.Contains(again.stdout, "0 changed") {
		t.Errorf("second apply off EC2: %s", again)
	}

	// A fact the configuration does not give, with nowhere to read it from.
	before := w.snapshot()
	for key, doc := range map[string]string{
		"instance.id":    strings.Replace(facts+instance, "  id: "+v.InstanceID+"\n", "", 1),
		"fargate.subnet": strings.Replace(facts+instance, "  subnet: "+v.SubnetID+"\n", "", 1),
	} {
		w.setConfig(doc)
		for _, r := range []result{w.plan(), w.apply()} {
			if r.code != 1 || !strings.Contains(r.stderr, "set "+key+" in the configuration") ||
				!strings.Contains(r.stderr, "not reachable") || !strings.Contains(r.stderr, "nothing was changed") {
				t.Errorf("without %s: %s", key, r)
			}
		}
	}
	if after := w.snapshot(); after != before {
		t.Errorf("a run that stopped for a missing fact changed the root:\n%s\nthen\n%s", before, after)
	}
	// The bake phases need no fact at all.
	w.setConfig(base)
	if r := w.apply("--phase", "directories,fargate-driver"); r.code != 0 {
		t.Errorf("bake phases off EC2 without facts: %s", r)
	}
}
