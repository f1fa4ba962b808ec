package main

import (
	"fmt"
	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// demoDoctor runs "glbootstrap doctor --role runner" against the ECS, EC2, ECR and IAM stand-ins
// seeded with the reference Fargate setup. The setup really has one weak spot the doctor
// reports as a warning: the front's /24 subnet has 187 free addresses, fewer than the 200 tasks
// concurrent 200 may start (each awsvpc task takes one). Exit 0; with --strict the warning is a
// failure (exit 1). Then the task security group loses its SSH rule, as a hand edit in the
// console would do, and the doctor fails naming the group and the command that fixes it.
func demoDoctor(stack *testenv.Stack, root string, glb func(want int, args ...string) error) error {
	doctor := []string{"doctor", "--role", "runner", "--config", "ssm:" + testenv.StackConfigParam, "--root", root}

	section("Runner front: glbootstrap doctor, read-only checks of what the Fargate driver needs (ECS, EC2, ECR, IAM stand-ins)")
	if err := glb(0, doctor...); err != nil {
		return err
	}
	section("the same with --strict: a warning fails (exit 1)")
	if err := glb(1, append(doctor, "--strict")...); err != nil {
		return err
	}

	section("someone removes the SSH rule from the tasks' security group; doctor fails and names the fix")
	v := testenv.DefaultIMDSValues()
	stack.EC2.PutSecurityGroup(testenv.EC2SecurityGroup{ID: testenv.StackTaskSG, VPCID: v.VPCID, Name: "ci-coordinator-tasks",
		Egress: []testenv.EC2Rule{{Protocol: "-1", CIDRs: []string{"0.0.0.0/0"}}}})
	if err := glb(1, doctor...); err != nil {
		return err
	}
	// Put the rule back, so the stand-ins left running by -serve describe a working setup.
	stack.EC2.PutSecurityGroup(testenv.EC2SecurityGroup{ID: testenv.StackTaskSG, VPCID: v.VPCID, Name: "ci-coordinator-tasks",
		Ingress: []testenv.EC2Rule{{Protocol: "tcp", FromPort: 22, ToPort: 22, Groups: []string{v.SecurityGroupIDs[0]}}},
		Egress:  []testenv.EC2Rule{{Protocol: "-1", CIDRs: []string{"0.0.0.0/0"}}}})
	fmt.Println("\n  (the demo puts the SSH rule back)")
	return nil
}
