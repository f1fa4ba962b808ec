// Package templates holds the text files glbootstrap renders, embedded in the binary: the text
// a human would want to read and edit lives here, the values come from Go (render.Template,
// missingkey=error).
//
//	gitlab/glbootstrap.rb.tmpl              the managed gitlab.rb fragment (/etc/gitlab/glbootstrap.rb)
//	gitlab/initial-root-password.rb.tmpl    the first configuration's root password (0600, removed after)
//	gitlab/gitlab.rb.tmpl                   a gitlab.rb for hosts that have none yet
//	ssh/glbootstrap.conf.tmpl               the sshd drop-in: git over SSH only
//	systemd/glbootstrap-backup.{service,timer}.tmpl   the nightly backup (glbootstrap backup run)
package templates

import "embed"

// FS is every template, by path relative to this directory (gitlab/glbootstrap.rb.tmpl).
//
//go:embed gitlab ssh systemd
var FS embed.FS
