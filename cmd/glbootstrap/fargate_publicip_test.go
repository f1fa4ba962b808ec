package main

// fargate.enable_public_ip through the real Fargate driver: with EnablePublicIP = true in
// fargate.toml its prepare stage, once the task is RUNNING, takes the ENI id from the
// DescribeTasks answer (the networkInterfaceId detail of tasks[0].attachments[0]), asks EC2
// DescribeNetworkInterfaces for it and connects to networkInterfaces[0].association.publicIp;
// without it, to containers[0].networkInterfaces[0].privateIpv4Address and EC2 is never asked.
// The ECS stand-in gives a task started with assignPublicIp ENABLED a second loopback address
// as its public one, which its sshd listens on too.

import (
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// newPublicIPDriverWorld is newDriverWorld with fargate.enable_public_ip set to public. With a
// public IP the subnet's default route is an internet gateway (what preflight's network check
// wants for such tasks: a NAT gateway would never carry their traffic).
func newPublicIPDriverWorld(t *testing.T, public bool) *driverWorld {
	t.Helper()
	d := newDriverWorld(t, func(w *world) {
		if public {
			withPublicIP(t, w)
		}
	})
	checkPublicIPConfig(t, d, public)
	return d
}

// withPublicIP sets fargate.enable_public_ip in the world's runner config and routes the
// subnet's 0.0.0.0/0 to an internet gateway.
func withPublicIP(t *testing.T, w *world) {
	t.Helper()
	v := testenv.DefaultIMDSValues()
	cfg := w.stack.RunnerConfig(testenv.CreateAuth, "")
	const old = "enable_public_ip: false"
	if !strings.Contains(cfg, old) {
		t.Fatalf("the runner config has no %q", old)
	}
	w.setConfig(strings.Replace(cfg, old, "enable_public_ip: true", 1))
	w.stack.EC2.PutRouteTable(testenv.EC2RouteTable{ID: testenv.StackRouteTable, VPCID: v.VPCID, Subnets: []string{v.SubnetID},
		Routes: []testenv.EC2Route{{Destination: v.VPCCIDR, GatewayID: "local"}, {Destination: "0.0.0.0/0", GatewayID: "igw-0123456789abcdef0"}}})
}

// checkPublicIPConfig fails unless the fargate.toml apply converged says EnablePublicIP = public.
func checkPublicIPConfig(t *testing.T, d *driverWorld, public bool) {
	t.Helper()
	want := "EnablePublicIP = " + map[bool]string{true: "true", false: "false"}[public]
	if text := d.read("etc/gitlab-runner/fargate.toml"); !strings.Contains(text, want) {
		t.Fatalf("fargate.toml lacks %q:\n%s", want, text)
	}
}

// serverAddr is the server address of the "ssh=CLIENT-IP CLIENT-PORT SERVER-IP SERVER-PORT" line
// the job printed.
func serverAddr(t *testing.T, stdout string) string {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		if i := strings.Index(line, "ssh="); i >= 0 {
			if f := strings.Fields(line[i+len("ssh="):]); len(f) == 4 {
				return f[2] + " " + f[3]
			}
		}
	}
	t.Fatalf("the job printed no SSH_CONNECTION line:\n%s", stdout)
	return ""
}

func TestRealFargateDriverPublicIP(t *testing.T) {
	for _, public := range []bool{true, false} {
		name := map[bool]string{true: "public", false: "private"}[public]
		t.Run(name, func(t *testing.T) {
			d := newPublicIPDriverWorld(t, public)
			ecs, ec2 := d.stack.ECS, d.stack.EC2
			if public {
				// The preflight checks agree with the setup: the role may read the ENIs, and the
				// subnet's internet gateway carries the public tasks' traffic.
				r := d.run("doctor", "--role", "runner", "--config", "ssm:"+testenv.StackConfigParam, "--root", d.root)
				for _, want := range []string{"ok    iam", "may do all 15 actions of the front's policy", "ok    subnet-egress"} {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("doctor with enable_public_ip lacks %q:\n%s", want, r)
					}
				}
			}
			if r := d.stage(t, 301, "prepare"); r.code != 0 {
				t.Fatalf("prepare: %s\n%s", r, d.sshdLog)
			}
			task := ecs.Tasks()[0]
			wantAssign, wantCalls, wantServer := "DISABLED", 0, task.IP
			if public {
				wantAssign, wantCalls, wantServer = "ENABLED", 1, task.PublicIP
			}
			if task.AssignPublicIP != wantAssign || public != (task.PublicIP != "") || task.PublicIP == task.IP {
				t.Fatalf("task: assignPublicIp %s, private %s, public %q; want %s and a public address of its own only when ENABLED",
					task.AssignPublicIP, task.IP, task.PublicIP, wantAssign)
			}
			if got := ec2.Calls("DescribeNetworkInterfaces"); got != wantCalls {
				t.Errorf("prepare called DescribeNetworkInterfaces %d times, want %d", got, wantCalls)
			}
			r := d.stage(t, 301, "run", d.script(t, "echo \"ssh=$SSH_CONNECTION\"\n"), "build_script")
			if r.code != 0 {
				t.Fatalf("run: %s\n%s", r, d.sshdLog)
			}
			if got := serverAddr(t, r.stdout); got != wantServer+" 22" {
				t.Errorf("the job's SSH server side is %s, want %s 22 (the %s address; private %s, public %q)", got, wantServer, name, task.IP, task.PublicIP)
			}
			if r := d.stage(t, 301, "cleanup"); r.code != 0 {
				t.Fatalf("cleanup: %s", r)
			}
			if got := ec2.Calls("DescribeNetworkInterfaces"); got != wantCalls {
				t.Errorf("DescribeNetworkInterfaces called %d times for the job, want %d (once per task, in prepare)", got, wantCalls)
			}
			accepted := strings.Join(d.proxy.Accepted(), " ")
			if public != strings.Contains(accepted, "ec2.") {
				t.Errorf("proxy tunnels %s: want ec2.REGION.amazonaws.com:443 only with a public IP", accepted)
			}
		})
	}
}

// When the ENI has no public IP (the task got none, or EC2 says nothing of it), the driver
// dereferences the missing association: prepare panics (exit 2, Go's panic status, not
// SYSTEM_FAILURE_EXIT_CODE) without stopping the task; only the cleanup stage's StopTask ends it.
// When DescribeNetworkInterfaces is denied (a front role without ec2:DescribeNetworkInterfaces)
// the driver fails prepare properly and stops the task itself.
func TestRealFargateDriverPublicIPMissing(t *testing.T) {
	t.Run("no public IP", func(t *testing.T) {
		d := newPublicIPDriverWorld(t, true)
		ecs := d.stack.ECS
		ecs.SetTaskBehaviour(testenv.ECSTaskBehaviour{NoPublicIP: true})
		r := d.stage(t, 302, "prepare")
		task := ecs.Tasks()[0]
		if task.AssignPublicIP != "ENABLED" || task.PublicIP != "" {
			t.Fatalf("task: assignPublicIp %s, public %q; want ENABLED without an address", task.AssignPublicIP, task.PublicIP)
		}
		out := r.stdout + r.stderr
		if i := strings.Index(out, "panic:"); i >= 0 {
			t.Logf("prepare exited %d:\n%s", r.code, firstLines(out[i:], 8))
		} else {
			t.Logf("prepare exited %d; its last lines:\n%s", r.code, lastLines(out, 12))
		}
		if r.code == 0 {
			t.Fatalf("prepare succeeded with no public IP on the ENI:\n%s", r)
		}
		if d.stack.EC2.Calls("DescribeNetworkInterfaces") != 1 {
			t.Errorf("DescribeNetworkInterfaces called %d times, want 1", d.stack.EC2.Calls("DescribeNetworkInterfaces"))
		}
		// What this driver does: a nil pointer dereference in getPublicIP.
		if r.code != 2 || !strings.Contains(out, "panic: runtime error: invalid memory address or nil pointer dereference") || !strings.Contains(out, "getPublicIP") {
			t.Errorf("prepare with no public IP: want the driver's known panic in getPublicIP (exit 2)\n%s", r)
		}
		if got := ecs.Calls("StopTask"); got != 0 {
			t.Logf("prepare now stops the task itself (%d StopTask)", got)
		}
		// The task's ARN was persisted before the wait: the runner's cleanup stage stops it.
		if files := metadataFiles(t, d.meta); len(files) != 1 {
			t.Errorf("metadata after the failed prepare: %v, want the task's file for cleanup", files)
		}
		if r := d.stage(t, 302, "cleanup"); r.code != 0 {
			t.Errorf("cleanup: %s", r)
		}
		if st := ecs.Tasks()[0]; st.LastStatus != "STOPPED" {
			t.Errorf("task after cleanup: %s, want STOPPED (no orphan)", st.LastStatus)
		}
	})
	t.Run("denied", func(t *testing.T) {
		d := newPublicIPDriverWorld(t, true)
		ecs := d.stack.ECS
		d.stack.EC2.Deny("DescribeNetworkInterfaces")
		r := d.stage(t, 303, "prepare")
		out := r.stdout + r.stderr
		t.Logf("prepare exited %d; its last lines:\n%s", r.code, lastLines(out, 6))
		if r.code != systemFailureExit || !strings.Contains(out, "error trying to get the public IP") || !strings.Contains(out, "UnauthorizedOperation") {
			t.Errorf("prepare with DescribeNetworkInterfaces denied: want exit %d naming UnauthorizedOperation\n%s", systemFailureExit, r)
		}
		if got := ecs.Calls("StopTask"); got != 1 {
			t.Errorf("StopTask called %d times by prepare, want 1", got)
		}
		if st := ecs.Tasks()[0]; st.LastStatus != "STOPPED" {
			t.Errorf("task after the failed prepare: %s, want STOPPED", st.LastStatus)
		}
	})
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// firstLines is the first n lines of s.
func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// The coordinator image's task listens on its public address too (the launcher's second
// -o ListenAddress), and a job reaches it there through the real driver.
func TestRealFargateDriverPublicIPInCoordinatorImage(t *testing.T) {
	d, l, _ := newImageDriverWorld(t, 22, "root", func(w *world) { withPublicIP(t, w) })
	checkPublicIPConfig(t, d, true)
	if r := d.stage(t, 304, "prepare"); r.code != 0 {
		t.Fatalf("prepare: %s\n%s", r, d.sshdLog)
	}
	task := d.stack.ECS.Tasks()[0]
	if task.PublicIP == "" || d.stack.EC2.Calls("DescribeNetworkInterfaces") != 1 {
		t.Fatalf("task public address %q, DescribeNetworkInterfaces called %d times", task.PublicIP, d.stack.EC2.Calls("DescribeNetworkInterfaces"))
	}
	r := d.stage(t, 304, "run", d.script(t, "echo \"ssh=$SSH_CONNECTION\"\n"), "build_script")
	if r.code != 0 {
		t.Fatalf("run: %s\n%s", r, d.sshdLog)
	}
	if got := serverAddr(t, r.stdout); got != task.PublicIP+" 22" {
		t.Errorf("the job's SSH server side is %s, want the public address %s 22", got, task.PublicIP)
	}
	for _, ip := range []string{task.IP, task.PublicIP} {
		if !strings.Contains(d.sshdLog.String(), "Server listening on "+ip+" port 22.") {
			t.Errorf("the image's sshd does not listen on %s:\n%s", ip, d.sshdLog)
		}
	}
	if r := d.stage(t, 304, "cleanup"); r.code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if l.Started() != 1 {
		t.Errorf("%d task containers started, want 1", l.Started())
	}
}

// The same through the real gitlab-runner 17.9.3 (its custom executor runs the driver's stages,
// retrying a failed prepare as it does): a job reaches its task at the public address; then a
// job whose task's ENI has no public IP. There the driver's prepare panics (exit 2, which is
// gitlab-runner's SYSTEM_FAILURE_EXIT_CODE) without stopping its task; the runner tries prepare
// 3 times, each with a new task, and runs the cleanup stage after each failed try, whose StopTask
// (from the metadata file prepare wrote before waiting) ends that try's task: no orphan.
func TestRealRunnerPublicIP(t *testing.T) {
	r := newRealRunner(t, func(cfg string) string {
		const old = "enable_public_ip: false"
		if !strings.Contains(cfg, old) {
			t.Fatalf("the runner config has no %q", old)
		}
		return strings.Replace(cfg, old, "enable_public_ip: true", 1)
	})
	checkPublicIPConfig(t, r.driverWorld, true)
	gl, ecs, ec2 := r.stack.GitLab, r.stack.ECS, r.stack.EC2
	r.start()

	id := gl.EnqueueJob(testenv.JobSpec{Name: "public", Tags: []string{"fargate"}, Script: []string{`echo "ssh=$SSH_CONNECTION"`}})
	j := r.wait(id)
	tasks := ecs.Tasks()
	if j.State != "success" || len(tasks) != 1 {
		t.Fatalf("job %d = %s (%s) with %d tasks, want success with 1; trace:\n%s", j.ID, j.State, j.FailureReason, len(tasks), j.Trace)
	}
	if want := " " + tasks[0].PublicIP + " 22"; tasks[0].PublicIP == "" || !strings.Contains(string(j.Trace), want) {
		t.Errorf("the job's SSH_CONNECTION does not end in%s (private %s); trace:\n%s", want, tasks[0].IP, j.Trace)
	}
	if n := ec2.Calls("DescribeNetworkInterfaces"); n != 1 {
		t.Errorf("DescribeNetworkInterfaces called %d times for one task, want 1", n)
	}

	ecs.SetTaskBehaviour(testenv.ECSTaskBehaviour{NoPublicIP: true})
	id = gl.EnqueueJob(testenv.JobSpec{Name: "no-public-ip", Tags: []string{"fargate"}, Script: []string{"echo should not run"}})
	j = r.wait(id)
	lines := traceLines(j, "panic:", "ERROR:", "Preparation failed", "retried")
	tries := ecs.Tasks()[1:]
	t.Logf("job %d = %s (%s), %d tasks; trace says: %q", j.ID, j.State, j.FailureReason, len(tries), lines)
	if j.State != "failed" || j.FailureReason != "runner_system_failure" || j.TraceHasLine("should not run") ||
		!strings.Contains(string(j.Trace), "nil pointer dereference") {
		t.Errorf("job %d = %s (%s), want failed as runner_system_failure with the driver's panic in the trace:\n%s", j.ID, j.State, j.FailureReason, j.Trace)
	}
	// The runner reports the job before its last cleanup stage ends: wait for that StopTask.
	for deadline := time.Now().Add(20 * time.Second); ecs.Calls("StopTask") < 1+len(tries) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if n := ecs.Calls("StopTask"); n != 1+len(tries) {
		t.Errorf("StopTask called %d times, want %d: once per job's or try's cleanup (the panicking prepare stops nothing)", n, 1+len(tries))
	}
	tries = ecs.Tasks()[1:]
	var running []string
	for _, task := range tries {
		if task.PublicIP != "" {
			t.Errorf("task %s has a public IP", task.ARN)
		}
		if task.LastStatus != "STOPPED" {
			running = append(running, task.ARN)
		}
	}
	if n := ec2.Calls("DescribeNetworkInterfaces"); n != 1+len(tries) {
		t.Errorf("DescribeNetworkInterfaces called %d times, want once per task (%d)", n, 1+len(tries))
	}
	if len(tries) != 3 || len(running) != 0 {
		t.Errorf("%d prepare tries, tasks left running %v: want 3 tries, each task stopped by its cleanup stage", len(tries), running)
	}
	r.finish()
}
