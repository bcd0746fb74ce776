package policy

import (
	"path"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/token"
)

// TestPatternKinds: globs compile to the cheapest matcher that does the job.
func TestPatternKinds(t *testing.T) {
	tests := []struct {
		src  string
		kind patternKind
	}{
		{"team/app", kindLiteral},
		{"localhost:5000/app", kindLiteral},
		{"**", kindAny},
		{"team/**", kindPrefixAny},
		{"localhost:5000/team/**", kindPrefixAny},
		{"team/*", kindRegexp},
		{"*/**", kindRegexp},
		{"{user}/**", kindRegexp},
		{"team/{user}/**", kindRegexp},
		{"a/**/b", kindRegexp},
		{"regexp:team/.*", kindRegexp},
	}
	for _, tt := range tests {
		p, err := compilePattern(tt.src)
		if err != nil {
			t.Errorf("%q: %v", tt.src, err)
			continue
		}
		if p.kind != tt.kind {
			t.Errorf("%q: kind %d, want %d", tt.src, p.kind, tt.kind)
		}
	}
}

// TestPatternMatch: glob and regexp semantics on validated names. "*"
// stays within a component, "**" crosses them, "{user}" is a whole
// component equal to the user's name and never matches anonymous, and
// regexps match the whole name.
func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, name, user string
		want                bool
	}{
		{"team/app", "team/app", "", true},
		{"team/app", "team/app2", "", false},
		{"team/app", "team", "", false},
		{"team/app", "team/app/x", "", false},
		{"team/*", "team/app", "", true},
		{"team/*", "team/app/sub", "", false},
		{"team/*", "team", "", false},
		{"team/*", "teamx/app", "", false},
		{"team/**", "team/app", "", true},
		{"team/**", "team/a/b/c", "", true},
		{"team/**", "team", "", false},
		{"team/**", "teamx/a", "", false},
		{"**", "a", "", true},
		{"**", "localhost:5000/a/b", "", true},
		{"*", "foo", "", true},
		{"*", "foo/bar", "", false},
		{"*/app", "x/app", "", true},
		{"*/app", "x/y/app", "", false},
		{"**/app", "x/app", "", true},
		{"**/app", "x/y/app", "", true},
		{"**/app", "app", "", false},
		{"**/app", "x/myapp", "", false},
		{"team/*-dev", "team/app-dev", "", true},
		{"team/*-dev", "team/app-prod", "", false},
		{"a.b/*", "axb/c", "", false},
		{"a.b/*", "a.b/c", "", true},
		{"a/**/b", "a/x/y/b", "", true},
		{"a/**/b", "a/b", "", false},
		{"{user}/**", "alice/x", "alice", true},
		{"{user}/**", "alice/x/y", "alice", true},
		{"{user}/**", "bob/x", "alice", false},
		{"{user}/**", "alice/x", "", false},
		{"{user}/**", "alice", "alice", false},
		{"{user}/**", "alicex/y", "alice", false},
		{"{user}/**", "x/alice/y", "alice", false},
		{"{user}", "alice", "alice", true},
		{"{user}", "alice/x", "alice", false},
		{"{user}", "alice", "", false},
		{"team/{user}/**", "team/alice/x", "alice", true},
		{"team/{user}/**", "team/bob/x", "alice", false},
		{"{user}/{user}", "alice/alice", "alice", true},
		{"{user}/{user}", "alice/bob", "alice", false},
		{"{user}/*", "alice/x", "alice", true},
		{"{user}/*", "alice/x/y", "alice", false},
		// A user name that is no valid name component matches nothing.
		{"{user}/**", "alice/x", "Alice", false},
		{"regexp:test/.*", "test/x", "", true},
		{"regexp:test/.*", "evil/test/x", "", false},
		{"regexp:test/.*", "testx", "", false},
		{"regexp:foo|bar", "foo", "", true},
		{"regexp:foo|bar", "bar", "", true},
		{"regexp:foo|bar", "foo/evil", "", false},
		{"regexp:foo|bar", "evil/bar", "", false},
		{"regexp:^team/.*$", "team/a", "", true},
		{"Registry.Example.com/**", "Registry.Example.com/a", "", true},
		{"Registry.Example.com/**", "registry.example.com/a", "", false},
		{"localhost:5000/*", "localhost:5000/foo", "", true},
		{"localhost:5000/*", "localhost:50000/foo", "", false},
	}
	for _, tt := range tests {
		if !token.ValidRepositoryName(tt.name) {
			t.Fatalf("test bug: %q is not a valid name", tt.name)
		}
		p, err := compilePattern(tt.pattern)
		if err != nil {
			t.Errorf("%q: %v", tt.pattern, err)
			continue
		}
		if got := p.match(tt.name, tt.user); got != tt.want {
			t.Errorf("%q.match(%q, user %q) = %v, want %v", tt.pattern, tt.name, tt.user, got, tt.want)
		}
	}
}

func TestCompilePatternErrors(t *testing.T) {
	for _, src := range []string{
		"", "regexp:", "regexp:(", "regexp:a{1001}", "team/my app", "team/{usr}", "x{user}", "{user}x",
		"**/{user}", "**{user}", "*{user}", "a/**/{user}/b", "team/%2f", `team\x`, "team/[ab]",
		"team/app?", "ü", "team/a+b", "{user", "user}", "team/app\n", "team/\x00",
	} {
		if _, err := compilePattern(src); err == nil {
			t.Errorf("compilePattern(%q) accepted it", src)
		}
	}
}

// FuzzCompilePattern: compiling and matching never panic; a successful
// pattern obeys the documented semantics where an independent check is
// easy: literals match exactly, "**" matches everything, {user} never
// matches anonymous, and globs without "**" or {user} agree with
// path.Match (whose "*" also stays within a component).
func FuzzCompilePattern(f *testing.F) {
	for _, s := range [][3]string{
		{"team/*", "team/app", ""},
		{"team/**", "team/a/b", ""},
		{"{user}/**", "alice/x", "alice"},
		{"regexp:test/.*", "evil/test/x", ""},
		{"**/{user}", "a/b", "b"},
		{"a/**/b", "a/x/b", ""},
		{"localhost:5000/*", "localhost:5000/x", ""},
		{"*{user}", "x", "x"},
		{"regexp:(a|b", "a", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, src, name, user string) {
		p, err := compilePattern(src)
		if err != nil {
			return
		}
		got := p.match(name, user)
		if err := CheckRule(Rule{Effect: "allow", Subjects: []string{"everyone"}, Actions: []string{"pull"}, Resources: []string{src}}); err != nil {
			t.Fatalf("compilePattern accepted %q but CheckRule refuses it: %v", src, err)
		}
		if strings.HasPrefix(src, RegexpPrefix) {
			return
		}
		if p.userGroups > 0 && user == "" && got {
			t.Fatalf("%q matched %q for anonymous", src, name)
		}
		if !token.ValidRepositoryName(name) {
			return
		}
		switch {
		case src == "**":
			if !got {
				t.Fatalf("** did not match %q", name)
			}
		case !strings.ContainsAny(src, "*{"):
			if got != (name == src) {
				t.Fatalf("literal %q vs %q: %v", src, name, got)
			}
		case !strings.Contains(src, "**") && !strings.Contains(src, UserPlaceholder):
			want, err := path.Match(src, name)
			if err != nil {
				t.Fatalf("path.Match(%q): %v", src, err)
			}
			if got != want {
				t.Fatalf("%q.match(%q) = %v, path.Match says %v", src, name, got, want)
			}
		case strings.HasSuffix(src, "/**") && !strings.ContainsAny(src[:len(src)-3], "*{"):
			prefix := src[:len(src)-2]
			if want := strings.HasPrefix(name, prefix) && len(name) > len(prefix); got != want {
				t.Fatalf("%q.match(%q) = %v, want %v", src, name, got, want)
			}
		}
	})
}
