package testenv

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// IAM is an in-process stand-in for the parts of AWS IAM glbootstrap reads, speaking the awsQuery
// protocol (POST / with a form body Action=<Op>&Version=2010-05-08&..., lists as
// Name.member.N; XML answers <OpResponse><OpResult>...</OpResult><ResponseMetadata/>), so the
// real aws-sdk-go-v2 IAM client can be pointed at it with AWS_ENDPOINT_URL_IAM=URL().
//
// Operations: GetInstanceProfile (NoSuchEntity, HTTP 404, for an unknown name) and
// SimulatePrincipalPolicy over a deliberately small policy model: a role is allowed an action
// on a resource when an Allow(role, action-pattern, resource-patterns...) covers it ("*"
// wildcards, case-insensitive actions), else the decision is implicitDeny. Deny makes an
// operation answer AccessDenied (HTTP 403) as
// <ErrorResponse><Error><Type>Sender</Type><Code/><Message/></Error><RequestId/></ErrorResponse>.
type IAM struct {
	srv *httptest.Server

	mu       sync.Mutex
	profiles map[string]string // instance profile name -> role ARN
	allows   map[string][]iamAllow
	denied   map[string]bool
	calls    map[string]int
	contexts map[string][]string // action -> the context keys it was last simulated with
}

type iamAllow struct {
	action    *regexp.Regexp
	resources []*regexp.Regexp
}

type iamError struct {
	status        int
	code, message string
}

// NewIAM starts the stand-in on a random 127.0.0.1 port. Close it when done.
func NewIAM() *IAM {
	i := &IAM{profiles: map[string]string{}, allows: map[string][]iamAllow{}, denied: map[string]bool{}, calls: map[string]int{}, contexts: map[string][]string{}}
	i.srv = httptest.NewServer(i.Handler())
	return i
}

// URL is the endpoint to put in AWS_ENDPOINT_URL_IAM.
func (i *IAM) URL() string { return i.srv.URL }

// Close stops the server.
func (i *IAM) Close() { i.srv.Close() }

// AddInstanceProfile creates instance profile name holding roleARN.
func (i *IAM) AddInstanceProfile(name, roleARN string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.profiles[name] = roleARN
}

// Allow lets roleARN perform actions matching action (e.g. "ecs:RunTask", "ecs:*") on resources
// matching any of resources (none means "*").
func (i *IAM) Allow(roleARN, action string, resources ...string) {
	if len(resources) == 0 {
		resources = []string{"*"}
	}
	a := iamAllow{action: iamGlob(action, true)}
	for _, r := range resources {
		a.resources = append(a.resources, iamGlob(r, false))
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.allows[roleARN] = append(i.allows[roleARN], a)
}

// Deny makes every call of op (e.g. "SimulatePrincipalPolicy") fail with AccessDenied.
func (i *IAM) Deny(op string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.denied[op] = true
}

// ContextKeys returns the context entries' keys (ContextEntries.member.N.ContextKeyName) action was
// last simulated with, "key=type:value,..." each.
func (i *IAM) ContextKeys(action string) []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]string(nil), i.contexts[action]...)
}

// Calls returns how many requests named op were received.
func (i *IAM) Calls(op string) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.calls[op]
}

func iamGlob(pattern string, fold bool) *regexp.Regexp {
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$"
	if fold {
		re = "(?i)" + re
	}
	return regexp.MustCompile(re)
}

// iamNamespace is the XML namespace of IAM API version 2010-05-08.
const iamNamespace = "https://iam.amazonaws.com/doc/2010-05-08/"

// Handler is the protocol handler.
func (i *IAM) Handler() http.Handler { return http.HandlerFunc(i.serve) }

func (i *IAM) serve(w http.ResponseWriter, r *http.Request) {
	form, action, ok := queryRequest(w, r, "2010-05-08", writeIAMError)
	if !ok {
		return
	}
	i.mu.Lock()
	i.calls[action]++
	var result any
	var ierr *iamError
	switch {
	case i.denied[action]:
		resource := "arn:aws:iam::" + awsAccount + ":*"
		if action == "SimulatePrincipalPolicy" {
			resource = form.Get("PolicySourceArn")
		}
		ierr = &iamError{status: http.StatusForbidden, code: "AccessDenied",
			message: fmt.Sprintf("User: %s is not authorized to perform: iam:%s on resource: %s because no identity-based policy allows the iam:%s action",
				awsPrincipal, action, resource, action)}
	case action == "GetInstanceProfile":
		result, ierr = i.getInstanceProfile(form)
	case action == "SimulatePrincipalPolicy":
		result, ierr = i.simulatePrincipalPolicy(form)
	default:
		ierr = &iamError{status: http.StatusBadRequest, code: "InvalidAction", message: "Could not find operation " + action}
	}
	i.mu.Unlock()
	if ierr != nil {
		writeIAMError(w, ierr)
		return
	}
	// <OpResponse xmlns=...><OpResult>…</OpResult><ResponseMetadata><RequestId/></ResponseMetadata></OpResponse>
	inner, err := xml.Marshal(result)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body := fmt.Sprintf(`%s<%sResponse xmlns="%s">%s<ResponseMetadata><RequestId>00000000-0000-4000-8000-000000000000</RequestId></ResponseMetadata></%sResponse>`,
		xml.Header, action, iamNamespace, inner, action)
	w.Header().Set("Content-Type", "text/xml")
	_, _ = w.Write([]byte(body))
}

func writeIAMError(w http.ResponseWriter, e *iamError) {
	type errXML struct {
		XMLName   xml.Name `xml:"ErrorResponse"`
		NS        string   `xml:"xmlns,attr"`
		Type      string   `xml:"Error>Type"`
		Code      string   `xml:"Error>Code"`
		Message   string   `xml:"Error>Message"`
		RequestID string   `xml:"RequestId"`
	}
	b, _ := xml.Marshal(errXML{NS: iamNamespace, Type: "Sender", Code: e.code, Message: e.message, RequestID: "00000000-0000-4000-8000-000000000000"})
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.status)
	_, _ = w.Write(append([]byte(xml.Header), b...))
}

func (i *IAM) getInstanceProfile(form url.Values) (any, *iamError) {
	type roleXML struct {
		Path       string `xml:"Path"`
		RoleName   string `xml:"RoleName"`
		RoleID     string `xml:"RoleId"`
		Arn        string `xml:"Arn"`
		CreateDate string `xml:"CreateDate"`
	}
	type result struct {
		XMLName    xml.Name  `xml:"GetInstanceProfileResult"`
		Path       string    `xml:"InstanceProfile>Path"`
		Name       string    `xml:"InstanceProfile>InstanceProfileName"`
		ID         string    `xml:"InstanceProfile>InstanceProfileId"`
		Arn        string    `xml:"InstanceProfile>Arn"`
		CreateDate string    `xml:"InstanceProfile>CreateDate"`
		Roles      []roleXML `xml:"InstanceProfile>Roles>member"`
	}
	name := form.Get("InstanceProfileName")
	roleARN, ok := i.profiles[name]
	if !ok {
		return nil, &iamError{status: http.StatusNotFound, code: "NoSuchEntity", message: fmt.Sprintf("Instance Profile %s cannot be found.", name)}
	}
	const created = "2025-01-02T03:04:05Z"
	return result{Path: "/", Name: name, ID: "AIPAEXAMPLEPROFILE0001", Arn: "arn:aws:iam::" + awsAccount + ":instance-profile/" + name, CreateDate: created,
		Roles: []roleXML{{Path: "/", RoleName: roleARN[strings.LastIndex(roleARN, "/")+1:], RoleID: "AROAEXAMPLEROLE000001", Arn: roleARN, CreateDate: created}}}, nil
}

func (i *IAM) simulatePrincipalPolicy(form url.Values) (any, *iamError) {
	type evalXML struct {
		Action   string `xml:"EvalActionName"`
		Resource string `xml:"EvalResourceName"`
		Decision string `xml:"EvalDecision"`
	}
	type result struct {
		XMLName     xml.Name  `xml:"SimulatePrincipalPolicyResult"`
		IsTruncated bool      `xml:"IsTruncated"`
		Results     []evalXML `xml:"EvaluationResults>member"`
	}
	principal := form.Get("PolicySourceArn")
	if !strings.HasPrefix(principal, "arn:aws:iam::") {
		return nil, &iamError{status: http.StatusBadRequest, code: "InvalidInput", message: "Invalid ARN " + principal}
	}
	if !i.known(principal) {
		return nil, &iamError{status: http.StatusNotFound, code: "NoSuchEntity", message: "The role with name " + principal[strings.LastIndex(principal, "/")+1:] + " cannot be found."}
	}
	actions := formList(form, "ActionNames.member")
	if len(actions) == 0 {
		return nil, &iamError{status: http.StatusBadRequest, code: "ValidationError", message: "1 validation error detected: Value null at 'actionNames' failed to satisfy constraint: Member must not be null"}
	}
	resources := formList(form, "ResourceArns.member")
	if len(resources) == 0 {
		resources = []string{"*"}
	}
	var ctx []string
	for n := 1; form.Get(fmt.Sprintf("ContextEntries.member.%d.ContextKeyName", n)) != ""; n++ {
		pfx := fmt.Sprintf("ContextEntries.member.%d.", n)
		ctx = append(ctx, form.Get(pfx+"ContextKeyName")+"="+form.Get(pfx+"ContextKeyType")+":"+strings.Join(formList(form, pfx+"ContextKeyValues.member"), ","))
	}
	out := result{}
	for _, a := range actions {
		i.contexts[a] = ctx
		for _, r := range resources {
			decision := "implicitDeny"
			for _, al := range i.allows[principal] {
				if al.action.MatchString(a) && anyMatch(al.resources, r) {
					decision = "allowed"
				}
			}
			out.Results = append(out.Results, evalXML{Action: a, Resource: r, Decision: decision})
		}
	}
	return out, nil
}

func (i *IAM) known(roleARN string) bool {
	for _, r := range i.profiles {
		if r == roleARN {
			return true
		}
	}
	_, ok := i.allows[roleARN]
	return ok
}

func anyMatch(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}
