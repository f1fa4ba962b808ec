// Package buildspec holds the CodeBuild buildspec templates glbootstrap provides.
package buildspec

import _ "embed"

// Docker is docker.yml: ECR login, pull of the repository's current latest as layer cache,
// docker build --cache-from, push of latest and an immutable tag. See the file for its
// environment variables.
//
//go:embed docker.yml
var Docker string
