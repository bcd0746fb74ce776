// Package oidctest is a small OpenID Connect issuer for tests: a
// discovery document, a key set, and tokens signed on request. The unit
// tests serve it with httptest; the end-to-end tests run it as a process
// of its own. It is never part of a Caddy build.
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Key is a signing key with its key id and algorithm.
type Key struct {
	ID        string
	Algorithm jose.SignatureAlgorithm
	Private   crypto.Signer
}

// RSAKey makes a 2048-bit RS256 key.
func RSAKey(id string) (Key, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	return Key{id, jose.RS256, k}, err
}

// ECKey makes a P-256 ES256 key.
func ECKey(id string) (Key, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return Key{id, jose.ES256, k}, err
}

// Sign makes a compact JWS of claims, the key id in its header.
func (k Key) Sign(claims any) (string, error) {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.ID != "" {
		opts = opts.WithHeader("kid", k.ID)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Algorithm, Key: k.Private}, opts)
	if err != nil {
		return "", err
	}
	return jwt.Signed(s).Claims(claims).Serialize()
}

// JWKS is the public key set of keys.
func JWKS(keys ...Key) ([]byte, error) {
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.ID, Algorithm: string(k.Algorithm), Use: "sig"})
	}
	return json.Marshal(set)
}

// Issuer serves <URL>/.well-known/openid-configuration and <URL>/keys
// for one issuer URL, and signs tokens. Its keys can be changed and it can
// be taken down (502) while it runs.
type Issuer struct {
	mu         sync.Mutex
	url        string
	signing    Key
	published  []byte
	down       bool
	keyFetches int
}

// NewIssuer is an issuer at url that signs with key and publishes it.
func NewIssuer(url string, key Key) (*Issuer, error) {
	i := &Issuer{url: url}
	return i, i.Rotate(key, key)
}

// URL is the issuer's URL, its tokens' iss.
func (i *Issuer) URL() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.url
}

// SetURL changes the issuer's URL (once the server's address is known).
func (i *Issuer) SetURL(u string) {
	i.mu.Lock()
	i.url = u
	i.mu.Unlock()
}

// Rotate signs with signing from now on and publishes the keys.
func (i *Issuer) Rotate(signing Key, published ...Key) error {
	data, err := JWKS(published...)
	if err != nil {
		return err
	}
	i.mu.Lock()
	i.signing, i.published = signing, data
	i.mu.Unlock()
	return nil
}

// SetDown makes the issuer answer 502 to everything, or not.
func (i *Issuer) SetDown(down bool) {
	i.mu.Lock()
	i.down = down
	i.mu.Unlock()
}

// KeyFetches is how many times the key set was served.
func (i *Issuer) KeyFetches() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.keyFetches
}

// Sign signs claims with the current key.
func (i *Issuer) Sign(claims any) (string, error) {
	i.mu.Lock()
	k := i.signing
	i.mu.Unlock()
	return k.Sign(claims)
}

// ServeHTTP answers the discovery document and the key set under the
// issuer's path; anything else is 404.
func (i *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	issuer, down, keys := i.url, i.down, i.published
	u, _ := url.Parse(issuer)
	base := strings.TrimSuffix(u.Path, "/")
	if r.URL.Path == base+"/keys" && !down {
		i.keyFetches++
	}
	i.mu.Unlock()
	switch {
	case down:
		http.Error(w, "the issuer is down", http.StatusBadGateway)
	case r.URL.Path == base+"/.well-known/openid-configuration":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": issuer, "jwks_uri": strings.TrimSuffix(issuer, "/") + "/keys",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	case r.URL.Path == base+"/keys":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(keys)
	default:
		http.NotFound(w, r)
	}
}
