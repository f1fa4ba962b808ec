package gitlab

import (
	"context"
	"fmt"
	"os"
	"regexp"

	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/render"
	"github.com/glbootstrap/glbootstrap/templates"
)

// gitUserRE is what may stand in AllowUsers: a plain user name, no patterns, no spaces.
var gitUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// renderSSHDropIn renders the sshd drop-in for the git user.
func renderSSHDropIn(gitUser string) ([]byte, error) {
	if !gitUserRE.MatchString(gitUser) {
		return nil, fmt.Errorf("gitlab.settings.user.username %q is not a plain user name (lower-case letters, digits, _ and -): it goes into sshd's AllowUsers", gitUser)
	}
	return render.Template(templates.FS, sshdTemplate, funcs, struct{ Header, GitUser string }{render.Header, gitUser})
}

// sshd installs the drop-in that keeps git over SSH for the git user only. When the drop-in is
// unchanged it still runs "sshd -t" on the live host, so a base sshd_config broken since the last
// apply fails the phase (the drop-in is left as it is). The new file is
// checked with "sshd -t" on a configuration that reads it first and then the host's whole
// sshd_config, before it replaces the old one: a failing check leaves the old drop-in in place
// and fails the phase with sshd's words. sshd is reloaded only when the file changed. Under a
// --root other than / neither the check nor the reload runs on this machine (the Host and the
// unit manager say so in their steps; the tests check the drop-in's text with sshd -t).
func (r *Role) sshd(ctx context.Context) ([]host.Step, error) {
	h := r.d.Host
	data, err := renderSSHDropIn(r.gitUser)
	if err != nil {
		return nil, err
	}
	st, err := h.EnsureFileChecked(host.File{Path: SSHDropIn, Data: data, Mode: 0o644},
		func(tmp string) error { return r.checkSSHD(ctx, tmp) })
	if err != nil {
		st.Changed, st.Summary, st.Diff = false, "kept the old drop-in", ""
		return []host.Step{st}, err
	}
	if !st.Changed {
		// The drop-in is as it should be, but the host's sshd_config may have been broken since:
		// sshd -t every apply, so a config that would keep sshd from starting again (after a
		// reboot or a package upgrade) is reported now, while the running sshd still serves.
		if h.Live() {
			if _, _, err := h.Check(ctx, nil, SSHD, "-t"); err != nil {
				return []host.Step{st}, fmt.Errorf("sshd -t rejects this host's sshd configuration (%s and what it includes; glbootstrap's %s is unchanged and stays as it is): "+
					"the running sshd still serves, but it will not start again after a reboot or an upgrade; fix the file sshd names, check with `sshd -t`: %w", SSHDConfig, SSHDropIn, err)
			}
		}
		return []host.Step{st}, nil
	}
	unit := "ssh.service" // Debian and Ubuntu
	if !h.Exists("/lib/systemd/system/ssh.service") && !h.Exists("/usr/lib/systemd/system/ssh.service") {
		unit = "sshd.service" // Amazon Linux, RHEL
	}
	if r.d.Units == nil {
		return []host.Step{st}, fmt.Errorf("no systemd manager available")
	}
	rl, err := r.d.Units.Reload(ctx, unit)
	if err != nil {
		return []host.Step{st, rl}, fmt.Errorf("the new drop-in passed sshd -t but reloading sshd failed; run systemctl reload %s: %w", unit, err)
	}
	return []host.Step{st, rl}, nil
}

// checkSSHD runs "sshd -t -f CONFIG" where CONFIG includes the candidate drop-in first and then
// the host's sshd_config (which includes sshd_config.d/*.conf; the candidate's temp name starts
// with a dot and does not end in .conf, so the glob never picks it up).
func (r *Role) checkSSHD(ctx context.Context, candidate string) error {
	cfg, err := os.CreateTemp("", "glbootstrap-sshd-*.conf")
	if err != nil {
		return fmt.Errorf("checking the sshd drop-in: %w", err)
	}
	defer os.Remove(cfg.Name())
	fmt.Fprintf(cfg, "Include %s\nInclude %s\n", candidate, SSHDConfig)
	if err := cfg.Close(); err != nil {
		return fmt.Errorf("checking the sshd drop-in: %w", err)
	}
	if _, _, err := r.d.Host.Check(ctx, nil, SSHD, "-t", "-f", cfg.Name()); err != nil {
		return fmt.Errorf("sshd -t rejected the new %s, so the old one stays in place: %w", SSHDropIn, err)
	}
	return nil
}
