package migrate

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/regauth/caddy-registry-auth/policy"
)

// subj is a set of identities in the terms our rule subjects can state:
// anonymous, every logged-in user (but a few named ones), named users and
// user patterns. The operations below answer exactly or, when they cannot,
// in the safe direction (meets: "maybe" is yes; minus: "maybe" is "cannot
// be said").
type subj struct {
	anon   bool
	all    bool            // every logged-in user but those in except
	except map[string]bool // with all
	users  map[string]bool // without all
	res    []string        // user:regexp: patterns (whole names), without all
}

// subjOf reads rule subjects (never group: ones, which no conversion makes).
func subjOf(subjects []string) subj {
	var s subj
	for _, sub := range subjects {
		switch sub {
		case policy.SubjectEveryone:
			s.anon, s.all = true, true
		case policy.SubjectAnonymous:
			s.anon = true
		case policy.SubjectAuthenticated:
			s.all = true
		default:
			if re, ok := strings.CutPrefix(sub, policy.SubjectUserPrefix+policy.RegexpPrefix); ok {
				s.res = append(s.res, re)
			} else {
				s.addUser(strings.TrimPrefix(sub, policy.SubjectUserPrefix))
			}
		}
	}
	if s.all {
		s.users, s.res = nil, nil
	}
	return s
}

func userSubj(names ...string) subj {
	var s subj
	for _, n := range names {
		s.addUser(n)
	}
	return s
}

func (s *subj) addUser(name string) {
	if s.users == nil {
		s.users = map[string]bool{}
	}
	s.users[name] = true
}

func (s subj) empty() bool { return !s.anon && !s.all && len(s.users) == 0 && len(s.res) == 0 }

// finite reports whether s lists its members (anonymous and named users).
func (s subj) finite() bool { return !s.all && len(s.res) == 0 }

// members lists the identities of a finite set, "" for anonymous first.
func (s subj) members() []string {
	var out []string
	if s.anon {
		out = append(out, "")
	}
	return append(out, sortedKeys(s.users)...)
}

// has reports whether the identity is in s ("" is anonymous).
func (s subj) has(name string) bool {
	switch {
	case name == "":
		return s.anon
	case s.all:
		return !s.except[name]
	case s.users[name]:
		return true
	}
	return slices.ContainsFunc(s.res, func(re string) bool { return wholeMatch(re, name) })
}

// meets reports whether s and o may have a member in common.
func (s subj) meets(o subj) bool {
	switch {
	case s.anon && o.anon, s.all && o.all:
		return true
	case s.all:
		return o.outside(s.except)
	case o.all:
		return s.outside(o.except)
	case len(s.res) > 0 && len(o.res) > 0:
		return true // two patterns: assume they share a name
	}
	for u := range s.users {
		if o.has(u) {
			return true
		}
	}
	for u := range o.users {
		if s.has(u) {
			return true
		}
	}
	return false
}

// outside reports whether s (without all) may have a logged-in member
// that is not in names.
func (s subj) outside(names map[string]bool) bool {
	if len(s.res) > 0 {
		return true
	}
	for u := range s.users {
		if !names[u] {
			return true
		}
	}
	return false
}

// minus returns s without the members of o; ok is false when no
// subjects can state the difference (a pattern less some names, or every
// user less a pattern).
func (s subj) minus(o subj) (out subj, ok bool) {
	out.anon = s.anon && !o.anon
	keepNamed := func(names []string) {
		for _, n := range names {
			if n != "" && s.has(n) && !o.has(n) {
				out.addUser(n)
			}
		}
	}
	switch {
	case s.all && o.all:
		keepNamed(sortedKeys(o.except))
	case s.all:
		if len(o.res) > 0 {
			return subj{}, false
		}
		out.all, out.except = true, map[string]bool{}
		for _, m := range []map[string]bool{s.except, o.users} {
			for n := range m {
				out.except[n] = true
			}
		}
	default:
		keepNamed(sortedKeys(s.users))
		for _, re := range s.res {
			switch {
			case o.all:
				// What the pattern and the exceptions share.
				keepNamed(slices.DeleteFunc(sortedKeys(o.except), func(e string) bool { return !wholeMatch(re, e) }))
			case slices.Contains(o.res, re):
			case len(o.res) > 0:
				return subj{}, false
			case slices.ContainsFunc(sortedKeys(o.users), func(u string) bool { return wholeMatch(re, u) }):
				return subj{}, false
			default:
				out.res = append(out.res, re)
			}
		}
	}
	return out, true
}

// subjects writes s as rule subjects; every user but a few becomes a
// pattern that matches any other name.
func (s subj) subjects() []string {
	var out []string
	switch {
	case s.anon && s.all && len(s.except) == 0:
		return []string{policy.SubjectEveryone}
	case s.anon:
		out = append(out, policy.SubjectAnonymous)
	}
	switch {
	case s.all && len(s.except) == 0:
		out = append(out, policy.SubjectAuthenticated)
	case s.all:
		out = append(out, policy.SubjectUserPrefix+policy.RegexpPrefix+othersThan(sortedKeys(s.except)))
	}
	for _, u := range sortedKeys(s.users) {
		out = append(out, policy.SubjectUserPrefix+u)
	}
	for _, re := range s.res {
		out = append(out, policy.SubjectUserPrefix+policy.RegexpPrefix+re)
	}
	return out
}

// key identifies s, for grouping parts by who they apply to.
func (s subj) key() string { return strings.Join(s.subjects(), "\x00") }

// describe names s in a message.
func (s subj) describe() string {
	if s.all && len(s.except) > 0 {
		rest := s
		rest.all, rest.except = false, nil
		d := "every user but " + listNames(sortedKeys(s.except))
		if !rest.empty() {
			d += ", " + strings.Join(rest.subjects(), ", ")
		}
		return d
	}
	return strings.Join(s.subjects(), ", ")
}

// othersThan is a regular expression matching every user name but the
// given ones: names that leave a trie of them before its end, and its
// inner prefixes that are no name of theirs.
func othersThan(names []string) string {
	type node struct {
		end  bool
		next map[rune]*node
	}
	root := &node{}
	for _, n := range names {
		at := root
		for _, r := range n {
			if at.next == nil {
				at.next = map[rune]*node{}
			}
			if at.next[r] == nil {
				at.next[r] = &node{}
			}
			at = at.next[r]
		}
		at.end = true
	}
	var alts []string
	var walk func(prefix string, at *node)
	walk = func(prefix string, at *node) {
		q := regexp.QuoteMeta(prefix)
		if prefix != "" && !at.end {
			alts = append(alts, q)
		}
		keys := make([]rune, 0, len(at.next))
		for r := range at.next {
			keys = append(keys, r)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		if len(keys) == 0 {
			alts = append(alts, q+".+")
		} else {
			var class strings.Builder
			for _, r := range keys {
				class.WriteString(classRune(r))
			}
			alts = append(alts, q+"[^"+class.String()+"].*")
		}
		for _, r := range keys {
			walk(prefix+string(r), at.next[r])
		}
	}
	walk("", root)
	return "(?s:" + strings.Join(alts, "|") + ")"
}

// classRune writes a character for a [...] class: letters and digits as
// they are, anything else by its code.
func classRune(r rune) string {
	if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
		return string(r)
	}
	return fmt.Sprintf(`\x{%x}`, r)
}

// wholeMatch reports whether a user pattern matches the whole name.
func wholeMatch(re, name string) bool {
	c, err := regexp.Compile(`^(?:` + re + `)$`)
	return err == nil && c.MatchString(name)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
