package registryauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/regauth/caddy-registry-auth/policy"
)

// tokenOf returns the token, issued_at and expires_in of a 200 answer.
func tokenOf(t *testing.T, w interface{ Result() *http.Response }) (raw, issuedAt string, expiresIn int64) {
	t.Helper()
	var resp tokenResponse
	r := w.Result()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("status %d", r.StatusCode)
	}
	if err := json.NewDecoder(r.Body).Decode(&resp); err != nil {
		t.Fatal(err)
	}
	return resp.Token, resp.IssuedAt, resp.ExpiresIn
}

// The token endpoint reuses the token it signed for the same subject,
// service and grant, answering with that token's own issued_at and
// expires_in; every other request gets its own.
func TestTokenEndpointReusesTokens(t *testing.T) {
	h := newTestHandler(t)
	q := "service=" + testService + "&scope=repository:alice/x:pull,push"
	first, iat1, exp1 := tokenOf(t, get(t, h, q, basic("alice", "alice-pw")))
	time.Sleep(1100 * time.Millisecond) // a fresh token would have a later issued_at
	again, iat2, exp2 := tokenOf(t, get(t, h, q, basic("alice", "alice-pw")))
	if again != first || iat2 != iat1 || exp2 != exp1 || exp1 != 300 {
		t.Fatalf("reuse: same token %v, issued_at %s/%s, expires_in %d/%d", again == first, iat1, iat2, exp1, exp2)
	}
	for name, other := range map[string]string{
		"another grant":   "service=" + testService + "&scope=repository:alice/x:pull",
		"another service": "service=other.test&scope=repository:alice/x:pull,push",
	} {
		if tok, _, _ := tokenOf(t, get(t, h, other, basic("alice", "alice-pw"))); tok == first {
			t.Errorf("%s got the same token", name)
		}
	}
	if tok, _, _ := tokenOf(t, get(t, h, q)); tok == first {
		t.Error("anonymous got alice's token")
	}
}

// A reused token never carries more than a fresh decision would grant:
// the decision is made on every request, and only its exact grant is
// looked up.
func TestReusedTokensFollowEveryDecision(t *testing.T) {
	q := "service=" + testService + "&scope=repository:alice/x:pull,push"
	t.Run("a reload that takes push away", func(t *testing.T) {
		h := newTestHandler(t)
		grantOf(t, h, get(t, h, q, basic("alice", "alice-pw")))
		narrower, _, err := policy.Compile(policy.Config{
			Users: []policy.User{{Name: "alice", Password: storedHashes["alice-pw"]}},
			Rules: []policy.Rule{{Effect: "allow", Subjects: []string{"user:alice"}, Actions: []string{"pull"}, Resources: []string{"alice/**"}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		h.policy.current.Store(narrower)
		if got := accessString(grantOf(t, h, get(t, h, q, basic("alice", "alice-pw")))); got != "repository:alice/x:pull" {
			t.Fatalf("after the reload: %s", got)
		}
	})
	t.Run("a new password", func(t *testing.T) {
		h := newTestHandler(t)
		grantOf(t, h, get(t, h, q, basic("alice", "alice-pw")))
		changed, _, err := policy.Compile(policy.Config{Users: []policy.User{{Name: "alice", Password: mustHash(t, "new-pw")}}})
		if err != nil {
			t.Fatal(err)
		}
		h.policy.current.Store(changed)
		wantError(t, get(t, h, q, basic("alice", "alice-pw")), http.StatusUnauthorized, "UNAUTHORIZED")
	})
	t.Run("a revoked refresh token", func(t *testing.T) {
		h := refreshHandler(t)
		h.policy.storage = &certmagic.FileStorage{Path: t.TempDir()}
		rt := refreshTokenOf(t, get(t, h, "service="+testService+"&offline_token=true", basic("alice", "alice-pw")))
		form := url.Values{"grant_type": {"refresh_token"}, "service": {testService}, "refresh_token": {rt}, "scope": {"repository:alice/x:pull,push"}}
		grantOf(t, h, post(t, h, form))
		if _, err := updateRevocations(context.Background(), h.policy.storage, h.policy.Name, func(r *Revocations) { r.AllBefore = time.Now() }); err != nil {
			t.Fatal(err)
		}
		wantError(t, post(t, h, form), http.StatusUnauthorized, "UNAUTHORIZED")
	})
}

// A changed key set (a rotation, an emergency) ends reuse, even when the
// key id stays the same, as it does with an operator's key_id.
func TestReuseEndsWithTheKeySet(t *testing.T) {
	h := newTestHandler(t)
	p := h.policy
	now := time.Unix(1_800_000_000, 0)
	first, err := p.mint(p.Current(), Identity{Name: "alice"}, testService, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := p.mint(p.Current(), Identity{Name: "alice"}, testService, nil, now); again.raw != first.raw {
		t.Fatal("not reused under the same key set")
	}
	if err := p.Signer.Use(p.Signer.Keys()); err != nil {
		t.Fatal(err)
	}
	if after, _ := p.mint(p.Current(), Identity{Name: "alice"}, testService, nil, now); after.raw == first.raw {
		t.Fatal("reused a token signed before the key set changed")
	}
}

// Reuse stops while max(60 s, half the lifetime) is still left; with a
// lifetime of a minute nothing is reused.
func TestReuseEndsBeforeExpiry(t *testing.T) {
	for _, lifetime := range []time.Duration{time.Minute, 90 * time.Second, 5 * time.Minute, time.Hour} {
		h := newTestHandler(t)
		p := h.policy
		p.Lifetime = lifetime
		now := time.Unix(1_800_000_000, 0)
		first, err := p.mint(p.Current(), Identity{Name: "alice"}, testService, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		lastReuse := now.Add(lifetime - max(minReuseLeft, lifetime/2) - time.Second)
		if m, _ := p.mint(p.Current(), Identity{Name: "alice"}, testService, nil, lastReuse); lifetime > time.Minute && m.raw != first.raw {
			t.Errorf("lifetime %s: not reused %s after issue", lifetime, lastReuse.Sub(now))
		}
		if m, _ := p.mint(p.Current(), Identity{Name: "alice"}, testService, nil, lastReuse.Add(time.Second)); m.raw == first.raw {
			t.Errorf("lifetime %s: reused with %s left", lifetime, time.Unix(first.exp, 0).Sub(lastReuse.Add(time.Second)))
		}
		if lifetime == time.Minute && p.minted.Len() != 0 {
			t.Errorf("lifetime 1m: %d tokens kept for reuse", p.minted.Len())
		}
	}
}
