// Package gitlab is the GitLab Omnibus host role: a private instance behind an NLB that
// forwards HTTPS and git over SSH, configured through one gitlab.rb fragment that glbootstrap
// owns, reconfigured only when that fragment changes, reachable by people through SSM Session
// Manager only, and publishing its private URL for the runner fronts.
package gitlab

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/aws/imds"
	s3api "github.com/glbootstrap/glbootstrap/internal/aws/s3"
	"github.com/glbootstrap/glbootstrap/internal/backup"
	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/pkg"
	"github.com/glbootstrap/glbootstrap/internal/role"
	"github.com/glbootstrap/glbootstrap/internal/systemd"
)

// Name is the role's name on the command line.
const Name = "gitlab"

// Definition is the GitLab host role, for the registry (roles/registry.go).
var Definition = role.Definition{
	Name:      Name,
	Title:     "the GitLab host",
	NewConfig: func() config.Document { return new(Config) },
	Phases:    PhaseList,
	Prepare:   prepare,
	Policy:    Policy,
	Seal: role.Seal{
		// gitlab-runsvdir.service is made by the first reconfigure, at boot, not by the package
		// (omnibus-gitlab files/gitlab-cookbooks/package/recipes/runit_systemd.rb): nothing to stop.
		Installed: func(h *host.Host) error {
			if h.Exists(VersionManifest) {
				return nil
			}
			return fmt.Errorf("GitLab Omnibus is not installed (%s is missing), so an image baked now could not run the role: "+
				"set gitlab.version (e.g. \"18.5.1\"), which the packages phase installs from GitLab's repository, then bake again", VersionManifest)
		},
	},
}

// prepare wires the role to what the command line hands every role.
func prepare(ctx context.Context, env role.Env, doc config.Document) (role.Prepared, error) {
	// Before any Omnibus program (the package's scripts, reconfigure, gitlab-backup) starts.
	if note := pkg.ScrubOmnibusEnvNote(pkg.ScrubOmnibusEnv()); note != "" && env.Progress != nil {
		env.Progress(note)
	}
	binary := ""
	if env.Host.Live() {
		// The backup service runs this very binary; under --root the bake's path.
		binary, _ = os.Executable()
	}
	return Prepare(ctx, Deps{
		Host:         env.Host,
		Config:       doc.(*Config),
		Facts:        env.Facts,
		Params:       env.AWS,
		Objects:      env.AWS,
		Progress:     env.Progress,
		BackupCheck:  env.BackupCheck,
		Units:        env.Units,
		ConfigSource: env.Source,
		Binary:       binary,
		BakeOnly:     env.BakeOnly,
		Plan:         env.Plan,
		BackupFirst: func(ctx context.Context, region string) error {
			c, err := env.AWS.Config(region)
			if err != nil {
				return err
			}
			cfg := doc.(*Config)
			_, err = (&backup.Runner{Host: env.Host, Store: s3api.New(c), Config: cfg.Backup, Log: env.Progress}).Run(ctx)
			return err
		},
	})
}

// Paths on the GitLab host. The fragment, the password file and gitlab.rb live in /etc/gitlab,
// which Omnibus keeps 0775 root and whose gitlab.rb it expects 0600.
const (
	GitLabRB = "/etc/gitlab/gitlab.rb"
	// FragmentPath is the gitlab.rb fragment glbootstrap owns.
	FragmentPath = "/etc/gitlab/glbootstrap.rb"
	// RootPasswordFile holds the initial root password until the first reconfigure (0600).
	RootPasswordFile = "/etc/gitlab/glbootstrap-initial-root-password.rb"
	// OmnibusPasswordFile is where Omnibus keeps a password it generated itself (for 24 hours).
	OmnibusPasswordFile = "/etc/gitlab/initial_root_password"
	// StateFile records what the last successful reconfigure applied.
	StateFile = "/var/lib/glbootstrap/gitlab.json"
	// VersionManifest is written by the Omnibus package; its first line is "gitlab-ee 18.5.1".
	VersionManifest = "/opt/gitlab/version-manifest.txt"
	// GitLabCtl is Omnibus's control command (also linked as /usr/bin/gitlab-ctl).
	GitLabCtl = "/opt/gitlab/bin/gitlab-ctl"
	// SSHDropIn is the sshd drop-in; see templates/ssh/glbootstrap.conf.tmpl for why it is 00-.
	SSHDropIn  = "/etc/ssh/sshd_config.d/00-glbootstrap.conf"
	SSHDConfig = "/etc/ssh/sshd_config"
	SSHD       = "/usr/sbin/sshd"
	// DefaultGitUser is Omnibus's git user (user['username']).
	DefaultGitUser = "git"
)

// Facts are the instance facts the role uses: each the configuration's when given
// (instance.vpc_cidr, instance.private_ipv4, backup.region), else instance metadata's.
type Facts struct {
	// PrivateIPv4 is local-ipv4: the published private URL is https://<PrivateIPv4> unless
	// gitlab.private_url is set.
	PrivateIPv4 string
	// Region is the instance's region: the backup bucket's unless backup.region says otherwise.
	Region string
	// VPCCIDR is the VPC's primary IPv4 CIDR, added to monitoring_whitelist (and trusted for the
	// PROXY protocol) so the runner fronts' readiness checks work.
	VPCCIDR string
}

// Parameters reads and writes SSM parameters (internal/aws/ssm.Client).
type Parameters interface {
	// Get returns a parameter's value, decrypted; errors wrap ssm.ErrNotFound when it is missing.
	Get(ctx context.Context, name string) (string, error)
	// Put makes name hold value (String, or SecureString when secure), reading first so an
	// unchanged value is not written again, and returns the step that says what it did (or,
	// under plan, would do). A SecureString's value is never in the step.
	Put(ctx context.Context, name, value string, secure bool) (host.Step, error)
}

// Deps are what the role needs from the outside world; each phase uses a few of them.
type Deps struct {
	// BakeOnly says only bake-stage phases run (glbootstrap bake): Prepare reads nothing.
	BakeOnly bool
	Host     *host.Host
	Config   *Config
	// Facts reads instance metadata, once, when a fact the configuration does not give is needed
	// (nil: the real IMDS).
	Facts  *imds.Lazy
	Params Parameters
	// Objects reads S3 objects: gitlab.tls sources written s3://bucket/key.
	Objects ObjectOpener
	// WaitReady waits until GitLab on this host answers /-/readiness, for at most timeout; nil
	// uses the loopback probe of ready.go. It is only called on the live system, after a
	// reconfigure ran.
	WaitReady func(ctx context.Context, timeout time.Duration, progress func(string)) error
	// Progress receives human progress lines (waiting for GitLab...).
	Progress func(string)
	// BackupCheck checks the backup bucket (backup-preflight): backup.ApplyCheck, or
	// backup.PlanCheck under plan.
	BackupCheck backup.Checker
	// Units enables and starts the backup timer.
	Units systemd.Manager
	// ConfigSource is the --config apply was given; the backup service reads it again.
	ConfigSource string
	// Binary is the glbootstrap the backup service runs; "" means DefaultBinary.
	Binary string
	// Plan is true under glbootstrap plan: the packages phase only says what it would do.
	Plan bool
	// BackupFirst makes one backup with the code of "glbootstrap backup run" to the bucket in
	// region, before a package upgrade (packages phase, live system only).
	BackupFirst func(ctx context.Context, region string) error
	// Install installs or upgrades the Omnibus package; nil means internal/pkg's Manager.Ensure.
	Install func(ctx context.Context, req pkg.Request) ([]host.Step, error)
}

// Role is a prepared GitLab host: inputs resolved and the fragment rendered, ready to converge.
type Role struct {
	d          Deps
	cfg        *Config
	facts      Facts
	fragment   []byte // the desired /etc/gitlab/glbootstrap.rb
	privateURL string // what publish-private-url writes ("" when nothing is published)
	gitUser    string
	state      State
	password   string // the initial root password; "" when not needed or not configured
	secrets    []string
	tls        tlsFiles // nginx's certificate (tls.go)
	version    string   // the Omnibus version the fragment is for: installed, else gitlab.version
	// upgradeFrom is the installed version the packages phase upgrades from ("": no upgrade).
	upgradeFrom string

	includeChanged bool // set by gitlab-rb-include: gitlab.rb gained the from_file line
}

// State is /var/lib/glbootstrap/gitlab.json: what the last successful gitlab-ctl reconfigure
// applied. A reconfigure that fails clears FragmentSHA256, so the next apply tries again.
type State struct {
	// Configured is true once a reconfigure has run on the live system.
	Configured bool `json:"configured"`
	// FragmentSHA256 is the hex SHA-256 of the fragment that reconfigure applied.
	FragmentSHA256 string `json:"fragment_sha256"`
	// PendingSHA256 is the fragment an apply under --root wanted applied but could not run
	// gitlab-ctl reconfigure for ("reconfigure pending"); the first apply on the live system
	// runs it.
	PendingSHA256 string `json:"reconfigure_pending_sha256,omitempty"`
	// ReconfiguredAt is when (UTC).
	ReconfiguredAt time.Time `json:"reconfigured_at"`
	// UpgradedTo is the Omnibus version the packages phase upgraded to since the last
	// reconfigure: reconfigure is due even though the fragment did not change.
	UpgradedTo string `json:"upgraded_to,omitempty"`
}

// PhaseList describes the role's phases for "glbootstrap phases" without resolving anything.
func PhaseList() []engine.Phase { return (&Role{}).Phases() }

// Phases returns the role's phases in order. The fragment and the from_file line come before
// the root password and reconfigure, which must see both; sshd and the published URL come last,
// so runners find the URL only once GitLab has been configured.
func (r *Role) Phases() []engine.Phase {
	return []engine.Phase{
		{Name: "packages", Stage: engine.Bake, Run: r.packages,
			Description: "install gitlab-<edition> at gitlab.version (held), or upgrade it within GitLab's required upgrade stops: " + SkipAutoReconfigure + ", a backup first when backup: is set, the package; reconfigure follows"},
		{Name: "omnibus", Stage: engine.Boot, Run: r.omnibus,
			Description: "check that the Omnibus package (gitlab.edition, gitlab.version) is installed; the AMI bake installs it"},
		{Name: "backup-preflight", Stage: engine.Boot, Run: r.backupPreflight,
			Description: "backup bucket in the expected region; the instance profile may write (with the configured encryption) and delete there"},
		{Name: "gitlab-fragment", Stage: engine.Boot, Run: r.gitlabFragment,
			Description: "render " + FragmentPath + ": external_url, NLB, SSH port, monitoring whitelist, settings"},
		{Name: "gitlab-rb-include", Stage: engine.Boot, Run: r.gitlabRBInclude,
			Description: "make " + GitLabRB + " load the fragment with from_file, leaving the admin's lines alone"},
		{Name: "gitlab-tls", Stage: engine.Boot, Run: r.gitlabTLS,
			Description: "with TLS passthrough: nginx's certificate and key from SSM (gitlab.tls) in " + SSLDir + ", checked; refuse to go on without one"},
		{Name: "root-password", Stage: engine.Boot, Run: r.rootPassword,
			Description: "first configuration only: the initial root password from SSM in a 0600 file"},
		{Name: "reconfigure", Stage: engine.Boot, Run: r.reconfigure,
			Description: "gitlab-ctl reconfigure when the fragment or the from_file line changed, then wait for /-/readiness"},
		{Name: "backup-timer", Stage: engine.Boot, Run: r.backupTimer,
			Description: "systemd timers and services that run glbootstrap backup run on backup.schedule and backup verify weekly"},
		{Name: "sshd", Stage: engine.Boot, Run: r.sshd,
			Description: "sshd drop-in: git over SSH only, no passwords, no root; checked with sshd -t before reload"},
		{Name: "publish-private-url", Stage: engine.Boot, Run: r.publishPrivateURL,
			Description: "write GitLab's private URL to the SSM parameter the runner fronts read"},
	}
}

// Prepare resolves everything the phases need before any of them touches the host: the facts,
// the fragment (rendered here, so a rendering problem changes nothing), the private URL, the
// state of the last reconfigure and, when GitLab was never configured, the initial root
// password from SSM. Any error here means nothing was changed.
func Prepare(ctx context.Context, d Deps) (*Role, error) {
	cfg := d.Config
	r := &Role{d: d, cfg: cfg, gitUser: DefaultGitUser}
	// A jump across a required upgrade stop, or a downgrade, changes nothing (exit 3).
	if err := r.checkUpgrade(); err != nil {
		return nil, &role.ConfigError{Err: err}
	}
	if d.BakeOnly {
		// glbootstrap bake: only the packages phase runs; nothing else is read (no instance
		// metadata, no SSM parameter, no secret).
		return r, nil
	}
	var err error
	if r.facts, err = resolveFacts(ctx, d); err != nil {
		return nil, err
	}
	if u, ok := userSetting(cfg); ok {
		r.gitUser = u
	}

	if cfg.GitLab.PublishPrivateURLParameter != "" {
		pu, err := privateURL(cfg, r.facts)
		if err != nil {
			return nil, err
		}
		r.privateURL = pu
	}

	r.version = installedVersion(d.Host)
	if r.version == "" || r.upgradeFrom != "" {
		r.version = cfg.GitLab.Version
	}
	frag, err := renderFragmentFor(cfg, r.facts, r.version)
	if err != nil {
		return nil, err
	}
	r.fragment = frag

	if r.state, err = readState(d.Host); err != nil {
		return nil, err
	}
	if r.tls, err = resolveTLS(ctx, d, cfg); err != nil {
		return nil, err
	}
	r.secrets = append(r.secrets, keySecrets(r.tls.key)...)
	if p := cfg.GitLab.InitialRootPasswordParameter; p != "" && !r.state.Configured {
		v, err := d.Params.Get(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("reading gitlab.initial_root_password_parameter: %w", err)
		}
		v = strings.TrimRight(v, "\r\n")
		if v == "" {
			return nil, fmt.Errorf("SSM parameter %s (gitlab.initial_root_password_parameter) is empty: put the initial root password in it", p)
		}
		if len(v) < 8 {
			// GitLab refuses shorter passwords (minimum_password_length, default 8) and would
			// then generate one itself, silently.
			return nil, fmt.Errorf("SSM parameter %s (gitlab.initial_root_password_parameter) holds fewer than 8 characters, which GitLab refuses: store a longer password", p)
		}
		r.password = v
		lit := rubyString(v)
		r.secrets = append(r.secrets, v, lit[1:len(lit)-1])
	}
	return r, nil
}

// Secrets are the secret values this run knows, for masking in output.
func (r *Role) Secrets() []string { return append([]string(nil), r.secrets...) }

// resolveFacts returns the facts this configuration needs, each from its key when set, else from
// instance metadata, which is read once and only if some fact needs it: the VPC CIDR always (the
// fragment's monitoring_whitelist), the private address only to publish a private URL that
// gitlab.private_url does not give, the region only for a backup bucket without backup.region.
func resolveFacts(ctx context.Context, d Deps) (Facts, error) {
	cfg, meta := d.Config, d.Facts
	if meta == nil {
		meta = imds.NewLazy(nil)
	}
	var f Facts
	var err error
	f.VPCCIDR, err = meta.Or(ctx, cfg.Instance.VPCCIDR, "instance.vpc_cidr", func(m imds.Facts) string { return m.VPCCIDR })
	if err == nil && cfg.GitLab.PublishPrivateURLParameter != "" && cfg.GitLab.PrivateURL == "" {
		f.PrivateIPv4, err = meta.Or(ctx, cfg.Instance.PrivateIPv4, "gitlab.private_url (or instance.private_ipv4)", func(m imds.Facts) string { return m.PrivateIPv4 })
	}
	if err == nil && cfg.Backup != nil && cfg.Backup.Region == "" {
		f.Region, err = meta.Or(ctx, "", "backup.region", func(m imds.Facts) string { return m.Region })
	}
	return f, err
}

// privateURL is what publish-private-url writes: gitlab.private_url when set, else the
// instance's private IPv4 with the external URL's relative path. With TLS terminated at the NLB,
// nginx serves plain HTTP, so the address is http:// (the runner role warns about it).
func privateURL(cfg *Config, f Facts) (string, error) {
	if cfg.GitLab.PrivateURL != "" {
		return strings.TrimRight(cfg.GitLab.PrivateURL, "/"), nil
	}
	if f.PrivateIPv4 == "" {
		return "", fmt.Errorf("instance metadata gave no private IPv4 (local-ipv4) for the published private URL: set gitlab.private_url or run on EC2")
	}
	ext, err := url.Parse(cfg.GitLab.URL)
	if err != nil {
		return "", fmt.Errorf("parsing gitlab.url: %w", err)
	}
	scheme := "https"
	if cfg.GitLab.NLB.TLSTermination {
		scheme = "http"
	}
	return scheme + "://" + f.PrivateIPv4 + strings.TrimRight(ext.Path, "/"), nil
}

// userSetting returns gitlab.settings' user.username (Omnibus's git user) when it is set.
func userSetting(cfg *Config) (string, bool) {
	m, ok := cfg.GitLab.Settings.Get("user").(map[string]any)
	if !ok {
		return "", false
	}
	u, ok := m["username"].(string)
	return u, ok && u != ""
}

func readState(h *host.Host) (State, error) {
	var st State
	b, err := h.ReadFile(StateFile)
	if host.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading %s: %w", StateFile, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s is not valid JSON (%v): remove it, and the next apply runs gitlab-ctl reconfigure again", StateFile, err)
	}
	return st, nil
}

// writeState records st (0600, like every state file of glbootstrap).
func (r *Role) writeState(st State) (host.Step, error) {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return host.Step{}, err
	}
	return r.d.Host.EnsureFile(host.File{Path: StateFile, Data: append(b, '\n'), Mode: 0o600})
}

// omnibus checks that Omnibus GitLab is installed. The packages phase (or the image) installs
// gitlab-<edition> at gitlab.version; a different version or edition here is a warning (under
// --root the package is not installed, and a restore needs the same version and edition).
func (r *Role) omnibus(ctx context.Context) ([]host.Step, error) {
	b, err := r.d.Host.ReadFile(VersionManifest)
	if host.IsNotExist(err) {
		want := "gitlab-" + editionOr(r.cfg.GitLab.Edition)
		if r.cfg.GitLab.Version != "" {
			want += " " + r.cfg.GitLab.Version
		}
		return nil, fmt.Errorf("GitLab Omnibus is not installed (%s is missing): bake the AMI with the %s package "+
			"(https://docs.gitlab.com/install/package/), or set gitlab.version for the packages phase to install it, and run apply again", VersionManifest, want)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", VersionManifest, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pkg, version, ok := strings.Cut(strings.TrimSpace(first), " ")
	if !ok || !strings.HasPrefix(pkg, "gitlab-") {
		return nil, fmt.Errorf("%s starts with %q, not \"gitlab-ee|ce VERSION\": reinstall the Omnibus package", VersionManifest, first)
	}
	st := host.Step{Kind: "package", Target: pkg, Summary: version + " installed"}
	var warn []string
	if want := "gitlab-" + editionOr(r.cfg.GitLab.Edition); pkg != want {
		warn = append(warn, fmt.Sprintf("%s is installed but gitlab.edition says %s", pkg, want))
	}
	if v := r.cfg.GitLab.Version; v != "" && v != version {
		warn = append(warn, fmt.Sprintf("version %s is installed but gitlab.version says %s", version, v))
	}
	if len(warn) > 0 {
		st.Warning = strings.Join(warn, "; ") + ": update the configuration (a restore needs the same version and edition) or the AMI"
	}
	return []host.Step{st}, nil
}

func editionOr(e string) string {
	if e == "" {
		return DefaultEdition
	}
	return e
}

func fsMode(m uint32) fs.FileMode { return fs.FileMode(m) }
