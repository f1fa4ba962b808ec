# glbootstrap — see README.md. Every target works on a fresh Debian 12 machine with Go 1.26.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/glbootstrap/glbootstrap/internal/cli.Version=$(VERSION)
BIN      := bin/glbootstrap
MOCK     := bin/ec2-metadata-mock

.PHONY: build demo test bench lint tools clean system-test release coordinator-base

build: $(BIN)

$(BIN): FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/glbootstrap

# AWS's own instance metadata mock, built from the module pinned in go.mod (tool directive), with
# the flags demo builds it with, so one reuses the other's compiled packages.
MOCK_PKG := github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock
$(MOCK): go.mod
	CGO_ENABLED=0 $(GO) build -trimpath -o $(MOCK) $(MOCK_PKG)

tools: $(MOCK)

# Release binaries for both EC2 architectures (arm64: Graviton fronts) and their SHA256SUMS, the
# file `glbootstrap userdata --sha256` takes its value from.
release:
	rm -rf dist && mkdir -p dist
	for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/glbootstrap-linux-$$arch ./cmd/glbootstrap || exit 1; \
	done
	cd dist && sha256sum glbootstrap-linux-* > SHA256SUMS && cat SHA256SUMS

# The main job: stand-ins for IMDS, S3, SSM, GitLab and the Fargate setup, then the GitLab host and the
# runner front converged into ./sandbox (plan, apply, apply again, backup, doctor), scanned for secrets.
# Its three programs are built by one go build with one set of flags (no cgo, -trimpath), so the
# standard library and the AWS SDK packages they share are compiled once, two at a time. A cold
# first run downloads 65 modules (each named, `go list -x` shows every request) and then compiles
# about 500 packages; -v names each one as it starts. See README, "Building the demo".
# The AWS SDK's service/ec2 is the longest compile by far (about a minute by itself, 3.3 GB
# resident), GitLab's client-go the next: named first, go build starts them as soon as their own
# dependencies are built (it prefers what is named first), so they compile beside the rest instead
# of after it. go build -o DIR links only main packages (it skips the others), hence two steps.
DEMO_PKGS := ./cmd/glbootstrap $(MOCK_PKG) ./internal/testenv/cmd/glb-demo
DEMO_SLOW := github.com/aws/aws-sdk-go-v2/service/ec2 gitlab.com/gitlab-org/api/client-go
demo:
	@echo "demo: downloading the Go modules glbootstrap, AWS's metadata mock and the stand-ins need (nothing to do when they are in the module cache)"
	CGO_ENABLED=0 $(GO) list -x -deps $(DEMO_PKGS) >/dev/null
	@echo "demo: compiling (cold: about 3 minutes on 2 idle cores, 3.3 GB of memory at the peak (compiling the AWS SDK's service/ec2); -v names each package as it starts compiling)"
	CGO_ENABLED=0 $(GO) build -v -trimpath $(DEMO_SLOW) $(DEMO_PKGS)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(DEMO_PKGS)
	@echo "demo: built; starting the stand-ins"
	GLB_IMDS_MOCK=$(CURDIR)/$(MOCK) bin/glb-demo -bin $(BIN) -sandbox sandbox

test: tools
	GLB_IMDS_MOCK=$(CURDIR)/$(MOCK) GLB_BASE_ROOT=$(BASE_ROOT) $(GO) test -count=1 -timeout 30m ./...

# The coordinator image's base for the tests that build templates/coordinator with buildah
# (internal/testenv.BuildCoordinatorImage imports it under the Dockerfile's FROM name): a minbase
# bookworm rootfs, made once (the tests make it too when it is missing, inside their time limit).
BASE_ROOT ?= /var/tmp/glb-base
coordinator-base:
	@test -x $(BASE_ROOT)/usr/bin/apt-get || { \
	  rm -rf $(BASE_ROOT).new && \
	  debootstrap --variant=minbase bookworm $(BASE_ROOT).new http://deb.debian.org/debian && \
	  rm -rf $(BASE_ROOT) && mv $(BASE_ROOT).new $(BASE_ROOT); }

# Opt-in system tests in booted systemd-nspawn containers: the live D-Bus systemd path
# (internal/systemd Live), apply --role runner and apply --role gitlab on the live system against
# the stand-ins; needs root, systemd-container and debootstrap. Not part of test. ssh.service is
# disabled in the rootfs (the containers share the host's network; the GitLab test starts sshd on
# a loopback port of its own). curl and ca-certificates are there as on Debian's cloud images: the
# generated user-data downloads glbootstrap with them (internal/userdata). The rootfs is made again
# (beside the old one, then swapped in) when a cache from before a package was included lacks it.
NSPAWN_ROOT ?= /var/tmp/glb-nspawn
system-test: tools coordinator-base
	@test -x $(NSPAWN_ROOT)/usr/lib/systemd/systemd -a -x $(NSPAWN_ROOT)/usr/sbin/sshd -a -x $(NSPAWN_ROOT)/usr/bin/curl || { \
	  rm -rf $(NSPAWN_ROOT).new && \
	  debootstrap --variant=minbase --include=systemd,dbus,systemd-sysv,openssh-server,curl,ca-certificates bookworm $(NSPAWN_ROOT).new http://deb.debian.org/debian && \
	  systemctl --root=$(NSPAWN_ROOT).new disable ssh.service && \
	  rm -rf $(NSPAWN_ROOT) && mv $(NSPAWN_ROOT).new $(NSPAWN_ROOT); }
	GLB_SYSTEM_TEST=1 GLB_NSPAWN_ROOT=$(NSPAWN_ROOT) GLB_BASE_ROOT=$(BASE_ROOT) GLB_IMDS_MOCK=$(CURDIR)/$(MOCK) $(GO) test -count=1 -v -run '^(TestLiveSystemd|TestSystemRunnerLive|TestSystemRealRunnerJob|TestSystemRealRunnerBootedAMI|TestSystemRealRunnerScenarios|TestSystemGitLabLive|TestSystemGitLabBackupRoundTrip|TestSystemGitLabPackageUpgrade|TestSystemUserdataRuns|TestSystemAptEnsure|TestSystemDnfEnsure|TestSystemStockImageUserdata|TestSystemBakeThenBoot)$$' ./internal/systemd ./internal/userdata ./internal/pkg ./cmd/glbootstrap

# Go benchmarks, including a whole-process no-op apply next to an Ansible playbook doing the same
# file converge (bench/noop-playbook.yml; needs Debian's ansible-core, skipped without it), and
# the front's sizing: BenchmarkFrontSizing runs the real gitlab-runner 17.9.3 and Fargate driver
# with 1, then 20 jobs at once and prints the runner's memory (idle, peak, MiB per running job)
# and the per-job overhead (needs root and ../shared/consumers; skipped without them).
bench: build tools
	GLB_IMDS_MOCK=$(CURDIR)/$(MOCK) $(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...
	@ls -l $(BIN) | awk '{printf "binary size: %.1f MiB (%s)\n", $$5/1048576, $$9}'

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin sandbox dist

FORCE:
