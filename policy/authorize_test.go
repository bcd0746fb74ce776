package policy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/token"
)

var (
	anon  = Identity{}
	alice = Identity{Name: "alice"}
	bob   = Identity{Name: "bob", Groups: []string{"devs"}}
	carol = Identity{Name: "carol", Groups: []string{"ops", "devs"}}
)

// TestAuthorize: what a subject holds on a resource is the union of the
// matching allows minus the matching denies, intersected with what was
// asked (SPEC-NOTES §3). Each case names the property or regression it
// guards.
func TestAuthorize(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		id    Identity
		req   []string
		want  string
	}{
		// Regression: granting the rule's actions instead of the
		// intersection gave push to a pull-only user.
		{"over-grant: pull holder asking pull,push gets pull",
			[]Rule{allow("user:alice", "pull", "team/**")}, alice,
			[]string{"repository:team/app:pull,push"}, "repository:team/app:pull"},
		{"nothing held: resource left out",
			[]Rule{allow("user:alice", "pull", "team/**")}, alice,
			[]string{"repository:other/app:pull"}, ""},
		{"empty policy grants nothing",
			nil, alice, []string{"repository:a:pull registry:catalog:*"}, ""},
		{"union of allows",
			[]Rule{allow("user:alice", "pull", "team/**"), allow("user:alice", "push", "team/app")}, alice,
			[]string{"repository:team/app:pull,push", "repository:team/other:pull,push"},
			"repository:team/app:pull,push repository:team/other:pull"},
		{"union across subjects (user and group)",
			[]Rule{allow("user:bob", "pull", "team/**"), allow("group:devs", "push", "team/**")}, bob,
			[]string{"repository:team/app:pull,push,delete"}, "repository:team/app:pull,push"},
		{"deny subtracts",
			[]Rule{allow("authenticated", "pull push delete", "**"), deny("authenticated", "delete", "prod/**")}, alice,
			[]string{"repository:prod/app:pull,push,delete", "repository:dev/app:pull,push,delete"},
			"repository:prod/app:pull,push repository:dev/app:pull,push,delete"},
		{"deny removes *",
			[]Rule{allow("authenticated", "*", "**"), deny("authenticated", "push", "prod/**")}, alice,
			[]string{"repository:prod/app:*", "repository:dev/app:*"},
			"repository:prod/app:pull,delete repository:dev/app:pull,push,delete,*"},
		{"deny of another subject does not apply",
			[]Rule{allow("authenticated", "*", "**"), deny("user:bob", "*", "**")}, alice,
			[]string{"repository:a:push"}, "repository:a:push"},
		{"deny of another resource does not apply",
			[]Rule{allow("authenticated", "*", "**"), deny("authenticated", "*", "secret/**")}, alice,
			[]string{"repository:a:*"}, "repository:a:pull,push,delete,*"},
		{"deny everything",
			[]Rule{allow("everyone", "*", "**"), deny("everyone", "*", "**")}, alice,
			[]string{"repository:a:* registry:catalog:*"}, ""},
		{"deny without allow grants nothing",
			[]Rule{deny("user:alice", "push", "**")}, alice, []string{"repository:a:pull,push"}, ""},
		// skopeo delete asks for "*": it means every action held, listed
		// explicitly for zot, plus "*" only when a rule grants "*" and
		// nothing is denied.
		{"requested * gives every action held (explicit list)",
			[]Rule{allow("user:alice", "pull push", "**")}, alice,
			[]string{"repository:a:*"}, "repository:a:pull,push"},
		{"requested * with pull,push,delete held: no literal *",
			[]Rule{allow("user:alice", "pull push delete", "**")}, alice,
			[]string{"repository:a:*"}, "repository:a:pull,push,delete"},
		{"requested * with * held",
			[]Rule{allow("user:alice", "*", "**")}, alice,
			[]string{"repository:a:*"}, "repository:a:pull,push,delete,*"},
		{"* held, pull asked: only pull",
			[]Rule{allow("user:alice", "*", "**")}, alice,
			[]string{"repository:a:pull"}, "repository:a:pull"},
		// The catalog needs a rule naming registry:catalog, granted as "*".
		{"catalog with a literal * rule",
			[]Rule{allow("user:alice", "*", "registry:catalog")}, alice,
			[]string{"registry:catalog:*"}, "registry:catalog:*"},
		{"catalog not granted by a repository wildcard",
			[]Rule{allow("user:alice", "*", "**")}, alice,
			[]string{"registry:catalog:*"}, ""},
		{"catalog rule grants no repository",
			[]Rule{allow("user:alice", "*", "registry:catalog")}, alice,
			[]string{"repository:catalog:pull", "registry:catalog:*"}, "registry:catalog:*"},
		{"catalog rule and repository pattern in one rule",
			[]Rule{allow("user:alice", "*", "registry:catalog team/**")}, alice,
			[]string{"registry:catalog:* repository:team/a:push repository:x:pull"},
			"registry:catalog:* repository:team/a:push"},
		{"catalog denied",
			[]Rule{allow("authenticated", "*", "registry:catalog"), deny("user:alice", "*", "registry:catalog")}, alice,
			[]string{"registry:catalog:*"}, ""},
		{"catalog for another user only",
			[]Rule{allow("user:admin", "*", "registry:catalog")}, alice,
			[]string{"registry:catalog:*"}, ""},
		// Subjects.
		{"anonymous rule: anonymous", []Rule{allow("anonymous", "pull", "**")}, anon, []string{"repository:a:pull"}, "repository:a:pull"},
		{"anonymous rule: not a user", []Rule{allow("anonymous", "pull", "**")}, alice, []string{"repository:a:pull"}, ""},
		{"authenticated rule: a user", []Rule{allow("authenticated", "pull", "**")}, alice, []string{"repository:a:pull"}, "repository:a:pull"},
		{"authenticated rule: not anonymous", []Rule{allow("authenticated", "pull", "**")}, anon, []string{"repository:a:pull"}, ""},
		{"everyone rule: anonymous", []Rule{allow("everyone", "pull", "**")}, anon, []string{"repository:a:pull"}, "repository:a:pull"},
		{"everyone rule: a user", []Rule{allow("everyone", "pull", "**")}, bob, []string{"repository:a:pull"}, "repository:a:pull"},
		{"user rule: that user", []Rule{allow("user:alice", "pull", "**")}, alice, []string{"repository:a:pull"}, "repository:a:pull"},
		{"user rule: another user", []Rule{allow("user:alice", "pull", "**")}, bob, []string{"repository:a:pull"}, ""},
		{"user rule: anonymous", []Rule{allow("user:alice", "pull", "**")}, anon, []string{"repository:a:pull"}, ""},
		{"group rule: a member", []Rule{allow("group:devs", "pull", "**")}, bob, []string{"repository:a:pull"}, "repository:a:pull"},
		{"group rule: member of several groups", []Rule{allow("group:devs", "pull", "**")}, carol, []string{"repository:a:pull"}, "repository:a:pull"},
		{"group rule: not a member", []Rule{allow("group:devs", "pull", "**")}, alice, []string{"repository:a:pull"}, ""},
		{"group rule: anonymous claiming the group", []Rule{allow("group:devs", "pull", "**")}, Identity{Groups: []string{"devs"}}, []string{"repository:a:pull"}, ""},
		{"several subjects in one rule", []Rule{allow("user:alice group:ops", "push", "**")}, carol, []string{"repository:a:push"}, "repository:a:push"},
		// Per-user namespaces.
		{"{user}/**: own namespace", []Rule{allow("authenticated", "pull push", "{user}/**")}, alice,
			[]string{"repository:alice/x:push", "repository:alice/x/y:pull"}, "repository:alice/x:push repository:alice/x/y:pull"},
		{"{user}/**: not another's", []Rule{allow("authenticated", "pull push", "{user}/**")}, alice,
			[]string{"repository:bob/x:push", "repository:alicex/y:push", "repository:x/alice/y:push"}, ""},
		{"{user}/**: not the bare user name", []Rule{allow("authenticated", "push", "{user}/**")}, alice,
			[]string{"repository:alice:push"}, ""},
		{"{user}/**: anonymous never matches", []Rule{allow("everyone", "*", "{user}/**")}, anon,
			[]string{"repository:alice/x:pull"}, ""},
		{"team/{user}/**", []Rule{allow("group:devs", "push", "team/{user}/**")}, bob,
			[]string{"repository:team/bob/app:push repository:team/alice/app:push"}, "repository:team/bob/app:push"},
		// Regression: an unanchored regexp matched inside other names.
		{"regexp is anchored: prefix elsewhere", []Rule{allow("everyone", "pull", "regexp:test/.*")}, alice,
			[]string{"repository:evil/test/x:pull", "repository:test/x:pull", "repository:test/x/evil:pull"},
			"repository:test/x:pull repository:test/x/evil:pull"},
		{"regexp alternation is anchored as a whole", []Rule{allow("everyone", "push", "regexp:foo|bar")}, alice,
			[]string{"repository:foo/evil:push repository:evil/bar:push repository:foo:push repository:bar:push"},
			"repository:foo:push repository:bar:push"},
		// Globs.
		{"* does not cross /", []Rule{allow("everyone", "pull", "team/*")}, alice,
			[]string{"repository:team/app:pull repository:team/app/sub:pull"}, "repository:team/app:pull"},
		{"** crosses /", []Rule{allow("everyone", "pull", "team/**")}, alice,
			[]string{"repository:team/app:pull repository:team/app/sub/deep:pull"},
			"repository:team/app:pull repository:team/app/sub/deep:pull"},
		{"team/** does not match team itself", []Rule{allow("everyone", "pull", "team/**")}, alice,
			[]string{"repository:team:pull repository:teamx/app:pull"}, ""},
		{"literal pattern is exact", []Rule{allow("everyone", "pull", "team/app")}, alice,
			[]string{"repository:team/app:pull repository:team/app2:pull repository:team/app/x:pull"}, "repository:team/app:pull"},
		{"host:port patterns", []Rule{allow("everyone", "pull", "localhost:5000/**")}, alice,
			[]string{"repository:localhost:5000/foo:pull repository:localhost:5001/foo:pull repository:foo:pull"},
			"repository:localhost:5000/foo:pull"},
		{"names compared byte for byte (domain case)", []Rule{allow("everyone", "pull", "Registry.Example.com/**")}, alice,
			[]string{"repository:Registry.Example.com/a:pull repository:registry.example.com/a:pull"},
			"repository:Registry.Example.com/a:pull"},
		{"dot in a glob is literal", []Rule{allow("everyone", "pull", "a.b/*")}, alice,
			[]string{"repository:axb/c:pull repository:a.b/c:pull"}, "repository:a.b/c:pull"},
		{"multiple scopes all evaluated, order kept",
			[]Rule{allow("user:alice", "pull", "a"), allow("user:alice", "push", "b"), allow("user:alice", "delete", "c"), allow("user:alice", "*", "registry:catalog")}, alice,
			[]string{"repository:c:* repository:x:pull", "repository:a:pull,push", "registry:catalog:*", "repository:b:push,pull"},
			"repository:c:delete repository:a:pull registry:catalog:* repository:b:push"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, Config{Rules: tt.rules}).Rules()
			got := grants(p.Authorize(tt.id, request(t, tt.req...)))
			if got != tt.want {
				t.Errorf("Authorize(%+v, %q)\n got  %q\n want %q", tt.id, tt.req, got, tt.want)
			}
		})
	}
}

// TestAuthorizeNeverExceedsRequest: whatever the rules, the grant is a
// subset of the request, resource by resource.
func TestAuthorizeNeverExceedsRequest(t *testing.T) {
	p := mustCompile(t, Config{Rules: []Rule{allow("everyone", "*", "** registry:catalog")}}).Rules()
	for _, req := range []string{"repository:a:pull", "repository:a:push", "repository:a:delete", "repository:a:pull,delete", "registry:catalog:*"} {
		want := request(t, req)
		got := p.Authorize(alice, want)
		if len(got) != 1 || got[0].Actions&^want[0].Actions != 0 || got[0].Name != want[0].Name || got[0].Type != want[0].Type {
			t.Errorf("%s: granted %v", req, got)
		}
	}
	if got := p.Authorize(alice, nil); got == nil || len(got) != 0 {
		t.Errorf("no request: %#v, want an empty non-nil slice", got)
	}
}

// TestAuthorizeOrderFree: rules are order-free, so any permutation of the
// same rules gives the same answers.
func TestAuthorizeOrderFree(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	subjects := []string{"everyone", "anonymous", "authenticated", "user:alice", "user:bob", "group:devs", "group:ops"}
	actions := []string{"pull", "push", "delete", "*"}
	resources := []string{"**", "team/**", "team/*", "team/app", "{user}/**", "regexp:(team|prod)/.*", "prod/**", "registry:catalog", "a/*/c"}
	pick := func(pool []string) []string {
		n := 1 + rng.IntN(2)
		var out []string
		for range n {
			out = append(out, pool[rng.IntN(len(pool))])
		}
		return out
	}
	var rules []Rule
	for range 60 {
		r := Rule{Effect: "allow", Subjects: pick(subjects), Actions: pick(actions), Resources: pick(resources)}
		if rng.IntN(4) == 0 {
			r.Effect = "deny"
		}
		for _, res := range r.Resources {
			if res == "registry:catalog" {
				r.Actions = append(r.Actions, "*")
				break
			}
		}
		rules = append(rules, r)
	}
	ids := []Identity{anon, alice, bob, carol, {Name: "dave"}}
	req := request(t, "repository:team/app:* repository:team/x/y:pull,push repository:prod/db:delete",
		"repository:alice/x:* repository:bob/x:push registry:catalog:* repository:a/b/c:pull repository:other:pull")
	answer := func(rules []Rule) string {
		p := mustCompile(t, Config{Rules: rules}).Rules()
		var b strings.Builder
		for _, id := range ids {
			fmt.Fprintf(&b, "%s=[%s] ", id.Name, grants(p.Authorize(id, req)))
		}
		return b.String()
	}
	base := answer(rules)
	if !strings.Contains(base, "repository:") {
		t.Fatalf("test bug: the random policy grants nothing: %s", base)
	}
	for i := range 20 {
		shuffled := append([]Rule(nil), rules...)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if got := answer(shuffled); got != base {
			t.Fatalf("permutation %d changed the answer:\n got  %s\n want %s", i, got, base)
		}
	}
}

// rules1000 is a large policy: a private project per user, shared
// projects per group, a few denies.
func rules1000() []Rule {
	var rules []Rule
	for i := range 1000 {
		switch {
		case i%10 == 9:
			rules = append(rules, allow(fmt.Sprintf("group:g%d", i/10%10), "push", fmt.Sprintf("shared-%d/*", i/10%10)))
		case i%100 == 50:
			rules = append(rules, deny(fmt.Sprintf("user:u%d", i), "pull", fmt.Sprintf("proj-%d/secret", i)))
		default:
			rules = append(rules, allow(fmt.Sprintf("user:u%d", i), "pull push", fmt.Sprintf("proj-%d/**", i)))
		}
	}
	return rules
}

func TestAuthorize1000Rules(t *testing.T) {
	rules := rules1000()
	rules[500] = allow("user:u500", "pull", "proj-500/**") // so the deny at 550 is not alone
	rules = append(rules, deny("user:u500", "pull", "proj-500/secret"))
	p := mustCompile(t, Config{Rules: rules}).Rules()
	u500 := Identity{Name: "u500", Groups: []string{"g3"}}
	tests := []struct {
		id   Identity
		req  string
		want string
	}{
		{u500, "repository:proj-500/app:pull,push", "repository:proj-500/app:pull"},
		{u500, "repository:proj-500/secret:pull", ""},
		{u500, "repository:proj-501/app:pull", ""},
		{u500, "repository:shared-3/x:push,pull", "repository:shared-3/x:push"},
		{u500, "repository:shared-4/x:push", ""},
		{u500, "repository:shared-3/x/y:push", ""},
		{Identity{Name: "u998"}, "repository:proj-998/a/b:push", "repository:proj-998/a/b:push"},
		{Identity{Name: "u998"}, "repository:proj-997/a:push", ""},
		{Identity{Name: "u150"}, "repository:proj-150/app:pull", ""}, // rule 150 is a deny only
		{anon, "repository:proj-1/app:pull", ""},
	}
	for _, tt := range tests {
		if got := grants(p.Authorize(tt.id, request(t, tt.req))); got != tt.want {
			t.Errorf("%s %s: got %q, want %q", tt.id.Name, tt.req, got, tt.want)
		}
	}
}

func BenchmarkAuthorize1000Rules(b *testing.B) {
	p := mustCompile(b, Config{Rules: rules1000()}).Rules()
	id := Identity{Name: "u998", Groups: []string{"g3"}}
	req := request(b, "repository:proj-998/app:pull,push repository:shared-3/x:push registry:catalog:*")
	b.ReportAllocs()
	for b.Loop() {
		if len(p.Authorize(id, req)) != 2 {
			b.Fatal("wrong grant")
		}
	}
}

// TestAuthorizeCatalogOnlyAll: the catalog is requested and granted as All
// only; Authorize never adds other bits to it.
func TestAuthorizeCatalogOnlyAll(t *testing.T) {
	p := mustCompile(t, Config{Rules: []Rule{allow("everyone", "pull push delete *", "registry:catalog **")}}).Rules()
	got := p.Authorize(anon, []token.Scope{{Type: token.TypeRegistry, Name: token.CatalogName, Actions: token.All}})
	if len(got) != 1 || got[0].Actions != token.All || strings.Join(got[0].Actions.Strings(), ",") != "*" {
		t.Errorf("catalog grant %v", got)
	}
}

func TestUserPatternSubjects(t *testing.T) {
	p := mustCompile(t, Config{Rules: []Rule{
		{Effect: "allow", Subjects: []string{"user:regexp:ci-[0-9]+"}, Actions: []string{"pull"}, Resources: []string{"**"}},
	}}).Rules()
	pull := []token.Scope{{Type: "repository", Name: "a/b", Actions: token.Pull}}
	for name, want := range map[string]int{"ci-1": 1, "ci-42": 1, "ci-": 0, "xci-1": 0, "ci-1x": 0, "": 0} {
		if got := p.Authorize(Identity{Name: name}, pull); len(got) != want {
			t.Errorf("%q: got %v", name, got)
		}
	}
	for _, bad := range []string{"user:regexp:", "user:regexp:("} {
		if err := CheckRule(Rule{Effect: "allow", Subjects: []string{bad}, Actions: []string{"pull"}, Resources: []string{"**"}}); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}
