package registryauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddyserver/certmagic"
	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

func refreshHandler(t *testing.T) *TokenHandler {
	t.Helper()
	h := newTestHandler(t)
	h.policy.refreshLifetime = DefaultRefreshLifetime
	return h
}

func refreshTokenOf(t *testing.T, w interface{ Result() *http.Response }) string {
	t.Helper()
	var resp struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(w.Result().Body).Decode(&resp); err != nil {
		t.Fatal(err)
	}
	return resp.RefreshToken
}

func TestRefreshTokens(t *testing.T) {
	h := refreshHandler(t)
	svc := "service=" + testService

	// What docker login sends.
	w := get(t, h, svc+"&offline_token=true&client_id=docker&account=alice", basic("alice", "alice-pw"))
	rt := refreshTokenOf(t, w)
	if rt == "" {
		t.Fatal("no refresh token for offline_token=true")
	}
	if refreshTokenOf(t, get(t, h, svc, basic("alice", "alice-pw"))) != "" {
		t.Fatal("a refresh token without offline_token=true")
	}
	if refreshTokenOf(t, get(t, h, svc+"&offline_token=true")) != "" {
		t.Fatal("a refresh token for anonymous")
	}

	// The refresh token carries no access and is for no service.
	c, err := h.policy.Signer.Verify(rt, "test-issuer", []string{token.RefreshAudience(testService)}, time.Now())
	if err != nil || c.Kind != token.KindRefresh || len(c.Access) != 0 || c.Subject != "alice" || c.Fingerprint == "" {
		t.Fatalf("refresh claims %+v, %v", c, err)
	}
	if _, err := h.policy.Signer.Verify(rt, "test-issuer", []string{testService}, time.Now()); err == nil {
		t.Fatal("a refresh token verifies as an access token for the service")
	}
	// No certificate chain: it must fit a Basic header (containerd).
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(rt, ".")[0])
	if strings.Contains(string(header), "x5c") || len(rt) > 1024 {
		t.Fatalf("refresh token of %d bytes, header %s", len(rt), header)
	}

	refresh := func(rt, service string, scopes ...string) *httptest.ResponseRecorder {
		form := url.Values{"grant_type": {"refresh_token"}, "service": {service}, "client_id": {"docker"}, "refresh_token": {rt}, "scope": scopes}
		return post(t, h, form)
	}
	t.Run("refresh grant gives an access token and the same refresh token", func(t *testing.T) {
		w := refresh(rt, testService, "repository:alice/x:pull,push repository:lib/y:pull,push")
		body := w.Body.String()
		claims := grantOf(t, h, w)
		if got := accessString(claims); got != "repository:alice/x:pull,push repository:lib/y:pull" || claims.Subject != "alice" {
			t.Fatalf("access %q for %q", got, claims.Subject)
		}
		if !strings.Contains(body, `"refresh_token":"`+rt+`"`) {
			t.Fatal("the refresh token did not come back unchanged")
		}
	})
	t.Run("containerd's GET fallback: empty user, refresh token as password", func(t *testing.T) {
		c := grantOf(t, h, get(t, h, svc+"&scope=repository:alice/x:pull", basic("", rt)))
		if accessString(c) != "repository:alice/x:pull" || c.Subject != "alice" {
			t.Fatalf("claims %+v", c)
		}
	})
	t.Run("password grant with access_type=offline", func(t *testing.T) {
		w := post(t, h, url.Values{"grant_type": {"password"}, "service": {testService}, "username": {"alice"}, "password": {"alice-pw"}, "access_type": {"offline"}})
		if refreshTokenOf(t, w) == "" {
			t.Fatal("no refresh token")
		}
	})
	t.Run("another configured service refuses it", func(t *testing.T) {
		wantError(t, refresh(rt, "other.test"), http.StatusUnauthorized, "UNAUTHORIZED")
	})
	t.Run("an unknown service is a bad request", func(t *testing.T) {
		wantError(t, refresh(rt, "evil.test"), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("an access token is not a refresh token", func(t *testing.T) {
		access := grantOf(t, h, get(t, h, svc, basic("alice", "alice-pw")))
		raw, _ := h.policy.Signer.Sign(access)
		wantError(t, refresh(raw, testService), http.StatusUnauthorized, "UNAUTHORIZED")
	})
	t.Run("a new password revokes it", func(t *testing.T) {
		h2 := refreshHandler(t)
		h2.policy.Signer = h.policy.Signer
		newHash, _ := bcrypt.GenerateFromPassword([]byte("new-pw"), bcrypt.MinCost)
		rules, _, err := policy.Compile(policy.Config{Users: []policy.User{{Name: "alice", Password: string(newHash)}},
			Rules: []policy.Rule{{Effect: "allow", Subjects: []string{"user:alice"}, Actions: []string{"pull"}, Resources: []string{"**"}}}})
		if err != nil {
			t.Fatal(err)
		}
		h2.policy.current.Store(rules)
		wantError(t, post(t, h2, url.Values{"grant_type": {"refresh_token"}, "service": {testService}, "refresh_token": {rt}}), http.StatusUnauthorized, "UNAUTHORIZED")
		// A deleted user too.
		rules, _, _ = policy.Compile(policy.Config{Users: []policy.User{{Name: "bob", Password: string(newHash)}}})
		h2.policy.current.Store(rules)
		wantError(t, post(t, h2, url.Values{"grant_type": {"refresh_token"}, "service": {testService}, "refresh_token": {rt}}), http.StatusUnauthorized, "UNAUTHORIZED")
	})
	t.Run("the proxy refuses it as a bearer token", func(t *testing.T) {
		f := newTestProxy(t)
		f.h.policy.Signer = h.policy.Signer
		w := f.do(t, http.MethodGet, "/v2/alice/x/manifests/v1", "Bearer "+rt)
		if w.Code != http.StatusUnauthorized || f.up.calls != 0 {
			t.Fatalf("status %d, forwarded %d", w.Code, f.up.calls)
		}
	})
}

func TestRevocations(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	r := Revocations{Users: map[string]time.Time{"alice": t0}}
	if !r.revoked("alice", t0.Add(-time.Second)) || r.revoked("alice", t0) || r.revoked("bob", t0.Add(-time.Hour)) {
		t.Fatal("per-user revocation")
	}
	r.AllBefore = t0.Add(time.Hour)
	if !r.revoked("bob", t0) || r.revoked("bob", t0.Add(time.Hour)) {
		t.Fatal("revocation of everyone")
	}
}

func TestValidPolicyName(t *testing.T) {
	for name, want := range map[string]bool{"default": true, "ci-2.prod_x": true, "": false, "../x": false, "a/b": false, ".hidden": false, "sp ace": false} {
		if validPolicyName(name) != want {
			t.Errorf("validPolicyName(%q) = %v", name, !want)
		}
	}
}

// Defect 3: a revocation cuts off the refresh tokens issued strictly
// before it; one issued after it in the same second stays valid (before,
// the cutoff was rounded up to the next second, so a docker login right
// after a revocation was born revoked).
func TestRevocationBoundaryWithinASecond(t *testing.T) {
	h := refreshHandler(t)
	p := h.policy
	p.storage = &certmagic.FileStorage{Path: t.TempDir()}
	snap := p.Current()
	second := time.Unix(1_800_000_000, 0)
	issue := func(at time.Time) string {
		t.Helper()
		rt, err := p.issueRefresh(snap, "alice", testService, at)
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	before := issue(second.Add(400 * time.Millisecond))
	cutoff := second.Add(500 * time.Millisecond)
	after := issue(second.Add(600 * time.Millisecond))
	if _, err := updateRevocations(context.Background(), p.storage, p.Name, func(r *Revocations) {
		r.Users = map[string]time.Time{"alice": cutoff}
	}); err != nil {
		t.Fatal(err)
	}
	check := func(rt string) error {
		_, err := p.refreshIdentity(snap, rt, testService, second.Add(time.Second))
		return err
	}
	if err := check(before); !errors.Is(err, errRefreshRefused) {
		t.Fatalf("issued 100 ms before the revocation: %v", err)
	}
	if err := check(after); err != nil {
		t.Fatalf("issued 100 ms after the revocation, same second: %v", err)
	}
	// A token without the nanoseconds (issued before this change) counts
	// from the start of its second: revoked if that is before the cutoff.
	c := token.NewClaims(p.Issuer, "alice", token.RefreshAudience(testService), time.Hour, second.Add(600*time.Millisecond), nil)
	c.Kind = token.KindRefresh
	c.Fingerprint, _ = snap.Users().Fingerprint("alice", p.Signer.Secret())
	legacy, err := p.Signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(legacy); !errors.Is(err, errRefreshRefused) {
		t.Fatalf("a whole-second token from the revocation's second: %v", err)
	}
}
