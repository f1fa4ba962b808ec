package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
)

// A task's ENI as the real SDK reads it: the ENI attachment of DescribeTasks (details
// subnetId, networkInterfaceId, macAddress, privateDnsName, privateIPv4Address) and EC2's
// DescribeNetworkInterfaces for that id, with association.publicIp only for a task started with
// assignPublicIp ENABLED; gone (NotFound) once the task stopped.
func TestTaskENIThroughSDK(t *testing.T) {
	ctx := context.Background()
	es, e2 := NewECS(), NewEC2()
	defer es.Close()
	defer e2.Close()
	e2.AddENISource(es)
	es.PutCluster(ECSCluster{Name: "ci", DefaultStrategy: []ECSStrategyItem{{CapacityProvider: "FARGATE", Weight: 1}}})
	es.RegisterTaskDefinition(ECSTaskDefinition{Family: "td", NetworkMode: "awsvpc", RequiresCompatibilities: []string{"FARGATE"},
		Containers: []ECSContainer{{Name: "ci-coordinator", Image: "img", Ports: []int32{22}}}})
	e2.PutSubnet(EC2Subnet{ID: "subnet-0123456789abcdef0", VPCID: "vpc-1", AZ: "us-east-2a"})
	cfg := aws.Config{Region: "us-east-2", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")}
	ecsC := ecs.NewFromConfig(cfg, func(o *ecs.Options) { o.BaseEndpoint = aws.String(es.URL()) })
	ec2C := ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(e2.URL()) })

	run := func(assign ecstypes.AssignPublicIp) ecstypes.Task {
		out, err := ecsC.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String("ci"), TaskDefinition: aws.String("td:1"),
			NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
				Subnets: []string{"subnet-0123456789abcdef0"}, SecurityGroups: []string{"sg-1"}, AssignPublicIp: assign}}})
		if err != nil {
			t.Fatalf("RunTask: %v", err)
		}
		arn := aws.ToString(out.Tasks[0].TaskArn)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			d, err := ecsC.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String("ci"), Tasks: []string{arn}})
			if err != nil {
				t.Fatalf("DescribeTasks: %v", err)
			}
			if aws.ToString(d.Tasks[0].LastStatus) == "RUNNING" {
				return d.Tasks[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s not RUNNING", arn)
			}
		}
	}
	details := func(task ecstypes.Task) map[string]string {
		if len(task.Attachments) != 1 || aws.ToString(task.Attachments[0].Type) != "ElasticNetworkInterface" || aws.ToString(task.Attachments[0].Status) != "ATTACHED" {
			t.Fatalf("attachments %+v", task.Attachments)
		}
		m := map[string]string{}
		for _, kv := range task.Attachments[0].Details {
			m[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
		}
		return m
	}

	pub := run(ecstypes.AssignPublicIpEnabled)
	pd := details(pub)
	private := aws.ToString(pub.Containers[0].NetworkInterfaces[0].PrivateIpv4Address)
	for _, k := range []string{"subnetId", "networkInterfaceId", "macAddress", "privateDnsName", "privateIPv4Address"} {
		if pd[k] == "" {
			t.Errorf("attachment details lack %s: %v", k, pd)
		}
	}
	if pd["privateIPv4Address"] != private || pd["subnetId"] != "subnet-0123456789abcdef0" {
		t.Errorf("details %v, container address %s", pd, private)
	}
	dni, err := ec2C.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{pd["networkInterfaceId"]}})
	if err != nil || len(dni.NetworkInterfaces) != 1 {
		t.Fatalf("DescribeNetworkInterfaces: %+v, %v", dni, err)
	}
	n := dni.NetworkInterfaces[0]
	if n.Association == nil || aws.ToString(n.Association.PublicIp) == "" || aws.ToString(n.Association.PublicIp) == private {
		t.Fatalf("association %+v: want a public address other than %s", n.Association, private)
	}
	if aws.ToString(n.PrivateIpAddress) != private || aws.ToString(n.MacAddress) != pd["macAddress"] || aws.ToString(n.VpcId) != "vpc-1" ||
		len(n.Groups) != 1 || aws.ToString(n.Groups[0].GroupId) != "sg-1" || len(n.PrivateIpAddresses) != 1 || n.PrivateIpAddresses[0].Association == nil {
		t.Errorf("ENI %+v", n)
	}
	tasks := es.Tasks()
	if tasks[0].PublicIP != aws.ToString(n.Association.PublicIp) || tasks[0].ENI != pd["networkInterfaceId"] {
		t.Errorf("ECS.Tasks: %+v", tasks[0])
	}

	priv := run(ecstypes.AssignPublicIpDisabled)
	dni, err = ec2C.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{details(priv)["networkInterfaceId"]}})
	if err != nil || len(dni.NetworkInterfaces) != 1 || dni.NetworkInterfaces[0].Association != nil {
		t.Errorf("ENI of a task without a public IP: %+v, %v; want no association", dni, err)
	}

	if _, err := ecsC.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String("ci"), Task: pub.TaskArn}); err != nil {
		t.Fatal(err)
	}
	for id, code := range map[string]string{pd["networkInterfaceId"]: "InvalidNetworkInterfaceID.NotFound",
		"eni-0123456789abcdef0": "InvalidNetworkInterfaceID.NotFound", "": "InvalidNetworkInterfaceID.Malformed"} {
		_, err := ec2C.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{id}})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != code {
			t.Errorf("DescribeNetworkInterfaces(%q) = %v, want %s", id, err, code)
		}
	}
	if got := e2.Calls("DescribeNetworkInterfaces"); got != 5 {
		t.Errorf("Calls = %d, want 5", got)
	}
}
