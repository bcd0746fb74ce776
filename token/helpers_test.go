package token_test

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/regauth/caddy-registry-auth/token"
)

// testKey is a generated key and its self-signed certificate. Keys are
// cached per algorithm family: RSA generation is slow on a shared machine.
type testKey struct {
	key  crypto.Signer
	cert *x509.Certificate
}

var (
	keyMu    sync.Mutex
	keyCache = map[string]testKey{}
)

// genKey returns the cached key for alg ("RS384" and "RS512" share the RSA
// key of "RS256").
func genKey(tb testing.TB, alg string) (crypto.Signer, *x509.Certificate) {
	tb.Helper()
	family := alg
	if strings.HasPrefix(alg, "RS") {
		family = "RS256"
	}
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := keyCache[family]; ok {
		return k.key, k.cert
	}
	key, cert, err := token.GenerateKey(family, "test "+family, time.Now())
	if err != nil {
		tb.Fatalf("GenerateKey(%s): %v", family, err)
	}
	keyCache[family] = testKey{key, cert}
	return key, cert
}

// freshKey generates a key that is not cached: "another key".
func freshKey(tb testing.TB, alg string) (crypto.Signer, *x509.Certificate) {
	tb.Helper()
	key, cert, err := token.GenerateKey(alg, "other", time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return key, cert
}

func newSigner(tb testing.TB, alg string, opts token.SignerOptions) *token.Signer {
	tb.Helper()
	key, cert := genKey(tb, alg)
	if opts.Algorithm == "" && strings.HasPrefix(alg, "RS") {
		opts.Algorithm = alg
	}
	s, err := token.NewSigner(key, []*x509.Certificate{cert}, opts)
	if err != nil {
		tb.Fatalf("NewSigner(%s): %v", alg, err)
	}
	return s
}

// decodePart decodes one base64url JWS part as JSON, numbers kept as
// json.Number so that their literal form can be checked.
func decodePart(tb testing.TB, part string) map[string]any {
	tb.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		tb.Fatalf("part %q is not unpadded base64url: %v", part, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("part is not a JSON object: %v: %s", err, raw)
	}
	return m
}

func splitJWS(tb testing.TB, raw string) (header, payload map[string]any) {
	tb.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts", len(parts))
	}
	if strings.Contains(raw, "=") {
		tb.Fatalf("token has base64 padding: %s", raw)
	}
	return decodePart(tb, parts[0]), decodePart(tb, parts[1])
}

// craft builds a compact JWS from literal header and payload JSON, signed
// with key by method (nil method: empty signature, as "alg":"none" has).
func craft(tb testing.TB, header, payload string, method jwt.SigningMethod, key any) string {
	tb.Helper()
	signing := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	if method == nil {
		return signing + "."
	}
	sig, err := method.Sign(signing, key)
	if err != nil {
		tb.Fatalf("signing crafted token: %v", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}
