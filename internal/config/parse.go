package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Parse decodes and validates one configuration document for role, one of the roles in schemas
// (every role of the build: the others tell a section of another role from a typo), and returns
// every problem found, errors and warnings, in document order. Defaults are applied to the
// returned Document, which is the role's (schema.New()) and which the caller converts to its type.
//
// The Document is nil exactly when there is at least one error: a caller never sees a half-valid
// configuration. Warnings alone leave the Document usable.
//
// It works in passes so one run reports everything: the YAML is read into a node tree (syntax, empty
// or multiple documents); every scalar is checked for pasted secrets; the tree is walked against the
// role's document type by its yaml tags (unknown and duplicated keys, another role's keys, wrong
// kinds); the document is decoded with KnownFields; the version is checked; then the role's Check
// applies its defaults and value rules. Value problems carry the line of their key, or of the
// nearest enclosing key present when the field is absent.
func Parse(data []byte, role string, schemas []Schema) (Document, Problems) {
	p := &parser{lines: map[string]int{}, present: map[string]bool{}, bad: map[string]bool{}}
	var schema *Schema
	var names []string
	for i, s := range schemas {
		names = append(names, s.Role)
		if s.Role == role {
			schema = &schemas[i]
		} else {
			p.others = append(p.others, otherRole{role: s.Role, title: s.Title, t: reflect.TypeOf(s.New()).Elem()})
		}
	}
	if schema == nil {
		p.errf("", 0, "unknown role %q; want one of %s", role, strings.Join(names, ", "))
		return nil, p.problems
	}
	p.role, p.title = schema.Role, schema.Title
	doc := schema.New()
	p.docType = reflect.TypeOf(doc).Elem()

	root, ok := p.readDocument(data)
	if !ok {
		return nil, p.finish()
	}
	p.scanSecrets(root, "")
	p.walk(root, p.docType, "")

	if !p.pruned && len(p.bad) == 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(doc); err != nil {
			// The walk explains type errors in terms of the schema; the decoder's own wording is a
			// safety net for anything the walk does not know about.
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, e := range te.Errors {
					line, msg := splitYAMLError(e)
					p.errf("", line, "%s", msg)
				}
			} else {
				line, msg := splitYAMLError(err.Error())
				p.errf("", line, "decoding: %s", msg)
			}
		}
	} else {
		// The walk has pruned what it reported (unknown and duplicated keys gone, wrong kinds set to
		// null), so the rest still decodes and its values are still checked. The decoder would
		// otherwise drop a whole mapping for one duplicated key.
		_ = root.Decode(doc)
	}

	c := &Checker{p}
	switch v := doc.base().Version; {
	case !p.present["version"]:
		c.Errorf("version", "is required; write version: %d", SchemaVersion)
	case v != SchemaVersion:
		c.Errorf("version", "unsupported schema version %d; this glbootstrap reads version %d", v, SchemaVersion)
	}
	checkInstance(c, &doc.base().Instance)
	checkPackages(c, &doc.base().Packages)
	doc.Check(c)

	ps := p.finish()
	if len(ps.Errors()) > 0 {
		return nil, ps
	}
	return doc, ps
}

// otherRole is a role of the build other than the one being read.
type otherRole struct {
	role, title string
	t           reflect.Type
}

// parser collects problems and knows where each field path is in the document.
type parser struct {
	problems Problems
	// lines maps a field path to the line of its key (list items: of the item).
	lines map[string]int
	// present holds the paths that are in the document with a non-null value.
	present map[string]bool
	// bad holds the paths that already have a structural problem (wrong kind, duplicate key); value
	// rules do not pile further messages on them or below them.
	bad map[string]bool
	// pruned is set when the walk removed something from the tree that is not in bad.
	pruned bool

	// role and title are the role being read, docType its document type; others are the other
	// roles of the build.
	role, title string
	docType     reflect.Type
	others      []otherRole
}

func (p *parser) errf(path string, line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{Path: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) warnf(path string, line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{Path: path, Line: line, Message: fmt.Sprintf(format, args...), Warning: true})
}

// line returns the line of path, or of its nearest ancestor present in the document, or 0.
func (p *parser) line(path string) int {
	for {
		if l, ok := p.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parentPath(path)
	}
}

// isBad reports whether path or one of its ancestors already has a structural problem.
func (p *parser) isBad(path string) bool {
	for {
		if p.bad[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// finish masks any secret that slipped into a message and sorts by line (stable, so problems on one
// line keep the order the passes found them in).
func (p *parser) finish() Problems {
	for i := range p.problems {
		p.problems[i].Message = maskSecrets(p.problems[i].Message)
		p.problems[i].Path = maskSecrets(p.problems[i].Path)
	}
	sort.SliceStable(p.problems, func(i, j int) bool { return p.problems[i].Line < p.problems[j].Line })
	return p.problems
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

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// readDocument parses data into a node tree and returns the root mapping of its only document.
func (p *parser) readDocument(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errf("", 0, "%s", p.emptyMessage())
			return nil, false
		}
		line, msg := splitYAMLError(err.Error())
		if lines := bytes.Split(data, []byte("\n")); line > 0 && line <= len(lines) && bytes.HasPrefix(bytes.TrimLeft(lines[line-1], " "), []byte("\t")) {
			msg += "; the line is indented with a tab: YAML indents with spaces only"
		}
		switch {
		case bytes.IndexByte(data, 0) >= 0:
			msg += "; the file contains NUL bytes: is it the right file (a YAML text configuration)?"
		case !versionLine.Match(data):
			// Not a configuration with a typo but something else: a secret, another file.
			msg += "; it has no version: line either, so it is not a glbootstrap configuration: " + notASecret
		}
		p.errf("", line, "invalid YAML: %s", msg)
		return nil, false
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		p.errf("", next.Line, "a second YAML document starts here; the configuration must be one document (remove the --- separator)")
		return nil, false
	case !errors.Is(err, io.EOF):
		line, msg := splitYAMLError(err.Error())
		p.errf("", line, "invalid YAML after the first document: %s", msg)
		return nil, false
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	root = deref(root)
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		p.errf("", 0, "%s", p.emptyMessage())
		return nil, false
	}
	if root.Kind != yaml.MappingNode {
		// Said by its shape only: a document that is not a mapping is most likely not a
		// configuration at all (--config pointed at a SecureString), so none of it is echoed.
		p.errf("", root.Line, "the configuration is %s, not a YAML mapping (%s: ...): %s",
			describeShape(root), strings.Join(p.topKeys(), ": ..., "), notASecret)
		return nil, false
	}
	return root, true
}

// notASecret is what to do when the source holds something other than a configuration.
const notASecret = "point --config at the glbootstrap configuration, not at a secret or another value (nothing read from it is shown)"

// versionLine finds the version key a configuration starts with.
var versionLine = regexp.MustCompile(`(?m)^version[ \t]*:`)

// describeShape names what a document that is not a mapping is without showing any of it: "a
// string of 24 characters on 3 lines", "a list of 2 items".
func describeShape(n *yaml.Node) string {
	n = deref(n)
	switch n.Kind {
	case yaml.SequenceNode:
		return fmt.Sprintf("a list of %d item(s)", len(n.Content))
	case yaml.ScalarNode:
		what := "a string"
		if n.ShortTag() != "!!str" {
			what = "a single value"
		}
		what += fmt.Sprintf(" of %d character(s)", utf8.RuneCountInString(n.Value))
		if lines := strings.Count(strings.TrimRight(n.Value, "\n"), "\n") + 1; lines > 1 {
			what += fmt.Sprintf(" on %d lines", lines)
		}
		return what
	}
	return "not a mapping"
}

// emptyMessage is the error for a document with nothing in it.
func (p *parser) emptyMessage() string {
	return fmt.Sprintf("the configuration is empty; role %s needs at least version: 1 and its sections (%s; see examples/%s.yaml)",
		p.role, strings.Join(p.topKeys()[1:], ", "), p.role)
}

// topKeys are the top-level keys of the role's document: version, then the role's sections
// (the optional instance and packages sections every document has are left out).
func (p *parser) topKeys() []string {
	var out []string
	for _, k := range yamlKeys(p.docType) {
		if k != "instance" && k != "packages" {
			out = append(out, k)
		}
	}
	return out
}

// integerText is an integer as written, for "too large" rather than "not an integer".
var integerText = regexp.MustCompile(`^[-+]?[0-9_]+$`)

var yamlErrLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// splitYAMLError pulls the line out of a yaml error ("yaml: line 3: did not find expected key")
// and takes out what the message quotes from the document (redactYAMLError).
func splitYAMLError(s string) (int, string) {
	if m := yamlErrLine.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, redactYAMLError(m[2])
	}
	return 0, redactYAMLError(strings.TrimPrefix(s, "yaml: "))
}

// yamlQuoted are the parts of go.yaml.in/yaml/v3's error texts that copy the document: the
// start of a value ("cannot unmarshal !!str `hunter2` into int", decode.go terror), an anchor's
// name ("unknown anchor 'pw' referenced": a SecureString starting with * parses as an alias),
// a map key ("invalid map key: ..."). The scanner's and parser's own problems are fixed texts.
var yamlQuoted = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile("(?s)(cannot unmarshal \\S+) `.*` into "), "$1 value into "},
	{regexp.MustCompile(`(?s)unknown anchor '.*' referenced`), "an alias (*name) refers to an anchor (&name) that is not defined before it"},
	{regexp.MustCompile(`(?s)anchor '.*' value contains itself`), "an anchor's value contains an alias to itself"},
	{regexp.MustCompile(`(?s)invalid map key: .*`), "invalid map key"},
}

// redactYAMLError takes out of a yaml error message everything it quotes from the document, so
// no value read from a configuration source reaches the output through the parser's wording.
func redactYAMLError(msg string) string {
	for _, q := range yamlQuoted {
		msg = q.re.ReplaceAllString(msg, q.with)
	}
	return msg
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// DescribeNode names what a node is, for "must be X, got Y" messages: "a mapping", "a list",
// "nothing" (null) or the scalar quoted, with anything that looks like a GitLab token masked.
func DescribeNode(n *yaml.Node) string {
	n = deref(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return strconv.Quote(maskSecrets(n.Value))
	}
	return "an unsupported YAML node"
}

var (
	durationType    = reflect.TypeFor[Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	nodeCheckerType = reflect.TypeFor[NodeChecker]()
)

// NodeChecker is a value type that checks its own YAML node during the structural walk, for
// values richer than a struct can describe (gitlab.settings: free-form gitlab.rb settings with
// rules of their own). CheckNode reports every problem through report, with the path below path
// and the line it is on, and says whether the node can be decoded into the type.
type NodeChecker interface {
	CheckNode(n *yaml.Node, path string, report func(path string, line int, msg string)) bool
}

var nullNode = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}

// walk checks node n against type t at path: unknown and duplicated keys, and kinds. It reports
// false when n cannot be decoded into t; the caller then replaces n with null. Within mappings it
// prunes what it reported, so the tree that is left decodes cleanly.
func (p *parser) walk(n *yaml.Node, t reflect.Type, path string) bool {
	n = deref(n)
	if isNull(n) {
		return true // absent; defaults and required-field rules deal with it
	}
	if reflect.PointerTo(t).Implements(nodeCheckerType) {
		checker := reflect.New(t).Interface().(NodeChecker)
		ok := checker.CheckNode(n, path, func(ep string, line int, msg string) {
			p.bad[ep] = true
			p.errf(ep, line, "%s", msg)
		})
		if !ok {
			p.bad[path] = true
		}
		p.recordLines(n, path)
		return ok
	}
	if t == durationType {
		var d Duration
		if err := n.Decode(&d); err != nil {
			msg := durationHint(DescribeNode(n))
			var te *yaml.TypeError
			if errors.As(err, &te) && len(te.Errors) > 0 {
				_, msg = splitYAMLError(te.Errors[0])
			}
			p.bad[path] = true
			p.errf(path, n.Line, "%s", msg)
			return false
		}
		return true
	}
	// Types that read themselves (Days, Size) say what is wrong in their own words.
	if t.Kind() != reflect.Struct && reflect.PointerTo(t).Implements(unmarshalerType) {
		if n.Kind != yaml.ScalarNode {
			p.bad[path] = true
			p.errf(path, n.Line, "must be a single value, got %s", DescribeNode(n))
			return false
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			p.bad[path] = true
			p.errf(path, n.Line, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			return false
		}
		return true
	}
	switch t.Kind() {
	case reflect.Pointer:
		return p.walk(n, t.Elem(), path)
	case reflect.Struct:
		return p.walkStruct(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			p.bad[path] = true
			p.errf(path, n.Line, "must be a list, got %s", DescribeNode(n))
			return false
		}
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			p.lines[ip] = item.Line
			p.present[ip] = !isNull(deref(item))
			if !p.walk(item, t.Elem(), ip) {
				n.Content[i] = nullNode
			}
		}
		return true
	default:
		return p.walkScalar(n, t, path)
	}
}

// recordLines records the line of every key below a NodeChecker's node, so Document.Check's
// Errorf and Warnf on a path inside it (gitlab.settings.gitlab_rails.time_zon) point at its own
// line rather than the enclosing key's. Aliases are not followed.
func (p *parser) recordLines(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Kind == yaml.ScalarNode {
				kp := joinPath(path, k.Value)
				if _, seen := p.lines[kp]; !seen {
					p.lines[kp] = k.Line
				}
				p.recordLines(n.Content[i+1], kp)
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			if _, seen := p.lines[ip]; !seen {
				p.lines[ip] = item.Line
			}
			p.recordLines(item, ip)
		}
	}
}

func (p *parser) walkStruct(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind != yaml.MappingNode {
		p.bad[path] = true
		p.errf(path, n.Line, "must be a mapping of %s, got %s", strings.Join(yamlKeys(t), ", "), DescribeNode(n))
		return false
	}
	fields := map[string]reflect.Type{}
	for _, f := range yamlFields(t) {
		fields[f.name] = f.t
	}
	seen := map[string]int{}
	var kept []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.bad[path] = true
			p.errf(path, k.Line, "keys must be plain names, got %s", DescribeNode(k))
			continue
		}
		kp := joinPath(path, k.Value)
		if k.Value == "<<" {
			p.bad[path] = true
			p.errf(path, k.Line, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			// The first value stays and is still checked; only the repeat is dropped.
			p.pruned = true
			p.errf(kp, k.Line, "duplicated key; it is already set on line %d", first)
			continue
		}
		seen[k.Value] = k.Line
		ft, ok := fields[k.Value]
		if !ok {
			if p.otherRolesKey(path, kp, k) {
				continue
			}
			p.bad[kp] = true
			p.errf(kp, k.Line, "unknown key; %s", suggestKey(k.Value, t, p.docType, path))
			continue
		}
		p.lines[kp] = k.Line
		p.present[kp] = !isNull(deref(v))
		if !p.walk(v, ft, kp) {
			v = nullNode
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
	return true
}

func (p *parser) walkScalar(n *yaml.Node, t reflect.Type, path string) bool {
	want := kindName(t)
	if n.Kind != yaml.ScalarNode {
		p.bad[path] = true
		p.errf(path, n.Line, "must be %s, got %s", want, DescribeNode(n))
		return false
	}
	tag := n.ShortTag()
	ok := true
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		// Refuse floats rather than let the decoder truncate 1.5 to 1.
		ok = tag == "!!int"
	case reflect.Bool:
		// Only YAML's own true and false. The decoder would also take the strings y/yes/on
		// and n/no/off (YAML 1.1 words, quoted or not) but not "true" quoted: one rule for
		// every string, so a quoted or 1.1-style boolean is refused the same way, with the
		// value shown.
		ok = tag == "!!bool"
	case reflect.String:
		ok = tag == "!!str" || tag == "!!int" || tag == "!!float" || tag == "!!bool"
	}
	if ok {
		// The decoder has the last word (overflow, exotic tags).
		ok = n.Decode(reflect.New(t).Interface()) == nil
	}
	if !ok {
		p.bad[path] = true
		if (t.Kind() == reflect.Int || t.Kind() == reflect.Int64) && (tag == "!!int" || tag == "!!float") && integerText.MatchString(n.Value) {
			p.errf(path, n.Line, "%s is too large", n.Value)
		} else {
			p.errf(path, n.Line, "must be %s, got %s", want, DescribeNode(n))
		}
	}
	return ok
}

func kindName(t reflect.Type) string {
	if t == durationType {
		return "a duration"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Pointer:
		return "a mapping"
	}
	return t.String()
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// yamlField is one key of a mapping type.
type yamlField struct {
	name string
	t    reflect.Type
}

// yamlFields lists the keys of struct type t in field order, with the keys of embedded structs
// tagged `yaml:",inline"` in place (a role's gitlab section embeds the shared GitLab).
func yamlFields(t reflect.Type) []yamlField {
	var out []yamlField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		_, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.Anonymous && strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
			out = append(out, yamlFields(f.Type)...)
			continue
		}
		if name := yamlName(f); name != "" {
			out = append(out, yamlField{name, f.Type})
		}
	}
	return out
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for _, f := range yamlFields(t) {
		keys = append(keys, f.name)
	}
	return keys
}

// mappingAt returns the struct type of the mapping at path in document type t, or nil when t has
// no mapping there.
func mappingAt(t reflect.Type, path string) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == durationType {
		return nil
	}
	if path == "" {
		return t
	}
	first, rest, _ := strings.Cut(path, ".")
	for _, f := range yamlFields(t) {
		if f.name == first {
			return mappingAt(f.t, rest)
		}
	}
	return nil
}

// otherRolesKey handles key k, unknown in the role's mapping at path, when another role reads it:
// a top-level section of another role is an error (a configuration given to the wrong role would
// converge the wrong host), a key of a shared section another role reads is a warning. Either way
// the key is dropped. It reports false when no other role reads the key.
func (p *parser) otherRolesKey(path, kp string, k *yaml.Node) bool {
	if strings.Contains(path, "[") {
		return false
	}
	var owners []otherRole
	for _, o := range p.others {
		if m := mappingAt(o.t, path); m != nil && slices.Contains(yamlKeys(m), k.Value) {
			owners = append(owners, o)
		}
	}
	if len(owners) == 0 {
		return false
	}
	o := owners[0]
	if path != "" {
		p.pruned = true
		p.warnf(kp, k.Line, "is read by role %s (%s) only; role %s ignores it: is this %s's configuration?", o.role, o.title, p.role, o.title)
		return true
	}
	p.bad[kp] = true
	if len(owners) > 1 {
		var names []string
		for _, o := range owners {
			names = append(names, o.role)
		}
		p.errf(kp, k.Line, "the %s section belongs to roles %s, not to role %s (%s)", k.Value, strings.Join(names, " and "), p.role, p.title)
		return true
	}
	p.errf(kp, k.Line, "the %s section belongs to role %s: is this %s's configuration? Give %s's configuration to --role %s", k.Value, o.role, o.title, p.title, p.role)
	return true
}

// suggestKey explains an unknown key: the closest key of the same mapping when it is close (by edit
// distance, ignoring case, "_" and "-", so fargate.toml's SecurityGroup finds security_group), else
// the same key in another section, else the list of known keys.
func suggestKey(key string, t, doc reflect.Type, path string) string {
	keys := yamlKeys(t)
	nk := normalizeKey(key)
	best, bestDist := Nearest(key, keys)
	if bestDist >= 0 && bestDist <= max(1, min(3, len(nk)/4)) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	if elsewhere := findKey(doc, "", nk, path); elsewhere != "" {
		return fmt.Sprintf("did you mean %s? (it belongs in another section)", elsewhere)
	}
	where := "the top level"
	if path != "" {
		where = path
	}
	return fmt.Sprintf("known keys in %s: %s", where, strings.Join(keys, ", "))
}

// findKey looks for a schema path, other than under skip, whose key normalizes to nk: the
// shallowest such path (the first of them in schema order), so runner.region suggests
// fargate.region rather than runner.cache.region.
func findKey(t reflect.Type, path, nk, skip string) string {
	best := ""
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == durationType {
			return
		}
		for _, f := range yamlFields(t) {
			fp := joinPath(path, f.name)
			if normalizeKey(f.name) == nk && path != skip && (best == "" || strings.Count(fp, ".") < strings.Count(best, ".")) {
				best = fp
			}
			walk(f.t, fp)
		}
	}
	walk(t, path)
	return best
}

// Nearest returns the candidate closest to key by edit distance, ignoring case, "_", "-" and
// spaces, and that distance (-1 without candidates), for "did you mean" hints.
func Nearest(key string, candidates []string) (string, int) {
	nk := normalizeKey(key)
	best, bestDist := "", -1
	for _, c := range candidates {
		if d := levenshtein(nk, normalizeKey(c)); bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	return best, bestDist
}

func normalizeKey(s string) string {
	s = strings.ToLower(s)
	return strings.NewReplacer("_", "", "-", "", " ", "").Replace(s)
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
