package migrate

import (
	"math/rand"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/policy"
)

// ourMatch matches name against one of our resources the way policy does
// for a user-free pattern: regexps and globs anchored to the whole name.
func ourMatch(t *testing.T, res, name string) bool {
	t.Helper()
	var expr string
	if re, ok := strings.CutPrefix(res, policy.RegexpPrefix); ok {
		expr = re
	} else {
		var b strings.Builder
		for i := 0; i < len(res); i++ {
			switch {
			case strings.HasPrefix(res[i:], "**"):
				b.WriteString(".*")
				i++
			case res[i] == '*':
				b.WriteString("[^/]*")
			default:
				b.WriteString(regexp.QuoteMeta(res[i : i+1]))
			}
		}
		expr = b.String()
	}
	return regexp.MustCompile(`^(?:` + expr + `)$`).MatchString(name)
}

// TestGlobAgainstPathMatch checks the translation of path.Match globs on
// random patterns and names over a small alphabet: a pattern is refused
// exactly when path.Match calls it malformed, and otherwise the grant form
// matches no name path.Match does not, the deny form every name it does,
// and both are the same unless a class matches "/".
func TestGlobAgainstPathMatch(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	pieces := []string{"a", "b", "/", "*", "**", "?", "[ab]", "[^a]", "[/]", "[a-b]", "[b-a]", `\*`, `\`, "[", "]", "-", "[^]", "[]a]", "[a-]", `[\]]`, ".", "é"}
	// Only names of repository-name characters: those are the only ones
	// ever matched against rules.
	names := []string{"", "a", "b", "ab", "a/b", "/", "a/", "/a", "aa/bb", "ba/ab/a", "a-b", ".", "a.b", "a/b/a/b"}
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		for n := rng.Intn(5); n >= 0; n-- {
			b.WriteString(pieces[rng.Intn(len(pieces))])
		}
		p := b.String()
		toks, err := parseGlob(p)
		for _, name := range names {
			want, perr := path.Match(p, name)
			if (perr != nil) != (err != nil) {
				t.Fatalf("pattern %q on %q: path.Match error %v, parseGlob error %v", p, name, perr, err)
			}
			if err != nil {
				continue
			}
			allow, deny, slash := globResources(toks)
			a := allow != "" && ourMatch(t, allow, name)
			d := deny != "" && ourMatch(t, deny, name)
			if a && !want || want && !d || !slash && a != d {
				t.Fatalf("pattern %q (allow %q, deny %q) on %q: allow %v, deny %v, path.Match %v", p, allow, deny, name, a, d, want)
			}
		}
	}
}

func TestGlobResource(t *testing.T) {
	for _, c := range []struct{ glob, allow, deny string }{
		{"alice/*", "alice/*", "alice/*"},
		{"a/**/b", "a/*/b", "a/*/b"},
		{`alice\.x/*`, "alice.x/*", "alice.x/*"},
		{"a?c", "regexp:a[^/]c", "regexp:a[^/]c"},
		{"[ab]*", `regexp:[\x{61}-\x{61}\x{62}-\x{62}][^/]*`, `regexp:[\x{61}-\x{61}\x{62}-\x{62}][^/]*`},
		{"*[^a]", `regexp:[^/]*[^\x{2f}\x{61}-\x{61}]`, `regexp:[^/]*[^\x{61}-\x{61}]`},
		{"[.-0]", `regexp:[\x{2e}-\x{2e}\x{30}-\x{30}]`, `regexp:[\x{2e}-\x{30}]`},
		{"[/]", `regexp:[^\x{0}-\x{10ffff}]`, `regexp:[\x{2f}-\x{2f}]`},
		{"a b", "", ""},
		{"{user}/x", "", ""},
		{"${labels:team}/*", "", ""},
		{"", "", ""},
	} {
		toks, err := parseGlob(c.glob)
		if err != nil {
			t.Fatalf("%q: %v", c.glob, err)
		}
		if allow, deny, _ := globResources(toks); allow != c.allow || deny != c.deny {
			t.Errorf("globResources(%q) = %q, %q; want %q, %q", c.glob, allow, deny, c.allow, c.deny)
		}
	}
}

// TestAnywhere checks that the whole-name form of a regex matches what
// the regex matches anywhere in a name, and that anchors become plain text
// where they can.
func TestAnywhere(t *testing.T) {
	for re, want := range map[string]string{
		`foo`:             `.*(?:foo).*`,
		`^public\/`:       `public\/.*`,
		`^team2/.*$`:      `team2/.*`,
		`foo$`:            `.*foo`,
		`^a|b$`:           `.*(?:^a|b$).*`,
		`(?m)^a$`:         `.*(?:(?m)^a$).*`,
		`\bx`:             `.*(?:\bx).*`,
		`o+`:              `.*(?:o+).*`,
		`(?i)FOO`:         `.*(?:(?i)FOO).*`,
		`a|`:              `.*(?:a|).*`,
		`^(?:a|b)/x`:      `(?:a|b)/x.*`,
		`^`:               `.*(?:^).*`,
		`^$`:              ``,
		`^\$`:             `\$.*`,
		`^x\$`:            `x\$.*`,
		`^mirror\/[a-z]+`: `mirror\/[a-z]+.*`,
		`.*`:              `.*`,
	} {
		got, _ := anywhere(re)
		if got != want {
			t.Errorf("anywhere(%q) = %q, want %q", re, got, want)
		}
		theirs := regexp.MustCompile(re)
		for _, name := range []string{"", "foo", "xfoo", "foox", "a", "b", "ab", "ba", "x/foo/y", "o", "FOO", "y x", "bar", "$", "x$", "public/a", "xpublic/a", "a/x", "a/xy", "mirror/ab", "mirror/", "team2/x"} {
			// No name holds a line break, nor is empty: ".*" may stop at
			// one, and "" stands for no name.
			if name == "" && got == "" {
				continue
			}
			matched := got != "" && regexp.MustCompile(`^(?:`+got+`)$`).MatchString(name)
			if matched != theirs.MatchString(name) {
				t.Errorf("%q on %q: whole-name form %q %v, regexp %v", re, name, got, matched, theirs.MatchString(name))
			}
		}
	}
}
