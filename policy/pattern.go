package policy

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/regauth/caddy-registry-auth/token"
)

// UserPlaceholder in a glob stands for the name of the user asking, so
// one rule can give every user a namespace of their own.
const UserPlaceholder = "{user}"

// RegexpPrefix marks a resource pattern (or, after "user:", a subject) as
// a regular expression, always matched against the whole name.
const RegexpPrefix = "regexp:"

// pattern matches repository names. Globs are compiled at load into the
// cheapest form that does the job; regexes always match the whole name.
type pattern struct {
	source string
	kind   patternKind
	lit    string         // literal name, or prefix for prefixAny
	re     *regexp.Regexp // for kindRegexp
	// userGroups counts {user} captures that must equal the user's name.
	userGroups int
}

type patternKind uint8

const (
	kindLiteral   patternKind = iota // no wildcard: exact name
	kindAny                          // "**": every name
	kindPrefixAny                    // "a/b/**": every name below a/b/
	kindRegexp                       // anything else
)

// compilePattern parses a repository pattern:
//   - "regexp:<expr>": a Go regular expression matched against the whole name;
//   - otherwise a glob where "*" matches within one path component, "**"
//     across components, and "{user}" a whole component equal to the
//     user's name. "{user}" may not follow "**": the component it stands for
//     must be known without guessing.
func compilePattern(src string) (pattern, error) {
	p := pattern{source: src}
	if expr, ok := strings.CutPrefix(src, RegexpPrefix); ok {
		if expr == "" {
			return p, fmt.Errorf("empty regular expression")
		}
		re, err := compileWhole(expr)
		if err != nil {
			return p, fmt.Errorf("bad regular expression: %v", err)
		}
		p.kind, p.re = kindRegexp, re
		return p, nil
	}
	if src == "" {
		return p, fmt.Errorf("empty pattern")
	}
	var b strings.Builder
	b.WriteString("^")
	sawDoubleStar := false
	wild := false
	for i := 0; i < len(src); {
		switch {
		case strings.HasPrefix(src[i:], "**"):
			b.WriteString(".*")
			i += 2
			sawDoubleStar, wild = true, true
		case src[i] == '*':
			b.WriteString("[^/]*")
			i++
			wild = true
		case strings.HasPrefix(src[i:], UserPlaceholder):
			end := i + len(UserPlaceholder)
			if (i > 0 && src[i-1] != '/') || (end < len(src) && src[end] != '/') {
				return p, fmt.Errorf("%s must be a whole path component", UserPlaceholder)
			}
			if sawDoubleStar {
				return p, fmt.Errorf("%s may not follow **", UserPlaceholder)
			}
			b.WriteString("([^/]+)")
			i = end
			p.userGroups++
			wild = true
		default:
			c := src[i]
			if !token.NameChar(c) {
				return p, fmt.Errorf("character %q can never appear in a repository name (use regexp: for regular expressions)", c)
			}
			b.WriteString(regexp.QuoteMeta(string(c)))
			i++
		}
	}
	b.WriteString("$")
	switch {
	case !wild:
		p.kind, p.lit = kindLiteral, src
	case src == "**":
		p.kind = kindAny
	case strings.HasSuffix(src, "/**") && !strings.ContainsAny(src[:len(src)-3], "*{"):
		p.kind, p.lit = kindPrefixAny, src[:len(src)-2]
	default:
		p.kind, p.re = kindRegexp, regexp.MustCompile(b.String())
	}
	return p, nil
}

// match reports whether name, already validated, matches for user ("" for
// anonymous: {user} patterns never match it).
func (p *pattern) match(name, user string) bool {
	switch p.kind {
	case kindLiteral:
		return name == p.lit
	case kindAny:
		return true
	case kindPrefixAny:
		return len(name) > len(p.lit) && strings.HasPrefix(name, p.lit)
	}
	if p.userGroups == 0 {
		return p.re.MatchString(name)
	}
	if user == "" {
		return false
	}
	m := p.re.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	for _, g := range m[1:] {
		if g != user {
			return false
		}
	}
	return true
}
