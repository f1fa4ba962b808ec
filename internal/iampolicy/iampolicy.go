// Package iampolicy is the least-privilege IAM policy of a host's instance profile: the types a
// role builds its policy from (Document, Statement), the ARNs of the AWS resources a host
// touches, the JSON IAM reads, and the questions the policy simulator is asked about it (Asks).
//
// Each role builds its own policy from its configuration (roles/runner/policy.go,
// roles/gitlab/policy.go); "glbootstrap iam-policy" prints it and the runner's preflight asks IAM's
// policy simulator exactly its Asks, so what is printed and what is checked cannot drift.
//
// ARN formats and action names follow AWS's Service Authorization Reference,
// https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html
// (one page per service, cited where each ARN is built). The policy grammar (Version 2012-10-17,
// Sid of ASCII letters and digits, Condition operator → key → values) is IAM's,
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html.
package iampolicy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Version is the policy language version every document carries.
const Version = "2012-10-17"

// ChecksSid starts the Sid of every statement that only glbootstrap's own read-only checks need
// (preflight, doctor): a host works without them, so the preflight reports a denial there as a
// warning ("could not check"), never as a failure.
const ChecksSid = "GlbootstrapChecks"

// Document is a policy and what its author must know about it.
type Document struct {
	Policy Policy
	// Notes say what the policy could not know (a KMS key the configuration does not name, a
	// placeholder for a role that could not be looked up) and what to do; printed on stderr.
	Notes []string
}

// Policy is an IAM identity-based policy.
type Policy struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one Allow statement. Action and Resource are always lists (IAM accepts a string or
// a list); Condition maps an operator (StringEquals, ArnEquals, StringLike, ForAnyValue:...) to
// condition keys and their values.
type Statement struct {
	Sid       string                         `json:"Sid"`
	Effect    string                         `json:"Effect"`
	Action    []string                       `json:"Action"`
	Resource  []string                       `json:"Resource"`
	Condition map[string]map[string][]string `json:"Condition,omitempty"`
}

// Allow returns an Allow statement of actions on resources.
func Allow(sid string, actions, resources []string) Statement {
	return Statement{Sid: sid, Effect: "Allow", Action: actions, Resource: resources}
}

// When adds a condition (operator, key, values) to the statement and returns it.
func (s Statement) When(op, key string, values ...string) Statement {
	if s.Condition == nil {
		s.Condition = map[string]map[string][]string{}
	}
	if s.Condition[op] == nil {
		s.Condition[op] = map[string][]string{}
	}
	s.Condition[op][key] = append(s.Condition[op][key], values...)
	return s
}

// New returns a policy of the statements, merging those with the same Sid, actions and
// condition into one (their resources joined), dropping duplicate actions and resources, and
// sorting each statement's actions and resources, so the same configuration always prints the
// same bytes. Statements keep the order they were given in.
func New(statements ...Statement) Policy {
	out := []Statement{}
	for _, s := range statements {
		s.Action = uniqSorted(s.Action)
		s.Resource = uniqSorted(s.Resource)
		merged := false
		for i := range out {
			o := &out[i]
			if o.Sid == s.Sid && slices.Equal(o.Action, s.Action) && condKey(o.Condition) == condKey(s.Condition) {
				o.Resource = uniqSorted(append(o.Resource, s.Resource...))
				merged = true
				break
			}
		}
		if !merged {
			out = append(out, s)
		}
	}
	return Policy{Version: Version, Statement: out}
}

func uniqSorted(in []string) []string {
	out := slices.Clone(in)
	sort.Strings(out)
	return slices.Compact(out)
}

func condKey(c map[string]map[string][]string) string {
	b, _ := json.Marshal(c) // maps marshal with sorted keys
	return string(b)
}

var sidRE = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// Check reports a policy IAM would refuse or that grants nothing: no statement, a Sid that is
// empty, repeated or not ASCII letters and digits, a statement without actions or resources, an
// action that is not service:Name, or a resource that is neither "*" nor an ARN.
func (p Policy) Check() error {
	if p.Version != Version {
		return fmt.Errorf("policy version %q, want %s", p.Version, Version)
	}
	if len(p.Statement) == 0 {
		return fmt.Errorf("the policy has no statement")
	}
	seen := map[string]bool{}
	for _, s := range p.Statement {
		switch {
		case !sidRE.MatchString(s.Sid):
			return fmt.Errorf("statement Sid %q: IAM accepts ASCII letters and digits only", s.Sid)
		case seen[s.Sid]:
			return fmt.Errorf("statement Sid %s is used twice", s.Sid)
		case s.Effect != "Allow":
			return fmt.Errorf("statement %s: effect %q, want Allow", s.Sid, s.Effect)
		case len(s.Action) == 0 || len(s.Resource) == 0:
			return fmt.Errorf("statement %s has no action or no resource", s.Sid)
		}
		seen[s.Sid] = true
		for _, a := range s.Action {
			if svc, name, ok := strings.Cut(a, ":"); !ok || svc == "" || name == "" || strings.ContainsAny(a, " *") {
				return fmt.Errorf("statement %s: action %q is not service:Action", s.Sid, a)
			}
		}
		for _, r := range s.Resource {
			if r != "*" && !strings.HasPrefix(r, "arn:") {
				return fmt.Errorf("statement %s: resource %q is neither * nor an ARN", s.Sid, r)
			}
		}
	}
	return nil
}

// JSON is the policy as indented JSON with a final newline, ready for
// aws iam put-role-policy --policy-document file://...
func (p Policy) JSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // ARNs and ${...} stay readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Actions are every action of the policy, sorted, once each.
func (p Policy) Actions() []string {
	var all []string
	for _, s := range p.Statement {
		all = append(all, s.Action...)
	}
	return uniqSorted(all)
}

// Ask is one question to IAM's policy simulator (iam:SimulatePrincipalPolicy): may the principal
// perform Action on each of Resources, given the request context Context (the values the
// statement's condition expects, so a condition-scoped grant reads as allowed).
type Ask struct {
	// Sid is the statement the question comes from.
	Sid       string
	Action    string
	Resources []string
	// Context are the statement's condition keys, sorted by key.
	Context []ContextEntry
}

// ContextEntry is one condition key of the simulated request. Type is the simulator's
// ContextKeyType: "arn" for Arn* operators, "stringList" for ForAnyValue/ForAllValues, else
// "string".
type ContextEntry struct {
	Key, Type string
	Values    []string
}

// Asks are the simulator's questions for the policy: every action of every statement on that
// statement's resources, in the policy's order.
func (p Policy) Asks() []Ask {
	var out []Ask
	for _, s := range p.Statement {
		var ctx []ContextEntry
		for op, keys := range s.Condition {
			typ := "string"
			switch {
			case strings.HasPrefix(op, "ForAnyValue:") || strings.HasPrefix(op, "ForAllValues:"):
				typ = "stringList"
			case strings.HasPrefix(op, "Arn"):
				typ = "arn"
			}
			for k, v := range keys {
				ctx = append(ctx, ContextEntry{Key: k, Type: typ, Values: v})
			}
		}
		sort.Slice(ctx, func(i, j int) bool { return ctx[i].Key < ctx[j].Key })
		for _, a := range s.Action {
			out = append(out, Ask{Sid: s.Sid, Action: a, Resources: s.Resource, Context: ctx})
		}
	}
	return out
}
