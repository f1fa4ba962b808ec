// Package role is the contract between the command line and the roles: what a role of glbootstrap
// is (Definition: its name, its configuration document, its phases and how it prepares them) and
// what the command line hands every role to prepare itself (Env). The roles of this build are
// listed once, in package roles (roles/registry.go); internal/cli and internal/config iterate that
// list and know no role by name.
package role

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
	"github.com/glbootstrap/glbootstrap/internal/backup"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/gitlabapi"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
	"github.com/glbootstrap/glbootstrap/internal/image"
	"github.com/glbootstrap/glbootstrap/internal/systemd"
)

// Definition is one role of the build.
type Definition struct {
	// Name is the role's name on the command line (--role runner), kebab-case.
	Name string
	// Title names the host the role makes, for messages: "the runner front".
	Title string
	// NewConfig returns an empty configuration document of the role (see config.Document): its
	// yaml tags are the keys the role reads, its Check the role's defaults and rules.
	NewConfig func() config.Document
	// Phases lists the role's phases without resolving anything, for "glbootstrap phases" and to
	// check --phase before any network call.
	Phases func() []engine.Phase
	// Prepare resolves the role's inputs (facts, secrets, GitLab's address) for cfg, a valid
	// document NewConfig made; an error means nothing was changed.
	Prepare func(ctx context.Context, env Env, cfg config.Document) (Prepared, error)
	// Seal is what `glbootstrap bake` does after the role's bake phases so that the image
	// carries nothing of this machine's identity (besides what every role's bake does: an
	// empty /etc/machine-id, no SSH host keys).
	Seal Seal
	// Policy builds the least-privilege IAM policy of the role's instance profile from cfg (a
	// valid document NewConfig made), for "glbootstrap iam-policy"; nil when the role has none.
	Policy func(ctx context.Context, cfg config.Document, in PolicyInput) (iampolicy.Document, error)
}

// Seal is a role's part of `glbootstrap bake`.
type Seal struct {
	// Units are stopped and disabled: they must not start at boot before the boot converge
	// has configured them (apply's service phase enables them again).
	Units []string
	// Remove are files the role's software made that identify this machine (gitlab-runner's
	// .runner_system_id, say); each boot makes its own.
	Remove []string
	// Check refuses to bake a host that holds a credential an image must not carry (a runner
	// token), with the fix; nil when the role has none.
	Check func(h *host.Host) error
	// Installed checks, after the bake phases, that the role's software is on the image (an
	// image without it could not run the role), with the fix; nil when Units says it all.
	Installed func(h *host.Host) error
	// InstallHint says how the bake installs the role's software, for the error when a unit is
	// missing ("set runner.version, which the packages phase installs").
	InstallHint string
}

// PolicyInput is what a role's Policy reads besides its configuration.
type PolicyInput struct {
	// Place is the host's partition, account and region (the region of its SSM parameters and of
	// the resources the configuration does not place elsewhere).
	Place iampolicy.Place
	// Source is the --config value: ssm:/NAME and s3://BUCKET/KEY are read by the host at every
	// boot (and by the backup service), so the policy grants reading them.
	Source string
	// InstanceRole is the instance profile's role name ("" when unknown: every role of the account).
	InstanceRole string
	// TaskRoles returns the task and execution role ARNs of an ECS task definition (family,
	// family:revision or ARN) in region, for iam:PassRole; nil when they cannot be looked up.
	TaskRoles func(ctx context.Context, region, taskDefinition string) ([]string, error)
}

// Schema is the role's configuration schema, for config.Parse.
func (d Definition) Schema() config.Schema {
	return config.Schema{Role: d.Name, Title: d.Title, New: d.NewConfig}
}

// ConfigError is a Prepare error that is the configuration's fault although only the host could
// tell (fargate.driver.version changed while fargate.driver.sha256 still names the installed
// release): the command exits 3, invalid configuration, having changed nothing.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Prepared is a role ready to converge.
type Prepared interface {
	// Phases are the role's phases in order, bound to the resolved inputs.
	Phases() []engine.Phase
	// Secrets are the secret values known so far, masked in all output.
	Secrets() []string
}

// Registry is the roles of a build, in the order the command line lists them.
type Registry []Definition

// Find returns the role called name.
func (r Registry) Find(name string) (Definition, bool) {
	for _, d := range r {
		if d.Name == name {
			return d, true
		}
	}
	return Definition{}, false
}

// Names are the roles' names, in order.
func (r Registry) Names() []string {
	out := make([]string, len(r))
	for i, d := range r {
		out[i] = d.Name
	}
	return out
}

// Schemas are the roles' configuration schemas, for config.Parse.
func (r Registry) Schemas() []config.Schema {
	out := make([]config.Schema, len(r))
	for i, d := range r {
		out[i] = d.Schema()
	}
	return out
}

// Check refuses a registry with an empty, duplicated or incomplete role, so a bad registry line
// fails at start-up (and in the tests) rather than when that role is used.
func (r Registry) Check() error {
	seen := map[string]bool{}
	for i, d := range r {
		switch {
		case d.Name == "" || strings.ToLower(d.Name) != d.Name || strings.ContainsAny(d.Name, " \t"):
			return fmt.Errorf("role %d: name %q is not a lower-case word", i, d.Name)
		case seen[d.Name]:
			return fmt.Errorf("role %q is registered twice", d.Name)
		case d.Title == "" || d.NewConfig == nil || d.Phases == nil || d.Prepare == nil:
			return fmt.Errorf("role %q: a definition needs Title, NewConfig, Phases and Prepare", d.Name)
		}
		seen[d.Name] = true
	}
	return nil
}

// Env is what the command line hands every role's Prepare. It is the same for every role: adding
// a role changes no command-line code. Everything in it connects lazily, so a role that needs no
// AWS and whose configuration gives every fact runs without network.
type Env struct {
	// AllowDowngrade lets a packages phase install a pinned version older than the installed
	// one (apply --allow-downgrade); refused otherwise.
	AllowDowngrade bool
	// Host is the machine to converge: the live system or a --root tree, in plan or apply mode.
	Host *host.Host
	// Plan is true under glbootstrap plan, for a phase whose effect is not the Host's (a
	// backup before a package upgrade) and must only be described.
	Plan bool
	// Facts are the instance's facts from instance metadata, read on the first fact a role needs
	// that its configuration does not give.
	Facts *imds.Lazy
	// AWS reaches the AWS APIs with the SDK's configuration.
	AWS AWS
	// Images keeps a container image built by CodeBuild as ECR's latest (the runner's
	// coordinator image); nil when the command cannot build images.
	Images func(ImageSpec) image.Converger
	// Units enables, starts, restarts and reloads systemd units on Host.
	Units systemd.Manager
	// GitLab connects to GitLab's REST API at baseURL, trusting caPEM (nil: the system roots)
	// for the runner lifecycle.
	GitLab func(baseURL string, caPEM []byte) (gitlabapi.Lifecycle, error)
	// BackupCheck checks a backup bucket (region, and at apply a marker written and deleted).
	BackupCheck backup.Checker
	//
	// Host, Images, Units, GitLab, BackupCheck and AWS.Put are the effects a role asks for. For
	// plan the command line wires implementations that read like apply's and only record what
	// they would change; a role never knows which it has, so a plan cannot act by construction.
	// Progress receives human progress lines (waiting for GitLab...).
	Progress func(string)
	// Source is the --config value, absolute when it is a file: a unit that reads the
	// configuration again later (the backup service) finds it whatever its working directory.
	Source string
	// BakeOnly is true when every selected phase is a bake phase: Prepare then reads no secret
	// (an AMI bake may have no access to them).
	BakeOnly bool
	// Selected are the names of the phases that will run (--phase, --skip-phases), in order; nil
	// means every phase. Prepare resolves only what they need, so a fact or secret that no
	// selected phase uses is never asked for.
	Selected []string
}

// AWS is the AWS access the command line shares with the roles. Clients are made on first use;
// the region is the SDK's own (AWS_REGION, shared config) or else the instance's.
type AWS interface {
	// Config returns the SDK configuration, with region ("" keeps the default) for services whose
	// resources live in another region (the Fargate cluster, the backup bucket).
	Config(region string) (aws.Config, error)
	// Get reads an SSM parameter, decrypting a SecureString; errors wrap ssm.ErrNotFound when it
	// does not exist.
	Get(ctx context.Context, name string) (string, error)
	// Put makes an SSM parameter hold value (String, or SecureString when secure), reading first
	// so an unchanged value is not written again, and returns the step saying what it did (or,
	// under plan, would do). A SecureString's value is never in the step.
	Put(ctx context.Context, name, value string, secure bool) (host.Step, error)
	// Open opens an S3 object and returns its body and size in bytes (-1 when unknown).
	Open(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error)
}

// ImageSpec says where an image is kept and how CodeBuild builds it.
type ImageSpec struct {
	// Repository is the ECR repository URI without a tag.
	Repository string
	// Project is the CodeBuild project, Bucket and KeyPrefix where the build context is uploaded.
	Project, Bucket, KeyPrefix string
	// Timeout bounds one build.
	Timeout time.Duration
	// BuildArgs are the Dockerfile's build args (image.SSHArgs); nil: its defaults.
	BuildArgs map[string]string
}
