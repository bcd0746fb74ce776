package migrate

import (
	"slices"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/policy"
)

// sampleUsers are names around those the sets below hold: prefixes,
// extensions, and characters a regular expression treats specially.
var sampleUsers = []string{
	"", "a", "ad", "adm", "admi", "admin", "admins", "administrator", "b", "bob", "bo", "bobby",
	"ci", "c", "cia", "a.b", "axb", "a+b", "a]b", "ü", "üb", "x\\y", "contractor-1", "zed",
}

// TestOthersThan: the pattern for "every user but these" matches exactly
// the other names.
func TestOthersThan(t *testing.T) {
	for _, set := range [][]string{{"admin"}, {"admin", "ad", "administrator"}, {"a"}, {"bob", "ci"}, {"a.b", "a+b", "a]b"}, {"ü"}, {"x\\y"}} {
		re := othersThan(set)
		for _, u := range sampleUsers[1:] {
			if got, want := wholeMatch(re, u), !slices.Contains(set, u); got != want {
				t.Errorf("othersThan(%q) = %s on %q: %v, want %v", set, re, u, got, want)
			}
		}
	}
}

// TestSubjMinus: where minus answers, its result has exactly the members
// of s that o lacks; meets is never wrong when it says no.
func TestSubjMinus(t *testing.T) {
	sets := []subj{
		subjOf([]string{policy.SubjectEveryone}),
		subjOf([]string{policy.SubjectAuthenticated}),
		subjOf([]string{policy.SubjectAnonymous}),
		userSubj("admin"),
		userSubj("admin", "bob"),
		subjOf([]string{"user:regexp:a.*"}),
		subjOf([]string{"user:regexp:.*(?:o).*", policy.SubjectAnonymous}),
		{all: true, except: map[string]bool{"admin": true}},
		{all: true, except: map[string]bool{"admin": true, "ci": true}, anon: true},
	}
	answered := 0
	for _, s := range sets {
		for _, o := range sets {
			for _, u := range sampleUsers {
				if !s.meets(o) && s.has(u) && o.has(u) {
					t.Errorf("%s meets %s: no, but %q is in both", s.describe(), o.describe(), u)
				}
			}
			diff, ok := s.minus(o)
			if !ok {
				continue
			}
			answered++
			// What the difference becomes as rule subjects, read back.
			back := subjOf(diff.subjects())
			if diff.all && len(diff.except) > 0 {
				back = diff
				back.users, back.res = nil, []string{othersThan(sortedKeys(diff.except))}
				back.all, back.except = false, nil
				if !strings.Contains(strings.Join(diff.subjects(), " "), othersThan(sortedKeys(diff.except))) {
					t.Errorf("%v: subjects %q lack the pattern", diff, diff.subjects())
				}
			}
			for _, u := range sampleUsers {
				want := s.has(u) && !o.has(u)
				if diff.has(u) != want || back.has(u) != want {
					t.Errorf("(%s) minus (%s) = %s: %q in it: %v (as subjects %v), want %v", s.describe(), o.describe(), diff.describe(), u, diff.has(u), back.has(u), want)
				}
			}
		}
	}
	if answered < len(sets)*len(sets)/2 {
		t.Errorf("minus answered only %d of %d", answered, len(sets)*len(sets))
	}
}
