package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// BenchmarkNoopApplyProcess times a whole converged no-op "apply --role
// runner" process (wall time per op, and the child's peak RSS from
// getrusage, as /usr/bin/time -v reports it) next to an Ansible playbook
// doing the same file converge on the same root (bench/noop-playbook.yml),
// when ansible-playbook is installed. Compare the two in one run:
//
//	go test -run '^$' -bench NoopApplyProcess ./cmd/glbootstrap/
func BenchmarkNoopApplyProcess(b *testing.B) {
	w := newWorld(b, testenv.IMDSValues{})
	if r := w.apply(); r.code != 0 {
		b.Fatal(r)
	}
	args := []string{"apply", "--role", "runner", "--config", "ssm:" + testenv.StackConfigParam, "--root", w.root}
	b.Run("glbootstrap", func(b *testing.B) {
		runProcess(b, w.env, binary, args...)
	})
	b.Run("ansible-playbook", func(b *testing.B) {
		ap, err := exec.LookPath("ansible-playbook")
		if err != nil {
			b.Skip("ansible-playbook not installed (apt-get install ansible-core)")
		}
		book, _ := filepath.Abs("../../bench/noop-playbook.yml")
		env := append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_LOCALHOST_WARNING=false", "ANSIBLE_INVENTORY_UNPARSED_WARNING=false")
		runProcess(b, env, ap, "-i", "localhost,", "-c", "local", book, "-e", "root="+w.root)
	})
}

func runProcess(b *testing.B, env []string, name string, args ...string) {
	var peak int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(name, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", name, err, out)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > peak {
			peak = ru.Maxrss
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
}
