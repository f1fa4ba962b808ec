// Package coordinator holds the coordinator image's build context templates: the Dockerfile and
// the entrypoint (what the Fargate driver needs in it: GitLab Runner's "Autoscaling GitLab CI on AWS
// Fargate", https://docs.gitlab.com/runner/configuration/runner_autoscale_aws_fargate/). The glbootstrap binary is added to the context
// by internal/image.
package coordinator

import "embed"

// FS holds Dockerfile, entrypoint.sh and sshd_config (the image's
// /etc/ssh/sshd_config.d/coordinator.conf).
//
//go:embed Dockerfile entrypoint.sh sshd_config
var FS embed.FS

// Files are the context files in FS with their modes in the image context.
var Files = []struct {
	Name string
	Mode uint32
}{
	{"Dockerfile", 0o644},
	{"entrypoint.sh", 0o755},
	{"sshd_config", 0o644},
}
