package runner

import (
	"context"
	"fmt"
	"os"

	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/iampolicy"
	"github.com/glbootstrap/glbootstrap/roles/runner/preflight"
)

// NewPreflight resolves what the checks need (the region, the subnet and the front's address and
// security groups: the configuration's, else the instance's, as in Prepare) without reading any
// secret, so "glbootstrap doctor" works before registration.
func NewPreflight(ctx context.Context, d Deps) (*preflight.Preflight, error) {
	f, err := resolveFacts(ctx, d, factNeeds{place: true, front: true})
	if err != nil {
		return nil, err
	}
	return newPreflight(d, f)
}

// newPreflight builds the checks' input from the configuration and the resolved facts.
func newPreflight(d Deps, f Facts) (*preflight.Preflight, error) {
	if d.NewPreflight == nil {
		return nil, fmt.Errorf("no AWS clients for the preflight checks")
	}
	readers, err := d.NewPreflight(f.Region)
	if err != nil {
		return nil, fmt.Errorf("preparing the AWS clients for the preflight checks: %w", err)
	}
	cfg := d.Config
	fg, rc := cfg.Fargate, cfg.Runner
	recorded, err := recordedVersion(d.Host, fg.Driver)
	if err != nil {
		return nil, err
	}
	return preflight.New(preflight.Input{
		Region: f.Region, Subnet: f.SubnetID,
		Cluster: fg.Cluster, TaskDefinition: fg.TaskDefinition, SecurityGroup: fg.SecurityGroup,
		SSHPort: fg.SSH.Port, EnablePublicIP: fg.EnablePublicIP,
		Runner:  preflight.Runner{Concurrent: rc.Concurrent, Limit: rc.Limit, RequestConcurrency: rc.RequestConcurrency, User: rc.User},
		Driver:  preflight.Driver{Version: fg.Driver.Version, SHA256: fg.Driver.SHA256, Path: fg.Driver.Path, Recorded: recorded},
		Dirs:    runnerDirs(cfg),
		Front:   preflight.Front{InstanceID: f.InstanceID, PrivateIPv4: f.PrivateIPv4, SecurityGroups: f.SecurityGroups},
		Machine: frontMachine(d),
		Cache:   preflightCache(rc.Cache, f.Region),
		Policy:  preflightPolicy(d, f),
		AWS:     readers,
		Host:    d.Host,
	}), nil
}

// preflightPolicy is the iam check's policy: the one "glbootstrap iam-policy" prints for this
// configuration, placed in the front role's partition and account, the front's region (the SSM
// parameters' and CodeBuild's: the SDK's AWS_REGION, else the instance's) and the tasks' region.
func preflightPolicy(d Deps, f Facts) preflight.PolicyFunc {
	return func(ctx context.Context, partition, account, roleName string, taskRoles []string) iampolicy.Policy {
		front := firstNonEmpty(os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"))
		if front == "" && d.Config.Fargate.Region == "" {
			front = f.Region
		}
		if front == "" && d.Facts != nil {
			if m, err := d.Facts.Get(ctx); err == nil {
				front = m.Region
			}
		}
		if front == "" {
			front = f.Region
		}
		return policy(d.Config, PolicyFacts{
			Place:         iampolicy.Place{Partition: partition, Account: account, Region: front},
			FargateRegion: d.Config.Fargate.Region, Source: d.Source, InstanceRole: roleName, TaskRoles: taskRoles,
		}).Policy
	}
}

// frontMachine tells the memory check the front's instance type, from instance metadata (read
// only when the check runs, and once: a run whose configuration gives every other fact may be
// off EC2), and, when glbootstrap runs on the front itself (--root /), its /proc/meminfo. Under
// another root this machine's memory says nothing about the front's.
func frontMachine(d Deps) preflight.Machine {
	meta := d.Facts
	if meta == nil {
		meta = imds.NewLazy(nil)
	}
	m := preflight.Machine{InstanceType: func(ctx context.Context) (string, error) {
		f, err := meta.Get(ctx)
		return f.InstanceType, err
	}}
	if d.Host != nil && d.Host.Live() {
		m.MemInfo = func() ([]byte, error) { return os.ReadFile("/proc/meminfo") }
	}
	return m
}

// preflight is the phase: it changes nothing; warnings become step warnings and failures the
// phase's error. Under plan, local state an earlier phase would create (directories, the
// driver) is not a failure.
func (r *Role) preflight(ctx context.Context) ([]host.Step, error) {
	p, err := newPreflight(r.d, r.facts)
	if err != nil {
		return nil, err
	}
	findings := p.Run(ctx)
	// Under plan, the directories and fargate-driver phases only recorded what they would
	// do; what they recorded is not a failure of this plan. (An apply Host records nothing.)
	pending := map[string]bool{}
	for _, a := range r.d.Host.Planned() {
		pending[a.Target] = true
	}
	isPending := func(check string) bool {
		paths := []string{r.cfg.Fargate.Driver.Path}
		if check == "directories" {
			paths = nil
			for _, d := range runnerDirs(r.cfg) {
				paths = append(paths, d.Path)
			}
		}
		for _, p := range paths {
			if pending[p] {
				return true
			}
		}
		return false
	}
	var steps []host.Step
	for i, f := range findings {
		if f.Status == preflight.CheckFail && (f.Check == "directories" || f.Check == "driver") && isPending(f.Check) {
			f.Status, f.Problem = preflight.CheckSkip, "pending: "+f.Problem+" (an earlier phase would fix it at apply)"
			findings[i] = f
		}
		st := host.Step{Kind: "check", Target: f.Resource, Summary: f.Check + " " + string(f.Status)}
		switch f.Status {
		case preflight.CheckOK:
			st.Summary += ": " + f.Detail
		case preflight.CheckWarn:
			// The printer shows the warning on its own line; the summary stays short.
			st.Warning = f.Problem + "; fix: " + f.Fix
		default:
			st.Summary += ": " + f.Problem
		}
		steps = append(steps, st)
	}
	return steps, preflight.FailedError(findings, false)
}

// runnerDirs are the runner's directories, the one list both the directories phase (which makes
// them) and the preflight's directories check (which looks at them) use: the driver's task
// metadata 0700 (it holds each task's SSH private key), builds and cache 0750.
func runnerDirs(cfg *Config) []preflight.Dir {
	return []preflight.Dir{{Path: cfg.Fargate.MetadataDir, Mode: 0o700}, {Path: cfg.Runner.BuildsDir, Mode: 0o750}, {Path: cfg.Runner.CacheDir, Mode: 0o750}}
}

// preflightCache is what the cache check reads of runner.cache: the bucket and the region
// config.toml names (runner.cache.region, else the tasks' region).
func preflightCache(c *Cache, region string) preflight.Cache {
	if c == nil {
		return preflight.Cache{}
	}
	return preflight.Cache{Bucket: c.Bucket, Region: firstNonEmpty(c.Region, region)}
}
