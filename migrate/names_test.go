package migrate

import (
	"regexp"
	"slices"
	"testing"

	"github.com/regauth/caddy-registry-auth/token"
)

// algebraPatterns are repository patterns as conversions write them.
var algebraPatterns = []string{
	"**", "*", "*/*", "a/*", "a/**", "team/*", "*/secret", "team/secret", "a",
	"regexp:.*(?:mirror).*", "regexp:public/.*", "regexp:[ab]+/.*", "regexp:(a|b)/x",
	"regexp:.*(?:^a|b$).*", "regexp:.*(?:\\bx).*", "regexp:(?i)TEAM/.*", "regexp:x",
	"{user}/*", "x/{user}", "{user}/secret", "{user}",
}

// algebraNames are valid names made of a few components, and users.
var (
	algebraComponents = []string{"a", "b", "ab", "x", "team", "secret", "public", "mirror", "bob", "a-b", "a.b", "xa"}
	algebraUsers      = []string{"a", "bob", "team", "secret", "x", "zed", "a.b"}
)

func algebraNames() []string {
	names := slices.Clone(algebraComponents)
	for _, a := range algebraComponents {
		for _, b := range algebraComponents {
			names = append(names, a+"/"+b)
			for _, c := range []string{"a", "secret", "x"} {
				names = append(names, a+"/"+b+"/"+c)
			}
		}
	}
	return append(names, "example.com/a", "localhost:5000/team/x")
}

// matchesFor is the meaning of a pattern for one user ("" anonymous),
// computed without the automata.
func matchesFor(res, user, name string) bool {
	expr := patternExpr(res, regexp.QuoteMeta(user))
	if expr == "" || !token.ValidRepositoryName(name) {
		return false
	}
	re, ok := compiledForTest[expr]
	if !ok {
		re = regexp.MustCompile(`^(?:` + expr + `)$`)
		compiledForTest[expr] = re
	}
	return re.MatchString(name)
}

var compiledForTest = map[string]*regexp.Regexp{}

// TestNameAlgebra checks shareName, within and meetUsers against every
// name of a sample: a claim that two patterns share no name, or that one
// is within others, must hold for each name, and a name both match must
// be found.
func TestNameAlgebra(t *testing.T) {
	names := algebraNames()
	for _, a := range algebraPatterns {
		for _, b := range algebraPatterns {
			users, all := meetUsers(a, b)
			for _, u := range append([]string{""}, algebraUsers...) {
				both := slices.ContainsFunc(names, func(n string) bool { return matchesFor(a, u, n) && matchesFor(b, u, n) })
				claimed := all && !(u == "" && (perUser(a) || perUser(b))) || slices.Contains(users, u)
				if both && !claimed {
					t.Errorf("meetUsers(%q, %q) = %q, %v: but for user %q they share a name", a, b, users, all, u)
				}
				if perUser(a) || perUser(b) {
					continue
				}
				if both && !shareName(a, b, "", false) {
					t.Errorf("shareName(%q, %q) = false, but a name matches both", a, b)
				}
			}
			for _, u := range algebraUsers {
				in := namesWithin(a, []string{b}, userSubj(u))
				outside := slices.ContainsFunc(names, func(n string) bool { return matchesFor(a, u, n) && !matchesFor(b, u, n) })
				if in && outside {
					t.Errorf("namesWithin(%q, %q) for %s: true, but a name matches only the first", a, b, u)
				}
			}
			// For every user: a claim must hold for each user tried.
			if namesWithin(a, []string{b}, subj{all: true}) {
				for _, u := range algebraUsers {
					if slices.ContainsFunc(names, func(n string) bool { return matchesFor(a, u, n) && !matchesFor(b, u, n) }) {
						t.Errorf("namesWithin(%q, %q) for everyone: true, but not for %s", a, b, u)
					}
				}
			}
		}
	}
}

// TestNameAlgebraKnownAnswers pins answers the conversions rely on.
func TestNameAlgebraKnownAnswers(t *testing.T) {
	for _, c := range []struct {
		a, b  string
		share bool
	}{
		{"public/*", "regexp:public\\/.*", true},
		{"team/*", "*/secret", true},
		{"a/*", "b/*", false},
		{"regexp:team2/[a-z0-9-]+", "regexp:.*(?:public/.*).*", false},
		{"regexp:(?i)TEAM/x", "team/x", true},
		{"regexp:.*(?:\\bx).*", "a/xb", true},
		{"regexp:.*(?:\\bx).*", "ax", false},
	} {
		if got := shareName(c.a, c.b, "", false); got != c.share {
			t.Errorf("shareName(%q, %q) = %v, want %v", c.a, c.b, got, c.share)
		}
	}
	if users, all := meetUsers("{user}/*", "secret/*"); all || !slices.Equal(users, []string{"secret"}) {
		t.Errorf("meetUsers({user}/*, secret/*) = %q, %v; want only the user secret", users, all)
	}
	if users, all := meetUsers("{user}/*", "{user}/x/*"); all || len(users) > 0 {
		t.Errorf("meetUsers({user}/*, {user}/x/*) = %q, %v; want none", users, all)
	}
	if !namesWithin("{user}/*", []string{"*/*"}, subj{all: true}) || namesWithin("*/*", []string{"{user}/*"}, subj{all: true}) {
		t.Error("{user}/* is within */* for everyone, and not the other way")
	}
	if !namesWithin("library/*", []string{"**"}, subj{all: true}) || namesWithin("**", []string{"library/*"}, subj{all: true}) {
		t.Error("library/* is within **, and not the other way")
	}
	if n := exampleName("team/*", "*/secret"); n != "team/secret" {
		t.Errorf("exampleName(team/*, */secret) = %q", n)
	}
	if n := exampleName("a/*", "b/*"); n != "" {
		t.Errorf("exampleName(a/*, b/*) = %q, want none", n)
	}
}

// TestNameAlgebraGivesUp: a pattern whose automaton has more states than
// a walk may visit (the 13th letter from the end is an a: 2^13 states) is
// answered carefully: not within, though it is within **.
func TestNameAlgebraGivesUp(t *testing.T) {
	huge := "regexp:[a-z]*a[a-z]{12}"
	if _, _, ok := witness(progsOf([]string{huge, "**"}, ""), nil); ok {
		t.Fatal("the walk did not give up: make the pattern larger")
	}
	if within(huge, []string{"**"}, "", false) {
		t.Error("within: an undecided question must answer false")
	}
	if !shareName(huge, "regexp:[a-z]*b[a-z]{12}", "", false) {
		t.Error("shareName: an undecided question must answer true")
	}
}
