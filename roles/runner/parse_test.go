package runner

import (
	"slices"
	"strings"
	"testing"

	"github.com/glbootstrap/glbootstrap/internal/config"
	"github.com/glbootstrap/glbootstrap/roles/gitlab"
)

// base is a minimal valid runner configuration. Each line carries the field path it sets, so a test
// case can replace a value, delete a key (with its children; the line becomes a comment, so line
// numbers stay put) or add a key on a "<parent>+" slot line. The line numbers in the expected messages
// below are those of this listing.
var base = []struct{ path, text string }{
	{"version", "version: 1"},                                  // 1
	{"gitlab", "gitlab:"},                                      // 2
	{"gitlab.url", "  url: https://gitlab.example.com"},        // 3
	{"gitlab.private_url", "  private_url: https://10.0.1.10"}, // 4
	{"gitlab+", "  # slot"},                                    // 5
	{"runner", "runner:"},                                      // 6
	{"runner.concurrent", "  concurrent: 10"},                  // 7
	{"runner.check_interval", "  check_interval: 3"},           // 8
	{"runner.limit", "  limit: 0"},                             // 9
	{"runner.request_concurrency", "  request_concurrency: 1"}, // 10
	{"runner.create", "  create:"},                             // 11
	{"runner.create.access_token_parameter", "    access_token_parameter: /glb/create-runner-token"}, // 12
	{"runner.create.runner_type", "    runner_type: instance_type"},                                  // 13
	{"runner.create+", "    # slot"},                                                                 // 14
	{"runner.tags", "  tags: [fargate]"},                                                             // 15
	{"runner+", "  # slot"},                                                                          // 16
	{"fargate", "fargate:"},                                                                          // 17
	{"fargate.cluster", "  cluster: ci"},                                                             // 18
	{"fargate.security_group", "  security_group: sg-0123456789abcdef0"},                             // 19
	{"fargate.task_definition", "  task_definition: ci-coordinator"},                                 // 20
	{"fargate.driver", "  driver:"},                                                                  // 21
	{"fargate.driver.version", "    version: v0.5.1"},                                                // 22
	{"fargate.driver.sha256", "    sha256: \"" + strings.Repeat("a", 64) + "\""},                     // 23
	{"fargate.driver+", "    # slot"},                                                                // 24
	{"fargate+", "  # slot"},                                                                         // 25
	{"+", "# slot"},                                                                                  // 26
}

const del = "\x00delete"

// doc renders base with edits: path → new value (YAML text), or del.
func doc(t *testing.T, edits map[string]string) string {
	t.Helper()
	used := map[string]bool{}
	var out []string
	for _, l := range base {
		text := l.text
		if strings.HasSuffix(l.path, "+") {
			// Keys added under parent, sorted; more than one shifts the lines after the slot.
			parent := strings.TrimSuffix(l.path, "+")
			var adds []string
			for p, v := range edits {
				inBase := slices.ContainsFunc(base, func(b struct{ path, text string }) bool { return b.path == p })
				if parentPath(p) == parent && !inBase {
					used[p] = true
					key := strings.TrimPrefix(p[len(parent):], ".")
					adds = append(adds, strings.Repeat("  ", strings.Count(p, "."))+key+": "+v)
				}
			}
			if len(adds) > 0 {
				slices.Sort(adds)
				text = strings.Join(adds, "\n")
			}
			out = append(out, text)
			continue
		}
		deleted := false
		for p := l.path; p != ""; p = parentPath(p) {
			if edits[p] == del {
				deleted, used[p] = true, true
			}
		}
		if v, ok := edits[l.path]; ok && !deleted {
			used[l.path] = true
			key, _, _ := strings.Cut(l.text, ":")
			text = key + ": " + v
		}
		if deleted {
			text = "# deleted"
		}
		out = append(out, text)
	}
	for p := range edits {
		if !used[p] {
			t.Fatalf("test bug: edit %q has no line or slot in base", p)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

func strs(ps config.Problems) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func TestParseRules(t *testing.T) {
	ok := []string(nil)
	hex64 := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		name  string
		role  string // default Name
		edits map[string]string
		want  []string
	}{
		{"base is valid", "", nil, ok},

		// version
		{"version 2", "", map[string]string{"version": "2"},
			[]string{"version (line 1): unsupported schema version 2; this glbootstrap reads version 1"}},
		{"version missing", "", map[string]string{"version": del},
			[]string{"version: is required; write version: 1"}},

		// gitlab.url
		{"url with relative prefix", "", map[string]string{"gitlab.url": "https://example.com/gitlab"}, ok},
		{"url http", "", map[string]string{"gitlab.url": "http://gitlab.example.com"},
			[]string{`gitlab.url (line 3): must use https, got "http://gitlab.example.com"`}},
		{"url without scheme", "", map[string]string{"gitlab.url": "gitlab.example.com"},
			[]string{`gitlab.url (line 3): "gitlab.example.com" is not a URL; write the scheme and the host, e.g. https://gitlab.example.com`}},
		{"url with query", "", map[string]string{"gitlab.url": "https://gitlab.example.com/?a=b"},
			[]string{`gitlab.url (line 3): must not have a query or fragment, got "https://gitlab.example.com/?a=b"`}},
		{"url with bad path", "", map[string]string{"gitlab.url": "https://gitlab.example.com/a b"},
			[]string{`gitlab.url (line 3): path "/a b" is not a relative URL prefix such as /gitlab`}},
		{"url with credentials", "", map[string]string{"gitlab.url": "https://root:pw@gitlab.example.com"},
			[]string{`gitlab.url (line 3): must not contain a user name or password; credentials never go in the configuration`}},
		{"url missing", "", map[string]string{"gitlab.url": del},
			[]string{`gitlab.url (line 2): is required: GitLab's external URL, e.g. https://gitlab.example.com`}},

		// gitlab.private_url / private_url_parameter
		{"private url with port", "", map[string]string{"gitlab.private_url": "https://10.0.1.10:8443"}, ok},
		{"private url http warns", "", map[string]string{"gitlab.private_url": "http://10.0.1.10"},
			[]string{"warning: gitlab.private_url (line 4): uses http: the runner authentication token travels in clear between the front and GitLab; use https (with gitlab.ca_file for a private CA)"}},
		{"private url bare IP", "", map[string]string{"gitlab.private_url": "10.0.1.10"},
			[]string{`gitlab.private_url (line 4): "10.0.1.10" is not a URL; write the scheme and the host, e.g. https://10.0.1.10`}},
		{"private url garbage scheme", "", map[string]string{"gitlab.private_url": "ht!tp://x"},
			[]string{`gitlab.private_url (line 4): "ht!tp://x" is not a URL (first path segment in URL cannot contain colon); write the scheme and the host, e.g. https://gitlab.example.com`}},
		{"private url bad port", "", map[string]string{"gitlab.private_url": "https://10.0.1.10:70000"},
			[]string{`gitlab.private_url (line 4): port "70000" is not in 1..65535`}},
		{"private url ftp", "", map[string]string{"gitlab.private_url": "ftp://10.0.1.10"},
			[]string{`gitlab.private_url (line 4): must be an https URL, got scheme "ftp" in "ftp://10.0.1.10"`}},
		{"private url parameter instead", "", map[string]string{"gitlab.private_url": del, "gitlab.private_url_parameter": "/glb/gitlab/private-url"}, ok},
		{"both private url forms", "", map[string]string{"gitlab.private_url_parameter": "/glb/gitlab/private-url"},
			[]string{"gitlab (line 2): private_url and private_url_parameter are both set; set exactly one"}},
		{"no private url for runner", "", map[string]string{"gitlab.private_url": del},
			[]string{"gitlab (line 2): one of private_url or private_url_parameter is required for role runner: the address the runner front reaches GitLab at over the private network, e.g. https://10.0.1.10"}},
		{"no private url for gitlab role", gitlab.Name, map[string]string{"gitlab.private_url": del, "runner": del, "fargate": del}, ok},

		// SSM parameter names
		{"parameter without leading slash", "", map[string]string{"gitlab.private_url": del, "gitlab.private_url_parameter": "glb/url"},
			[]string{`gitlab.private_url_parameter (line 5): is not an SSM parameter name (the value is not shown: it may be a secret); write the name of the parameter that holds the value, a full path such as /glbootstrap/runner-token (letters, digits, _ . - and /)`}},
		{"parameter with trailing slash", "", map[string]string{"gitlab.private_url": del, "gitlab.private_url_parameter": "/glb/url/"},
			[]string{`gitlab.private_url_parameter (line 5): "/glb/url/" must not end with /`}},
		{"parameter with empty level", "", map[string]string{"gitlab.private_url": del, "gitlab.private_url_parameter": "/glb//url"},
			[]string{`gitlab.private_url_parameter (line 5): "/glb//url" must not contain //`}},
		{"parameter too long", "", map[string]string{"gitlab.private_url": del, "gitlab.private_url_parameter": "/" + strings.Repeat("a", 1011)},
			[]string{"gitlab.private_url_parameter (line 5): is 1012 characters long; SSM allows at most 1011"}},
		{"parameter reserved prefix", "", map[string]string{"gitlab.private_url": del, "gitlab.private_url_parameter": "/aws/reference/x"},
			[]string{`gitlab.private_url_parameter (line 5): "/aws/reference/x" starts with "aws", which SSM reserves`}},

		// gitlab.ca_file, ready_timeout
		{"ca file absolute", "", map[string]string{"gitlab.ca_file": "/etc/ssl/gitlab-ca.pem"}, ok},
		{"ca file relative", "", map[string]string{"gitlab.ca_file": "certs/ca.pem"},
			[]string{`gitlab.ca_file (line 5): must be an absolute path, got "certs/ca.pem"`}},
		{"ready timeout", "", map[string]string{"gitlab.ready_timeout": "90s"}, ok},
		{"ready timeout without unit", "", map[string]string{"gitlab.ready_timeout": "600"},
			[]string{`gitlab.ready_timeout (line 5): must be a duration such as "90s" or "10m", got "600" (a unit is required: "600s" for seconds)`}},
		{"ready timeout zero", "", map[string]string{"gitlab.ready_timeout": "0s"},
			[]string{`gitlab.ready_timeout (line 5): must be a positive duration such as "10m", got "0s"`}},

		// runner.cache
		{"cache", "", map[string]string{"runner.cache": "{bucket: my-ci-cache, region: eu-west-1, path: gitlab-runner/cache, shared: true}"}, ok},
		{"cache without bucket", "", map[string]string{"runner.cache": "{path: ci}"},
			[]string{"runner.cache.bucket (line 16): is required: the S3 bucket that holds the jobs' cache, e.g. my-ci-cache"}},
		{"cache bucket as URL", "", map[string]string{"runner.cache": "{bucket: s3://my-ci-cache/ci}"},
			[]string{`runner.cache.bucket (line 16): "s3://my-ci-cache/ci" must be the bucket's name only, without s3:// or a key; put a key prefix in runner.cache.path`}},
		{"cache bucket upper case", "", map[string]string{"runner.cache": "{bucket: My_Cache}"},
			[]string{`runner.cache.bucket (line 16): "My_Cache" is not an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)`}},
		{"cache bad region", "", map[string]string{"runner.cache": "{bucket: my-ci-cache, region: ohio}"},
			[]string{`runner.cache.region (line 16): "ohio" is not an AWS region such as us-east-2 (the bucket's region)`}},
		{"cache absolute path", "", map[string]string{"runner.cache": "{bucket: my-ci-cache, path: /ci/cache}"},
			[]string{`runner.cache.path (line 16): "/ci/cache" starts with /: S3 keys are relative; write "ci/cache"`}},
		{"cache dot-dot path", "", map[string]string{"runner.cache": "{bucket: my-ci-cache, path: ci/../x}"},
			[]string{`runner.cache.path (line 16): "ci/../x" has an empty, "." or ".." segment; use a plain key prefix such as gitlab-runner/cache`}},
		{"cache path with space", "", map[string]string{"runner.cache": "{bucket: my-ci-cache, path: my cache}"},
			[]string{`runner.cache.path (line 16): "my cache" has spaces or characters other than printable ASCII; use a key prefix such as gitlab-runner/cache`}},
		{"cache key typo", "", map[string]string{"runner.cache": "{bucket: my-ci-cache, shard: true}"},
			[]string{`runner.cache.shard (line 16): unknown key; did you mean "shared"?`}},
		{"cache shared as string", "", map[string]string{"runner.cache": `{bucket: my-ci-cache, shared: "yes"}`},
			[]string{`runner.cache.shared (line 16): must be true or false, got "yes"`}},

		// token source: exactly one
		{"token parameter", "", map[string]string{"runner.create": del, "runner.tags": del, "runner.token_parameter": "/glb/runner-token"}, ok},
		{"no token source", "", map[string]string{"runner.create": del},
			[]string{"runner (line 6): set exactly one of token_parameter (an existing glrt- runner authentication token), create (glbootstrap creates the runner) or registration_token_parameter (legacy); none is set"}},
		{"two token sources", "", map[string]string{"runner.token_parameter": "/glb/runner-token", "runner.tags": del},
			[]string{"runner (line 6): set exactly one of token_parameter, create or registration_token_parameter; token_parameter and create are set"}},
		{"registration token warns", "", map[string]string{"runner.create": del, "runner.registration_token_parameter": "/glb/reg-token"},
			[]string{"warning: runner.registration_token_parameter (line 16): registration tokens are deprecated and disabled by default since GitLab 17.0 (HTTP 410 when disabled); prefer runner.create or runner.token_parameter"}},
		{"token parameter bad name", "", map[string]string{"runner.create": del, "runner.tags": del, "runner.token_parameter": "runner-token"},
			[]string{`runner.token_parameter (line 16): is not an SSM parameter name (the value is not shown: it may be a secret); write the name of the parameter that holds the value, a full path such as /glbootstrap/runner-token (letters, digits, _ . - and /)`}},

		// create
		{"create group", "", map[string]string{"runner.create.runner_type": "group_type", "runner.create.group_id": "42"}, ok},
		{"create project", "", map[string]string{"runner.create.runner_type": "project_type", "runner.create.project_id": "7"}, ok},
		{"create default type", "", map[string]string{"runner.create.runner_type": del}, ok},
		{"create group without id", "", map[string]string{"runner.create.runner_type": "group_type"},
			[]string{"runner.create.group_id (line 11): is required (> 0) with runner_type group_type"}},
		{"create project without id", "", map[string]string{"runner.create.runner_type": "project_type"},
			[]string{"runner.create.project_id (line 11): is required (> 0) with runner_type project_type"}},
		{"create instance with group id", "", map[string]string{"runner.create.group_id": "42"},
			[]string{"runner.create.group_id (line 14): is only for runner_type group_type; an instance_type runner takes no group_id"}},
		{"create group with project id", "", map[string]string{"runner.create.runner_type": "group_type", "runner.create.project_id": "7"},
			[]string{"runner.create.group_id (line 11): is required (> 0) with runner_type group_type",
				"runner.create.project_id (line 14): is only for runner_type project_type, not group_type"}},
		{"create bad type", "", map[string]string{"runner.create.runner_type": "shared"},
			[]string{`runner.create.runner_type (line 13): must be one of instance_type, group_type or project_type, got "shared"`}},
		{"create without access token", "", map[string]string{"runner.create.access_token_parameter": del},
			[]string{"runner.create.access_token_parameter (line 11): is required: the SSM SecureString parameter holding a token with the create_runner scope"}},

		// concurrent, check_interval, limit, request_concurrency
		{"concurrent zero", "", map[string]string{"runner.concurrent": "0"},
			[]string{"runner.concurrent (line 7): must be > 0 (gitlab-runner rejects 0), got 0"}},
		{"concurrent missing", "", map[string]string{"runner.concurrent": del},
			[]string{"runner.concurrent (line 6): is required: how many jobs (Fargate tasks) run at once, > 0; the reference setup uses 200"}},
		{"check interval", "", map[string]string{"runner.check_interval": "10"}, ok},
		{"check interval zero", "", map[string]string{"runner.check_interval": "0"},
			[]string{"runner.check_interval (line 8): must be >= 1 (seconds), got 0"}},
		{"limit equal to concurrent", "", map[string]string{"runner.limit": "10"}, ok},
		{"limit negative", "", map[string]string{"runner.limit": "-1"},
			[]string{"runner.limit (line 9): must be >= 0 (0 = unlimited), got -1"}},
		{"limit above concurrent warns", "", map[string]string{"runner.limit": "20"},
			[]string{"warning: runner.limit (line 9): 20 is more than runner.concurrent (10) and can never be reached"}},
		{"request concurrency", "", map[string]string{"runner.request_concurrency": "4"}, ok},
		{"request concurrency zero", "", map[string]string{"runner.request_concurrency": "0"},
			[]string{"runner.request_concurrency (line 10): must be in 1..100, got 0"}},
		{"request concurrency too high", "", map[string]string{"runner.request_concurrency": "101"},
			[]string{"runner.request_concurrency (line 10): must be in 1..100, got 101"}},
		{"request concurrency above limit warns", "", map[string]string{"runner.limit": "2", "runner.request_concurrency": "4"},
			[]string{"warning: runner.request_concurrency (line 10): 4 is more than runner.limit (2): requests beyond the limit cannot get a job"}},

		// directories and the user
		{"builds dir", "", map[string]string{"runner.builds_dir": "/srv/builds"}, ok},
		{"builds dir relative", "", map[string]string{"runner.builds_dir": "builds"},
			[]string{`runner.builds_dir (line 16): must be an absolute path, got "builds"`}},
		{"cache dir unclean", "", map[string]string{"runner.cache_dir": "/opt/x/../cache/"},
			[]string{`runner.cache_dir (line 16): must be a clean path; write "/opt/cache" instead of "/opt/x/../cache/"`}},
		{"metadata dir relative", "", map[string]string{"fargate.metadata_dir": "metadata"},
			[]string{`fargate.metadata_dir (line 25): must be an absolute path, got "metadata"`}},
		{"driver path relative", "", map[string]string{"fargate.driver.path": "fargate"},
			[]string{`fargate.driver.path (line 24): must be an absolute path, got "fargate"`}},
		{"builds dir under /usr at depth", "", map[string]string{"runner.builds_dir": "/usr/local/ci/builds"},
			[]string{`runner.builds_dir (line 16): "/usr/local/ci/builds" is under /usr, the OS's programs; use a directory of its own such as /opt/gitlab-runner/...`}},
		{"cache dir in glbootstrap's state", "", map[string]string{"runner.cache_dir": "/var/lib/glbootstrap/cache"},
			[]string{`runner.cache_dir (line 16): "/var/lib/glbootstrap/cache" is under /var/lib/glbootstrap, glbootstrap's own state; use a directory of its own such as /opt/gitlab-runner/...`}},
		{"metadata dir under /etc at depth", "", map[string]string{"fargate.metadata_dir": "/etc/gitlab-runner/metadata"},
			[]string{`fargate.metadata_dir (line 25): "/etc/gitlab-runner/metadata" is under /etc, the OS's settings; use a directory of its own such as /opt/gitlab-runner/...`}},
		{"builds dir is the driver's directory", "", map[string]string{"runner.builds_dir": "/opt/gitlab-runner"},
			[]string{`runner.builds_dir (line 16): "/opt/gitlab-runner" holds the Fargate driver (fargate.driver.path /opt/gitlab-runner/fargate): the runner's user would own it and could replace the driver; use a directory of its own such as /opt/gitlab-runner/builds`}},
		{"cache dir above the driver's directory", "", map[string]string{"runner.cache_dir": "/srv/ci", "fargate.driver.path": "/srv/ci/bin/fargate"},
			[]string{`runner.cache_dir (line 16): "/srv/ci" holds the Fargate driver (fargate.driver.path /srv/ci/bin/fargate): the runner's user would own it and could replace the driver; use a directory of its own such as /opt/gitlab-runner/cache`}},
		{"builds dir inside the driver", "", map[string]string{"runner.builds_dir": "/opt/gitlab-runner/fargate/x"},
			[]string{`runner.builds_dir (line 16): "/opt/gitlab-runner/fargate/x" is inside fargate.driver.path /opt/gitlab-runner/fargate, which is the driver's own file, not a directory; use a directory of its own such as /opt/gitlab-runner/builds`}},
		{"cache dir deep inside the driver", "", map[string]string{"runner.cache_dir": "/srv/fargate/a/b", "fargate.driver.path": "/srv/fargate"},
			[]string{`runner.cache_dir (line 16): "/srv/fargate/a/b" is inside fargate.driver.path /srv/fargate, which is the driver's own file, not a directory; use a directory of its own such as /opt/gitlab-runner/cache`}},
		{"metadata dir inside the driver", "", map[string]string{"fargate.metadata_dir": "/opt/gitlab-runner/fargate/metadata"},
			[]string{`fargate.metadata_dir (line 25): "/opt/gitlab-runner/fargate/metadata" is inside fargate.driver.path /opt/gitlab-runner/fargate, which is the driver's own file, not a directory; use a directory of its own such as /opt/gitlab-runner/metadata`}},
		{"a directory beside the driver named like it", "", map[string]string{"runner.builds_dir": "/opt/gitlab-runner/fargate-builds"}, ok},
		{"driver in glbootstrap's state", "", map[string]string{"fargate.driver.path": "/var/lib/glbootstrap/fargate"},
			[]string{`fargate.driver.path (line 24): "/var/lib/glbootstrap/fargate" is under /var/lib/glbootstrap, glbootstrap's own state; use /opt/gitlab-runner/fargate or /usr/local/bin/fargate`}},
		{"driver over glbootstrap", "", map[string]string{"fargate.driver.path": "/usr/local/bin/glbootstrap"},
			[]string{`fargate.driver.path (line 24): "/usr/local/bin/glbootstrap" is glbootstrap's own binary: installing the driver there would overwrite it; use /opt/gitlab-runner/fargate or /usr/local/bin/fargate`}},
		{"driver over glbootstrap elsewhere", "", map[string]string{"fargate.driver.path": "/opt/tools/glbootstrap"},
			[]string{`fargate.driver.path (line 24): "/opt/tools/glbootstrap" is glbootstrap's own binary: installing the driver there would overwrite it; use /opt/gitlab-runner/fargate or /usr/local/bin/fargate`}},
		{"driver over gitlab-runner installed by hand", "", map[string]string{"fargate.driver.path": "/usr/local/bin/gitlab-runner"},
			[]string{`fargate.driver.path (line 24): "/usr/local/bin/gitlab-runner" is the gitlab-runner binary: installing the driver there would overwrite it; use /opt/gitlab-runner/fargate or /usr/local/bin/fargate`}},
		{"driver over the package's gitlab-runner", "", map[string]string{"fargate.driver.path": "/usr/bin/gitlab-runner"},
			[]string{`fargate.driver.path (line 24): "/usr/bin/gitlab-runner" is the gitlab-runner binary: installing the driver there would overwrite it; use /opt/gitlab-runner/fargate or /usr/local/bin/fargate`}},
		{"driver in /usr/local/bin", "", map[string]string{"fargate.driver.path": "/usr/local/bin/fargate"}, ok},
		{"runner user", "", map[string]string{"runner.user": "ci_runner"}, ok},
		{"runner user invalid", "", map[string]string{"runner.user": "Runner User"},
			[]string{`runner.user (line 16): "Runner User" is not a valid user name (lower-case letters, digits, _ and -, at most 32)`}},

		// tags, run_untagged, locked
		{"no tags but run untagged", "", map[string]string{"runner.tags": del, "runner.run_untagged": "true"}, ok},
		{"no tags and not run untagged", "", map[string]string{"runner.tags": del},
			[]string{"runner.tags (line 6): is empty and run_untagged is false: GitLab refuses a runner that can pick no job; add tags or set run_untagged: true"}},
		{"tag with comma", "", map[string]string{"runner.tags": `["a,b"]`},
			[]string{`runner.tags[0] (line 15): "a,b" contains a comma; write each tag as its own list item`}},
		{"empty tag", "", map[string]string{"runner.tags": `[a, ""]`},
			[]string{`runner.tags[1] (line 15): is empty`}},
		{"tags with glrt token warn", "", map[string]string{"runner.create": del, "runner.token_parameter": "/glb/runner-token"},
			[]string{"warning: runner.tags (line 15): is ignored with a glrt- runner authentication token (runner.token_parameter): tags, run-untagged and locked are set on the runner in GitLab (Admin area > CI/CD > Runners > Edit)"}},
		{"locked and run untagged with glrt token warn", "", map[string]string{"runner.create": del, "runner.tags": del,
			"runner.token_parameter": "/glb/runner-token", "runner.locked": "true", "runner.run_untagged": "true"},
			[]string{"warning: runner.locked (line 16): is ignored with a glrt- runner authentication token (runner.token_parameter): tags, run-untagged and locked are set on the runner in GitLab (Admin area > CI/CD > Runners > Edit)",
				"warning: runner.run_untagged (line 17): is ignored with a glrt- runner authentication token (runner.token_parameter): tags, run-untagged and locked are set on the runner in GitLab (Admin area > CI/CD > Runners > Edit)"}},

		// fargate
		{"cluster ARN", "", map[string]string{"fargate.cluster": "arn:aws:ecs:us-east-2:123456789012:cluster/ci"}, ok},
		{"cluster missing", "", map[string]string{"fargate.cluster": del},
			[]string{"fargate.cluster (line 17): is required: the ECS cluster's name or ARN"}},
		{"cluster invalid", "", map[string]string{"fargate.cluster": "my cluster"},
			[]string{`fargate.cluster (line 18): "my cluster" is not an ECS cluster name (letters, digits, _ and -, up to 255) or cluster ARN`}},
		{"security group short form", "", map[string]string{"fargate.security_group": "sg-0123abcd"}, ok},
		{"security group invalid", "", map[string]string{"fargate.security_group": "sg-0123ABCD"},
			[]string{`fargate.security_group (line 19): "sg-0123ABCD" is not a security group id (sg- and 8 or 17 lower-case hex digits)`}},
		{"security group missing", "", map[string]string{"fargate.security_group": del},
			[]string{"fargate.security_group (line 17): is required: the tasks' security group, sg-xxxxxxxxxxxxxxxxx"}},
		{"subnet", "", map[string]string{"fargate.subnet": "subnet-0123456789abcdef0"}, ok},
		{"subnet invalid", "", map[string]string{"fargate.subnet": "subnet-123"},
			[]string{`fargate.subnet (line 25): "subnet-123" is not a subnet id (subnet- and 8 or 17 lower-case hex digits)`}},
		{"region gov", "", map[string]string{"fargate.region": "us-gov-west-1"}, ok},
		{"region invalid", "", map[string]string{"fargate.region": "US East"},
			[]string{`fargate.region (line 25): "US East" is not an AWS region such as us-east-2`}},
		{"task definition revision", "", map[string]string{"fargate.task_definition": "ci-coordinator:12"}, ok},
		{"task definition ARN", "", map[string]string{"fargate.task_definition": "arn:aws:ecs:us-east-2:123456789012:task-definition/ci-coordinator:3"}, ok},
		{"task definition revision zero", "", map[string]string{"fargate.task_definition": "ci-coordinator:0"},
			[]string{`fargate.task_definition (line 20): "ci-coordinator:0" is not a task definition family (letters, digits, _ and -, up to 255) with an optional :revision`}},
		{"task definition ARN without revision", "", map[string]string{"fargate.task_definition": "arn:aws:ecs:us-east-2:123456789012:task-definition/ci"},
			[]string{`fargate.task_definition (line 20): "arn:aws:ecs:us-east-2:123456789012:task-definition/ci" is not a task-definition ARN (arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>)`}},
		{"task definition missing", "", map[string]string{"fargate.task_definition": del},
			[]string{"fargate.task_definition (line 17): is required: the coordinator's task definition as family, family:revision or ARN"}},
		{"platform version", "", map[string]string{"fargate.platform_version": "1.4.0"}, ok},
		{"platform version invalid", "", map[string]string{"fargate.platform_version": "newest"},
			[]string{`fargate.platform_version (line 25): "newest" is not a Fargate platform version such as LATEST or 1.4.0`}},
		{"log level", "", map[string]string{"fargate.log_level": "debug"}, ok},
		{"log level invalid", "", map[string]string{"fargate.log_level": "verbose"},
			[]string{`fargate.log_level (line 25): must be one of debug, info, warn, error, fatal, panic, got "verbose"`}},
		{"log format", "", map[string]string{"fargate.log_format": "json"}, ok},
		{"log format invalid", "", map[string]string{"fargate.log_format": "xml"},
			[]string{`fargate.log_format (line 25): must be one of text, json, got "xml"`}},
		{"ssh", "", map[string]string{"fargate.ssh": "{username: coordinator, port: 2222}"}, ok},
		{"ssh port zero", "", map[string]string{"fargate.ssh": "{port: 0}"},
			[]string{"fargate.ssh.port (line 25): must be in 1..65535, got 0"}},
		{"ssh port too high", "", map[string]string{"fargate.ssh": "{port: 65536}"},
			[]string{"fargate.ssh.port (line 25): must be in 1..65535, got 65536"}},
		{"ssh username invalid", "", map[string]string{"fargate.ssh": "{username: 'ro ot'}"},
			[]string{`fargate.ssh.username (line 25): "ro ot" is not a valid user name (lower-case letters, digits, _ and -, at most 32)`}},

		// driver
		{"driver latest", "", map[string]string{"fargate.driver.version": "latest"},
			[]string{"fargate.driver.version (line 22): must be a pinned release tag such as v0.5.1, not latest: GitLab publishes no checksum, so the binary is verified against fargate.driver.sha256"}},
		{"driver version without v", "", map[string]string{"fargate.driver.version": "0.5.1"},
			[]string{`fargate.driver.version (line 22): "0.5.1" is not a release tag such as v0.5.1`}},
		{"driver sha256 upper case", "", map[string]string{"fargate.driver.sha256": strings.ToUpper(hex64)}, ok},
		{"driver sha256 short", "", map[string]string{"fargate.driver.sha256": "abc"},
			[]string{"fargate.driver.sha256 (line 23): must be 64 hex digits, got 3 characters"}},
		{"driver sha256 not hex", "", map[string]string{"fargate.driver.sha256": strings.Repeat("g", 64)},
			[]string{"fargate.driver.sha256 (line 23): must be 64 hex digits, got characters other than 0-9 and a-f"}},
		{"driver sha256 missing", "", map[string]string{"fargate.driver.sha256": del},
			[]string{"fargate.driver.sha256 (line 21): is required: the SHA-256 of the driver binary (sha256sum fargate-linux-amd64), since GitLab publishes none"}},
		{"driver url https", "", map[string]string{"fargate.driver.url": "https://mirror.example.com/fargate"}, ok},
		{"driver url s3", "", map[string]string{"fargate.driver.url": "s3://bucket/fargate/v0.5.1"}, ok},
		{"driver url file", "", map[string]string{"fargate.driver.url": "file:///srv/fargate"}, ok},
		{"driver url http", "", map[string]string{"fargate.driver.url": "http://mirror.example.com/fargate"},
			[]string{"fargate.driver.url (line 24): must not use http: the driver is an executable and would be downloaded in clear; use https, s3:// or file://"}},
		{"driver url s3 without key", "", map[string]string{"fargate.driver.url": "s3://bucket"},
			[]string{`fargate.driver.url (line 24): "s3://bucket" needs a bucket and a key: s3://bucket/key`}},
		{"driver url file relative", "", map[string]string{"fargate.driver.url": "file://srv/fargate"},
			[]string{`fargate.driver.url (line 24): "file://srv/fargate" needs an absolute path: file:///absolute/path`}},
		{"driver url ftp", "", map[string]string{"fargate.driver.url": "ftp://mirror/fargate"},
			[]string{`fargate.driver.url (line 24): scheme "ftp" is not supported; use https://, s3://bucket/key or file:///absolute/path`}},

		// sections and roles
		{"runner role needs sections", "", map[string]string{"runner": del, "fargate": del},
			[]string{"runner: the runner section is required for role runner (see examples/runner.yaml)",
				"fargate: the fargate section is required for role runner (see examples/runner.yaml)"}},
		{"gitlab role needs only gitlab", gitlab.Name, map[string]string{"runner": del, "fargate": del, "gitlab.private_url": del}, ok},

		// structure: unknown keys, kinds, duplicates
		{"unknown key close", "", map[string]string{"runner.concurent": "10"},
			[]string{`runner.concurent (line 16): unknown key; did you mean "concurrent"?`}},
		{"unknown key in toml spelling", "", map[string]string{"fargate.SecurityGroup": "sg-0123abcd"},
			[]string{`fargate.SecurityGroup (line 25): unknown key; did you mean "security_group"?`}},
		{"unknown key from another section", "", map[string]string{"runner.region": "us-east-2"},
			[]string{`runner.region (line 16): unknown key; did you mean fargate.region? (it belongs in another section)`}},
		{"unknown key far", "", map[string]string{"fargate.driver.checksum_url": "x"},
			[]string{`fargate.driver.checksum_url (line 24): unknown key; known keys in fargate.driver: version, sha256, url, path`}},
		{"unknown top-level key", "", map[string]string{"runners": "{}"},
			[]string{`runners (line 26): unknown key; did you mean "runner"?`}},
		{"integer expected", "", map[string]string{"runner.concurrent": "abc"},
			[]string{`runner.concurrent (line 7): must be an integer, got "abc"`}},
		{"integer, not float", "", map[string]string{"runner.limit": "1.5"},
			[]string{`runner.limit (line 9): must be an integer, got "1.5"`}},
		{"integer, not quoted", "", map[string]string{"version": `"1"`},
			[]string{`version (line 1): must be an integer, got "1"`}},
		{"bool expected", "", map[string]string{"fargate.enable_public_ip": "maybe"},
			[]string{`fargate.enable_public_ip (line 25): must be true or false, got "maybe"`}},
		{"bool quoted", "", map[string]string{"fargate.enable_public_ip": `"true"`},
			[]string{`fargate.enable_public_ip (line 25): must be true or false, got "true"`}},
		{"bool in YAML 1.1 words", "", map[string]string{"fargate.enable_public_ip": "yes"},
			[]string{`fargate.enable_public_ip (line 25): must be true or false, got "yes"`}},
		{"list expected", "", map[string]string{"runner.tags": "fargate"},
			[]string{`runner.tags (line 15): must be a list, got "fargate"`}},
		{"mapping expected", "", map[string]string{"fargate.ssh": "v1"},
			[]string{`fargate.ssh (line 25): must be a mapping of username, port, got "v1"`}},
		{"string expected", "", map[string]string{"fargate.cluster": "[a, b]"},
			[]string{`fargate.cluster (line 18): must be a string, got a list`}},
		{"duration expected", "", map[string]string{"gitlab.ready_timeout": "{a: 1}"},
			[]string{`gitlab.ready_timeout (line 5): must be a duration such as "90s" or "10m", got a mapping`}},
		{"duplicated key", "", map[string]string{"runner.limit": "0\n  limit: 5"},
			[]string{"runner.limit (line 10): duplicated key; it is already set on line 9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			role := tt.role
			if role == "" {
				role = Name
			}
			cfg, ps := config.Parse([]byte(doc(t, tt.edits)), role, schemas)
			got := strs(ps)
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n got  %q\n want %q", got, tt.want)
			}
			if (cfg == nil) != (len(ps.Errors()) > 0) {
				t.Errorf("config is nil: %v, with %d errors", cfg == nil, len(ps.Errors()))
			}
		})
	}
}
