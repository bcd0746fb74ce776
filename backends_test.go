package registryauth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// fakeSource is an Authenticator for unit tests: it knows one user.
type fakeSource struct {
	user, password string
	groups         []string
	err            error // returned for every name when set
	calls          int
}

func (f *fakeSource) Authenticate(_ context.Context, name, password string) (Identity, error) {
	f.calls++
	switch {
	case f.err != nil:
		return Identity{}, f.err
	case name != f.user:
		return Identity{}, ErrUnknownUser
	case password != f.password:
		return Identity{}, ErrBadCredentials
	}
	return Identity{Name: name, Groups: f.groups}, nil
}

// chainPolicy is a policy whose own user is alice, with the given
// authenticators after her, a group rule, and a log that tests can read.
func chainPolicy(t *testing.T, sources ...Authenticator) (*Policy, *observer.ObservedLogs) {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	core, logs := observer.New(zap.InfoLevel)
	p := &Policy{Name: "t", logger: zap.New(core), cache: policy.NewCredentialCache(time.Minute, 100)}
	rules, _, err := policy.Compile(policy.Config{
		Users:  []policy.User{{Name: "alice", Password: string(hash)}},
		Groups: map[string][]string{"ops": {"dora"}},
		Rules: []policy.Rule{
			{Effect: "allow", Subjects: []string{"group:devs"}, Actions: []string{"pull", "push"}, Resources: []string{"devs/**"}},
			{Effect: "allow", Subjects: []string{"group:ops"}, Actions: []string{"pull"}, Resources: []string{"ops/**"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.current.Store(rules)
	for _, s := range sources {
		p.authenticators = append(p.authenticators, namedAuthenticator{s, "fake"})
	}
	return p, logs
}

func TestAuthenticatorChain(t *testing.T) {
	ctx := context.Background()
	t.Run("the policy's own user decides for her name", func(t *testing.T) {
		other := &fakeSource{user: "alice", password: "directory-pw"}
		p, _ := chainPolicy(t, other)
		if _, err := p.login(ctx, p.Current(), "", "alice", "alice-pw"); err != nil {
			t.Fatalf("own password: %v", err)
		}
		if _, err := p.login(ctx, p.Current(), "", "alice", "directory-pw"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("a later source's password for an own user: got %v, want bad credentials", err)
		}
		if other.calls != 0 {
			t.Fatalf("the later source was asked %d times about an own user", other.calls)
		}
	})
	t.Run("unknown names go on; the first source that knows the user decides", func(t *testing.T) {
		first := &fakeSource{user: "bob", password: "bob-pw", groups: []string{"devs"}}
		second := &fakeSource{user: "bob", password: "other-pw"}
		third := &fakeSource{user: "dora", password: "dora-pw"}
		p, _ := chainPolicy(t, first, second, third)
		id, err := p.login(ctx, p.Current(), "", "bob", "bob-pw")
		if err != nil || id.Name != "bob" || len(id.Groups) != 1 || id.Groups[0] != "devs" {
			t.Fatalf("bob: %+v, %v", id, err)
		}
		if _, err := p.login(ctx, p.Current(), "", "bob", "other-pw"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("bob with the second source's password: %v", err)
		}
		if second.calls != 0 {
			t.Fatalf("the second source was asked about bob")
		}
		id, err = p.login(ctx, p.Current(), "", "dora", "dora-pw")
		if err != nil || id.Name != "dora" {
			t.Fatalf("dora: %+v, %v", id, err)
		}
		// The policy's groups map adds to what the source says.
		if got := p.authorize(ctx, p.Current(), id, testService, "", []token.Scope{{Type: "repository", Name: "ops/x", Actions: token.Pull}}); len(got) != 1 {
			t.Fatalf("dora is in ops by the policy's groups: got %v", got)
		}
		if _, err := p.login(ctx, p.Current(), "", "nobody", "x"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("a name no source knows: %v", err)
		}
	})
	t.Run("a source that cannot answer refuses the login and stops the chain", func(t *testing.T) {
		down := &fakeSource{err: errors.New("connection refused")}
		later := &fakeSource{user: "bob", password: "bob-pw"}
		p, logs := chainPolicy(t, down, later)
		_, err := p.login(ctx, p.Current(), "", "bob", "bob-pw")
		if !errors.Is(err, errSourceDown) {
			t.Fatalf("got %v, want errSourceDown", err)
		}
		if later.calls != 0 {
			t.Fatal("a later source was asked after one failed: that could let a same-named user in")
		}
		if status, _, _, _, retry := loginRefusal(err); status != 503 || retry == "" {
			t.Fatalf("refusal: %d, Retry-After %q", status, retry)
		}
		entries := logs.FilterMessage("authenticator failed; login refused").All()
		if len(entries) != 1 || entries[0].ContextMap()["error"] != "connection refused" {
			t.Fatalf("log: %+v", logs.All())
		}
		// Own users still log in.
		if _, err := p.login(ctx, p.Current(), "", "alice", "alice-pw"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an answer for another name is refused", func(t *testing.T) {
		p, _ := chainPolicy(t, liar{})
		if _, err := p.login(ctx, p.Current(), "", "bob", "pw"); !errors.Is(err, errSourceDown) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("successes are remembered with their groups", func(t *testing.T) {
		src := &fakeSource{user: "bob", password: "bob-pw", groups: []string{"devs"}}
		p, _ := chainPolicy(t, src)
		for range 3 {
			id, err := p.login(ctx, p.Current(), "", "bob", "bob-pw")
			if err != nil || len(id.Groups) != 1 {
				t.Fatalf("%+v, %v", id, err)
			}
		}
		if src.calls != 1 {
			t.Fatalf("source asked %d times, want 1", src.calls)
		}
		if _, err := p.login(ctx, p.Current(), "", "bob", "wrong"); !errors.Is(err, ErrBadCredentials) || src.calls != 2 {
			t.Fatalf("a wrong password after a success: %v, %d calls", err, src.calls)
		}
		// A source configured differently does not hit the old entries.
		p.sourcesBinding = []byte("changed")
		if _, err := p.login(ctx, p.Current(), "", "bob", "bob-pw"); err != nil || src.calls != 3 {
			t.Fatalf("after a configuration change: %v, %d calls", err, src.calls)
		}
	})
}

type liar struct{}

func (liar) Authenticate(context.Context, string, string) (Identity, error) {
	return Identity{Name: "admin"}, nil
}

// fakeAuthorizer grants what it is told, or fails.
type fakeAuthorizer struct {
	grant []token.Scope
	err   error
	got   AccessRequest
}

func (f *fakeAuthorizer) Authorize(_ context.Context, req AccessRequest) ([]token.Scope, error) {
	f.got = req
	return f.grant, f.err
}

func TestAuthorizers(t *testing.T) {
	ctx := context.Background()
	p, logs := chainPolicy(t)
	devs := Identity{Name: "bob", Groups: []string{"devs"}}
	requested := []token.Scope{
		{Type: "repository", Name: "devs/app", Actions: token.Pull | token.Push},
		{Type: "repository", Name: "shared/lib", Actions: token.Pull | token.Push},
	}
	ext := &fakeAuthorizer{grant: []token.Scope{
		{Type: "repository", Name: "shared/lib", Actions: token.Pull | token.Delete},
		{Type: "repository", Name: "not/asked", Actions: token.Every},
		{Type: "registry", Name: "catalog", Actions: token.Every},
	}}
	p.authorizers = []namedAuthorizer{{ext, "fake"}}
	got := p.authorize(ctx, p.Current(), devs, testService, "192.0.2.1", requested)
	want := []token.Scope{
		{Type: "repository", Name: "devs/app", Actions: token.Pull | token.Push},
		{Type: "repository", Name: "shared/lib", Actions: token.Pull},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v, want %v: the union of rules and authorizer, within what was asked", got, want)
	}
	if ext.got.Service != testService || ext.got.ClientIP != "192.0.2.1" || ext.got.Identity.Name != "bob" || len(ext.got.Scopes) != 2 {
		t.Fatalf("the authorizer was asked %+v", ext.got)
	}

	ext.err = errors.New("timeout")
	got = p.authorize(ctx, p.Current(), devs, testService, "", requested)
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("a failing authorizer must grant nothing, the rules still work: got %v", got)
	}
	if logs.FilterMessage("authorizer failed; it grants nothing").Len() != 1 {
		t.Fatalf("log: %+v", logs.All())
	}
}

// A directory's user gets no refresh token: a password changed there
// could not revoke it. The policy's own users still do.
func TestNoRefreshTokenForExternalUsers(t *testing.T) {
	h := refreshHandler(t)
	h.policy.authenticators = []namedAuthenticator{{&fakeSource{user: "dir-user", password: "dir-pw"}, "fake"}}
	w := get(t, h, "service="+testService+"&offline_token=true", basic("dir-user", "dir-pw"))
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if rt := refreshTokenOf(t, w); rt != "" {
		t.Fatal("a directory user got a refresh token")
	}
	if rt := refreshTokenOf(t, get(t, h, "service="+testService+"&offline_token=true", basic("alice", "alice-pw"))); rt == "" {
		t.Fatal("the policy's own user got no refresh token")
	}
}

// A deny rule limits what authorizers grant too: deny is final.
func TestDenyLimitsAuthorizers(t *testing.T) {
	p, _ := chainPolicy(t)
	rules, _, err := policy.Compile(policy.Config{
		Users: []policy.User{{Name: "zz", Password: mustHash(t, "zz-pw")}},
		Rules: []policy.Rule{
			{Effect: "allow", Subjects: []string{"everyone"}, Actions: []string{"pull"}, Resources: []string{"**"}},
			{Effect: "deny", Subjects: []string{"anonymous"}, Actions: []string{"*"}, Resources: []string{"secret/**"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	everything := &fakeAuthorizer{grant: []token.Scope{
		{Type: "repository", Name: "secret/x", Actions: token.Every},
		{Type: "repository", Name: "open/x", Actions: token.Every},
	}}
	p.authorizers = []namedAuthorizer{{everything, "generous"}}
	got := p.authorize(context.Background(), rules, Identity{}, testService, "", []token.Scope{
		{Type: "repository", Name: "secret/x", Actions: token.Every},
		{Type: "repository", Name: "open/x", Actions: token.Pull | token.Push},
	})
	if len(got) != 1 || got[0].Name != "open/x" || got[0].Actions != token.Pull|token.Push {
		t.Fatalf("got %v: the deny on secret/** must hold against the authorizer, open/x gets what it grants", got)
	}
}

// Names no Basic header could carry are refused before any source is
// asked: an HTTP service would read "bob:x" as bob with a longer password.
func TestLoginNamesWithColons(t *testing.T) {
	src := &fakeSource{user: "bob:x", password: "y"}
	p, _ := chainPolicy(t, src)
	for _, name := range []string{"bob:x", "bob\x00", "bob\nx"} {
		if _, err := p.login(context.Background(), p.Current(), "", name, "y"); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%q: got %v", name, err)
		}
	}
	if src.calls != 0 {
		t.Fatalf("the source was asked %d times", src.calls)
	}
}

func mustHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// The static authenticator and rules authorizer modules: the policy's own
// kind of users and rules, placed in the order of sources.
func TestStaticAndRulesModules(t *testing.T) {
	static := &StaticAuthenticator{Users: []policy.User{
		{Name: "breakglass", Password: mustHash(t, "glass-pw")},
		{Name: "alice", Password: mustHash(t, "other-pw")},
	}}
	if err := static.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	rules := &RulesAuthorizer{Rules: []policy.Rule{
		{Effect: "allow", Subjects: []string{"user:breakglass"}, Actions: []string{"*"}, Resources: []string{"**"}},
		{Effect: "deny", Subjects: []string{"user:breakglass"}, Actions: []string{"delete"}, Resources: []string{"prod/**"}},
	}}
	if err := rules.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	dir := &fakeSource{user: "dana", password: "dana-pw"}
	p, _ := chainPolicy(t, dir, static)
	p.authorizers = []namedAuthorizer{{rules, "rules"}}
	ctx := context.Background()

	id, err := p.login(ctx, p.Current(), "", "breakglass", "glass-pw")
	if err != nil || id.Name != "breakglass" {
		t.Fatalf("breakglass after the directory: %+v, %v", id, err)
	}
	if _, err := p.login(ctx, p.Current(), "", "breakglass", "wrong"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a wrong password: %v", err)
	}
	if _, err := p.login(ctx, p.Current(), "", "alice", "other-pw"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("the policy's own alice decides before the module's: %v", err)
	}
	if _, err := p.login(ctx, p.Current(), "", "nobody", "x"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a name no source has: %v", err)
	}
	got := p.authorize(ctx, p.Current(), id, testService, "", []token.Scope{
		{Type: "repository", Name: "prod/app", Actions: token.Every},
		{Type: "repository", Name: "dev/app", Actions: token.Pull | token.Delete},
	})
	if len(got) != 2 || got[0].Actions != token.Pull|token.Push || got[1].Actions != token.Pull|token.Delete {
		t.Fatalf("got %v: the module's deny limits its own allow", got)
	}
	for _, bad := range []any{&StaticAuthenticator{}, &RulesAuthorizer{}, &RulesAuthorizer{Rules: []policy.Rule{{Effect: "allow"}}}} {
		if err := bad.(caddy.Provisioner).Provision(caddy.Context{}); err == nil {
			t.Errorf("%T %+v: provisioned", bad, bad)
		}
	}
}
