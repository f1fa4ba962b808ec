package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// ECR is an in-process stand-in for the read side of Amazon ECR's API that speaks the
// awsJson1_1 protocol (X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Op>), so the real
// aws-sdk-go-v2 ECR client can be pointed at it with AWS_ENDPOINT_URL_ECR=URL().
//
// Operations: DescribeImages by tag or digest, answering RepositoryNotFoundException and
// ImageNotFoundException with ECR's messages. Repositories live in the stand-in's account
// (123456789012) in every region. Deny makes an operation answer AccessDeniedException.
// (Pushing and pulling layers is go-containerregistry's registry, buildstack.Registry, not this.)
type ECR struct {
	srv *httptest.Server

	mu     sync.Mutex
	repos  map[string]map[string]string // repository -> tag -> digest
	denied map[string]bool
	calls  map[string]int
}

// NewECR starts the stand-in on a random 127.0.0.1 port. Close it when done.
func NewECR() *ECR {
	e := &ECR{repos: map[string]map[string]string{}, denied: map[string]bool{}, calls: map[string]int{}}
	e.srv = httptest.NewServer(e.Handler())
	return e
}

// URL is the endpoint to put in AWS_ENDPOINT_URL_ECR.
func (e *ECR) URL() string { return e.srv.URL }

// Close stops the server.
func (e *ECR) Close() { e.srv.Close() }

// CreateRepository makes an empty repository.
func (e *ECR) CreateRepository(repo string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.repos[repo] == nil {
		e.repos[repo] = map[string]string{}
	}
}

// PutImage tags an image in repo (creating the repository) and returns its digest, derived
// from repo and tag.
func (e *ECR) PutImage(repo, tag string) string {
	sum := sha256.Sum256([]byte(repo + ":" + tag))
	digest := "sha256:" + hex.EncodeToString(sum[:])
	e.CreateRepository(repo)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.repos[repo][tag] = digest
	return digest
}

// Account is the registry id (account) the stand-in's repositories live in.
func (e *ECR) Account() string { return awsAccount }

// Deny makes every call of op (e.g. "DescribeImages") fail with AccessDeniedException.
func (e *ECR) Deny(op string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.denied[op] = true
}

// Calls returns how many requests named op were received.
func (e *ECR) Calls(op string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[op]
}

// Handler is the protocol handler.
func (e *ECR) Handler() http.Handler {
	return awsJSONHandler("AmazonEC2ContainerRegistry_V20150921.", "ecr", func(op string, body []byte, region string) (any, *awsJSONError) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.calls[op]++
		if e.denied[op] {
			return nil, awsJSONDenied("ecr:"+op, fmt.Sprintf("arn:aws:ecr:%s:%s:repository/*", region, awsAccount))
		}
		if op == "DescribeImages" {
			return e.describeImages(body)
		}
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "UnknownOperationException"}
	})
}

func (e *ECR) describeImages(body []byte) (any, *awsJSONError) {
	var in struct {
		RegistryID     string `json:"registryId"`
		RepositoryName string `json:"repositoryName"`
		ImageIDs       []struct {
			ImageTag    string `json:"imageTag"`
			ImageDigest string `json:"imageDigest"`
		} `json:"imageIds"`
	}
	if err := decodeSSM(body, &in); err != nil {
		return nil, err
	}
	registry := in.RegistryID
	if registry == "" {
		registry = awsAccount
	}
	tags, ok := e.repos[in.RepositoryName]
	if !ok || registry != awsAccount {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "RepositoryNotFoundException",
			message: fmt.Sprintf("The repository with name '%s' does not exist in the registry with id '%s'", in.RepositoryName, registry)}
	}
	byDigest := map[string][]string{}
	for t, d := range tags {
		byDigest[d] = append(byDigest[d], t)
	}
	details := []any{}
	detail := func(digest string) map[string]any {
		return map[string]any{"registryId": awsAccount, "repositoryName": in.RepositoryName, "imageDigest": digest,
			"imageTags": byDigest[digest], "imageSizeInBytes": 123456789, "imagePushedAt": float64(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Unix()),
			"imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json"}
	}
	if len(in.ImageIDs) == 0 {
		for d := range byDigest {
			details = append(details, detail(d))
		}
		return map[string]any{"imageDetails": details}, nil
	}
	for _, id := range in.ImageIDs {
		digest := id.ImageDigest
		if digest == "" {
			digest = tags[id.ImageTag]
		} else if _, ok := byDigest[digest]; !ok {
			digest = ""
		}
		if digest == "" {
			return nil, &awsJSONError{status: http.StatusBadRequest, code: "ImageNotFoundException",
				message: fmt.Sprintf("The image with imageId {imageDigest:'%s', imageTag:'%s'} does not exist within the repository with name '%s' in the registry with id '%s'",
					nullIfEmpty(id.ImageDigest), nullIfEmpty(id.ImageTag), in.RepositoryName, registry)}
		}
		details = append(details, detail(digest))
	}
	return map[string]any{"imageDetails": details}, nil
}

func nullIfEmpty(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

// SetTag points tag of repo at digest (creating the repository), as a push does.
func (e *ECR) SetTag(repo, tag, digest string) {
	e.CreateRepository(repo)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.repos[repo][tag] = digest
}
