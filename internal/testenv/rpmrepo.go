package testenv

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RpmRepoTools are the host programs NewRpmRepo runs: rpmbuild and rpmsign (Debian package rpm),
// createrepo_c (createrepo-c) and gpg.
var RpmRepoTools = []string{"gpg", "gpgconf", "rpmbuild", "rpmsign", "createrepo_c"}

// RpmPackage is a noarch package NewRpmRepo builds with rpmbuild.
type RpmPackage struct {
	// Name, Version and Release make NAME-VERSION-RELEASE.
	Name, Version, Release string
	// Requires is the spec's Requires ("" for none).
	Requires string
	// Files maps absolute paths in the package to their content; files are 0755.
	Files map[string]string
}

// RpmRepoSpec describes a repository laid out like one of packages.gitlab.com's:
// <server>/<Path>/repodata/repomd.xml(.asc), <server>/gpgkey/gpg.key (the metadata key) and
// <server>/<PackageKeyPath> (the package signing key).
type RpmRepoSpec struct {
	// Path is the repository's directory: runner/gitlab-runner/amazon/2023/x86_64.
	Path string
	// MetadataKey signs repodata/repomd.xml; PackageKey signs each package (rpmsign).
	MetadataKey, PackageKey *AptKey
	// ServeMetadataKey and ServePackageKey are the public keys served (nil: MetadataKey's,
	// PackageKey's): a test of a forged signature sets them apart.
	ServeMetadataKey, ServePackageKey *AptKey
	// PackageKeyPath is where the package key is served: gpgkey/runner/49F16C5CC3A0F81F.pub.gpg.
	PackageKeyPath string
	Packages       []RpmPackage
}

// NewRpmRepo builds the repository with the real tools and serves it on 127.0.0.1 until the
// test ends; the returned AptRepo records the requests.
func NewRpmRepo(t testing.TB, spec RpmRepoSpec) *AptRepo {
	t.Helper()
	for _, tool := range RpmRepoTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the rpm repository needs %s (Debian packages rpm, createrepo-c, gpg): %v", tool, err)
		}
	}
	r := &AptRepo{Dir: t.TempDir()}
	repo := filepath.Join(r.Dir, filepath.FromSlash(spec.Path))
	aptMust(t, os.MkdirAll(repo, 0o755))
	top := t.TempDir()
	for _, p := range spec.Packages {
		var install, files strings.Builder
		for path, content := range p.Files {
			fmt.Fprintf(&install, "mkdir -p %%{buildroot}%s\ncat > %%{buildroot}%s <<'GLBEOF'\n%sGLBEOF\nchmod 0755 %%{buildroot}%s\n",
				filepath.Dir(path), path, content, path)
			files.WriteString(path + "\n")
		}
		spec := "Name: " + p.Name + "\nVersion: " + p.Version + "\nRelease: " + p.Release +
			"\nSummary: " + p.Name + " stand-in for glbootstrap's package tests\nLicense: MIT\nBuildArch: noarch\n" +
			"AutoReqProv: no\n" // the test host's rpm database is empty: no /bin/sh to require

		if p.Requires != "" {
			spec += "Requires: " + p.Requires + "\n"
		}
		spec += "%description\nstand-in\n%install\n" + install.String() + "%files\n" + files.String()
		specFile := filepath.Join(top, p.Name+"-"+p.Version+"-"+p.Release+".spec")
		aptMust(t, os.WriteFile(specFile, []byte(spec), 0o644))
		aptRun(t, "", "rpmbuild", "--quiet", "-bb", "--define", "_topdir "+top, "--define", "_rpmdir "+repo,
			"--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm", specFile)
	}
	rpms, _ := filepath.Glob(filepath.Join(repo, "*.rpm"))
	if len(rpms) == 0 {
		t.Fatalf("rpmbuild made no package in %s", repo)
	}
	gpg, _ := exec.LookPath("gpg") // Debian's rpm looks for gpg2 by default
	aptRun(t, "", "rpmsign", append([]string{"--define", "__gpg " + gpg, "--define", "_gpg_name " + spec.PackageKey.Fingerprint,
		"--define", "_gpg_path " + spec.PackageKey.Home, "--addsign"}, rpms...)...)
	aptRun(t, "", "createrepo_c", "--quiet", repo)
	repomd := filepath.Join(repo, "repodata", "repomd.xml")
	spec.MetadataKey.gpg(t, nil, "--local-user", spec.MetadataKey.Fingerprint, "--detach-sign", "--armor", "--output", repomd+".asc", repomd)

	aptMust(t, os.MkdirAll(filepath.Join(r.Dir, "gpgkey"), 0o755))
	serveMeta, servePkg := spec.ServeMetadataKey, spec.ServePackageKey
	if serveMeta == nil {
		serveMeta = spec.MetadataKey
	}
	if servePkg == nil {
		servePkg = spec.PackageKey
	}
	aptMust(t, os.WriteFile(filepath.Join(r.Dir, "gpgkey", "gpg.key"), serveMeta.Armored, 0o644))
	pk := filepath.Join(r.Dir, filepath.FromSlash(spec.PackageKeyPath))
	aptMust(t, os.MkdirAll(filepath.Dir(pk), 0o755))
	aptMust(t, os.WriteFile(pk, servePkg.Armored, 0o644))

	files := http.FileServer(http.Dir(r.Dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.URL.Path)
		r.mu.Unlock()
		files.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}
