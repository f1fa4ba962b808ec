package preflight

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// checkDirectories: the metadata, builds and cache directories exist with the runner user as
// owner and the modes the directories phase sets (asked of a plan copy of the host: nothing changes).
func checkDirectories(ctx context.Context, in checkInput) Finding {
	h := in.Host.AsPlan()
	owner := host.Owner{User: in.Runner.User, Group: in.Runner.User}
	var fs findings
	var paths []string
	for _, d := range in.Dirs {
		paths = append(paths, d.Path)
		st, err := h.EnsureDir(d.Path, os.FileMode(d.Mode), owner)
		switch {
		case err != nil:
			fs.add(err.Error(), "install the gitlab-runner package when baking the AMI or set runner.user; move a file in the way")
		case st.Changed:
			fs.add(fmt.Sprintf("%s %s (owner %s, mode %04o)", d.Path, strings.TrimPrefix(st.Summary, "would be "), in.Runner.User, d.Mode),
				"run glbootstrap apply --role runner --phase directories")
		}
	}
	return fs.result(strings.Join(paths, ", "), CheckFail, "exist, owned by "+in.Runner.User)
}
