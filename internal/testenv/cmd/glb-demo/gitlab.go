package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// demoGitLab converges ./sandbox/gitlab as a GitLab Omnibus host: plan, apply, the managed files,
// apply again (0 changed). The host publishes its private URL, here the GitLab API stand-in's
// address (gitlab.private_url), to the SSM parameter the runner part of the demo then reads; the
// stack's own copy of that parameter is removed first so the publishing is real.
func demoGitLab(stack *testenv.Stack, sandbox string, glb func(want int, args ...string) error) error {
	stack.SSM.Delete(testenv.StackPrivateURL)
	stack.SeedGitLabSSM()
	stack.S3.CreateBucketIn(testenv.StackBackupBucket, "us-east-2")
	stack.S3.CreateBucketIn("example-gitlab-secrets", "us-east-2")
	cfg := stack.GitLabConfig(stack.GitLab.URL(), demoBackupSection)
	stack.SSM.Put(testenv.StackGitLabConfigParam, cfg, true)
	section("the GitLab host configuration, stored in SSM " + testenv.StackGitLabConfigParam)
	fmt.Print(indent(cfg))

	root := filepath.Join(sandbox, "gitlab")
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	if err := testenv.SeedGitLabRoot(root); err != nil {
		return err
	}
	args := []string{"--role", "gitlab", "--config", "ssm:" + testenv.StackGitLabConfigParam, "--root", root}
	apply := append([]string{"apply"}, args...)

	section("GitLab host: plan on a freshly baked AMI (exit 10: changes pending)")
	if err := glb(10, append([]string{"plan"}, args...)...); err != nil {
		return err
	}
	section("GitLab host: first boot, user-data runs apply (gitlab-ctl reconfigure is a reported action under --root)")
	if err := glb(0, apply...); err != nil {
		return err
	}
	section("GitLab host: managed files")
	for _, f := range []string{"/etc/gitlab/glbootstrap.rb", "/etc/gitlab/gitlab.rb", "/etc/ssh/sshd_config.d/00-glbootstrap.conf", "/etc/systemd/system/glbootstrap-backup.timer", "/var/lib/glbootstrap/gitlab.json"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return err
		}
		info, _ := os.Stat(filepath.Join(root, f))
		fmt.Printf("\n--- %s (mode %04o)\n%s", f, info.Mode().Perm(), indent(mask(stack, string(b))))
	}
	section("GitLab host: SSM Run Command runs apply again, --output json (JSON lines for SSM and CloudWatch): nothing changes")
	if err := glb(0, append(apply, "--output", "json")...); err != nil {
		return err
	}
	v, ok := stack.SSM.Value(testenv.StackPrivateURL)
	if !ok || strings.TrimSpace(v) == "" {
		return fmt.Errorf("the GitLab host did not publish %s", testenv.StackPrivateURL)
	}
	fmt.Printf("\n  SSM %s = %s (the runner front reads it next)\n", testenv.StackPrivateURL, v)
	return nil
}
