package oidc

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// verifierFor checks tokens of ti for the audience registry.test, with a
// refetch interval of interval.
func verifierFor(ti *testIssuer, interval time.Duration) *Verifier {
	return &Verifier{Issuer: ti.URL, Audience: "registry.test", MaxAge: 24 * time.Hour,
		Keys: NewKeys(ti.source(), interval, 5*time.Second)}
}

func wantInvalid(t *testing.T, v *Verifier, raw string, now time.Time, reason string) {
	t.Helper()
	_, err := v.Verify(context.Background(), raw, now)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want a refusal (%s)", err, reason)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Fatalf("refusal %q does not say %q", err, reason)
	}
	if raw != "" && strings.Contains(err.Error(), raw) {
		t.Fatal("the refusal repeats the token")
	}
}

// verifyFixture is an issuer with one RSA key, a verifier of its tokens
// and a token maker.
func verifyFixture(t *testing.T) (key testKey, ti *testIssuer, v *Verifier, with func(func(map[string]any)) string, now time.Time) {
	key = newRSAKey(t, "k1", 0)
	ti = newTestIssuer(t, key)
	v = verifierFor(ti, time.Minute)
	now = time.Now()
	with = func(change func(c map[string]any)) string {
		c := ti.claims(now)
		change(c)
		return key.sign(t, c)
	}
	return
}

func TestVerify(t *testing.T) {
	_, _, v, with, now := verifyFixture(t)
	for _, tc := range []struct {
		name   string
		change func(c map[string]any)
		reason string // "" when the token is good
	}{
		{"a good token", func(map[string]any) {}, ""},
		{"an audience list that contains ours", func(c map[string]any) { c["aud"] = []string{"x", "registry.test"} }, ""},
		{"expired within the leeway", func(c map[string]any) { c["exp"] = now.Add(-50 * time.Second).Unix() }, ""},
		{"expired beyond the leeway", func(c map[string]any) { c["exp"] = now.Add(-61 * time.Second).Unix() }, "expired"},
		{"nbf in the future", func(c map[string]any) { c["nbf"] = now.Add(2 * time.Minute).Unix() }, "not valid yet"},
		{"iat in the future", func(c map[string]any) { c["iat"] = now.Add(2 * time.Minute).Unix() }, "future"},
		{"older than the maximum age", func(c map[string]any) {
			c["iat"] = now.Add(-25 * time.Hour).Unix()
			c["nbf"] = c["iat"]
		}, "maximum token age"},
		{"wrong audience", func(c map[string]any) { c["aud"] = "https://github.com/acme" }, `audience "https://github.com/acme"`},
		{"no audience", func(c map[string]any) { delete(c, "aud") }, "audience"},
		{"wrong issuer", func(c map[string]any) { c["iss"] = c["iss"].(string) + "/" }, "issuer"},
		{"no exp", func(c map[string]any) { delete(c, "exp") }, "no exp"},
		{"no iat", func(c map[string]any) { delete(c, "iat") }, "no iat"},
		{"no sub", func(c map[string]any) { delete(c, "sub") }, "no sub"},
		{"too large", func(c map[string]any) { c["pad"] = strings.Repeat("x", MaxTokenSize) }, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := with(tc.change)
			if tc.reason != "" {
				wantInvalid(t, v, raw, now, tc.reason)
				return
			}
			tok, err := v.Verify(context.Background(), raw, now)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Subject != "repo:acme/app:ref:refs/heads/main" || tok.Claims["repository"] != "acme/app" || tok.Expiry.Unix() != int64(tok.Claims["exp"].(float64)) || tok.IssuedAt.Unix() != now.Unix() {
				t.Fatalf("%+v", tok)
			}
		})
	}
}

// Signatures: never "none" or a shared secret, never a key of the wrong
// type or another issuer's, one JSON object of claims.
func TestVerifySignatures(t *testing.T) {
	key, ti, v, _, now := verifyFixture(t)
	t.Run("alg none", func(t *testing.T) {
		header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"k1"}`))
		payload, _ := json.Marshal(ti.claims(now))
		wantInvalid(t, v, header+"."+base64.RawURLEncoding.EncodeToString(payload)+".", now, "invalid token")
	})
	t.Run("HS256 keyed with the issuer's public key", func(t *testing.T) {
		der, _ := x509.MarshalPKIXPublicKey(key.Private.Public())
		for _, secret := range [][]byte{der, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})} {
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := jwt.Signed(s).Claims(ti.claims(now)).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			wantInvalid(t, v, raw, now, "unexpected signature algorithm")
		}
	})
	t.Run("a key of the right id but another issuer's", func(t *testing.T) {
		wantInvalid(t, v, newRSAKey(t, "k1", 1).sign(t, ti.claims(now)), now, "bad signature")
	})
	t.Run("an EC signature where the key is RSA", func(t *testing.T) {
		wantInvalid(t, v, newECKey(t, "k1").sign(t, ti.claims(now)), now, "no key of the issuer fits")
	})
	t.Run("a payload that is no JSON object", func(t *testing.T) {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key.Private}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		jws, _ := s.Sign([]byte(`["not", "claims"]`))
		raw, _ := jws.CompactSerialize()
		wantInvalid(t, v, raw, now, "invalid token")
	})
	t.Run("garbage", func(t *testing.T) {
		for _, raw := range []string{"", "a.b.c", "eyJ.eyJ.x", "not a token"} {
			wantInvalid(t, v, raw, now, "invalid token")
		}
	})
}

// A key the issuer rotates in is picked up by a refetch, without a
// restart; a flood of tokens naming unknown keys costs at most one fetch
// per interval.
func TestVerifyKeyRotation(t *testing.T) {
	old, next := newRSAKey(t, "old", 0), newECKey(t, "next")
	ti := newTestIssuer(t, old)
	const interval = 300 * time.Millisecond
	v := verifierFor(ti, interval)
	now := time.Now()
	if _, err := v.Verify(context.Background(), old.sign(t, ti.claims(now)), now); err != nil {
		t.Fatal(err)
	}
	if n := ti.keyFetches(); n != 1 {
		t.Fatalf("%d fetches for the first token, want 1", n)
	}
	// Unknown key ids within the interval: no fetch at all.
	for i := range 50 {
		wantInvalid(t, v, newECKey(t, fmt.Sprintf("forged-%d", i)).sign(t, ti.claims(now)), now, "does not publish")
	}
	if n := ti.keyFetches(); n != 1 {
		t.Fatalf("%d fetches after 50 unknown keys within the interval, want still 1", n)
	}

	ti.publish(t, old, next)
	time.Sleep(interval)
	// A flood of tokens with the new key at once: they share one fetch.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), next.sign(t, ti.claims(now)), now); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := ti.keyFetches(); n != 2 {
		t.Fatalf("%d fetches after the rotation, want 2", n)
	}

	// The old key withdrawn: refused once the keys are fetched again.
	ti.publish(t, next)
	if err := v.Keys.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, v, old.sign(t, ti.claims(now)), now, "does not publish")
}

// An issuer that cannot be reached: tokens cannot be checked (not
// refused as invalid), and once it is back the keys are fetched again.
func TestVerifyKeysUnavailable(t *testing.T) {
	key := newRSAKey(t, "k1", 0)
	ti := newTestIssuer(t, key)
	ti.setDown(true)
	const interval = 200 * time.Millisecond
	v := verifierFor(ti, interval)
	now := time.Now()
	raw := key.sign(t, ti.claims(now))
	_, err := v.Verify(context.Background(), raw, now)
	if !errors.Is(err, ErrKeysUnavailable) || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "502") {
		t.Fatalf("issuer down: %v, want keys unavailable with the reason", err)
	}
	// Within the interval: answered at once, no fetch.
	before := v.Keys.Fetches()
	if _, err := v.Verify(context.Background(), raw, now); !errors.Is(err, ErrKeysUnavailable) || v.Keys.Fetches() != before {
		t.Fatalf("second try: %v, %d fetches", err, v.Keys.Fetches()-before)
	}
	ti.setDown(false)
	time.Sleep(interval)
	if _, err := v.Verify(context.Background(), raw, now); err != nil {
		t.Fatalf("issuer back: %v", err)
	}
	// Down again: the keys it gave stay.
	ti.setDown(true)
	if err := v.Keys.Fetch(context.Background()); err == nil {
		t.Fatal("a fetch from an issuer that is down succeeded")
	}
	if _, err := v.Verify(context.Background(), raw, now); err != nil {
		t.Fatalf("known keys were dropped by a failed fetch: %v", err)
	}
}

func TestPeek(t *testing.T) {
	key := newRSAKey(t, "k1", 0)
	now := time.Now()
	raw := key.sign(t, map[string]any{"iss": "https://i", "sub": "s", "exp": now.Unix()})
	p, ok := Peek(raw)
	if !ok || p.Issuer != "https://i" || p.Subject != "s" || p.Expiry.Unix() != now.Unix() {
		t.Fatalf("%+v %v", p, ok)
	}
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	forged, _ := jwt.Signed(hs).Claims(map[string]any{"iss": "https://i"}).Serialize()
	if p, ok := Peek(forged); !ok || p.Issuer != "https://i" {
		t.Fatal("an HS256 token is not peeked: it would not be routed to its issuer's authenticator to be refused")
	}
	odd := key.sign(t, map[string]any{"iss": "https://i", "sub": 7, "exp": "soon"})
	if p, ok := Peek(odd); !ok || p.Issuer != "https://i" || p.Subject != "" || !p.Expiry.IsZero() {
		t.Fatalf("a token with a sub and exp of the wrong type: %+v, %v; want it routed by its iss", p, ok)
	}
	for _, pw := range []string{"", "hunter2", "eyJhbGciOiJSUzI1NiJ9.e30", "eyJ.a.b", raw + "x.y", strings.Repeat("eyJ.", 5000)} {
		if _, ok := Peek(pw); ok {
			t.Fatalf("%q peeked as a token", pw)
		}
	}
}

func TestParseJWKS(t *testing.T) {
	rsaPub, ec := newRSAKey(t, "r", 0), newECKey(t, "e")
	set := func(keys ...string) []byte { return []byte(`{"keys":[` + strings.Join(keys, ",") + `]}`) }
	pub := func(k testKey, use string) string {
		data, _ := json.Marshal(jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.ID, Use: use})
		return string(data)
	}
	priv, _ := json.Marshal(jose.JSONWebKey{Key: ec.Private, KeyID: "private"})
	keys, err := ParseJWKS(set(pub(rsaPub, "sig"), pub(ec, ""), pub(ec, "enc"), string(priv), `{"kty":"oct","k":"c2VjcmV0"}`, `{"kty":"nonsense"}`, `7`))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].KeyID != "r" || keys[1].KeyID != "e" {
		t.Fatalf("kept %d keys: %+v; want the RSA and the EC signing keys", len(keys), keys)
	}
	for _, bad := range [][]byte{nil, []byte(`{}`), []byte(`{"keys":[]}`), set(pub(ec, "enc")), set(string(priv)), []byte(`[`)} {
		if _, err := ParseJWKS(bad); err == nil {
			t.Fatalf("%s: accepted", bad)
		}
	}
}

func TestDiscoveryChecksIssuerAndJWKSURI(t *testing.T) {
	ti := newTestIssuer(t, newRSAKey(t, "k1", 0))
	if _, err := DiscoveredKeys(ti.Client(), ti.URL+"/", func(*url.URL) error { return nil })(context.Background()); err == nil || !strings.Contains(err.Error(), "names the issuer") {
		t.Fatalf("an issuer spelled otherwise than its document: %v", err)
	}
	refuse := func(*url.URL) error { return errors.New("plain http") }
	if _, err := DiscoveredKeys(ti.Client(), ti.URL, refuse)(context.Background()); err == nil || !strings.Contains(err.Error(), "jwks_uri: plain http") {
		t.Fatalf("a jwks_uri the check refuses: %v", err)
	}
}
