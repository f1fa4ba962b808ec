// Command glbootstrap converges an EC2 instance into a GitLab host or a
// GitLab Runner front for AWS Fargate. See the README.
package main

import (
	"context"
	"os"

	"github.com/glbootstrap/glbootstrap/internal/cli"
)

func main() {
	ctx, stop := cli.SignalContext(context.Background())
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
