package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
	"github.com/glbootstrap/glbootstrap/internal/testenv/buildstack"
)

// A cancelled CI job (SIGTERM to the real binary) stops the build and exits non-zero.
func TestCodeBuildRunSIGTERMStopsBuild(t *testing.T) {
	st := buildstack.Start(0)
	defer st.Close()
	st.CodeBuild.AddProject("images")
	st.CodeBuild.Script(func(testenv.StartedBuild) testenv.BuildScript { return testenv.BuildScript{Hold: true} })
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "Dockerfile"), []byte("FROM scratch\n"), 0o644)

	cmd := exec.Command(binary, "codebuild", "run", "--project", "images", "--source", src,
		"--bucket", buildstack.Bucket, "--poll-interval", "20ms")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range st.Env() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errLog strings.Builder
	sent, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			errLog.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "phase BUILD") {
				signalled = true
				cmd.Process.Signal(syscall.SIGTERM)
				close(sent)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case <-sent:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the build never reached BUILD:\n%s", errLog.String())
	}
	<-done // all of stderr read before Wait closes the pipe
	err = cmd.Wait()
	failOnLeak(t, "glbootstrap codebuild run", "--- stdout\n"+stdout.String()+"--- stderr\n"+errLog.String(), st.Secrets())
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() != 143 {
		t.Fatalf("exit: %v, want 143 (SIGTERM)\n%s", err, errLog.String())
	}
	if st.CodeBuild.Calls("StopBuild") != 1 || st.CodeBuild.Builds()[0].Status != "STOPPED" {
		t.Errorf("StopBuild calls %d, status %s\n%s", st.CodeBuild.Calls("StopBuild"), st.CodeBuild.Builds()[0].Status, errLog.String())
	}
	if !strings.Contains(errLog.String(), "error: interrupted by SIGTERM while following build") {
		t.Errorf("stderr:\n%s", errLog.String())
	}
}
