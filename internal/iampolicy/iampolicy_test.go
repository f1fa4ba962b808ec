package iampolicy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestNewMergesSortsAndKeepsOrder(t *testing.T) {
	p := New(
		Allow("B", []string{"s3:PutObject", "s3:AbortMultipartUpload", "s3:PutObject"}, []string{"arn:aws:s3:::b/z*", "arn:aws:s3:::b/a*"}),
		Allow("A", []string{"ssm:GetParameter"}, []string{"arn:aws:ssm:r:1:parameter/x"}),
		Allow("B", []string{"s3:AbortMultipartUpload", "s3:PutObject"}, []string{"arn:aws:s3:::b/m*", "arn:aws:s3:::b/a*"}),
	)
	want := []Statement{
		{Sid: "B", Effect: "Allow", Action: []string{"s3:AbortMultipartUpload", "s3:PutObject"}, Resource: []string{"arn:aws:s3:::b/a*", "arn:aws:s3:::b/m*", "arn:aws:s3:::b/z*"}},
		{Sid: "A", Effect: "Allow", Action: []string{"ssm:GetParameter"}, Resource: []string{"arn:aws:ssm:r:1:parameter/x"}},
	}
	if !reflect.DeepEqual(p.Statement, want) {
		t.Fatalf("got %+v\nwant %+v", p.Statement, want)
	}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Actions(), " "); got != "s3:AbortMultipartUpload s3:PutObject ssm:GetParameter" {
		t.Errorf("Actions %q", got)
	}
}

func TestCheckRefuses(t *testing.T) {
	ok := Allow("Ok", []string{"ecs:RunTask"}, []string{"*"})
	for name, tc := range map[string]struct {
		p    Policy
		want string
	}{
		"no statement":  {New(), "no statement"},
		"bad sid":       {New(Allow("Run-Task", ok.Action, ok.Resource)), "letters and digits"},
		"empty sid":     {New(Allow("", ok.Action, ok.Resource)), "letters and digits"},
		"repeated sid":  {Policy{Version: Version, Statement: []Statement{ok, ok}}, "used twice"},
		"no action":     {New(Allow("X", nil, ok.Resource)), "no action"},
		"bad action":    {New(Allow("X", []string{"RunTask"}, ok.Resource)), "not service:Action"},
		"wild action":   {New(Allow("X", []string{"ecs:*"}, ok.Resource)), "not service:Action"},
		"bad resource":  {New(Allow("X", ok.Action, []string{"ci-cluster"})), "neither * nor an ARN"},
		"wrong version": {Policy{Version: "2008-10-17", Statement: []Statement{ok}}, "version"},
	} {
		err := tc.p.Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// TestJSONParses: the JSON is what IAM reads (Version, Statement list, Sid, Effect, Action and
// Resource lists, Condition operator → key → values), ends in a newline, and reads back equal.
func TestJSONParses(t *testing.T) {
	p := New(Allow("Run", []string{"ecs:RunTask"}, []string{"arn:aws:ecs:us-east-2:123456789012:task-definition/f:*"}).
		When("ArnEquals", "ecs:cluster", "arn:aws:ecs:us-east-2:123456789012:cluster/c"))
	b, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "}\n") || strings.Contains(string(b), `\u0026`) {
		t.Errorf("JSON:\n%s", b)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	st := raw["Statement"].([]any)[0].(map[string]any)
	if raw["Version"] != "2012-10-17" || st["Sid"] != "Run" || st["Effect"] != "Allow" ||
		st["Condition"].(map[string]any)["ArnEquals"].(map[string]any)["ecs:cluster"].([]any)[0] != "arn:aws:ecs:us-east-2:123456789012:cluster/c" {
		t.Errorf("decoded %v", raw)
	}
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, p) {
		t.Errorf("read back %+v (%v), want %+v", back, err, p)
	}
}

func TestAsksCarryConditionsAsContext(t *testing.T) {
	p := New(
		Allow("Pass", []string{"iam:PassRole"}, []string{"arn:aws:iam::1:role/a"}).When("StringEquals", "iam:PassedToService", "ecs-tasks.amazonaws.com"),
		Allow("Tasks", []string{"ecs:DescribeTasks", "ecs:StopTask"}, []string{"arn:aws:ecs:r:1:task/c/*"}).When("ArnEquals", "ecs:cluster", "arn:aws:ecs:r:1:cluster/c"),
		Allow("Key", []string{"kms:Decrypt"}, []string{"arn:aws:kms:r:1:key/*"}).When("ForAnyValue:StringEquals", "kms:ResourceAliases", "alias/backup"),
		Allow("Free", []string{"ec2:DescribeSubnets"}, []string{"*"}),
	)
	got := p.Asks()
	want := []Ask{
		{Sid: "Pass", Action: "iam:PassRole", Resources: []string{"arn:aws:iam::1:role/a"}, Context: []ContextEntry{{"iam:PassedToService", "string", []string{"ecs-tasks.amazonaws.com"}}}},
		{Sid: "Tasks", Action: "ecs:DescribeTasks", Resources: []string{"arn:aws:ecs:r:1:task/c/*"}, Context: []ContextEntry{{"ecs:cluster", "arn", []string{"arn:aws:ecs:r:1:cluster/c"}}}},
		{Sid: "Tasks", Action: "ecs:StopTask", Resources: []string{"arn:aws:ecs:r:1:task/c/*"}, Context: []ContextEntry{{"ecs:cluster", "arn", []string{"arn:aws:ecs:r:1:cluster/c"}}}},
		{Sid: "Key", Action: "kms:Decrypt", Resources: []string{"arn:aws:kms:r:1:key/*"}, Context: []ContextEntry{{"kms:ResourceAliases", "stringList", []string{"alias/backup"}}}},
		{Sid: "Free", Action: "ec2:DescribeSubnets", Resources: []string{"*"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestARNs(t *testing.T) {
	p := Place{Region: "us-east-2", Account: "123456789012"}
	cn := Place{Region: "cn-north-1", Account: "123456789012"}
	for got, want := range map[string]string{
		p.SSMParameter("/glbootstrap/runner/token"):   "arn:aws:ssm:us-east-2:123456789012:parameter/glbootstrap/runner/token",
		p.SSMParameter("plain"):                       "arn:aws:ssm:us-east-2:123456789012:parameter/plain",
		cn.SSMParameter("/x"):                         "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/x",
		p.S3Object("b", "gitlab/*"):                   "arn:aws:s3:::b/gitlab/*",
		p.S3Bucket("b"):                               "arn:aws:s3:::b",
		p.IAMRole("path/front"):                       "arn:aws:iam::123456789012:role/path/front",
		p.IAMInstanceProfile("*"):                     "arn:aws:iam::123456789012:instance-profile/*",
		p.In("us-gov-west-1").ARN("ecs", "cluster/c"): "arn:aws-us-gov:ecs:us-gov-west-1:123456789012:cluster/c",
		p.In("").ARN("ecs", "cluster/c"):              "arn:aws:ecs:us-east-2:123456789012:cluster/c",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	for key, want := range map[string][2]string{
		"1234abcd-12ab-34cd-56ef-1234567890ab":                                        {"arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", ""},
		"arn:aws:kms:eu-west-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab": {"arn:aws:kms:eu-west-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab", ""},
		"alias/backups": {"arn:aws:kms:us-east-2:123456789012:key/*", "alias/backups"},
		"arn:aws:kms:eu-west-1:210987654321:alias/backups": {"arn:aws:kms:eu-west-1:210987654321:key/*", "alias/backups"},
	} {
		res, alias := p.KMSKey(key)
		if res != want[0] || alias != want[1] {
			t.Errorf("KMSKey(%s) = %s, %q; want %s, %q", key, res, alias, want[0], want[1])
		}
	}
	if err := (Place{Region: "us-east-2", Account: "12345"}).Check(); err == nil || !strings.Contains(err.Error(), "--account") {
		t.Errorf("short account: %v", err)
	}
	if err := (Place{Account: "123456789012"}).Check(); err == nil || !strings.Contains(err.Error(), "--region") {
		t.Errorf("no region: %v", err)
	}
}
