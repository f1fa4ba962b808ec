package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse decodes and validates one configuration document for role (RoleRunner, RoleGitLab, or "" for
// no role-specific requirements), and returns every problem found, errors and warnings, in document
// order. Defaults are applied to the returned Config.
//
// The Config is nil exactly when there is at least one error: a caller never sees a half-valid
// configuration. Warnings alone leave the Config usable.
//
// It works in passes so one run reports everything: the YAML is read into a node tree (syntax, empty
// or multiple documents); every scalar is checked for pasted secrets; the tree is walked against the
// Config types by their yaml tags (unknown and duplicated keys, wrong kinds); the document is decoded
// with KnownFields; defaults are applied; then the values are checked. Value problems carry the line
// of their key, or of the nearest enclosing key present when the field is absent.
func Parse(data []byte, role string) (*Config, Problems) {
	p := &parser{lines: map[string]int{}, present: map[string]bool{}, bad: map[string]bool{}}
	switch role {
	case RoleRunner, RoleGitLab, "":
	default:
		p.errf("", 0, "unknown role %q; want %q or %q", role, RoleRunner, RoleGitLab)
		return nil, p.problems
	}

	root, ok := p.readDocument(data)
	if !ok {
		return nil, p.finish()
	}
	p.scanSecrets(root, "")
	p.walk(root, reflect.TypeFor[Config](), "")

	var cfg Config
	if !p.pruned && len(p.bad) == 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			// The walk explains type errors in terms of the schema; the decoder's own wording is a
			// safety net for anything the walk does not know about.
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, e := range te.Errors {
					line, msg := splitYAMLError(e)
					p.errf("", line, "%s", msg)
				}
			} else {
				p.errf("", 0, "decoding: %v", err)
			}
		}
	} else {
		// The walk has pruned what it reported (unknown and duplicated keys gone, wrong kinds set to
		// null), so the rest still decodes and its values are still checked. The decoder would
		// otherwise drop a whole mapping for one duplicated key.
		_ = root.Decode(&cfg)
	}

	applyDefaults(&cfg, p)
	validate(&cfg, role, p)

	ps := p.finish()
	if len(ps.Errors()) > 0 {
		return nil, ps
	}
	return &cfg, ps
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
			p.errf("", 0, "the configuration is empty; it needs at least version: 1 and a gitlab section (see examples/runner.yaml)")
			return nil, false
		}
		line, msg := splitYAMLError(err.Error())
		if lines := bytes.Split(data, []byte("\n")); line > 0 && line <= len(lines) && bytes.HasPrefix(bytes.TrimLeft(lines[line-1], " "), []byte("\t")) {
			msg += "; the line is indented with a tab: YAML indents with spaces only"
		}
		if bytes.IndexByte(data, 0) >= 0 {
			msg += "; the file contains NUL bytes: is it the right file (a YAML text configuration)?"
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
		p.errf("", 0, "the configuration is empty; it needs at least version: 1 and a gitlab section (see examples/runner.yaml)")
		return nil, false
	}
	if root.Kind != yaml.MappingNode {
		p.errf("", root.Line, "the configuration must be a mapping (version: 1, gitlab:, runner:, fargate:), got %s", describeNode(root))
		return nil, false
	}
	return root, true
}

var yamlErrLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// splitYAMLError pulls the line out of a yaml error ("yaml: line 3: did not find expected key").
func splitYAMLError(s string) (int, string) {
	if m := yamlErrLine.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, m[2]
	}
	return 0, strings.TrimPrefix(s, "yaml: ")
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// describeNode names what a node is, for "must be X, got Y" messages. Scalars are quoted and masked.
func describeNode(n *yaml.Node) string {
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
)

var nullNode = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}

// walk checks node n against type t at path: unknown and duplicated keys, and kinds. It reports
// false when n cannot be decoded into t; the caller then replaces n with null. Within mappings it
// prunes what it reported, so the tree that is left decodes cleanly.
func (p *parser) walk(n *yaml.Node, t reflect.Type, path string) bool {
	n = deref(n)
	if isNull(n) {
		return true // absent; defaults and required-field rules deal with it
	}
	if t == settingsType {
		return p.walkSettings(n, path)
	}
	if t == durationType {
		var d Duration
		if err := n.Decode(&d); err != nil {
			msg := durationHint(describeNode(n))
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
			p.errf(path, n.Line, "must be a single value, got %s", describeNode(n))
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
			p.errf(path, n.Line, "must be a list, got %s", describeNode(n))
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

func (p *parser) walkStruct(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind != yaml.MappingNode {
		p.bad[path] = true
		p.errf(path, n.Line, "must be a mapping of %s, got %s", strings.Join(yamlKeys(t), ", "), describeNode(n))
		return false
	}
	fields := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name := yamlName(f); name != "" {
			fields[name] = f
		}
	}
	seen := map[string]int{}
	var kept []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.bad[path] = true
			p.errf(path, k.Line, "keys must be plain names, got %s", describeNode(k))
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
		f, ok := fields[k.Value]
		if !ok {
			p.bad[kp] = true
			p.errf(kp, k.Line, "unknown key; %s", suggestKey(k.Value, t, path))
			continue
		}
		p.lines[kp] = k.Line
		p.present[kp] = !isNull(deref(v))
		if !p.walk(v, f.Type, kp) {
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
		p.errf(path, n.Line, "must be %s, got %s", want, describeNode(n))
		return false
	}
	tag := n.ShortTag()
	ok := true
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		// Refuse floats rather than let the decoder truncate 1.5 to 1.
		ok = tag == "!!int"
	case reflect.Bool:
		// The decoder also takes YAML 1.1's yes/no/on/off; it has the last word below.
		ok = tag == "!!bool" || tag == "!!str"
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
			p.errf(path, n.Line, "must be %s, got %s", want, describeNode(n))
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

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

// suggestKey explains an unknown key: the closest key of the same mapping when it is close (by edit
// distance, ignoring case, "_" and "-", so fargate.toml's SecurityGroup finds security_group), else
// the same key in another section, else the list of known keys.
func suggestKey(key string, t reflect.Type, path string) string {
	keys := yamlKeys(t)
	nk := normalizeKey(key)
	best, bestDist := "", -1
	for _, k := range keys {
		d := levenshtein(nk, normalizeKey(k))
		if bestDist < 0 || d < bestDist {
			best, bestDist = k, d
		}
	}
	if bestDist >= 0 && bestDist <= max(1, min(3, len(nk)/4)) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	if elsewhere := findKey(reflect.TypeFor[Config](), "", nk, path); elsewhere != "" {
		return fmt.Sprintf("did you mean %s? (it belongs in another section)", elsewhere)
	}
	where := "the top level"
	if path != "" {
		where = path
	}
	return fmt.Sprintf("known keys in %s: %s", where, strings.Join(keys, ", "))
}

// findKey looks for a schema path, other than under skip, whose key normalizes to nk.
func findKey(t reflect.Type, path, nk, skip string) string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == durationType {
		return ""
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		fp := joinPath(path, name)
		if normalizeKey(name) == nk && path != skip {
			return fp
		}
		if found := findKey(f.Type, fp, nk, skip); found != "" {
			return found
		}
	}
	return ""
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
