package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv/buildstack"
)

// BenchmarkCodeBuildUpload compares `glbootstrap codebuild run`'s upload path (zip streamed into
// an S3 multipart upload) with what users do today, `zip -r` then `aws s3 cp` (Debian's zip and
// awscli packages), on a generated 200 MiB source tree against gofakes3. It reports wall time
// and peak RSS of both; ours also on a 50 MiB tree, to show memory flat in the source size.
// Skipped when zip or aws is missing. Not run by CI (make bench).
func BenchmarkCodeBuildUpload(b *testing.B) {
	zipBin, err1 := exec.LookPath("zip")
	awsBin := "/usr/bin/aws" // Debian's awscli; a pyenv shim earlier in PATH may not work
	if _, err := os.Stat(awsBin); err != nil {
		awsBin, err = exec.LookPath("aws")
		if err != nil {
			err1 = err
		}
	}
	if err1 != nil {
		b.Skipf("needs zip and awscli (apt-get install zip awscli): %v", err1)
	}
	dir := b.TempDir()
	small := filepath.Join(dir, "small")
	big := filepath.Join(dir, "big")
	genTree(b, small, 50<<20)
	genTree(b, big, 200<<20)

	st := buildstack.Start(0)
	defer st.Close()
	st.CodeBuild.AddProject("bench")
	env := benchEnv(st)
	awsCfg := filepath.Join(dir, "aws-config")
	os.WriteFile(awsCfg, []byte("[default]\nregion = us-east-2\ns3 =\n  addressing_style = path\n"), 0o644)

	ours := func(src string) (time.Duration, int64) {
		return measure(b, env, binary, "codebuild", "run", "--project", "bench", "--source", src,
			"--bucket", buildstack.Bucket, "--poll-interval", "5ms")
	}
	peer := func(src string) (time.Duration, int64) {
		zipFile := filepath.Join(dir, "src.zip")
		os.Remove(zipFile)
		t1, r1 := measureIn(b, src, env, zipBin, "-r", "-q", zipFile, ".")
		var peerEnv []string
		for _, kv := range env {
			if !strings.HasPrefix(kv, "AWS_CONFIG_FILE=") {
				peerEnv = append(peerEnv, kv)
			}
		}
		peerEnv = append(peerEnv, "AWS_CONFIG_FILE="+awsCfg)
		t2, r2 := measure(b, peerEnv, awsBin, "--endpoint-url", st.S3.URL(), "--only-show-errors", "s3", "cp", zipFile,
			"s3://"+buildstack.Bucket+"/peer/src.zip")
		return t1 + t2, max(r1, r2)
	}

	var oursT, peerT time.Duration
	var oursRSS, oursSmallRSS, peerRSS int64
	for i := 0; i < b.N; i++ {
		t, r := ours(big)
		oursT += t
		oursRSS = max(oursRSS, r)
		_, r = ours(small)
		oursSmallRSS = max(oursSmallRSS, r)
		t, r = peer(big)
		peerT += t
		peerRSS = max(peerRSS, r)
	}
	n := float64(b.N)
	b.ReportMetric(oursT.Seconds()/n, "ours-s")
	b.ReportMetric(peerT.Seconds()/n, "zip+awscli-s")
	b.ReportMetric(peerT.Seconds()/oursT.Seconds(), "speedup-x")
	b.ReportMetric(float64(oursRSS)/(1<<20), "ours-rss-MiB")
	b.ReportMetric(float64(oursSmallRSS)/(1<<20), "ours-50MiB-tree-rss-MiB")
	b.ReportMetric(float64(peerRSS)/(1<<20), "zip+awscli-rss-MiB")
}

// genTree writes about size bytes of files under dir: half random (incompressible, like
// binaries and images), half text-like (source code), 256 KiB each, in nested directories.
func genTree(b *testing.B, dir string, size int) {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("func return package import type struct interface if else for range go defer chan select case default var const map string int error nil true false")
	const fileSize = 256 << 10
	for i := 0; i*fileSize < size; i++ {
		p := filepath.Join(dir, fmt.Sprintf("d%02d/s%02d/f%04d.dat", i%16, i%7, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		data := make([]byte, 0, fileSize)
		if i%2 == 0 {
			for len(data) < fileSize {
				data = append(data, byte(rng.Uint32()))
			}
		} else {
			for len(data) < fileSize {
				data = append(data, words[rng.IntN(len(words))]...)
				data = append(data, " \n\t"[rng.IntN(3)])
				if rng.IntN(10) == 0 {
					data = append(data, fmt.Sprintf("%d", rng.Uint64())...)
				}
			}
			data = data[:fileSize]
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEnv(st *buildstack.Stack) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	for k, v := range st.Env() {
		if v != "" { // the aws CLI takes AWS_PROFILE="" for a profile named ""
			env = append(env, k+"="+v)
		}
	}
	return env
}

func measure(b *testing.B, env []string, name string, args ...string) (time.Duration, int64) {
	return measureIn(b, "", env, name, args...)
}

// measureIn runs a command and returns its wall time and peak RSS in bytes. The peak is the
// child's VmHWM from /proc, read every few milliseconds until it exits: getrusage's ru_maxrss
// is no use here, since a child forked from this (large) test process starts with the parent's
// high-water mark.
func measureIn(b *testing.B, dir string, env []string, name string, args ...string) (time.Duration, int64) {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	done, exited := make(chan struct{}), make(chan struct{})
	var peak int64
	go func() {
		defer close(done)
		for {
			if hwm, ok := vmHWM(status); ok && hwm > peak {
				peak = hwm
			}
			select {
			case <-time.After(2 * time.Millisecond):
			case <-exited:
				return
			}
		}
	}()
	err := cmd.Wait()
	wall := time.Since(start)
	close(exited)
	<-done
	if err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out.String())
	}
	return wall, peak
}

// vmHWM reads the peak resident set size (VmHWM) from a /proc/PID/status file, in bytes. Start
// returns after exec, so every read sees the new program's own memory.
func vmHWM(path string) (int64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return kb * 1024, true
		}
	}
	return 0, false
}
