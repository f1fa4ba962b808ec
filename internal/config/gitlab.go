package config

import (
	"regexp"
)

// Omnibus package editions (gitlab.edition): the package is gitlab-<edition>.
const (
	EditionEE = "ee"
	EditionCE = "ce"
	// DefaultEdition is ee: GitLab recommends the EE package even without a license (it runs as
	// the free tier and can be upgraded in place).
	DefaultEdition = EditionEE
	// DefaultGitLabSSHPort is gitlab.ssh_port's default, the NLB's usual SSH listener.
	DefaultGitLabSSHPort = 22
)

var (
	gitlabVersionRE     = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	gitlabPackageVersRE = regexp.MustCompile(`^([0-9]+\.[0-9]+\.[0-9]+)-(ee|ce)\.[0-9]+$`)
)

// gitlabHostDefaults fills the Omnibus host's fields of the gitlab section, for role gitlab only
// (a runner's configuration stays as written). ssh_port is defaulted only when absent, so an
// explicit 0 is reported rather than replaced.
func gitlabHostDefaults(g *GitLab, p *parser) {
	defaultString(&g.Edition, DefaultEdition)
	if !p.present["gitlab.ssh_port"] {
		g.SSHPort = DefaultGitLabSSHPort
	}
}

// gitlabHost checks the Omnibus host's fields. Their values are checked for every role (a
// document may serve both hosts); what role gitlab needs is required only for it.
func (c checker) gitlabHost(g *GitLab, role string) {
	switch g.Edition {
	case EditionEE, EditionCE, "":
	default:
		c.errf("gitlab.edition", "unknown edition %q: must be ee (the gitlab-ee package, the default) or ce (gitlab-ce)", g.Edition)
	}
	switch {
	case g.Version == "":
	case gitlabPackageVersRE.MatchString(g.Version):
		c.errf("gitlab.version", "write the GitLab version %q without the package suffix, got %q", gitlabPackageVersRE.FindStringSubmatch(g.Version)[1], g.Version)
	case !gitlabVersionRE.MatchString(g.Version):
		c.errf("gitlab.version", "%q is not a GitLab version such as \"18.5.1\" (quote it in YAML)", g.Version)
	}
	if c.p.present["gitlab.ssh_port"] && (g.SSHPort < 1 || g.SSHPort > 65535) {
		c.errf("gitlab.ssh_port", "must be in 1..65535 (the port of the NLB's SSH listener), got %d", g.SSHPort)
	}
	if g.InitialRootPasswordParameter != "" {
		c.parameterName("gitlab.initial_root_password_parameter", g.InitialRootPasswordParameter)
	}
	if g.PublishPrivateURLParameter != "" {
		c.parameterName("gitlab.publish_private_url_parameter", g.PublishPrivateURLParameter)
	}
	if role == RoleGitLab && g.NLB.ProxyProtocol && g.PrivateURL == "" && g.PublishPrivateURLParameter != "" {
		c.warnf("gitlab.nlb.proxy_protocol", "with the PROXY protocol nginx refuses connections that do not send its header, so runners cannot use https://<private-ip> directly: set gitlab.private_url to the NLB's internal address")
	}
}
