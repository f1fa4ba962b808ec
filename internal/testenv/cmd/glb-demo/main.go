// Command glb-demo is "make demo": it starts the local stand-ins (AWS's
// instance metadata mock, gofakes3 for S3, an SSM stand-in holding the
// config and its secrets, a GitLab API stand-in), lays out ./sandbox/runner
// as a baked runner AMI would be, and runs the real glbootstrap binary
// against them: apply, the rendered files, apply again (0 changed), a
// manual edit caught by plan (exit 10), and apply repairing it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/standin"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == standInArg {
		if err := standin.GitLabBackup(context.Background(), os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	bin := flag.String("bin", "bin/glbootstrap", "the glbootstrap binary to run")
	sandbox := flag.String("sandbox", "sandbox", "directory for the demo roots (recreated)")
	serve := flag.String("serve", "", "after the demo, keep the stand-ins running and write to this file the environment (export lines) that points glbootstrap at them; stop with Ctrl-C")
	flag.Parse()
	// SIGTERM too, so the deferred Close stops the metadata mock child process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *sandbox, *serve); err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
		os.Exit(1)
	}
}

var tokenRE = regexp.MustCompile(`glrt-[A-Za-z0-9_-]+|glpat-[A-Za-z0-9_-]+`)

// mask hides the stack's secrets in a file the demo shows (config.toml holds the runner token,
// gitlab.rb the admin's passwords), the way glbootstrap's own output does.
func mask(stack *testenv.Stack, s string) string {
	for _, sec := range stack.Secrets() {
		if sec.Value != "" {
			s = strings.ReplaceAll(s, sec.Value, "[MASKED]")
		}
	}
	return tokenRE.ReplaceAllString(s, "[MASKED]")
}

// noSecret fails the demo when glbootstrap's output holds a secret of the stack (testenv.Leaks):
// "make demo" is also a check that secrets cannot leak. The error names the source, never the
// value.
func noSecret(stack *testenv.Stack, args []string, out string) error {
	if l := testenv.Leaks(out, stack.Secrets()); len(l) > 0 {
		return fmt.Errorf("glbootstrap %s printed a secret (%s): a leak to fix in glbootstrap", strings.Join(args, " "), l[0].Source)
	}
	return nil
}

func run(ctx context.Context, bin, sandbox, serve string) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	section("starting stand-ins: amazon-ec2-metadata-mock (IMDSv2), gofakes3 (S3), SSM, GitLab API, ECS, EC2, ECR, IAM")
	stack, err := testenv.StartStack(ctx, testenv.IMDSValues{})
	if err != nil {
		return err
	}
	defer stack.Close()
	fmt.Printf("  IMDS    %s (instance i-0123456789abcdef0, us-east-2)\n", stack.IMDS.Endpoint())
	fmt.Printf("  S3      %s (driver mirror %s)\n", stack.S3.URL(), stack.DriverURL)
	fmt.Printf("  SSM     %s\n", stack.SSM.URL())
	fmt.Printf("  GitLab  %s (private address, published in SSM %s)\n", stack.GitLab.URL(), testenv.StackPrivateURL)

	cfg := stack.RunnerConfig(testenv.CreateAuth, "")
	stack.SSM.Put(testenv.StackConfigParam, cfg, true)
	section("the runner configuration, stored in SSM " + testenv.StackConfigParam)
	fmt.Print(indent(cfg))

	root := filepath.Join(sandbox, "runner")
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	if err := testenv.SeedRunnerRoot(root, stack.GitLab.CAPEM()); err != nil {
		return err
	}
	env := stack.Env(os.Environ())
	glb := func(want int, args ...string) error {
		fmt.Printf("\n$ glbootstrap %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err := noSecret(stack, args, out.String()); err != nil {
			return err
		}
		fmt.Print(indent(out.String()))
		code := 0
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			code = xe.ExitCode()
		} else if err != nil {
			return err
		}
		fmt.Printf("  (exit %d)\n", code)
		if code != want {
			return fmt.Errorf("glbootstrap %s exited %d, want %d", args[0], code, want)
		}
		return nil
	}
	if err := demoGitLab(stack, sandbox, glb); err != nil {
		return err
	}
	if err := demoBackup(ctx, stack, sandbox, bin, env); err != nil {
		return err
	}
	apply := []string{"apply", "--role", "runner", "--config", "ssm:" + testenv.StackConfigParam, "--root", root}

	section("Runner front: first boot, user-data runs apply")
	if err := glb(0, apply...); err != nil {
		return err
	}
	section("Runner front: rendered files")
	for _, f := range []string{"/etc/gitlab-runner/config.toml", "/etc/gitlab-runner/fargate.toml"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return err
		}
		info, _ := os.Stat(filepath.Join(root, f))
		fmt.Printf("\n--- %s (mode %04o)\n%s", f, info.Mode().Perm(), indent(mask(stack, string(b))))
	}

	section("Runner front: SSM Run Command runs apply again, --output json (JSON lines for SSM and CloudWatch): nothing changes")
	if err := glb(0, append(apply, "--output", "json")...); err != nil {
		return err
	}

	section("Runner front: someone edits fargate.toml by hand; plan shows the drift (exit 10), apply repairs it")
	ft := filepath.Join(root, "etc/gitlab-runner/fargate.toml")
	b, err := os.ReadFile(ft)
	if err != nil {
		return err
	}
	if err := os.WriteFile(ft, bytes.Replace(b, []byte(`Cluster = "ci-cluster"`), []byte(`Cluster = "hand-edited"`), 1), 0o644); err != nil {
		return err
	}
	plan := append([]string{"plan"}, apply[1:]...)
	if err := glb(10, plan...); err != nil {
		return err
	}
	if err := glb(0, apply...); err != nil {
		return err
	}

	section("Runner front: what GitLab sees")
	for _, r := range stack.GitLab.Runners() {
		fmt.Printf("  runner #%d %q type=%s tags=%v managers=%v\n", r.ID, r.Description, r.RunnerType, r.Tags, r.SystemIDs)
	}
	fmt.Printf("  %d runner(s) on GitLab after 4 applies; POST /api/v4/user/runners called %d time(s)\n",
		len(stack.GitLab.Runners()), stack.GitLab.Requests("POST", "/api/v4/user/runners"))
	if err := demoDoctor(stack, root, glb); err != nil {
		return err
	}
	section("demo done: every command above exited as expected (the exit 1 just above is the doctor's deliberate failure)")
	fmt.Printf("  the converged roots are left in %s and %s\n", filepath.Join(sandbox, "gitlab"), root)
	if serve == "" {
		return nil
	}
	var exports strings.Builder
	for _, kv := range stack.Env(nil) {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&exports, "export %s='%s'\n", k, v)
	}
	if err := os.WriteFile(serve, []byte(exports.String()), 0o600); err != nil {
		return err
	}
	fmt.Printf("\nstand-ins keep running; '. %s' points glbootstrap at them (Ctrl-C to stop)\n", serve)
	<-ctx.Done()
	return nil
}

func section(s string) { fmt.Printf("\n=== %s\n", s) }

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}
