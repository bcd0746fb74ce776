package migrate

import (
	"fmt"
	"path"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// A docker_auth pattern is a regular expression when written /.../ with
// something between the slashes, and otherwise a Go path.Match glob.

// daRegex returns the expression of a pattern written /.../.
func daRegex(p string) (string, bool) {
	if len(p) > 2 && p[0] == '/' && p[len(p)-1] == '/' {
		return p[1 : len(p)-1], true
	}
	return "", false
}

// daMatch is docker_auth's test of one pattern (substitutions done)
// against one string: regexes match anywhere, and a pattern that does not
// parse matches nothing.
func daMatch(p, s string) bool {
	if re, ok := daRegex(p); ok {
		m, err := regexp.MatchString(re, s)
		return err == nil && m
	}
	m, err := path.Match(p, s)
	return err == nil && m
}

// globTok is one element of a path.Match pattern.
type globTok struct {
	kind    byte      // 'c' a literal character, '*', '?', or '[' a class
	r       rune      // the character, for 'c'
	ranges  [][2]rune // the ranges of a class, ends included
	negated bool      // for a class
}

// parseGlob parses a path.Match pattern, refusing what path.Match refuses
// with ErrBadPattern, and text that is not UTF-8 (no name matches it).
func parseGlob(p string) ([]globTok, error) {
	if !utf8.ValidString(p) {
		return nil, fmt.Errorf("not valid UTF-8")
	}
	var toks []globTok
	for i := 0; i < len(p); {
		switch p[i] {
		case '*', '?':
			toks = append(toks, globTok{kind: p[i]})
			i++
		case '[':
			t, next, err := parseClass(p, i+1)
			if err != nil {
				return nil, err
			}
			toks = append(toks, t)
			i = next
		case '\\':
			if i+1 == len(p) {
				return nil, fmt.Errorf("malformed glob: trailing \\")
			}
			r, n := utf8.DecodeRuneInString(p[i+1:])
			toks = append(toks, globTok{kind: 'c', r: r})
			i += 1 + n
		default:
			r, n := utf8.DecodeRuneInString(p[i:])
			toks = append(toks, globTok{kind: 'c', r: r})
			i += n
		}
	}
	return toks, nil
}

// parseClass parses a class from just after its "[". As in path.Match, a
// range whose ends are reversed matches nothing, and "-" or "]" must be
// escaped where they would be taken as a range's end.
func parseClass(p string, i int) (t globTok, next int, err error) {
	t.kind = '['
	if i < len(p) && p[i] == '^' {
		t.negated = true
		i++
	}
	for n := 0; ; n++ {
		if i < len(p) && p[i] == ']' && n > 0 {
			return t, i + 1, nil
		}
		var lo, hi rune
		if lo, i, err = classChar(p, i); err != nil {
			return t, 0, err
		}
		hi = lo
		if p[i] == '-' { // classChar leaves at least one byte
			if hi, i, err = classChar(p, i+1); err != nil {
				return t, 0, err
			}
		}
		if lo <= hi {
			t.ranges = append(t.ranges, [2]rune{lo, hi})
		}
	}
}

// classChar reads one possibly escaped character of a class, which must
// be followed by more of the pattern.
func classChar(p string, i int) (rune, int, error) {
	bad := fmt.Errorf("malformed glob: unterminated or malformed [...]")
	if i >= len(p) || p[i] == '-' || p[i] == ']' {
		return 0, 0, bad
	}
	if p[i] == '\\' {
		i++
		if i >= len(p) {
			return 0, 0, bad
		}
	}
	r, n := utf8.DecodeRuneInString(p[i:])
	if i+n >= len(p) {
		return 0, 0, bad
	}
	return r, i + n, nil
}

// slash reports whether a class matches "/", which path.Match allows.
func (t globTok) slash() bool {
	in := false
	for _, r := range t.ranges {
		in = in || r[0] <= '/' && '/' <= r[1]
	}
	return in != t.negated
}

// classRegexp writes a class as a regular expression; without slash, "/"
// is taken out of it.
func (t globTok) classRegexp(slash bool) string {
	var b strings.Builder
	b.WriteByte('[')
	if t.negated {
		b.WriteByte('^')
		if !slash {
			b.WriteString(`\x{2f}`)
		}
	}
	for _, r := range t.ranges {
		if !t.negated && !slash && r[0] <= '/' && '/' <= r[1] {
			// Split the range around "/".
			if r[0] < '/' {
				fmt.Fprintf(&b, `\x{%x}-\x{%x}`, r[0], '/'-1)
			}
			if r[1] > '/' {
				fmt.Fprintf(&b, `\x{%x}-\x{%x}`, '/'+1, r[1])
			}
			continue
		}
		fmt.Fprintf(&b, `\x{%x}-\x{%x}`, r[0], r[1])
	}
	if b.Len() == 1 { // an empty class matches nothing
		return `[^\x{0}-\x{10ffff}]`
	}
	if b.Len() == 2 && t.negated { // and its negation everything
		return `[\x{0}-\x{10ffff}]`
	}
	b.WriteByte(']')
	return b.String()
}

// globResources returns the resources for a parsed glob. path.Match and
// a regular expression agree on every glob except where a class that
// matches "/" follows a "*": path.Match places each piece after a "*" at
// the first place it fits and does not come back on that choice, so it
// matches fewer names. So allow, for grants, takes "/" out of classes (a
// proven subset of path.Match), and deny, for denials, keeps it (a
// superset); slash tells whether they differ.
//
// A glob of name characters and "*" becomes our own glob (path.Match's "*"
// is ours: it stays within one path component; its "**" is the same as
// "*"); anything else an anchored regular expression. Both are "" for a
// glob that matches no valid repository name: empty, or with a character
// no name has (such as "${labels:x}" left as it is).
func globResources(toks []globTok) (allow, deny string, slash bool) {
	if len(toks) == 0 {
		return "", "", false
	}
	var glob, with, without strings.Builder
	direct := true
	for i, t := range toks {
		switch t.kind {
		case 'c':
			if t.r >= utf8.RuneSelf || !token.NameChar(byte(t.r)) {
				return "", "", false
			}
			q := regexp.QuoteMeta(string(t.r))
			with.WriteString(q)
			without.WriteString(q)
			glob.WriteRune(t.r)
		case '*':
			if i > 0 && toks[i-1].kind == '*' {
				continue
			}
			with.WriteString(`[^/]*`)
			without.WriteString(`[^/]*`)
			glob.WriteByte('*')
		case '?':
			with.WriteString(`[^/]`)
			without.WriteString(`[^/]`)
			direct = false
		case '[':
			with.WriteString(t.classRegexp(true))
			without.WriteString(t.classRegexp(false))
			slash = slash || t.slash()
			direct = false
		}
	}
	if direct {
		return glob.String(), glob.String(), false
	}
	if !slash {
		return policy.RegexpPrefix + with.String(), policy.RegexpPrefix + with.String(), false
	}
	return policy.RegexpPrefix + without.String(), policy.RegexpPrefix + with.String(), true
}

// literalGlob returns the one string a glob matches, if it has no wildcard.
func literalGlob(p string) (string, bool) {
	prefix, literal, err := globPrefix(p)
	return prefix, err == nil && literal
}

// globPrefix returns the literal characters a glob starts with, and
// whether they are the whole glob.
func globPrefix(p string) (prefix string, literal bool, err error) {
	toks, err := parseGlob(p)
	if err != nil {
		return "", false, err
	}
	var b strings.Builder
	for _, t := range toks {
		if t.kind != 'c' {
			return b.String(), false, nil
		}
		b.WriteRune(t.r)
	}
	return b.String(), true, nil
}

// anywhere is a whole-name regular expression for what re matches
// anywhere in a name, as docker_auth's and alauda's MatchString do: re
// between ".*" and ".*", less the one at a side where re is anchored
// (^public/ becomes public/.*). "" for a regex that matches only the
// empty name, which no name is. wide tells whether re matched anywhere,
// anchored at neither end.
func anywhere(re string) (expr string, wide bool) {
	t, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return ".*(?:" + re + ").*", true
	}
	if t.Op == syntax.OpStar && (t.Sub[0].Op == syntax.OpAnyCharNotNL || t.Sub[0].Op == syntax.OpAnyChar) {
		return ".*", false // matches every name already
	}
	body, begin, end := re, false, false
	if t.Op == syntax.OpConcat && len(t.Sub) > 0 {
		subs := t.Sub
		if subs[0].Op == syntax.OpBeginText && strings.HasPrefix(body, "^") {
			body, subs, begin = body[1:], subs[1:], true
		}
		if len(subs) > 0 && subs[len(subs)-1].Op == syntax.OpEndText && strings.HasSuffix(body, "$") {
			body, subs, end = body[:len(body)-1], subs[:len(subs)-1], true
		}
		// The anchors taken off as text must be those of the tree.
		rest := &syntax.Regexp{Op: syntax.OpConcat, Sub: subs, Flags: t.Flags}
		if u, err := syntax.Parse(body, syntax.Perl); err != nil || (begin || end) && !sameRegexp(u, rest) {
			body, begin, end = re, false, false
		}
	}
	switch {
	case !begin && !end:
		return ".*(?:" + re + ").*", true
	case body == "" && begin && end:
		return "", false
	}
	if !begin {
		body = ".*" + body
	}
	if !end {
		body += ".*"
	}
	return body, false
}

// sameRegexp reports whether two parsed expressions are the same.
func sameRegexp(a, b *syntax.Regexp) bool {
	if len(b.Sub) == 1 {
		b = b.Sub[0]
	}
	if len(b.Sub) == 0 && b.Op == syntax.OpConcat {
		b = &syntax.Regexp{Op: syntax.OpEmptyMatch}
	}
	return a.Simplify().String() == b.Simplify().String()
}

// literalPrefix returns what every name a whole-name expression matches
// begins with, and whether that is the whole expression.
func literalPrefix(expr string) (prefix string, complete bool) {
	t, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return "", false
	}
	subs := []*syntax.Regexp{t}
	if t.Op == syntax.OpConcat {
		subs = t.Sub
	}
	var b strings.Builder
	for i, s := range subs {
		switch {
		case s.Op == syntax.OpLiteral && s.Flags&syntax.FoldCase == 0:
			b.WriteString(string(s.Rune))
		case s.Op == syntax.OpBeginText && i == 0, s.Op == syntax.OpEndText && i == len(subs)-1:
		default:
			return b.String(), false
		}
	}
	return b.String(), true
}

// nameRes is what one docker_auth name pattern (substitutions done)
// becomes.
type nameRes struct {
	// allow is the resource for granting: never broader than the pattern.
	// deny is the resource for denying: never narrower. They differ only
	// where a glob's class matches "/" (see globResources). "" for none.
	allow, deny string
	// catalog: the pattern matches the catalog's name.
	catalog bool
	// wide: a regex matched anywhere in the name, kept as such;
	// slash: allow is narrower than the pattern because a glob's class
	// no longer matches "/".
	wide, slash bool
}

// daName translates one docker_auth name pattern.
func daName(p string) (nameRes, error) {
	if re, ok := daRegex(p); ok {
		c, err := regexp.Compile(re)
		if err != nil {
			return nameRes{}, fmt.Errorf("bad regular expression: %v", err)
		}
		r := nameRes{catalog: c.MatchString(token.CatalogName)}
		if expr, wide := anywhere(re); expr != "" {
			r.allow, r.deny, r.wide = policy.RegexpPrefix+expr, policy.RegexpPrefix+expr, wide
		}
		return r, nil
	}
	toks, err := parseGlob(p)
	if err != nil {
		return nameRes{}, err
	}
	allow, deny, slash := globResources(toks)
	return nameRes{allow: allow, deny: deny, slash: slash, catalog: daMatch(p, token.CatalogName)}, nil
}

// literalPattern is the pattern matching exactly name: name itself, or ""
// when it holds a character our patterns do not take literally.
func literalPattern(name string) string {
	for i := 0; i < len(name); i++ {
		if !token.NameChar(name[i]) {
			return ""
		}
	}
	return name
}
