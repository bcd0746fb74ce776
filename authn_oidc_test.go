package registryauth

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/regauth/caddy-registry-auth/internal/oidctest"
	"github.com/regauth/caddy-registry-auth/policy"
)

// oidcIssuer is a test issuer served over HTTPS, with the file of the CA
// that its certificate chains to.
type oidcIssuer struct {
	*oidctest.Issuer
	srv    *httptest.Server
	caFile string
}

func startOIDCIssuer(t testing.TB) *oidcIssuer {
	t.Helper()
	key, err := oidctest.RSAKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := oidctest.NewIssuer("", key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(iss)
	t.Cleanup(srv.Close)
	iss.SetURL(srv.URL)
	caFile := filepath.Join(t.TempDir(), "issuer-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &oidcIssuer{iss, srv, caFile}
}

// githubClaims are shaped like a GitHub Actions job's token (its
// documented claims), for the repository acme/app.
func (i *oidcIssuer) githubClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss": i.URL(), "aud": "registry.example.com", "sub": "repo:acme/app:ref:refs/heads/main",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"jti": "example-id", "ref": "refs/heads/main", "ref_type": "branch", "sha": "example-sha",
		"repository": "acme/app", "repository_owner": "acme", "repository_id": "74", "repository_owner_id": "65",
		"repository_visibility": "private", "actor": "octocat", "actor_id": "12", "workflow": "build",
		"event_name": "push", "run_id": "1", "run_number": "10", "run_attempt": "1", "runner_environment": "github-hosted",
		"job_workflow_ref": "acme/app/.github/workflows/build.yml@refs/heads/main",
	}
}

func (i *oidcIssuer) token(t testing.TB, claims map[string]any) string {
	t.Helper()
	raw, err := i.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// githubAuthenticator is the Caddyfile block, against i.
func (i *oidcIssuer) githubAuthenticator() *OIDCAuthenticator {
	return &OIDCAuthenticator{
		Issuer: i.URL(), Audience: "registry.example.com", Username: "gh/{claims.repository}",
		Groups:  []string{"{claims.repository_owner}", "{claims.environment}"},
		Require: map[string]string{"repository_owner": "acme"}, CAFile: i.caFile, UserName: "ci",
		JWKSRefetchInterval: caddy.Duration(100 * time.Millisecond),
	}
}

// provisioned provisions a with a log tests can read; Cleanup runs when t
// ends.
func provisioned(t *testing.T, a *OIDCAuthenticator) *observer.ObservedLogs {
	t.Helper()
	if err := a.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Cleanup() })
	core, logs := observer.New(zap.InfoLevel)
	a.logger = zap.New(core)
	return logs
}

func TestOIDCAuthenticator(t *testing.T) {
	i := startOIDCIssuer(t)
	a := i.githubAuthenticator()
	logs := provisioned(t, a)
	ctx := context.Background()
	now := time.Now()
	job := i.token(t, i.githubClaims(now))

	t.Run("claims its issuer's tokens only", func(t *testing.T) {
		c, ok := a.Claim(job)
		if !ok || c.Caller != i.URL()+" repo:acme/app:ref:refs/heads/main" || c.Expires.Unix() != now.Add(5*time.Minute).Unix() {
			t.Fatalf("%+v, %v", c, ok)
		}
		other := i.githubClaims(now)
		other["iss"] = "https://token.actions.githubusercontent.com"
		for _, pw := range []string{i.token(t, other), "a password", ""} {
			if _, ok := a.Claim(pw); ok {
				t.Fatalf("claimed %q", pw)
			}
		}
	})
	t.Run("not its business: another issuer's token, a password", func(t *testing.T) {
		other := i.githubClaims(now)
		other["iss"] = "https://elsewhere.example"
		for _, pw := range []string{i.token(t, other), "a password"} {
			if _, err := a.Authenticate(ctx, "ci", pw); !errors.Is(err, ErrUnknownUser) {
				t.Fatalf("%q: %v, want unknown user", pw, err)
			}
		}
	})
	t.Run("a job token maps to the templates", func(t *testing.T) {
		id, err := a.Authenticate(ctx, "ci", job)
		if err != nil {
			t.Fatal(err)
		}
		// No environment claim: that group is dropped.
		if id.Name != "gh/acme/app" || !slices.Equal(id.Groups, []string{"acme"}) {
			t.Fatalf("%+v", id)
		}
		o := id.Origin
		if o == nil || o.Issuer != i.URL() || o.Subject != "repo:acme/app:ref:refs/heads/main" || !o.RefreshUntil.Equal(time.Unix(now.Add(5*time.Minute).Unix(), 0).Add(time.Hour)) {
			t.Fatalf("origin %+v", o)
		}
		c := i.githubClaims(now)
		c["environment"] = "prod"
		if id, err := a.Authenticate(ctx, "ci", i.token(t, c)); err != nil || !slices.Equal(id.Groups, []string{"acme", "prod"}) {
			t.Fatalf("with an environment: %+v, %v", id, err)
		}
	})
	for _, tc := range []struct {
		name   string
		user   string
		change func(map[string]any)
		reason string
	}{
		{"another Basic user name", "someone", nil, `user name "someone", want "ci"`},
		{"a requirement that does not hold", "ci", func(c map[string]any) { c["repository_owner"] = "evil" }, `required claim repository_owner is "evil", not "acme"`},
		{"a required claim missing", "ci", func(c map[string]any) { delete(c, "repository_owner") }, "required claim repository_owner is missing"},
		{"the username's claim missing", "ci", func(c map[string]any) { delete(c, "repository") }, "username: claim repository is missing"},
		{"the username's claim not a string", "ci", func(c map[string]any) { c["repository"] = 74 }, "username: claim repository is a number"},
		{"a name that is no user name", "ci", func(c map[string]any) { c["repository"] = "acme:app" }, "username: user name"},
		{"expired", "ci", func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() }, "expired"},
		{"another audience", "ci", func(c map[string]any) { c["aud"] = "https://github.com/acme" }, "audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := i.githubClaims(now)
			if tc.change != nil {
				tc.change(c)
			}
			raw := i.token(t, c)
			before := logs.Len()
			if _, err := a.Authenticate(ctx, tc.user, raw); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("got %v, want bad credentials", err)
			}
			entries := logs.All()[before:]
			if len(entries) != 1 || entries[0].Message != "token refused" || !strings.Contains(entries[0].ContextMap()["reason"].(string), tc.reason) {
				t.Fatalf("log %+v, want a refusal saying %q", entries, tc.reason)
			}
			if strings.Contains(fmt.Sprint(entries[0].ContextMap()), raw) {
				t.Fatal("the log holds the token")
			}
		})
	}
}

// An issuer that cannot be reached at start does not fail the start: its
// tokens get "cannot answer" (503) until its keys are fetched, which
// happens as soon as it is back.
func TestOIDCIssuerUnreachableAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	key, _ := oidctest.RSAKey("k1")
	iss, _ := oidctest.NewIssuer("http://"+addr, key)
	a := &OIDCAuthenticator{Issuer: iss.URL(), Audience: "registry.example.com", Username: "gh/{claims.repository}",
		JWKSRefetchInterval: caddy.Duration(100 * time.Millisecond)}
	if err := a.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatalf("an unreachable issuer failed the provisioning: %v", err)
	}
	defer a.Cleanup() //nolint:errcheck
	now := time.Now()
	raw, _ := iss.Sign(map[string]any{"iss": iss.URL(), "aud": "registry.example.com", "sub": "s", "repository": "acme/app",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
	_, err = a.Authenticate(context.Background(), "ci", raw)
	if err == nil || errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), "not known yet") {
		t.Fatalf("issuer unreachable: %v, want an error that is no refusal", err)
	}
	// The background fetch keeps trying (1 s after the first failure).
	deadline := time.Now().Add(5 * time.Second)
	for a.verifier.Keys.Fetches() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d fetches in 5 s: the keys are not fetched again", a.verifier.Keys.Fetches())
		}
		time.Sleep(50 * time.Millisecond)
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: iss, ReadHeaderTimeout: time.Second}
	go srv.Serve(l) //nolint:errcheck
	defer srv.Close()
	time.Sleep(150 * time.Millisecond) // one refetch interval
	if id, err := a.Authenticate(context.Background(), "ci", raw); err != nil || id.Name != "gh/acme/app" {
		t.Fatalf("issuer back: %+v, %v", id, err)
	}
}

func TestOIDCConfigErrors(t *testing.T) {
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	good := func() *OIDCAuthenticator {
		return &OIDCAuthenticator{Issuer: "https://issuer.example", Audience: "r", Username: "gh/{claims.repository}"}
	}
	for _, tc := range []struct {
		name   string
		change func(*OIDCAuthenticator)
		want   string
	}{
		{"no issuer", func(a *OIDCAuthenticator) { a.Issuer = "" }, "issuer: want an absolute https URL"},
		{"plain http elsewhere than loopback", func(a *OIDCAuthenticator) { a.Issuer = "http://issuer.example" }, "issuer: plain http is allowed to a loopback address only"},
		{"another scheme", func(a *OIDCAuthenticator) { a.Issuer = "ftp://issuer.example" }, `issuer: scheme "ftp"`},
		{"no audience", func(a *OIDCAuthenticator) { a.Audience = "" }, "audience: required"},
		{"no username", func(a *OIDCAuthenticator) { a.Username = "" }, "username: required"},
		{"a username without prefix", func(a *OIDCAuthenticator) { a.Username = "{claims.repository}" }, "must start with a literal prefix"},
		{"a prefix without a slash", func(a *OIDCAuthenticator) { a.Username = "a{claims.x}" }, "must start with a literal prefix"},
		{"a prefix that is only a slash", func(a *OIDCAuthenticator) { a.Username = "/{claims.x}" }, "must start with a literal prefix"},
		{"a broken username", func(a *OIDCAuthenticator) { a.Username = "gh/{claims.repository" }, "username: template"},
		{"a broken group", func(a *OIDCAuthenticator) { a.Groups = []string{"ok", "{repository}"} }, "groups[1]: template"},
		{"a broken required claim", func(a *OIDCAuthenticator) { a.Require = map[string]string{"a..b": "x"} }, "require: claim path"},
		{"a user name with a colon", func(a *OIDCAuthenticator) { a.UserName = "c:i" }, "user_name:"},
		{"a negative duration", func(a *OIDCAuthenticator) { a.MaxTokenAge = -1 }, "max_token_age: negative"},
		{"a missing jwks_file", func(a *OIDCAuthenticator) { a.JWKSFile = "/nonexistent/jwks.json" }, "jwks_file: open /nonexistent/jwks.json"},
		{"a jwks_file without keys", func(a *OIDCAuthenticator) { a.JWKSFile = jwks }, "jwks_file: key set: none of its 0 keys"},
		{"a missing ca_file", func(a *OIDCAuthenticator) { a.CAFile = "/nonexistent/ca.pem" }, "ca_file:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := good()
			tc.change(a)
			err := a.Provision(caddy.Context{Context: context.Background()})
			defer a.Cleanup() //nolint:errcheck
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	a := good()
	a.Issuer = "http://127.0.0.1:1"
	if err := a.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatalf("plain http on loopback: %v", err)
	}
	_ = a.Cleanup()
}

// oidcPolicy is the token handler's policy (own users alice and admin, and
// a policy user named ci) with the github authenticator as an owner and
// rules for its names, refresh tokens on, revocations in storage.
func oidcPolicy(t *testing.T, i *oidcIssuer) (*TokenHandler, *OIDCAuthenticator) {
	t.Helper()
	h := refreshHandler(t)
	a := i.githubAuthenticator()
	provisioned(t, a)
	named := namedAuthenticator{a, "oidc"}
	h.policy.authenticators = append(h.policy.authenticators, named)
	if err := h.policy.addOwner(0, named, []byte(`{"issuer":"`+i.URL()+`"}`)); err != nil {
		t.Fatal(err)
	}
	h.policy.storage = &certmagic.FileStorage{Path: t.TempDir()}
	rules, _, err := policy.Compile(policy.Config{
		Users: []policy.User{{Name: "ci", Password: mustHash(t, "ci-password")}},
		Rules: []policy.Rule{
			{Effect: "allow", Subjects: []string{"user:gh/acme/app"}, Actions: []string{"pull", "push"}, Resources: []string{"acme/app", "acme/app/**"}},
			{Effect: "allow", Subjects: []string{"group:acme"}, Actions: []string{"pull"}, Resources: []string{"acme/**"}},
			{Effect: "allow", Subjects: []string{"user:ci"}, Actions: []string{"*"}, Resources: []string{"**"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.policy.current.Store(rules)
	return h, a
}

// A job token through the token endpoint: granted as the mapped name even
// though a policy user has the Basic user name, and `docker login` gets a
// refresh token bound to the issuer, subject, name and groups that lives
// until the token's exp plus the grace, and honours revocations.
func TestOIDCThroughTheTokenEndpoint(t *testing.T) {
	i := startOIDCIssuer(t)
	h, _ := oidcPolicy(t, i)
	now := time.Now()
	job := i.token(t, i.githubClaims(now))
	svc := "service=" + testService

	c := grantOf(t, h, get(t, h, svc+"&scope=repository:acme/app:pull,push&scope=repository:acme/lib:pull,push&scope=repository:other/x:pull", basic("ci", job)))
	if c.Subject != "gh/acme/app" || accessString(c) != "repository:acme/app:pull,push repository:acme/lib:pull" {
		t.Fatalf("granted %q to %q; want push to its own repository, pull by its group, nothing else", accessString(c), c.Subject)
	}
	// The policy user ci keeps her password; the token never reached her.
	if n := h.policy.Current().Users().Compares(); n != 0 {
		t.Fatalf("%d bcrypt compares for a job token", n)
	}

	w := get(t, h, svc+"&offline_token=true&client_id=docker&account=ci", basic("ci", job))
	rt := refreshTokenOf(t, w)
	if rt == "" {
		t.Fatal("docker login with a job token got no refresh token")
	}
	claims, err := h.policy.Signer.VerifyRefresh(rt, "test-issuer", testService, now)
	if err != nil {
		t.Fatal(err)
	}
	wantExp := now.Add(5*time.Minute).Unix() + int64(time.Hour/time.Second)
	if claims.Subject != "gh/acme/app" || claims.OriginIssuer != i.URL() || claims.OriginSubject != "repo:acme/app:ref:refs/heads/main" ||
		!slices.Equal(claims.Groups, []string{"acme"}) || claims.Expiry < wantExp-1 || claims.Expiry > wantExp+1 {
		t.Fatalf("refresh claims %+v; want exp about %d (the job token's exp + 1h)", claims, wantExp)
	}
	if claims.IssuedAtNano == 0 {
		t.Error("the refresh token has no issue time in nanoseconds: a revocation in the same second would refuse it")
	}
	refresh := func(h *TokenHandler) *httptest.ResponseRecorder {
		return post(t, h, url.Values{"grant_type": {"refresh_token"}, "service": {testService}, "refresh_token": {rt}, "scope": {"repository:acme/app:pull,push"}})
	}
	if c := grantOf(t, h, refresh(h)); c.Subject != "gh/acme/app" || accessString(c) != "repository:acme/app:pull,push" {
		t.Fatalf("refresh grant: %q for %q", accessString(c), c.Subject)
	}

	t.Run("the authenticator configured otherwise revokes it", func(t *testing.T) {
		h2, _ := oidcPolicy(t, i)
		h2.policy.Signer = h.policy.Signer
		h2.policy.owners[0].binding = []byte("another configuration")
		wantError(t, refresh(h2), http.StatusUnauthorized, "UNAUTHORIZED")
		h2.policy.owners = nil
		wantError(t, refresh(h2), http.StatusUnauthorized, "UNAUTHORIZED")
	})
	t.Run("revoked by user name", func(t *testing.T) {
		_, err := updateRevocations(context.Background(), h.policy.storage, h.policy.Name, func(r *Revocations) {
			r.Users = map[string]time.Time{"gh/acme/app": time.Now().Add(time.Second).Truncate(time.Second)}
		})
		if err != nil {
			t.Fatal(err)
		}
		wantError(t, refresh(h), http.StatusUnauthorized, "UNAUTHORIZED")
	})
	t.Run("no longer than the policy's refresh lifetime", func(t *testing.T) {
		h.policy.refreshLifetime = time.Minute
		rt := refreshTokenOf(t, get(t, h, svc+"&offline_token=true", basic("ci", job)))
		c, err := h.policy.Signer.VerifyRefresh(rt, "test-issuer", testService, now)
		if err != nil || c.Expiry-c.IssuedAt != 60 {
			t.Fatalf("%+v, %v; want a life of 60 s", c, err)
		}
	})
}

// BenchmarkOIDCLogin: a login with a job token through the whole login
// path, verified each time (credential cache off) and answered from the
// cache; and what having an oidc authenticator costs an ordinary cached
// password login (its Claim turns the password away).
func BenchmarkOIDCLogin(b *testing.B) {
	i := startOIDCIssuer(b)
	a := i.githubAuthenticator()
	if err := a.Provision(caddy.Context{Context: context.Background()}); err != nil {
		b.Fatal(err)
	}
	defer a.Cleanup() //nolint:errcheck
	a.logger = zap.NewNop()
	job := i.token(b, i.githubClaims(time.Now()))
	withOwner := func(p *Policy) *Policy {
		p.owners = []*ownedSource{{namedAuthenticator{a, "oidc"}, a, []byte("binding")}}
		return p
	}
	run := func(b *testing.B, p *Policy, user, password string) {
		if _, err := p.login(context.Background(), p.Current(), "", user, password); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := p.login(context.Background(), p.Current(), "", user, password); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("job token, verified", func(b *testing.B) {
		run(b, withOwner(cachedPolicy(b, nil, "pw")), "ci", job)
	})
	b.Run("job token, cached", func(b *testing.B) {
		run(b, withOwner(cachedPolicy(b, policy.NewCredentialCache(time.Hour, 100), "pw")), "ci", job)
	})
	b.Run("password, cached", func(b *testing.B) {
		run(b, cachedPolicy(b, policy.NewCredentialCache(time.Hour, 100), "pw"), "alice", "pw")
	})
	b.Run("password, cached, with an oidc authenticator", func(b *testing.B) {
		run(b, withOwner(cachedPolicy(b, policy.NewCredentialCache(time.Hour, 100), "pw")), "alice", "pw")
	})
}
