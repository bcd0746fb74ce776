package token_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/token"
)

// TestValidRepositoryName checks the distribution reference grammar: an
// optional domain (host[:port], letters of any case) and lowercase path
// components [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)* joined by "/", at most
// 255 bytes. Registries compare names byte for byte, so anything outside the
// grammar must be refused: it could alias a name a rule meant to protect.
func TestValidRepositoryName(t *testing.T) {
	valid := []string{
		"a",
		"0",
		"foo",
		"foo/bar",
		"a/b/c/d/e/f",
		"123/456",
		"foo.bar",
		"foo_bar",
		"foo__bar",
		"foo-bar",
		"foo--bar",
		"foo---bar",
		"a-b-c.d_e__f",
		"foo.bar.baz/qux",
		"library/ubuntu",
		"localhost/foo",
		"localhost:5000/foo",
		"localhost:5000/foo/bar",
		"registry.example.com/team/app",
		"example.com:443/x",
		"my-registry.io:5000/a_b__c.d-e",
		"127.0.0.1:5000/foo",
		// The domain may have upper case (DNS is case-insensitive, the
		// grammar allows it); path components may not.
		"Registry.Example.COM/app",
		"FOO/bar",
		// A first component that is a valid path component is one.
		"a.b.c/x",
		"host_name.com/foo", // "_" makes it a path component, not a domain
		// Longest name: exactly MaxNameLength bytes.
		strings.Repeat("a", token.MaxNameLength),
		strings.Repeat("a", 127) + "/" + strings.Repeat("b", 127),
	}
	for _, name := range valid {
		if !token.ValidRepositoryName(name) {
			t.Errorf("ValidRepositoryName(%q) = false, want true", name)
		}
	}

	invalid := []string{
		"",
		// Upper case in a path component.
		"Foo",
		"foo/Bar",
		"library/Ubuntu",
		// Dot segments and doubled separators.
		".",
		"..",
		"foo/../bar",
		"foo/./bar",
		"../foo",
		"foo/..",
		"foo..bar",
		"foo._bar",
		"foo.-bar",
		"foo-.bar",
		"foo___bar",
		"foo_-bar",
		// Empty components.
		"/foo",
		"foo/",
		"foo//bar",
		"/",
		"//",
		// Separators at the ends of a component.
		"-foo",
		"foo-",
		"_foo",
		"foo_",
		".foo",
		"foo.",
		"foo/-bar",
		"foo/bar_",
		// Percent-encoding and other characters.
		"foo%2fbar",
		"foo%2Fbar",
		"foo/%2e%2e/bar",
		"foo bar",
		"foo\tbar",
		"foo\x00",
		"foo\nbar",
		"foo/bär",
		"ü",
		"foo/bar:tag",
		"foo@sha256:abc",
		"foo\\bar",
		"foo+bar",
		"foo*",
		// A host alone, or a bad host.
		"foo:bar",
		"localhost:5000",
		"localhost:/foo",
		"localhost:50a/foo",
		"localhost:5000:6000/foo",
		":5000/foo",
		"-host.com/foo",
		"host-.com/foo",
		"host..com/foo",
		".host.com/foo",
		"host.com./foo",
		"Host_Name.com/foo", // "_" is no domain character, upper case no path one
		// A domain only as the first component.
		"foo/localhost:5000/bar",
		"foo/Bar.com/baz",
		// Too long: MaxNameLength+1 bytes, valid otherwise.
		strings.Repeat("a", token.MaxNameLength+1),
		"localhost:5000/" + strings.Repeat("a", token.MaxNameLength-len("localhost:5000/")+1),
	}
	for _, name := range invalid {
		if token.ValidRepositoryName(name) {
			t.Errorf("ValidRepositoryName(%q) = true, want false", name)
		}
	}
}

// referenceName is the distribution reference grammar (reference.NameRegexp
// of github.com/distribution/reference) written as one regular expression,
// without the IPv6 literal host this package does not accept. It is an
// independent oracle for the hand-written matcher.
var referenceName = func() *regexp.Regexp {
	const (
		pathComponent   = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
		domainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
		domainName      = domainComponent + `(?:\.` + domainComponent + `)*`
		domainAndPort   = domainName + `(?::[0-9]+)?`
	)
	return regexp.MustCompile(`^(?:` + domainAndPort + `/)?` + pathComponent + `(?:/` + pathComponent + `)*$`)
}()

// FuzzValidRepositoryName: never panics; agrees with the reference grammar
// (minus IPv6 hosts); accepted names are at most 255 bytes, hold no "..",
// no "//", and every component after a possible domain is lowercase.
func FuzzValidRepositoryName(f *testing.F) {
	for _, s := range []string{
		"foo", "foo/bar", "localhost:5000/foo", "Foo", "foo/../bar", "foo//bar",
		"a__b", "a___b", "a--b", "a.b", "a..b", "Example.COM:443/x", "foo/", "/foo",
		"[::1]:5000/foo", "%2e%2e", strings.Repeat("a/", 130) + "a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ok := token.ValidRepositoryName(name)
		if !ok {
			// The only names the reference grammar accepts and we refuse
			// are over-long ones (the grammar has no length) and IPv6 hosts.
			if referenceName.MatchString(name) && len(name) <= token.MaxNameLength {
				t.Fatalf("ValidRepositoryName(%q) = false, but the reference grammar accepts it", name)
			}
			return
		}
		if !referenceName.MatchString(name) {
			t.Fatalf("ValidRepositoryName(%q) = true, but the reference grammar refuses it", name)
		}
		if len(name) > token.MaxNameLength {
			t.Fatalf("accepted %d-byte name", len(name))
		}
		if strings.Contains(name, "..") || strings.Contains(name, "//") {
			t.Fatalf("accepted %q", name)
		}
		comps := strings.Split(name, "/")
		for i, c := range comps {
			if c == "" {
				t.Fatalf("accepted %q with an empty component", name)
			}
			if i == 0 && len(comps) > 1 {
				continue // may be a domain
			}
			if c != strings.ToLower(c) || strings.ContainsAny(c, ":%") {
				t.Fatalf("accepted %q: component %q is not a lowercase path component", name, c)
			}
		}
	})
}

func TestCheckUserName(t *testing.T) {
	for _, ok := range []string{"alice", "a.b-c_d@example.com", "gh/acme/app", "名前", "a b"} {
		if err := token.CheckUserName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a:b", "a\nb", "a\rb", "a\x00b", "a\tb", "a\x7fb"} {
		if err := token.CheckUserName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
