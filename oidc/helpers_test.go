package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testKey is one of a test issuer's signing keys.
type testKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

var (
	rsaOnce sync.Once
	rsaKeys []*rsa.PrivateKey
)

// rsaKey returns one of a few RSA keys made once per run (they are slow
// to make).
func rsaKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys = append(rsaKeys, k)
		}
	})
	return rsaKeys[i]
}

func newRSAKey(t testing.TB, kid string, i int) testKey {
	return testKey{kid: kid, alg: jose.RS256, priv: rsaKey(t, i)}
}

func newECKey(t testing.TB, kid string) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: jose.ES256, priv: k}
}

// sign makes a compact JWS of claims with the key, its kid in the header.
func (k testKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.kid != "" {
		opts = opts.WithHeader("kid", k.kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// jwks is the public key set of keys.
func jwks(t testing.TB, keys ...testKey) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// testIssuer serves a discovery document and a key set that tests can
// change or take down, and counts the key set's fetches.
type testIssuer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []byte
	down    bool
	fetches int
}

func newTestIssuer(t testing.TB, keys ...testKey) *testIssuer {
	t.Helper()
	ti := &testIssuer{keys: jwks(t, keys...)}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if ti.isDown() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": ti.URL, "jwks_uri": ti.URL + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		ti.mu.Lock()
		ti.fetches++
		keys, down := ti.keys, ti.down
		ti.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		_, _ = w.Write(keys)
	})
	ti.Server = httptest.NewServer(mux)
	t.Cleanup(ti.Close)
	return ti
}

func (ti *testIssuer) isDown() bool {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.down
}

func (ti *testIssuer) setDown(down bool) {
	ti.mu.Lock()
	ti.down = down
	ti.mu.Unlock()
}

func (ti *testIssuer) publish(t testing.TB, keys ...testKey) {
	data := jwks(t, keys...)
	ti.mu.Lock()
	ti.keys = data
	ti.mu.Unlock()
}

func (ti *testIssuer) keyFetches() int {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.fetches
}

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
