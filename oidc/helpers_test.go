package oidc

import (
	"context"
	"crypto/rsa"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/regauth/caddy-registry-auth/internal/oidctest"
)

// testKey is one of a test issuer's signing keys.
type testKey struct{ oidctest.Key }

var (
	rsaOnce sync.Once
	rsaKeys []*rsa.PrivateKey
)

// newRSAKey is an RS256 key with id kid, the i-th of a few RSA keys made
// once per run (they are slow to make).
func newRSAKey(t testing.TB, kid string, i int) testKey {
	t.Helper()
	rsaOnce.Do(func() {
		for range 3 {
			k, err := oidctest.RSAKey("")
			if err != nil {
				panic(err)
			}
			rsaKeys = append(rsaKeys, k.Private.(*rsa.PrivateKey))
		}
	})
	return testKey{oidctest.Key{ID: kid, Algorithm: jose.RS256, Private: rsaKeys[i]}}
}

func newECKey(t testing.TB, kid string) testKey {
	t.Helper()
	k, err := oidctest.ECKey(kid)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{k}
}

// sign makes a compact JWS of claims with the key.
func (k testKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	raw, err := k.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// jwks is the public key set of keys.
func jwks(t testing.TB, keys ...testKey) []byte {
	t.Helper()
	data, err := oidctest.JWKS(plain(keys)...)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func plain(keys []testKey) []oidctest.Key {
	out := make([]oidctest.Key, len(keys))
	for i, k := range keys {
		out[i] = k.Key
	}
	return out
}

// testIssuer is an oidctest issuer served over HTTP, which tests can
// change or take down.
type testIssuer struct {
	*httptest.Server
	iss *oidctest.Issuer
}

func newTestIssuer(t testing.TB, keys ...testKey) *testIssuer {
	t.Helper()
	iss, err := oidctest.NewIssuer("", keys[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	ti := &testIssuer{Server: httptest.NewServer(iss), iss: iss}
	iss.SetURL(ti.URL)
	ti.publish(t, keys...)
	t.Cleanup(ti.Close)
	return ti
}

func (ti *testIssuer) setDown(down bool) { ti.iss.SetDown(down) }

func (ti *testIssuer) publish(t testing.TB, keys ...testKey) {
	t.Helper()
	if err := ti.iss.Rotate(keys[0].Key, plain(keys)...); err != nil {
		t.Fatal(err)
	}
}

func (ti *testIssuer) keyFetches() int { return ti.iss.KeyFetches() }

// source is the issuer's discovered key source.
func (ti *testIssuer) source() func(context.Context) ([]byte, error) {
	return DiscoveredKeys(ti.Client(), ti.URL, func(*url.URL) error { return nil })
}

// claims are a valid token's claims for the test issuer at now.
func (ti *testIssuer) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": ti.URL, "sub": "repo:acme/app:ref:refs/heads/main", "aud": "registry.test",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"repository": "acme/app", "repository_owner": "acme",
	}
}
