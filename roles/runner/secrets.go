package runner

import (
	"regexp"

	"github.com/glbootstrap/glbootstrap/internal/host"
)

// secretAssignRE finds TOML assignments of string values to keys whose name says they hold a
// secret: token (of any [[runners]]), and SecretKey, AccessKey, password and the like (the
// [runners.cache.s3] credentials, for example), in basic or literal strings, inline tables
// included. It reads text, not TOML, so a file gitlab-runner or an admin left broken is covered.
var secretAssignRE = regexp.MustCompile(`(?i)\b[a-z0-9_-]*(?:token|secret|password|passwd|key)[a-z0-9_-]*"?[ \t]*=[ \t]*(?:"((?:[^"\\\n]|\\.)*)"|'([^'\n]*)')`)

// fileSecrets returns the secret values in the current content of the TOML file p, as written
// in it, so that a diff replacing that file masks them. config.toml may hold what glbootstrap
// never knew: before glbootstrap took the front over, an admin or "gitlab-runner register" wrote
// it, with the tokens of other runners and cache credentials, and its diff's removed lines would
// print them. A file that cannot be read has none.
func fileSecrets(h *host.Host, p string) []string {
	b, err := h.ReadFile(p)
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range secretAssignRE.FindAllStringSubmatch(string(b), -1) {
		if v := m[1] + m[2]; v != "" {
			out = append(out, v)
		}
	}
	return out
}
