//lint:file-ignore SA1019 the tests rebuild key encodings from the raw big.Int coordinates on purpose, independently of the code under test.

package token_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/regauth/caddy-registry-auth/token"
)

const (
	testIssuer   = "test-issuer"
	testAudience = "registry.example.com"
)

var signAlgs = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512"}

func sampleAccess() []token.Access {
	return token.AccessClaim([]token.Scope{
		{Type: token.TypeRepository, Name: "localhost:5000/team/app", Actions: token.Pull | token.Push},
		{Type: token.TypeRegistry, Name: token.CatalogName, Actions: token.All},
	})
}

// TestSignVerifyRoundTrip: every supported algorithm signs a token its own
// Verify accepts with the same claims, and the header names that algorithm.
func TestSignVerifyRoundTrip(t *testing.T) {
	now := time.Now()
	for _, alg := range signAlgs {
		for _, mode := range []string{token.HeaderX5C, token.HeaderKID} {
			t.Run(alg+"/"+mode, func(t *testing.T) {
				s := newSigner(t, alg, token.SignerOptions{Header: mode})
				if s.Algorithm() != alg {
					t.Fatalf("Algorithm() = %s, want %s", s.Algorithm(), alg)
				}
				c := token.NewClaims(testIssuer, "alice", testAudience, 5*time.Minute, now, sampleAccess())
				raw, err := s.Sign(c)
				if err != nil {
					t.Fatal(err)
				}
				hdr, _ := splitJWS(t, raw)
				if hdr["alg"] != alg {
					t.Errorf("header alg = %v, want %s", hdr["alg"], alg)
				}
				got, err := s.Verify(raw, testIssuer, []string{"other", testAudience}, now)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if !reflect.DeepEqual(got, c) {
					t.Errorf("Verify returned %+v, want %+v", got, c)
				}
				// A standard JWT library with the public key agrees.
				if _, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return s.Certificates()[0].PublicKey, nil },
					jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(func() time.Time { return now })); err != nil {
					t.Errorf("golang-jwt refuses the token: %v", err)
				}
			})
		}
	}
}

// TestSignerDefaultAlgorithm: an empty Algorithm picks the key's natural one.
func TestSignerDefaultAlgorithm(t *testing.T) {
	for family, want := range map[string]string{"ES256": "ES256", "ES384": "ES384", "ES512": "ES512", "RS256": "RS256"} {
		key, cert := genKey(t, family)
		s, err := token.NewSigner(key, []*x509.Certificate{cert}, token.SignerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Algorithm() != want {
			t.Errorf("%s key: Algorithm() = %s, want %s", family, s.Algorithm(), want)
		}
	}
}

// TestHeaderX5C: the default header carries alg, typ JWT, the libtrust kid
// registry 2.8 wants, and x5c as standard (not URL) base64 DER, leaf first
// (SPEC-NOTES §4). It never carries key material a verifier could trust.
func TestHeaderX5C(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "ES512", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			key, cert := genKey(t, alg)
			for _, opts := range []token.SignerOptions{{}, {Header: token.HeaderX5C}} {
				s, err := token.NewSigner(key, []*x509.Certificate{cert}, opts)
				if err != nil {
					t.Fatal(err)
				}
				raw, err := s.Sign(token.NewClaims(testIssuer, "", testAudience, time.Minute, time.Now(), token.AccessClaim(nil)))
				if err != nil {
					t.Fatal(err)
				}
				hdr, _ := splitJWS(t, raw)
				wantKID, err := token.LibtrustKeyID(key.Public())
				if err != nil {
					t.Fatal(err)
				}
				if hdr["alg"] != alg || hdr["typ"] != "JWT" || hdr["kid"] != wantKID {
					t.Errorf("header %v; want alg %s, typ JWT, kid %s", hdr, alg, wantKID)
				}
				if s.KeyID() != wantKID {
					t.Errorf("KeyID() = %s, want %s", s.KeyID(), wantKID)
				}
				x5c := x5cOf(t, hdr)
				if len(x5c) != 1 || !x5c[0].Equal(cert) {
					t.Errorf("x5c does not hold exactly the certificate")
				}
				for _, k := range []string{"jwk", "jku", "x5u"} {
					if _, ok := hdr[k]; ok {
						t.Errorf("header carries %q", k)
					}
				}
				if len(hdr) != 4 {
					t.Errorf("header has unexpected fields: %v", hdr)
				}
			}
		})
	}
}

func x5cOf(t *testing.T, hdr map[string]any) []*x509.Certificate {
	t.Helper()
	list, ok := hdr["x5c"].([]any)
	if !ok {
		t.Fatalf("x5c is %T, want an array", hdr["x5c"])
	}
	var out []*x509.Certificate
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("x5c[%d] is %T", i, e)
		}
		// RFC 7515 §4.1.6: standard base64, not base64url.
		der, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			t.Fatalf("x5c[%d] is not standard base64: %v", i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("x5c[%d] is not a DER certificate: %v", i, err)
		}
		out = append(out, c)
	}
	return out
}

// TestHeaderX5CChain: with an intermediate, x5c lists the whole chain leaf
// first, and the kid is the leaf's key.
func TestHeaderX5CChain(t *testing.T) {
	caKey, caCert := freshKey(t, "ES256")
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, leafKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	s, err := token.NewSigner(leafKey, []*x509.Certificate{leaf, caCert}, token.SignerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Sign(token.NewClaims(testIssuer, "alice", testAudience, time.Minute, time.Now(), token.AccessClaim(nil)))
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := splitJWS(t, raw)
	x5c := x5cOf(t, hdr)
	if len(x5c) != 2 || !x5c[0].Equal(leaf) || !x5c[1].Equal(caCert) {
		t.Fatalf("x5c is not [leaf, ca]")
	}
	if kid, _ := token.LibtrustKeyID(leafKey.Public()); hdr["kid"] != kid {
		t.Errorf("kid %v is not the leaf's %s", hdr["kid"], kid)
	}
	// The chain verifies against the CA as a registry's rootcertbundle.
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	if _, err := x5c[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("leaf does not chain to the CA: %v", err)
	}
	// The leaf may not sign with the CA's key: the first cert is the key's.
	if _, err := token.NewSigner(leafKey, []*x509.Certificate{caCert, leaf}, token.SignerOptions{}); err == nil {
		t.Error("NewSigner accepted a chain whose first certificate is not the key's")
	}
	pemChain, err := token.ParseCertificatesPEM(s.CertificatesPEM())
	if err != nil || len(pemChain) != 2 || !pemChain[0].Equal(leaf) {
		t.Errorf("CertificatesPEM round trip: %v", err)
	}
}

// TestHeaderKID: kid-only mode carries no x5c and, by default, the
// distribution 3.x thumbprint; a custom kid (for a jwks file) overrides it
// in both modes.
func TestHeaderKID(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "ES512", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			key, _ := genKey(t, alg)
			s := newSigner(t, alg, token.SignerOptions{Header: token.HeaderKID})
			raw, err := s.Sign(token.NewClaims(testIssuer, "alice", testAudience, time.Minute, time.Now(), nil))
			if err != nil {
				t.Fatal(err)
			}
			hdr, _ := splitJWS(t, raw)
			want, err := token.DistributionThumbprint(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := hdr["x5c"]; ok {
				t.Error("kid mode carries x5c")
			}
			if hdr["kid"] != want || s.KeyID() != want || hdr["typ"] != "JWT" || hdr["alg"] != alg {
				t.Errorf("header %v; want kid %s", hdr, want)
			}
		})
	}
	for _, mode := range []string{token.HeaderKID, token.HeaderX5C} {
		s := newSigner(t, "ES256", token.SignerOptions{Header: mode, KeyID: "my-jwks-key"})
		raw, err := s.Sign(token.NewClaims(testIssuer, "alice", testAudience, time.Minute, time.Now(), nil))
		if err != nil {
			t.Fatal(err)
		}
		if hdr, _ := splitJWS(t, raw); hdr["kid"] != "my-jwks-key" || s.KeyID() != "my-jwks-key" {
			t.Errorf("%s mode with custom KeyID: header %v", mode, hdr)
		}
	}
}

// TestNewSignerRefuses: the certificate must hold the key's public half
// and the algorithm must fit the key (SPEC-NOTES §9: pin algorithms).
func TestNewSignerRefuses(t *testing.T) {
	ecKey, ecCert := genKey(t, "ES256")
	_, otherCert := freshKey(t, "ES256")
	rsaKey, rsaCert := genKey(t, "RS256")

	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		chain []*x509.Certificate
		opts  token.SignerOptions
	}{
		{"no certificate", nil, token.SignerOptions{}},
		{"certificate of another key", []*x509.Certificate{otherCert}, token.SignerOptions{}},
		{"RSA certificate for an EC key", []*x509.Certificate{rsaCert}, token.SignerOptions{}},
		{"P-256 with ES384", []*x509.Certificate{ecCert}, token.SignerOptions{Algorithm: "ES384"}},
		{"P-256 with ES512", []*x509.Certificate{ecCert}, token.SignerOptions{Algorithm: "ES512"}},
		{"P-256 with RS256", []*x509.Certificate{ecCert}, token.SignerOptions{Algorithm: "RS256"}},
		{"P-256 with HS256", []*x509.Certificate{ecCert}, token.SignerOptions{Algorithm: "HS256"}},
		{"P-256 with none", []*x509.Certificate{ecCert}, token.SignerOptions{Algorithm: "none"}},
		{"P-256 lower-case es256", []*x509.Certificate{ecCert}, token.SignerOptions{Algorithm: "es256"}},
		{"unknown header mode", []*x509.Certificate{ecCert}, token.SignerOptions{Header: "jwk"}},
	}
	for _, tt := range tests {
		if _, err := token.NewSigner(ecKey, tt.chain, tt.opts); err == nil {
			t.Errorf("%s: NewSigner accepted it", tt.name)
		}
	}
	for _, alg := range []string{"ES256", "PS256", "HS256", "none", "rs256", "RS1024"} {
		if _, err := token.NewSigner(rsaKey, []*x509.Certificate{rsaCert}, token.SignerOptions{Algorithm: alg}); err == nil {
			t.Errorf("RSA key with %s: NewSigner accepted it", alg)
		}
	}
	if _, err := token.NewSigner(rsaKey, []*x509.Certificate{ecCert}, token.SignerOptions{}); err == nil {
		t.Error("EC certificate for an RSA key: NewSigner accepted it")
	}
	if _, err := token.NewSigner(p224, []*x509.Certificate{selfSigned(t, p224)}, token.SignerOptions{}); err == nil {
		t.Error("P-224 key accepted (no JWS algorithm for it)")
	}
	if _, err := token.NewSigner(edPriv, []*x509.Certificate{selfSigned(t, edPriv)}, token.SignerOptions{}); err == nil {
		t.Error("Ed25519 key accepted (registry 2.8 cannot load it)")
	}
	if _, err := token.NewSigner(rsa1024, []*x509.Certificate{selfSigned(t, rsa1024)}, token.SignerOptions{}); err == nil {
		t.Error("1024-bit RSA key accepted")
	}
}

func selfSigned(t *testing.T, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClaimsWireFormat: the payload both registry families accept
// (SPEC-NOTES §4): aud a JSON string (v2.8 rejects an array), exp/nbf/iat
// JSON integers (floats are rejected), nbf and iat not in the future, sub
// "" for anonymous, access [] (not null) when nothing is granted.
func TestClaimsWireFormat(t *testing.T) {
	s := newSigner(t, "ES256", token.SignerOptions{})
	// A time with a fraction: the claims must still be whole seconds.
	now := time.Unix(1_700_000_000, 987_654_321)
	tests := []struct {
		name     string
		subject  string
		access   []token.Access
		lifetime time.Duration
		wantAcc  string
	}{
		{"anonymous, nothing granted", "", token.AccessClaim(nil), 5 * time.Minute, `[]`},
		{"user with grants", "alice", sampleAccess(), 90500 * time.Millisecond,
			`[{"type":"repository","name":"localhost:5000/team/app","actions":["pull","push"]},{"type":"registry","name":"catalog","actions":["*"]}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := s.Sign(token.NewClaims(testIssuer, tt.subject, testAudience, tt.lifetime, now, tt.access))
			if err != nil {
				t.Fatal(err)
			}
			_, p := splitJWS(t, raw)
			if aud, ok := p["aud"].(string); !ok || aud != testAudience {
				t.Errorf("aud = %#v, want the string %q", p["aud"], testAudience)
			}
			if sub, ok := p["sub"].(string); !ok || sub != tt.subject {
				t.Errorf("sub = %#v, want %q", p["sub"], tt.subject)
			}
			if p["iss"] != testIssuer {
				t.Errorf("iss = %#v", p["iss"])
			}
			times := map[string]int64{}
			for _, k := range []string{"exp", "nbf", "iat"} {
				n, ok := p[k].(json.Number)
				if !ok {
					t.Fatalf("%s = %#v, want a number", k, p[k])
				}
				if strings.ContainsAny(n.String(), ".eE") {
					t.Errorf("%s = %s is not a JSON integer", k, n)
				}
				v, err := n.Int64()
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				times[k] = v
			}
			if times["iat"] != now.Unix() || times["nbf"] != now.Unix() {
				t.Errorf("iat %d nbf %d, want %d (never in the future)", times["iat"], times["nbf"], now.Unix())
			}
			if got, want := times["exp"]-times["iat"], int64(tt.lifetime/time.Second); got != want {
				t.Errorf("exp - iat = %d, want %d", got, want)
			}
			if jti, _ := p["jti"].(string); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(jti) {
				t.Errorf("jti = %#v, want 32 hex digits", p["jti"])
			}
			// Compare as decoded JSON: "access" must be an array (never
			// null), equal to the expected one.
			var want any
			if err := json.Unmarshal([]byte(tt.wantAcc), &want); err != nil {
				t.Fatal(err)
			}
			if _, isArray := p["access"].([]any); !isArray || !reflect.DeepEqual(p["access"], want) {
				acc, _ := json.Marshal(p["access"])
				t.Errorf("access = %s, want %s", acc, tt.wantAcc)
			}
			for _, k := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"} {
				if _, ok := p[k]; !ok {
					t.Errorf("claim %q missing", k)
				}
			}
		})
	}
}

func TestNewClaimsAndRandomID(t *testing.T) {
	now := time.Unix(1_700_000_000, 999_999_999)
	c := token.NewClaims("iss", "bob", "aud", time.Hour, now, nil)
	if c.IssuedAt != 1_700_000_000 || c.NotBefore != c.IssuedAt || c.Expiry != c.IssuedAt+3600 {
		t.Errorf("times %d/%d/%d", c.IssuedAt, c.NotBefore, c.Expiry)
	}
	if c.Issuer != "iss" || c.Subject != "bob" || c.Audience != "aud" {
		t.Errorf("claims %+v", c)
	}
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := token.RandomID()
		if len(id) != 32 || seen[id] {
			t.Fatalf("RandomID %q (len %d, repeated %v)", id, len(id), seen[id])
		}
		seen[id] = true
	}
}

// TestVerifyRefuses: Verify pins the algorithm to our key and checks
// exp (required), nbf, iss and aud; key material inside the token is never
// used (SPEC-NOTES §9).
func TestVerifyRefuses(t *testing.T) {
	now := time.Now()
	s := newSigner(t, "ES256", token.SignerOptions{})
	key, cert := genKey(t, "ES256")
	otherKey, otherCert := freshKey(t, "ES256")
	rsaKey, _ := genKey(t, "RS256")

	iat := now.Unix()
	payload := func(extra string) string {
		return fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,"nbf":%d,"iat":%d,"jti":"x","access":[]%s}`, testIssuer, testAudience, iat, iat, extra)
	}
	valid := payload(fmt.Sprintf(`,"exp":%d`, iat+300))
	es256Header := `{"alg":"ES256","typ":"JWT"}`

	// Sanity: the crafting helper makes tokens Verify accepts.
	if _, err := s.Verify(craft(t, es256Header, valid, jwt.SigningMethodES256, key), testIssuer, []string{testAudience}, now); err != nil {
		t.Fatalf("crafted valid token refused: %v", err)
	}

	pkix, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})

	sign := func(c *token.Claims) string {
		raw, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	good := sign(token.NewClaims(testIssuer, "alice", testAudience, 5*time.Minute, now, nil))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(valid, `"access":[]`, `"access":[{"type":"repository","name":"x","actions":["push"]}]`, 1))) + "." + parts[2]
	otherX5C := fmt.Sprintf(`{"alg":"ES256","typ":"JWT","x5c":[%q]}`, base64.StdEncoding.EncodeToString(otherCert.Raw))
	otherPub := otherKey.Public().(*ecdsa.PublicKey)
	otherJWK := fmt.Sprintf(`{"alg":"ES256","typ":"JWT","jwk":{"kty":"EC","crv":"P-256","x":%q,"y":%q}}`,
		base64.RawURLEncoding.EncodeToString(otherPub.X.FillBytes(make([]byte, 32))),
		base64.RawURLEncoding.EncodeToString(otherPub.Y.FillBytes(make([]byte, 32))))

	tests := []struct {
		name      string
		raw       string
		issuer    string
		audiences []string
		at        time.Time
	}{
		{"alg none", craft(t, `{"alg":"none","typ":"JWT"}`, valid, nil, nil), testIssuer, []string{testAudience}, now},
		{"alg none with our signature", `eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.` + parts[1] + "." + parts[2], testIssuer, []string{testAudience}, now},
		{"HS256 keyed with the public key DER", craft(t, `{"alg":"HS256","typ":"JWT"}`, valid, jwt.SigningMethodHS256, pkix), testIssuer, []string{testAudience}, now},
		{"HS256 keyed with the public key PEM", craft(t, `{"alg":"HS256","typ":"JWT"}`, valid, jwt.SigningMethodHS256, pubPEM), testIssuer, []string{testAudience}, now},
		{"HS256 keyed with the certificate DER", craft(t, `{"alg":"HS256","typ":"JWT"}`, valid, jwt.SigningMethodHS256, cert.Raw), testIssuer, []string{testAudience}, now},
		{"HS256 keyed with the certificate PEM", craft(t, `{"alg":"HS256","typ":"JWT"}`, valid, jwt.SigningMethodHS256, certPEM), testIssuer, []string{testAudience}, now},
		{"signed by another key", craft(t, es256Header, valid, jwt.SigningMethodES256, otherKey), testIssuer, []string{testAudience}, now},
		{"another key named in x5c", craft(t, otherX5C, valid, jwt.SigningMethodES256, otherKey), testIssuer, []string{testAudience}, now},
		{"another key embedded as jwk", craft(t, otherJWK, valid, jwt.SigningMethodES256, otherKey), testIssuer, []string{testAudience}, now},
		{"RS256 by another (RSA) key", craft(t, `{"alg":"RS256","typ":"JWT"}`, valid, jwt.SigningMethodRS256, rsaKey), testIssuer, []string{testAudience}, now},
		{"ES384 header on an ES256 key", craft(t, `{"alg":"ES384","typ":"JWT"}`, valid, jwt.SigningMethodES256, key), testIssuer, []string{testAudience}, now},
		{"tampered payload", tampered, testIssuer, []string{testAudience}, now},
		{"expired", sign(token.NewClaims(testIssuer, "alice", testAudience, time.Minute, now.Add(-2*time.Minute), nil)), testIssuer, []string{testAudience}, now},
		{"expired (verified later)", good, testIssuer, []string{testAudience}, now.Add(6 * time.Minute)},
		{"not yet valid", sign(token.NewClaims(testIssuer, "alice", testAudience, time.Hour, now.Add(10*time.Minute), nil)), testIssuer, []string{testAudience}, now},
		{"wrong issuer", good, "other-issuer", []string{testAudience}, now},
		{"wrong audience", good, testIssuer, []string{"other.example.com"}, now},
		{"no audience accepted", good, testIssuer, nil, now},
		{"audience case differs", good, testIssuer, []string{strings.ToUpper(testAudience)}, now},
		{"missing exp", craft(t, es256Header, payload(""), jwt.SigningMethodES256, key), testIssuer, []string{testAudience}, now},
		{"exp zero", craft(t, es256Header, payload(`,"exp":0`), jwt.SigningMethodES256, key), testIssuer, []string{testAudience}, now},
		{"exp float", craft(t, es256Header, payload(fmt.Sprintf(`,"exp":%d.5`, iat+300)), jwt.SigningMethodES256, key), testIssuer, []string{testAudience}, now},
		{"exp string", craft(t, es256Header, payload(fmt.Sprintf(`,"exp":"%d"`, iat+300)), jwt.SigningMethodES256, key), testIssuer, []string{testAudience}, now},
		{"aud array", craft(t, es256Header, strings.Replace(valid, fmt.Sprintf(`"aud":%q`, testAudience), fmt.Sprintf(`"aud":[%q]`, testAudience), 1), jwt.SigningMethodES256, key), testIssuer, []string{testAudience}, now},
		{"garbage", "not.a.token", testIssuer, []string{testAudience}, now},
		{"empty", "", testIssuer, []string{testAudience}, now},
		{"two parts", parts[0] + "." + parts[1], testIssuer, []string{testAudience}, now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := s.Verify(tt.raw, tt.issuer, tt.audiences, tt.at); err == nil {
				t.Errorf("Verify accepted it: %+v", c)
			}
		})
	}
}

// TestVerifyPinsRSAAlgorithm: with an RSA key, RS384, RS512 and PS256
// tokens made by the very same key verify cryptographically; only the
// algorithm pin refuses them when the signer is RS256.
func TestVerifyPinsRSAAlgorithm(t *testing.T) {
	now := time.Now()
	s := newSigner(t, "RS256", token.SignerOptions{})
	key, _ := genKey(t, "RS256")
	payload := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,"exp":%d,"nbf":%d,"iat":%d,"jti":"x","access":[]}`,
		testIssuer, testAudience, now.Unix()+300, now.Unix(), now.Unix())
	if _, err := s.Verify(craft(t, `{"alg":"RS256","typ":"JWT"}`, payload, jwt.SigningMethodRS256, key), testIssuer, []string{testAudience}, now); err != nil {
		t.Fatalf("crafted RS256 token refused: %v", err)
	}
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodRS384, jwt.SigningMethodRS512, jwt.SigningMethodPS256} {
		raw := craft(t, fmt.Sprintf(`{"alg":%q,"typ":"JWT"}`, m.Alg()), payload, m, key)
		if _, err := s.Verify(raw, testIssuer, []string{testAudience}, now); err == nil {
			t.Errorf("RS256 signer accepted a %s token", m.Alg())
		}
	}
}

// TestVerifyEmptyIssuerIsNotAWildcard: Verify documents that it checks the
// issuer. golang-jwt's WithIssuer("") silently disables the check, so an
// empty configured issuer must not turn into "any issuer" (SPEC-NOTES §9:
// verify iss wherever we verify our own tokens).
func TestVerifyEmptyIssuerIsNotAWildcard(t *testing.T) {
	now := time.Now()
	s := newSigner(t, "ES256", token.SignerOptions{})
	raw, err := s.Sign(token.NewClaims("someone-else", "alice", testAudience, time.Minute, now, nil))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := s.Verify(raw, "", []string{testAudience}, now); err == nil {
		t.Errorf("Verify with expected issuer \"\" accepted a token issued by %q", c.Issuer)
	}
}

func BenchmarkSignES256(b *testing.B) {
	s := newSigner(b, "ES256", token.SignerOptions{})
	c := token.NewClaims(testIssuer, "alice", testAudience, 5*time.Minute, time.Now(), sampleAccess())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	s := newSigner(b, "ES256", token.SignerOptions{})
	now := time.Now()
	raw, err := s.Sign(token.NewClaims(testIssuer, "alice", testAudience, 5*time.Minute, now, sampleAccess()))
	if err != nil {
		b.Fatal(err)
	}
	aud := []string{testAudience}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(raw, testIssuer, aud, now); err != nil {
			b.Fatal(err)
		}
	}
}

// VerifyAccess never takes a refresh token, VerifyRefresh never an access
// token, whatever audiences the caller names.
func TestVerifyKinds(t *testing.T) {
	s := newSigner(t, "ES256", token.SignerOptions{})
	now := time.Now()
	access := token.NewClaims("iss", "alice", "svc", time.Minute, now, nil)
	refresh := token.NewClaims("iss", "alice", token.RefreshAudience("svc"), time.Hour, now, nil)
	refresh.Kind = token.KindRefresh
	anonymousRefresh := token.NewClaims("iss", "", token.RefreshAudience("svc"), time.Hour, now, nil)
	anonymousRefresh.Kind = token.KindRefresh
	sign := func(c *token.Claims) string {
		raw, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if _, err := s.VerifyAccess(sign(access), "iss", []string{"svc"}, now); err != nil {
		t.Fatalf("access token: %v", err)
	}
	if _, err := s.VerifyAccess(sign(refresh), "iss", []string{"svc", token.RefreshAudience("svc")}, now); !errors.Is(err, token.ErrWrongKind) {
		t.Fatalf("a refresh token as an access token: %v", err)
	}
	if c, err := s.VerifyRefresh(sign(refresh), "iss", "svc", now); err != nil || c.Subject != "alice" {
		t.Fatalf("refresh token: %+v, %v", c, err)
	}
	if _, err := s.VerifyRefresh(sign(access), "iss", "svc", now); err == nil {
		t.Fatal("an access token as a refresh token")
	}
	if _, err := s.VerifyRefresh(sign(anonymousRefresh), "iss", "svc", now); !errors.Is(err, token.ErrWrongKind) {
		t.Fatalf("a refresh token without a subject: %v", err)
	}
	refresh.IssuedAtNano = now.UnixNano()
	if c, err := s.VerifyRefresh(sign(refresh), "iss", "svc", now); err != nil || !c.Issued().Equal(time.Unix(0, now.UnixNano())) {
		t.Fatalf("nanosecond issue time: %v, %v", c, err)
	}
	refresh.IssuedAtNano += int64(2 * time.Second)
	if _, err := s.VerifyRefresh(sign(refresh), "iss", "svc", now); err == nil {
		t.Fatal("iat_nano in another second than iat")
	}
}
