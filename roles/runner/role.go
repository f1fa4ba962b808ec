// Package runner is the runner front role: a small EC2 instance whose
// gitlab-runner (custom executor) runs every job as an AWS Fargate task
// through GitLab's Fargate driver, talking to GitLab over its private
// address.
package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/gitlabapi"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/role"
	"github.com/glbootstrap/glbootstrap/internal/systemd"
	"github.com/glbootstrap/glbootstrap/roles/runner/preflight"
)

// Name is the role's name on the command line.
const Name = "runner"

// Definition is the runner front role, for the registry (roles/registry.go).
var Definition = role.Definition{
	Name:      Name,
	Title:     "the runner front",
	NewConfig: func() config.Document { return new(Config) },
	Phases:    PhaseList,
	Prepare:   prepare,
	Seal: role.Seal{
		Units: []string{ServiceUnit},
		// config.toml is the package's default here (Check refused any runner in it): the
		// boot converge renders it.
		Remove:      []string{SystemIDFile, ConfigTOML},
		Check:       checkSealable,
		InstallHint: "set runner.version, which the packages phase installs from GitLab's repository, or install gitlab-runner first",
	},
	Policy: Policy,
}

// checkSealable refuses to bake a front that holds a runner authentication token: in
// config.toml (any [[runners]] section, glbootstrap's or not) or in glbootstrap's state file.
// Every instance booted from the image would share it.
func checkSealable(h *host.Host) error {
	const fix = "an image must not carry a runner token: run `glbootstrap runner unregister --config SRC` on this host (or delete the runner in GitLab and remove %s), then bake again"
	if b, err := h.ReadFile(ConfigTOML); err == nil && regexp.MustCompile(`(?m)^\s*\[\[runners\]\]`).Match(b) {
		return fmt.Errorf("%s has a [[runners]] section with its token: "+fix, ConfigTOML, ConfigTOML)
	}
	if b, err := h.ReadFile(StateFile); err == nil && strings.Contains(string(b), `"token"`) {
		var st State
		if json.Unmarshal(b, &st) == nil && st.Token != "" {
			return fmt.Errorf("%s records runner %d with its token: "+fix, StateFile, st.RunnerID, StateFile)
		}
	}
	return nil
}

// prepare wires the role to what the command line hands every role.
func prepare(ctx context.Context, env role.Env, doc config.Document) (role.Prepared, error) {
	cfg := doc.(*Config)
	d := Deps{
		Host:    env.Host,
		Config:  cfg,
		Facts:   env.Facts,
		Params:  env.AWS,
		Objects: env.AWS,
		NewPreflight: func(region string) (preflight.Readers, error) {
			return preflight.ReadersFor(env.AWS, region)
		},
		NewGitLab:      env.GitLab,
		Units:          env.Units,
		Progress:       env.Progress,
		AllowDowngrade: env.AllowDowngrade,
		BakeOnly:       env.BakeOnly,
		Selected:       env.Selected,
		Source:         env.Source,
	}
	if co := cfg.Coordinator; co != nil && env.Images != nil {
		d.Coordinator = env.Images(role.ImageSpec{Repository: co.Repository, Project: co.CodeBuildProject,
			Bucket: co.Bucket, KeyPrefix: co.KeyPrefix, Timeout: time.Duration(co.Timeout),
			BuildArgs: coordinatorBuildArgs(cfg)})
	}
	return Prepare(ctx, d)
}

// factNeeds says which facts a run needs.
type factNeeds struct {
	// place: the tasks' region and subnet (fargate.toml, the preflight); instance: this
	// instance's id (the runner's default name, the system id's provenance); front: the front's
	// address and security groups (the preflight's SSH path check).
	place, instance, front bool
}

// resolveFacts returns the facts want asks for, each from its configuration key when that is
// set, else from instance metadata, which is read once and only if some fact needs it.
func resolveFacts(ctx context.Context, d Deps, want factNeeds) (Facts, error) {
	cfg, meta := d.Config, d.Facts
	if meta == nil {
		meta = imds.NewLazy(nil)
	}
	var f Facts
	var err error
	or := func(dst *string, given, key string, pick func(imds.Facts) string) {
		if err == nil {
			*dst, err = meta.Or(ctx, given, key, pick)
		}
	}
	if want.place {
		or(&f.Region, cfg.Fargate.Region, "fargate.region", func(m imds.Facts) string { return m.Region })
		or(&f.SubnetID, cfg.Fargate.Subnet, "fargate.subnet", func(m imds.Facts) string { return m.SubnetID })
	}
	if want.instance {
		or(&f.InstanceID, cfg.Instance.ID, "instance.id", func(m imds.Facts) string { return m.InstanceID })
	}
	if want.front {
		or(&f.PrivateIPv4, cfg.Instance.PrivateIPv4, "instance.private_ipv4", func(m imds.Facts) string { return m.PrivateIPv4 })
		if err == nil {
			f.SecurityGroups, err = meta.OrList(ctx, cfg.Instance.SecurityGroups, "instance.security_groups", func(m imds.Facts) []string { return m.SecurityGroups })
		}
	}
	return f, err
}

// Facts are the instance facts the phases use: each the configuration's (fargate.region,
// fargate.subnet, instance.*) when given, else instance metadata's.
type Facts struct {
	Region, InstanceID, PrivateIPv4, SubnetID string
	// SecurityGroups are the front's, for the preflight checks.
	SecurityGroups []string
}

// ParameterReader reads an SSM parameter with decryption.
type ParameterReader interface {
	Get(ctx context.Context, name string) (string, error)
}

// ObjectOpener opens an S3 object (for s3:// driver mirrors).
type ObjectOpener interface {
	Open(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error)
}

// GitLab is the runner lifecycle on GitLab's REST API (gitlabapi.Lifecycle): reads, and
// changes that return the step saying what was done, or under plan would be.
type GitLab = gitlabapi.Lifecycle

// Deps are what the role needs from the outside world; each phase uses a
// few of them.
type Deps struct {
	Host   *host.Host
	Config *Config
	// Facts reads instance metadata, once, when a fact the configuration does not give is needed
	// (nil: the real IMDS).
	Facts   *imds.Lazy
	Params  ParameterReader
	Objects ObjectOpener
	// NewGitLab connects to GitLab's private URL, trusting caPEM (nil =
	// system roots) in addition to the system roots.
	NewGitLab func(baseURL string, caPEM []byte) (GitLab, error)
	Units     systemd.Manager
	HTTP      *http.Client
	// Progress receives human progress lines (waiting for GitLab...).
	Progress func(string)
	// AllowDowngrade lets the packages phase install a runner.version older than the installed
	// gitlab-runner (apply --allow-downgrade).
	AllowDowngrade bool
	// BakeOnly says only bake-stage phases will run (directories, fargate-driver): Prepare then
	// reads no SSM parameter, no CA file and no instance fact.
	BakeOnly bool
	// Selected are the phases that will run; nil means all. Prepare resolves only the facts they
	// need.
	Selected []string
	// Source is the --config value; the preflight's IAM check asks for reading it when it is
	// ssm:/NAME or s3://BUCKET/KEY.
	Source string
	// NewPreflight returns the read-only AWS APIs of region the preflight checks use.
	NewPreflight func(region string) (preflight.Readers, error)
	// Coordinator builds and pushes the coordinator image; set when the configuration has a
	// coordinator section.
	Coordinator CoordinatorImage
}

// Role is a prepared runner front: inputs resolved, ready to converge.
type Role struct {
	d          Deps
	cfg        *Config
	facts      Facts
	privateURL string
	caPEM      []byte
	region     string
	subnet     string
	name       string
	secret     string // the token_parameter / access token / registration token value
	secrets    []string

	// set by the register phase for runner-config
	token      string
	runnerID   int64 // 0 when GitLab did not say (< 15.10)
	obtainedAt time.Time
	expiresAt  time.Time
	// identity is set by the register phase when this run gave the runner manager a new
	// .runner_system_id or a token config.toml did not hold ("system id", "token"): the service
	// phase then restarts a gitlab-runner that was already running with the old ones.
	identity []string
}

// PhaseList describes the role's phases for "glbootstrap phases" without
// resolving anything.
func PhaseList() []engine.Phase { return (&Role{}).Phases() }

// Phases returns the role's phases in order.
func (r *Role) Phases() []engine.Phase {
	return []engine.Phase{
		{Name: "packages", Stage: engine.Bake, Run: r.packages,
			Description: "install gitlab-runner at runner.version from GitLab's repository (or packages.mirror) and hold it; skipped without runner.version"},
		{Name: "directories", Stage: engine.Bake, Run: r.directories,
			Description: "metadata, builds and cache directories owned by the runner's user"},
		{Name: "fargate-driver", Stage: engine.Bake, Run: r.fargateDriver,
			Description: "download the pinned Fargate driver, verify its SHA-256, install it 0755"},
		{Name: "coordinator-image", Stage: engine.Boot, Run: r.coordinatorImage,
			Description: "build the coordinator image with CodeBuild and push it to ECR as latest, unless latest is already this build context (optional: coordinator section)"},
		{Name: "preflight", Stage: engine.Boot, Run: r.preflight,
			Description: "read-only AWS checks of what the Fargate driver needs: cluster, task definition, image, network, IAM"},
		{Name: "fargate-config", Stage: engine.Boot, Run: r.fargateConfig,
			Description: "render /etc/gitlab-runner/fargate.toml"},
		{Name: "register", Stage: engine.Boot, Run: r.register,
			Description: "obtain this runner manager's runner authentication token without duplicates"},
		{Name: "runner-config", Stage: engine.Boot, Run: r.runnerConfig,
			Description: "render /etc/gitlab-runner/config.toml (0600) with url and clone_url on GitLab's private address"},
		{Name: "service", Stage: engine.Boot, Run: r.service,
			Description: "enable and start gitlab-runner (it reloads config.toml by itself)"},
	}
}

// Prepare resolves everything the selected phases need from outside before
// any of them touches the host: the instance facts they use (from the
// configuration, else instance metadata), GitLab's private URL (from the
// config or its SSM parameter), the CA file, and the secret the chosen
// registration method needs. Any error here means nothing was changed.
func Prepare(ctx context.Context, d Deps) (*Role, error) {
	if err := checkDriverPin(d.Host, d.Config.Fargate.Driver); err != nil {
		return nil, err
	}
	if d.BakeOnly {
		// Bake phases need no fact, no GitLab and no secret, and an AMI bake may have no
		// access to them.
		return &Role{d: d, cfg: d.Config}, nil
	}
	r, err := prepareFacts(ctx, d)
	if err != nil {
		return nil, err
	}
	cfg := d.Config

	r.privateURL = cfg.GitLab.PrivateURL
	if r.privateURL == "" {
		v, err := d.Params.Get(ctx, cfg.GitLab.PrivateURLParameter)
		if err != nil {
			return nil, fmt.Errorf("reading gitlab.private_url_parameter: %w", err)
		}
		v = strings.TrimSpace(v)
		if msg := config.CheckPrivateURL(v); msg != "" {
			return nil, fmt.Errorf("SSM parameter %s (gitlab.private_url_parameter) holds %q: %s", cfg.GitLab.PrivateURLParameter, v, msg)
		}
		r.privateURL = v
	}
	r.privateURL = strings.TrimRight(r.privateURL, "/")

	if cfg.GitLab.CAFile != "" {
		pem, err := d.Host.ReadFile(cfg.GitLab.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading gitlab.ca_file: %w; put the PEM of the CA that signed GitLab's certificate there (user-data or the bake) or remove ca_file", err)
		}
		r.caPEM = pem
	}

	var param, what string
	switch rc := cfg.Runner; {
	case rc.TokenParameter != "":
		param, what = rc.TokenParameter, "runner.token_parameter"
	case rc.Create != nil:
		param, what = rc.Create.AccessTokenParameter, "runner.create.access_token_parameter"
	default:
		param, what = rc.RegistrationTokenParameter, "runner.registration_token_parameter"
	}
	v, err := d.Params.Get(ctx, param)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	r.secret = strings.TrimSpace(v)
	if r.secret == "" {
		return nil, fmt.Errorf("SSM parameter %s (%s) is empty: put the token in it", param, what)
	}
	r.secrets = []string{r.secret}
	return r, nil
}

// prepareFacts returns the role with the facts its selected phases use: the tasks' region and
// subnet (fargate-config, preflight), this instance's id (register, and runner-config for the
// default name), the front's address and security groups (preflight).
func prepareFacts(ctx context.Context, d Deps) (*Role, error) {
	cfg := d.Config
	r := &Role{d: d, cfg: cfg}
	runs := func(phase string) bool { return d.Selected == nil || slices.Contains(d.Selected, phase) }
	var err error
	r.facts, err = resolveFacts(ctx, d, factNeeds{
		// runner.cache.region defaults to the tasks' region, which config.toml then names.
		place:    runs("fargate-config") || runs("preflight") || runs("runner-config") && cfg.Runner.Cache != nil && cfg.Runner.Cache.Region == "",
		instance: runs("register") || cfg.Runner.Name == "" && runs("runner-config"),
		front:    runs("preflight"),
	})
	if err != nil {
		return nil, err
	}
	r.region, r.subnet = r.facts.Region, r.facts.SubnetID
	r.name = firstNonEmpty(cfg.Runner.Name, "fargate-"+r.facts.InstanceID)
	return r, nil
}

// Secrets are the secret values this run knows, for masking in output.
func (r *Role) Secrets() []string {
	out := append([]string(nil), r.secrets...)
	if r.token != "" {
		out = append(out, r.token)
	}
	return out
}

func (r *Role) runnerOwner() host.Owner {
	return host.Owner{User: r.cfg.Runner.User, Group: r.cfg.Runner.User}
}

// directories creates the driver's task-metadata directory (0700: it holds
// each task's SSH private key) and the builds and cache directories.
func (r *Role) directories(ctx context.Context) ([]host.Step, error) {
	var steps []host.Step
	for _, d := range runnerDirs(r.cfg) {
		st, err := r.d.Host.EnsureDir(d.Path, fsMode(d.Mode), r.runnerOwner())
		if err != nil {
			if host.IsNoSuchUser(err) {
				return steps, fmt.Errorf("%w: the gitlab-runner package creates the runner's user; install it when baking the AMI (https://docs.gitlab.com/runner/install/linux-repository/) or set runner.user", err)
			}
			return steps, err
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// fargateConfig renders fargate.toml.
func (r *Role) fargateConfig(ctx context.Context) ([]host.Step, error) {
	data, err := renderTOML(fargateFile(r.cfg.Fargate, r.region, r.subnet))
	if err != nil {
		return nil, err
	}
	st, err := r.d.Host.EnsureFile(host.File{Path: FargateTOML, Data: data, Mode: 0o644})
	return []host.Step{st}, err
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
