package gitlab

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// RubyLiteral returns v as a Ruby literal that evaluates to exactly v and runs no code.
//
// Shapes: string; bool; int, int64 and uint16 as integers; float64 (finite) as a float that
// always has a "." or an exponent, so 1.0 stays a Float; []string and []any as arrays; and
// map[string]any as a hash with string keys in sorted order, so the same value always renders
// the same bytes. nil, NaN, infinities and any other type are errors: gitlab.rb has no use for
// them and config.Parse (through Settings.CheckNode) refuses them earlier with a line number.
//
// Strings of printable ASCII become single-quoted literals, where only \\ and \' are escapes, so
// "#{...}" stays text. Anything else (newlines, control characters, non-ASCII) becomes a
// double-quoted literal in which every '"', '\' and '#' is escaped and every other character
// outside printable ASCII is a \n, \t, \r, \xNN or \u{...} escape: the fragment stays pure ASCII,
// which Ruby reads the same whatever the source encoding Omnibus's from_file uses.
func RubyLiteral(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return rubyString(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint16:
		return strconv.FormatUint(uint64(x), 10), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", fmt.Errorf("%v has no Ruby literal", x)
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s, nil
	case []string:
		items := make([]any, len(x))
		for i, s := range x {
			items[i] = s
		}
		return RubyLiteral(items)
	case []any:
		parts := make([]string, len(x))
		for i, it := range x {
			lit, err := RubyLiteral(it)
			if err != nil {
				return "", fmt.Errorf("item %d: %w", i, err)
			}
			parts[i] = lit
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case map[string]any:
		if len(x) == 0 {
			return "{}", nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			lit, err := RubyLiteral(x[k])
			if err != nil {
				return "", fmt.Errorf("key %q: %w", k, err)
			}
			parts[i] = rubyString(k) + " => " + lit
		}
		return "{ " + strings.Join(parts, ", ") + " }", nil
	case nil:
		return "", fmt.Errorf("nil has no place in gitlab.rb (leave the setting out for Omnibus's default)")
	default:
		return "", fmt.Errorf("a %T cannot be written to gitlab.rb", v)
	}
}

func rubyString(s string) string {
	printable := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			printable = false
			break
		}
	}
	if printable {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\' || r == '#':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02X`, r)
		case r > 0x7f:
			fmt.Fprintf(&b, `\u{%X}`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// rootRE is what a gitlab.rb root must look like; the root is Ruby code (a method call), so it
// must also be one settings.go knows (IsHashRoot / IsCallRoot).
var rootRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Statement builds one gitlab.rb statement for a known root: root['key'] = value for a hash root
// (key != ""), or root value for a call root (registry_external_url 'https://…'). The root is
// checked against config's lists here again, so no caller can turn a string into code.
func Statement(root, key string, value any) (string, error) {
	if !rootRE.MatchString(root) {
		return "", fmt.Errorf("%q is not a gitlab.rb root", root)
	}
	lit, err := RubyLiteral(value)
	if err != nil {
		return "", fmt.Errorf("%s: %w", root, err)
	}
	switch {
	case key != "" && IsHashRoot(root):
		return root + "[" + rubyString(key) + "] = " + lit, nil
	case key == "" && IsCallRoot(root):
		return root + " " + lit, nil
	}
	return "", fmt.Errorf("%q is not a gitlab.rb %s glbootstrap knows", root, map[bool]string{true: "hash", false: "setting"}[key != ""])
}
