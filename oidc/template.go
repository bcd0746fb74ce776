package oidc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/regauth/caddy-registry-auth/internal/clip"
)

// A Path names a claim, possibly inside objects: "repository", or
// "kubernetes\.io.namespace" for the claim "namespace" inside the object
// "kubernetes.io". In its text form segments are separated by dots, "\."
// is a dot inside a segment and "\\" a backslash.
type Path []string

// ParsePath reads a claim path in its text form.
func ParsePath(s string) (Path, error) {
	var p Path
	var seg strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if i+1 == len(s) || (s[i+1] != '.' && s[i+1] != '\\') {
				return nil, fmt.Errorf("claim path %q: a backslash escapes only '.' or '\\'", s)
			}
			i++
			seg.WriteByte(s[i])
		case c == '.':
			if seg.Len() == 0 {
				return nil, fmt.Errorf("claim path %q has an empty segment", s)
			}
			p = append(p, seg.String())
			seg.Reset()
		case c == '{' || c == '}' || c < 0x20 || c == 0x7f:
			return nil, fmt.Errorf("claim path %q: %q is not allowed in a claim name", s, c)
		default:
			seg.WriteByte(c)
		}
	}
	if seg.Len() == 0 {
		return nil, fmt.Errorf("claim path %q has an empty segment", s)
	}
	return append(p, seg.String()), nil
}

// String is the path's text form, which ParsePath reads back.
func (p Path) String() string {
	segs := make([]string, len(p))
	for i, s := range p {
		segs[i] = strings.NewReplacer(`\`, `\\`, `.`, `\.`).Replace(s)
	}
	return strings.Join(segs, ".")
}

// Lookup finds the claim the path names.
func (p Path) Lookup(claims map[string]any) (any, bool) {
	var v any = claims
	for _, seg := range p {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[seg]; !ok {
			return nil, false
		}
	}
	return v, true
}

// claimString is the claim the path names if it is a non-empty string.
func (p Path) claimString(claims map[string]any) (string, error) {
	v, ok := p.Lookup(claims)
	if !ok {
		return "", fmt.Errorf("claim %s is missing", p)
	}
	s, ok := v.(string)
	switch {
	case !ok:
		return "", fmt.Errorf("claim %s is %s, not a string", p, jsonType(v))
	case s == "":
		return "", fmt.Errorf("claim %s is empty", p)
	}
	return s, nil
}

// jsonType names the JSON type of a decoded value, with its article, for
// messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "a string"
}

// A Template is text with claims in it: "gh/{claims.repository}". Each
// {claims.<path>} is replaced by the claim the path names. Outside them
// every character is literal, except that "{" must open one and "}" may
// only close one.
type Template struct {
	parts []part
}

// part is literal text, or a claim when path is set.
type part struct {
	text string
	path Path
}

// placeholderStart opens every placeholder.
const placeholderStart = "{claims."

// MaxTemplateLength bounds a template's text.
const MaxTemplateLength = 1024

// ParseTemplate reads a template.
func ParseTemplate(s string) (Template, error) {
	var t Template
	switch {
	case s == "":
		return t, errors.New("empty template")
	case len(s) > MaxTemplateLength:
		return t, fmt.Errorf("template of %d bytes, more than %d", len(s), MaxTemplateLength)
	}
	for rest := s; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			open = len(rest)
		}
		if lit := rest[:open]; lit != "" {
			if i := strings.IndexFunc(lit, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
				return Template{}, fmt.Errorf("template %q holds a control character", s)
			}
			t.parts = append(t.parts, part{text: lit})
		}
		rest = rest[open:]
		if rest == "" {
			break
		}
		if !strings.HasPrefix(rest, placeholderStart) {
			return Template{}, fmt.Errorf("template %q: want {claims.<name>} at %q (braces only enclose claims)", s, clip.String(rest, 20))
		}
		end := closingBrace(rest)
		if end < 0 {
			return Template{}, fmt.Errorf("template %q: {claims. without its closing }", s)
		}
		path, err := ParsePath(rest[len(placeholderStart):end])
		if err != nil {
			return Template{}, fmt.Errorf("template %q: %v", s, err)
		}
		t.parts = append(t.parts, part{path: path})
		rest = rest[end+1:]
	}
	return t, nil
}

// closingBrace is the index of the "}" that ends the placeholder s starts
// with, skipping escaped characters; -1 if there is none.
func closingBrace(s string) int {
	for i := len(placeholderStart); i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '}':
			return i
		}
	}
	return -1
}

// String is the template's text, which ParseTemplate reads back.
func (t Template) String() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.path == nil {
			b.WriteString(p.text)
		} else {
			b.WriteString(placeholderStart + p.path.String() + "}")
		}
	}
	return b.String()
}

// LiteralPrefix is the text before the template's first claim.
func (t Template) LiteralPrefix() string {
	if len(t.parts) == 0 || t.parts[0].path != nil {
		return ""
	}
	return t.parts[0].text
}

// Claims are the paths of the claims the template uses.
func (t Template) Claims() []Path {
	var out []Path
	for _, p := range t.parts {
		if p.path != nil {
			out = append(out, p.path)
		}
	}
	return out
}

// Render fills the template in. Every claim it uses must be a non-empty
// string: a missing claim is an error, never an empty part of a name.
func (t Template) Render(claims map[string]any) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.path == nil {
			b.WriteString(p.text)
			continue
		}
		s, err := p.path.claimString(claims)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// Expand fills the template in once for each combination of its claims'
// values: a string is one value, an array one value per string element
// (others are skipped). A claim that is missing, empty or of another type
// gives nothing at all. More than max results is an error.
func (t Template) Expand(claims map[string]any, max int) ([]string, error) {
	out := []string{""}
	for _, p := range t.parts {
		values := []string{p.text}
		if p.path != nil {
			values = p.path.claimStrings(claims)
		}
		if len(values) == 0 {
			return nil, nil
		}
		if len(out)*len(values) > max {
			return nil, fmt.Errorf("template %s gives more than %d values", t, max)
		}
		next := make([]string, 0, len(out)*len(values))
		for _, prefix := range out {
			for _, v := range values {
				next = append(next, prefix+v)
			}
		}
		out = next
	}
	return out, nil
}

// claimStrings is the non-empty strings of a claim that is a string or
// an array.
func (p Path) claimStrings(claims map[string]any) []string {
	v, _ := p.Lookup(claims)
	switch v := v.(type) {
	case string:
		if v != "" {
			return []string{v}
		}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// A Requirement is a claim that must be a string equal to Value.
type Requirement struct {
	Path  Path
	Value string
}

// Check reports why the claims do not meet the requirement, or nil.
func (r Requirement) Check(claims map[string]any) error {
	v, ok := r.Path.Lookup(claims)
	if !ok {
		return fmt.Errorf("required claim %s is missing", r.Path)
	}
	s, ok := v.(string)
	switch {
	case !ok:
		return fmt.Errorf("required claim %s is %s, not a string", r.Path, jsonType(v))
	case s != r.Value:
		return fmt.Errorf("required claim %s is %q, not %q", r.Path, clip.String(s, 128), r.Value)
	}
	return nil
}
