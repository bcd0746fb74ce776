package policy

import (
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/regauth/caddy-registry-auth/token"
)

// hashOf makes a bcrypt hash at the minimum cost, to keep tests fast.
func hashOf(tb testing.TB, password string) string {
	tb.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	return string(h)
}

var (
	anchorOnce sync.Once
	anchorHash string
)

// anchorUser is a user with a MinCost hash. Compile hashes its dummy
// password at the median stored cost, DefaultCost when there is none; a
// policy with only rules would spend ~100 ms on it, so rule-only test
// policies get this user.
func anchorUser(tb testing.TB) User {
	anchorOnce.Do(func() { anchorHash = hashOf(tb, "anchor-password") })
	return User{Name: "zz-anchor", Password: anchorHash}
}

// mustCompile compiles cfg (adding the anchor user when it has no users)
// and fails the test on an error.
func mustCompile(tb testing.TB, cfg Config) *Compiled {
	tb.Helper()
	if len(cfg.Users) == 0 && len(cfg.HtpasswdFiles) == 0 {
		cfg.Users = []User{anchorUser(tb)}
	}
	p, _, err := Compile(cfg)
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return p
}

// request parses scopes the way the token endpoint does.
func request(tb testing.TB, scopes ...string) []token.Scope {
	tb.Helper()
	s, err := token.ParseScopes(scopes)
	if err != nil {
		tb.Fatalf("ParseScopes(%q): %v", scopes, err)
	}
	if len(s) == 0 {
		tb.Fatalf("test bug: %q parses to no scope", scopes)
	}
	return s
}

// grants is the wire form of granted scopes, easy to compare.
func grants(g []token.Scope) string { return token.FormatScopes(g) }

func allow(subjects, actions, resources string) Rule {
	return Rule{Effect: "allow", Subjects: strings.Fields(subjects), Actions: strings.Fields(actions), Resources: strings.Fields(resources)}
}

func deny(subjects, actions, resources string) Rule {
	r := allow(subjects, actions, resources)
	r.Effect = "deny"
	return r
}

// authenticate is Authenticate as a yes or no.
func authenticate(p *Compiled, name, password string) (Identity, bool) {
	id, err := p.Authenticate(name, password)
	return id, err == nil
}
