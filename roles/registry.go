// Package roles lists the roles of this build. A role is a package under roles/ that exports a
// role.Definition (its configuration document, phases and Prepare); adding a role is that package
// and one line below. internal/cli and internal/config read this list and name no role.
package roles

import (
	"github.com/glbootstrap/glbootstrap/internal/role"
	"github.com/glbootstrap/glbootstrap/roles/gitlab"
	"github.com/glbootstrap/glbootstrap/roles/runner"
)

// All are the roles of this build, in the order the command line lists them.
var All = role.Registry{
	runner.Definition,
	gitlab.Definition,
}
