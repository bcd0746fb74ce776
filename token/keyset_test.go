package token_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/regauth/caddy-registry-auth/token"
)

// keyOf makes a signing Key of a fresh key for alg.
func keyOf(tb testing.TB, alg string, opts token.SignerOptions) (*token.Key, crypto.Signer) {
	tb.Helper()
	priv, cert := freshKey(tb, alg)
	opts.Algorithm = alg
	k, err := token.NewKey(priv, []*x509.Certificate{cert}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return k, priv
}

// verifyOnly is k without its private half.
func verifyOnly(tb testing.TB, k *token.Key, opts token.SignerOptions) *token.Key {
	tb.Helper()
	opts.Algorithm = k.Algorithm()
	v, err := token.NewVerifyKey(k.Certificates(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	if v.CanSign() {
		tb.Fatal("a key made from its certificate can sign")
	}
	return v
}

func signedBy(tb testing.TB, k *token.Key, c *token.Claims) string {
	tb.Helper()
	s, err := token.NewKeySetSigner(token.KeySet{Signing: k, Secret: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := s.Sign(c)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

var secret = bytes.Repeat([]byte{7}, 32)

// TestKeySet: one key signs; tokens of every key of the set verify, each
// against its own key and algorithm; a key that leaves the set stops
// verifying; only published keys are in the bundle and the JWKS.
func TestKeySet(t *testing.T) {
	now := time.Now()
	signing, _ := keyOf(t, "ES256", token.SignerOptions{})
	staged, _ := keyOf(t, "RS256", token.SignerOptions{})
	retired, _ := keyOf(t, "ES384", token.SignerOptions{})
	stranger, _ := keyOf(t, "ES256", token.SignerOptions{})
	set := token.KeySet{Signing: signing, Published: []*token.Key{staged}, Retired: []*token.Key{verifyOnly(t, retired, token.SignerOptions{})}, Secret: secret}
	s, err := token.NewKeySetSigner(set)
	if err != nil {
		t.Fatal(err)
	}
	claims := func() *token.Claims {
		return token.NewClaims(testIssuer, "alice", testAudience, 5*time.Minute, now, sampleAccess())
	}
	raw, err := s.Sign(claims())
	if err != nil {
		t.Fatal(err)
	}
	if hdr, _ := splitJWS(t, raw); hdr["kid"] != signing.KeyID() || hdr["alg"] != "ES256" || s.KeyID() != signing.KeyID() || s.Algorithm() != "ES256" {
		t.Fatalf("header %v: not the signing key's", hdr)
	}
	for name, k := range map[string]*token.Key{"signing": signing, "staged": staged, "retired": retired} {
		if _, err := s.Verify(signedBy(t, k, claims()), testIssuer, []string{testAudience}, now); err != nil {
			t.Errorf("a token of the %s key: %v", name, err)
		}
	}
	if _, err := s.Verify(signedBy(t, stranger, claims()), testIssuer, []string{testAudience}, now); err == nil {
		t.Error("a token of a key outside the set verified")
	}
	// Registries no longer trust a retired key, and its access tokens
	// expired before it was retired: the proxy lets none of them pass.
	for name, k := range map[string]*token.Key{"signing": signing, "staged": staged} {
		if _, err := s.VerifyAccess(signedBy(t, k, claims()), testIssuer, []string{testAudience}, now); err != nil {
			t.Errorf("an access token of the %s key: %v", name, err)
		}
	}
	if _, err := s.VerifyAccess(signedBy(t, retired, claims()), testIssuer, []string{testAudience}, now); err == nil {
		t.Error("an access token of the retired key passed VerifyAccess")
	}
	if !bytes.Equal(s.Secret(), secret) {
		t.Error("the secret is not the set's")
	}

	bundle, err := token.ParseCertificatesPEM(s.CertificatesPEM())
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle) != 2 || !bundle[0].Equal(signing.Certificates()[0]) || !bundle[1].Equal(staged.Certificates()[0]) {
		t.Fatalf("bundle of %d certificates: want the signing key's then the staged key's", len(bundle))
	}
	jwks, _ := s.JWKS()
	var doc struct {
		Keys []struct{ Kid, Alg, Kty string }
	}
	if err := json.Unmarshal(jwks, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 2 || doc.Keys[0].Kid != signing.KeyID() || doc.Keys[1].Kid != staged.KeyID() || doc.Keys[1].Alg != "RS256" {
		t.Fatalf("JWKS %s", jwks)
	}

	// The retired key leaves the set: its tokens stop verifying, and the
	// generation tells caches of verified tokens.
	old := signedBy(t, retired, claims())
	gen := s.Generation()
	if err := s.Use(token.KeySet{Signing: signing, Published: []*token.Key{staged}, Secret: secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(old, testIssuer, []string{testAudience}, now); err == nil {
		t.Error("a token of a key that left the set still verifies")
	}
	if s.Generation() == gen {
		t.Error("the generation did not change with the key set")
	}
}

// TestKeySetPinsAlgorithmPerKey: a token is checked against the key its
// kid names, with that key's one algorithm, whatever the other keys'.
func TestKeySetPinsAlgorithmPerKey(t *testing.T) {
	now := time.Now()
	ec, ecPriv := keyOf(t, "ES256", token.SignerOptions{})
	rsa, rsaPriv := keyOf(t, "RS256", token.SignerOptions{})
	// Another RSA key signs RS384, so RS384 is an algorithm of the set:
	// only the pin per key refuses RS384 under the RS256 key's kid.
	rsa384, _ := keyOf(t, "RS384", token.SignerOptions{})
	s, err := token.NewKeySetSigner(token.KeySet{Signing: ec, Published: []*token.Key{rsa, rsa384}, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,"exp":%d,"nbf":%d,"iat":%d,"jti":"x","access":[]}`,
		testIssuer, testAudience, now.Unix()+300, now.Unix(), now.Unix())
	hdr := func(alg, kid string) string { return fmt.Sprintf(`{"alg":%q,"typ":"JWT","kid":%q}`, alg, kid) }
	tests := []struct {
		name string
		raw  string
		ok   bool
	}{
		{"RSA key, its kid, RS256", craft(t, hdr("RS256", rsa.KeyID()), payload, jwt.SigningMethodRS256, rsaPriv), true},
		{"EC key, its kid, ES256", craft(t, hdr("ES256", ec.KeyID()), payload, jwt.SigningMethodES256, ecPriv), true},
		{"no kid, ES256 by the EC key", craft(t, `{"alg":"ES256","typ":"JWT"}`, payload, jwt.SigningMethodES256, ecPriv), true},
		{"no kid, RS256 by the RSA key", craft(t, `{"alg":"RS256","typ":"JWT"}`, payload, jwt.SigningMethodRS256, rsaPriv), true},
		{"RSA key, its kid, RS384", craft(t, hdr("RS384", rsa.KeyID()), payload, jwt.SigningMethodRS384, rsaPriv), false},
		{"RSA key, its kid, PS256", craft(t, hdr("PS256", rsa.KeyID()), payload, jwt.SigningMethodPS256, rsaPriv), false},
		{"RSA signature under the EC key's kid", craft(t, hdr("RS256", ec.KeyID()), payload, jwt.SigningMethodRS256, rsaPriv), false},
		{"EC signature under the RSA key's kid", craft(t, hdr("ES256", rsa.KeyID()), payload, jwt.SigningMethodES256, ecPriv), false},
		{"our signature, unknown kid", craft(t, hdr("ES256", "not-a-key"), payload, jwt.SigningMethodES256, ecPriv), false},
		{"our signature, kid not a string", craft(t, `{"alg":"ES256","typ":"JWT","kid":1}`, payload, jwt.SigningMethodES256, ecPriv), false},
		{"HS256 keyed with a kid", craft(t, hdr("HS256", ec.KeyID()), payload, jwt.SigningMethodHS256, []byte(ec.KeyID())), false},
		{"no kid, an algorithm of no key", craft(t, `{"alg":"ES384","typ":"JWT"}`, payload, jwt.SigningMethodES256, ecPriv), false},
	}
	for _, tt := range tests {
		_, err := s.Verify(tt.raw, testIssuer, []string{testAudience}, now)
		if (err == nil) != tt.ok {
			t.Errorf("%s: accepted %v, want %v (%v)", tt.name, err == nil, tt.ok, err)
		}
	}
}

// TestKeySetFindsKeyAfterHeaderModeChange: a token signed in x5c mode
// (libtrust kid) verifies once the same key is used in kid mode (3.x
// thumbprint), and the reverse.
func TestKeySetFindsKeyAfterHeaderModeChange(t *testing.T) {
	now := time.Now()
	priv, cert := freshKey(t, "ES256")
	chain := []*x509.Certificate{cert}
	x5c, err := token.NewKey(priv, chain, token.SignerOptions{Header: token.HeaderX5C})
	if err != nil {
		t.Fatal(err)
	}
	kid, err := token.NewKey(priv, chain, token.SignerOptions{Header: token.HeaderKID})
	if err != nil {
		t.Fatal(err)
	}
	if x5c.KeyID() == kid.KeyID() {
		t.Fatal("the two modes name the key alike: the test proves nothing")
	}
	c := token.NewClaims(testIssuer, "alice", testAudience, time.Minute, now, nil)
	for _, pair := range [][2]*token.Key{{x5c, kid}, {kid, x5c}} {
		s, _ := token.NewKeySetSigner(token.KeySet{Signing: pair[1], Secret: secret})
		if _, err := s.Verify(signedBy(t, pair[0], c), testIssuer, []string{testAudience}, now); err != nil {
			t.Errorf("kid %s under a set naming it %s: %v", pair[0].KeyID(), pair[1].KeyID(), err)
		}
	}
}

// TestKeySetRefuses: a set needs a key that can sign and a secret, and
// holds each key once.
func TestKeySetRefuses(t *testing.T) {
	k, _ := keyOf(t, "ES256", token.SignerOptions{})
	other, _ := keyOf(t, "ES256", token.SignerOptions{})
	for name, set := range map[string]token.KeySet{
		"no signing key":            {Published: []*token.Key{k}, Secret: secret},
		"a verify-only signing key": {Signing: verifyOnly(t, k, token.SignerOptions{}), Secret: secret},
		"no secret":                 {Signing: k},
		"a key twice":               {Signing: k, Published: []*token.Key{other}, Retired: []*token.Key{verifyOnly(t, k, token.SignerOptions{Header: token.HeaderKID})}, Secret: secret},
	} {
		if _, err := token.NewKeySetSigner(set); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s, _ := token.NewKeySetSigner(token.KeySet{Signing: k, Secret: secret})
	if err := s.Use(token.KeySet{Secret: secret}); err == nil || s.KeyID() != k.KeyID() {
		t.Errorf("a refused Use changed the signer (%v)", err)
	}
	if _, err := token.NewKey(nil, k.Certificates(), token.SignerOptions{}); err == nil {
		t.Error("NewKey without a private key")
	}
}

// TestKeySetSwapUnderLoad: tokens are signed and verified while the set
// swaps its two keys' roles (a promotion, back and forth): each token is
// made by one set's signing key, and both sets accept both keys, so none
// may fail. Run with -race.
func TestKeySetSwapUnderLoad(t *testing.T) {
	a, _ := keyOf(t, "ES256", token.SignerOptions{})
	b, _ := keyOf(t, "ES256", token.SignerOptions{})
	sets := []token.KeySet{
		{Signing: a, Published: []*token.Key{b}, Secret: secret},
		{Signing: b, Published: []*token.Key{a}, Secret: secret},
	}
	s, _ := token.NewKeySetSigner(sets[0])
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Use(sets[i%2]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	seen := map[string]bool{}
	var mu sync.Mutex
	for range 4 {
		wg.Go(func() {
			for range 200 {
				raw, err := s.Sign(token.NewClaims(testIssuer, "alice", testAudience, time.Minute, time.Now(), nil))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Verify(raw, testIssuer, []string{testAudience}, time.Now()); err != nil {
					t.Errorf("a token of the swapping set: %v", err)
					return
				}
				hdr, _ := splitJWS(t, raw)
				mu.Lock()
				seen[hdr["kid"].(string)] = true
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	if len(seen) == 0 {
		t.Fatal("no token was made")
	}
}

// TestNewSignerSecretIsDerived: a one-key signer's refresh secret is the
// one derived from its key, what every version before key sets used, so
// refresh tokens issued then keep their binding.
func TestNewSignerSecretIsDerived(t *testing.T) {
	priv, cert := genKey(t, "ES256")
	s, err := token.NewSigner(priv, []*x509.Certificate{cert}, token.SignerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := token.DeriveSecret(priv)
	if err != nil || !bytes.Equal(s.Secret(), want) || len(want) != 32 {
		t.Fatalf("secret %x, derived %x (%v)", s.Secret(), want, err)
	}
	other, _ := freshKey(t, "ES256")
	if o, _ := token.DeriveSecret(other); bytes.Equal(o, want) {
		t.Fatal("two keys derive the same secret")
	}
}
