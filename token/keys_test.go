//lint:file-ignore SA1019 the tests rebuild key encodings from the raw big.Int coordinates on purpose, independently of the code under test.

package token_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/regauth/caddy-registry-auth/token"
)

// TestGenerateKey: each algorithm gets the right key type and a
// self-signed CA certificate that can serve as the registry's
// rootcertbundle, valid from an hour ago for GeneratedCertLifetime.
func TestGenerateKey(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	curves := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}
	for alg, curve := range curves {
		t.Run(alg, func(t *testing.T) {
			key, cert, err := token.GenerateKey(alg, "token signer", now)
			if err != nil {
				t.Fatal(err)
			}
			ec, ok := key.(*ecdsa.PrivateKey)
			if !ok || ec.Curve != curve {
				t.Fatalf("key is %T on the wrong curve", key)
			}
			checkCert(t, key, cert, now, "token signer")
		})
	}
	t.Run("RS256", func(t *testing.T) {
		key, cert := genKey(t, "RS256")
		rk, ok := key.(*rsa.PrivateKey)
		if !ok || rk.N.BitLen() != 2048 {
			t.Fatalf("key is %T", key)
		}
		checkCert(t, key, cert, cert.NotBefore.Add(time.Hour), "test RS256")
	})
	for _, alg := range []string{"", "HS256", "PS256", "EdDSA", "es256", "ES256K", "none"} {
		if _, _, err := token.GenerateKey(alg, "x", now); err == nil {
			t.Errorf("GenerateKey(%q) succeeded", alg)
		}
	}
}

func checkCert(t *testing.T, key crypto.Signer, cert *x509.Certificate, now time.Time, cn string) {
	t.Helper()
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		t.Error("certificate does not hold the key")
	}
	if cert.Subject.CommonName != cn {
		t.Errorf("CN %q, want %q", cert.Subject.CommonName, cn)
	}
	if !cert.NotBefore.Equal(now.Add(-time.Hour)) || !cert.NotAfter.Equal(now.Add(token.GeneratedCertLifetime)) {
		t.Errorf("validity %v .. %v, want %v .. %v", cert.NotBefore, cert.NotAfter, now.Add(-time.Hour), now.Add(token.GeneratedCertLifetime))
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("certificate cannot be its own root: IsCA %v usage %b", cert.IsCA, cert.KeyUsage)
	}
	if cert.SerialNumber.Sign() <= 0 {
		t.Errorf("serial %v", cert.SerialNumber)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("self-signed certificate does not verify as its own root: %v", err)
	}
}

// libtrustKeyID is libtrust's keyIDFromCryptoKey written independently: the
// SHA-256 of the PKIX DER, truncated to 30 bytes (240 bits), base32 without
// padding, in groups of four joined by ':'.
func libtrustKeyID(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	s := strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:30]), "=")
	var groups []string
	for len(s) > 4 {
		groups = append(groups, s[:4])
		s = s[4:]
	}
	return strings.Join(append(groups, s), ":")
}

var libtrustFormat = regexp.MustCompile(`^[A-Z2-7]{4}(?::[A-Z2-7]{4}){11}$`)

// TestLibtrustKeyID: registry 2.8 finds the signing key by this id.
func TestLibtrustKeyID(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "ES512", "RS256"} {
		key, _ := genKey(t, alg)
		got, err := token.LibtrustKeyID(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !libtrustFormat.MatchString(got) {
			t.Errorf("%s: %q is not 12 groups of 4 base32 characters", alg, got)
		}
		if want := libtrustKeyID(t, key.Public()); got != want {
			t.Errorf("%s: LibtrustKeyID = %s, want %s", alg, got, want)
		}
	}
	// Different keys, different ids.
	a, _ := freshKey(t, "ES256")
	b, _ := freshKey(t, "ES256")
	ia, _ := token.LibtrustKeyID(a.Public())
	ib, _ := token.LibtrustKeyID(b.Public())
	if ia == ib {
		t.Error("two keys share a libtrust id")
	}
	if _, err := token.LibtrustKeyID(struct{}{}); err == nil {
		t.Error("LibtrustKeyID accepted a non-key")
	}
}

func sha256b64(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// keyWithShortX generates P-256 keys until one has an X coordinate with a
// leading zero byte (about 1 in 256), the case where distribution's
// thumbprint differs from RFC 7638.
func keyWithShortX(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	for i := 0; i < 100000; i++ {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.X.Bytes()) < 32 {
			return k
		}
	}
	t.Fatal("no key with a short X coordinate found")
	return nil
}

// TestDistributionThumbprintUnpadded: distribution 3.1
// (registry/auth/token/util.go, getJWKThumbprint) hashes the EC coordinates
// as big.Int.Bytes(), without left-padding. The kid must be computed the
// same way or a 3.1 registry will not find the key for ~1 key in 128. The
// real implementation cannot be imported here, so the documented
// construction is rebuilt independently.
func TestDistributionThumbprintUnpadded(t *testing.T) {
	k := keyWithShortX(t)
	pub := &k.PublicKey
	got, err := token.DistributionThumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	unpadded := sha256b64(fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, b64url(pub.X.Bytes()), b64url(pub.Y.Bytes())))
	rfc7638 := sha256b64(fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`,
		b64url(pub.X.FillBytes(make([]byte, 32))), b64url(pub.Y.FillBytes(make([]byte, 32)))))
	if unpadded == rfc7638 {
		t.Fatal("test bug: the constructions agree on this key")
	}
	if got != unpadded {
		t.Errorf("DistributionThumbprint = %s, want the unpadded construction %s", got, unpadded)
	}
	if got == rfc7638 {
		t.Errorf("DistributionThumbprint is the RFC 7638 (padded) thumbprint; distribution 3.1 would not find it")
	}

	// The kid-only header uses exactly this id.
	s, err := token.NewSigner(k, []*x509.Certificate{selfSigned(t, k)}, token.SignerOptions{Header: token.HeaderKID})
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != unpadded {
		t.Errorf("kid-mode KeyID %s, want %s", s.KeyID(), unpadded)
	}
}

// TestDistributionThumbprintCommonCase: for keys with full-size
// coordinates the value is the RFC 7638 thumbprint, for every curve.
func TestDistributionThumbprintCommonCase(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "ES512"} {
		key, _ := genKey(t, alg)
		pub := key.Public().(*ecdsa.PublicKey)
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(pub.X.Bytes()) != size || len(pub.Y.Bytes()) != size {
			continue // rare short coordinate; covered above
		}
		want := sha256b64(fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, pub.Curve.Params().Name, b64url(pub.X.Bytes()), b64url(pub.Y.Bytes())))
		if got, _ := token.DistributionThumbprint(pub); got != want {
			t.Errorf("%s: %s, want %s", alg, got, want)
		}
	}
	if _, err := token.DistributionThumbprint(ed25519.PublicKey(make([]byte, 32))); err == nil {
		t.Error("Ed25519 key accepted")
	}
}

// TestDistributionThumbprintRFC7638Vector: the RSA example of RFC 7638
// §3.1 (an RSA modulus has no leading zero, so both constructions agree).
func TestDistributionThumbprintRFC7638Vector(t *testing.T) {
	const n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	nb, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		t.Fatal(err)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537}
	got, err := token.DistributionThumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("thumbprint %s, want %s", got, want)
	}
}

type jwksDoc struct {
	Keys []map[string]string `json:"keys"`
}

// TestJWKS: the set a jwks-configured 3.x registry reads: valid JSON, one
// public key, EC coordinates padded to the curve size (RFC 7518 §6.2.1.2;
// go-jose refuses shorter ones), the algorithm and the kid tokens carry.
func TestJWKS(t *testing.T) {
	short := keyWithShortX(t)
	type signerCase struct {
		name string
		s    *token.Signer
		pub  crypto.PublicKey
	}
	var cases []signerCase
	for _, alg := range []string{"ES256", "ES384", "ES512", "RS256"} {
		for _, opts := range []token.SignerOptions{{}, {Header: token.HeaderKID}, {Header: token.HeaderKID, KeyID: "custom"}} {
			key, _ := genKey(t, alg)
			cases = append(cases, signerCase{alg + "/" + opts.Header + "/" + opts.KeyID, newSigner(t, alg, opts), key.Public()})
		}
	}
	shortSigner, err := token.NewSigner(short, []*x509.Certificate{selfSigned(t, short)}, token.SignerOptions{Header: token.HeaderKID})
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, signerCase{"ES256 short X", shortSigner, &short.PublicKey})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := c.s.JWKS()
			if err != nil {
				t.Fatal(err)
			}
			var doc jwksDoc
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&doc); err != nil {
				t.Fatalf("JWKS is not {\"keys\":[...]}: %v\n%s", err, raw)
			}
			if len(doc.Keys) != 1 {
				t.Fatalf("%d keys", len(doc.Keys))
			}
			k := doc.Keys[0]
			if k["kid"] != c.s.KeyID() || k["alg"] != c.s.Algorithm() || k["use"] != "sig" {
				t.Errorf("kid/alg/use = %q/%q/%q, want %q/%q/sig", k["kid"], k["alg"], k["use"], c.s.KeyID(), c.s.Algorithm())
			}
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := k[private]; ok {
					t.Errorf("JWKS leaks private member %q", private)
				}
			}
			switch pub := c.pub.(type) {
			case *ecdsa.PublicKey:
				size := (pub.Curve.Params().BitSize + 7) / 8
				if k["kty"] != "EC" || k["crv"] != pub.Curve.Params().Name {
					t.Errorf("kty/crv = %q/%q", k["kty"], k["crv"])
				}
				x, errX := base64.RawURLEncoding.Strict().DecodeString(k["x"])
				y, errY := base64.RawURLEncoding.Strict().DecodeString(k["y"])
				if errX != nil || errY != nil {
					t.Fatalf("coordinates are not unpadded base64url: %v %v", errX, errY)
				}
				if len(x) != size || len(y) != size {
					t.Errorf("coordinates are %d/%d bytes, want %d", len(x), len(y), size)
				}
				back := &ecdsa.PublicKey{Curve: pub.Curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
				if !back.Equal(pub) {
					t.Error("JWKS key is not the signer's key")
				}
			case *rsa.PublicKey:
				if k["kty"] != "RSA" {
					t.Errorf("kty %q", k["kty"])
				}
				n, errN := base64.RawURLEncoding.Strict().DecodeString(k["n"])
				e, errE := base64.RawURLEncoding.Strict().DecodeString(k["e"])
				if errN != nil || errE != nil {
					t.Fatalf("n/e are not unpadded base64url: %v %v", errN, errE)
				}
				if k["e"] != "AQAB" {
					t.Errorf("e = %q, want AQAB", k["e"])
				}
				back := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
				if !back.Equal(pub) {
					t.Error("JWKS key is not the signer's key")
				}
			}
		})
	}
}

// TestPrivateKeyPEM: the forms operators bring (PKCS#8 from
// `openssl genpkey`, SEC 1 from `openssl ecparam -genkey` with its
// EC PARAMETERS block, PKCS#1 from `openssl genrsa`) all load, and what
// MarshalPrivateKeyPEM writes loads back to the same key.
func TestPrivateKeyPEM(t *testing.T) {
	ecKey, ecCert := genKey(t, "ES384")
	rsaKey, _ := genKey(t, "RS256")
	ec := ecKey.(*ecdsa.PrivateKey)
	rk := rsaKey.(*rsa.PrivateKey)

	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ecCert.Raw})

	for _, key := range []crypto.Signer{ecKey, rsaKey} {
		out, err := token.MarshalPrivateKeyPEM(key)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(out), "-----BEGIN PRIVATE KEY-----") {
			t.Errorf("MarshalPrivateKeyPEM wrote %.40q, want PKCS#8", out)
		}
		back, err := token.ParsePrivateKeyPEM(out)
		if err != nil {
			t.Fatal(err)
		}
		if !back.(interface{ Equal(crypto.PrivateKey) bool }).Equal(key) {
			t.Errorf("%T: PKCS#8 round trip changed the key", key)
		}
	}

	tests := []struct {
		name string
		data []byte
		want crypto.PrivateKey
	}{
		{"SEC 1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), ec},
		{"SEC 1 after EC PARAMETERS", append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...), ec},
		{"PKCS#1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), rk},
		{"PKCS#8 after a certificate", append(certPEM, mustMarshal(t, ecKey)...), ec},
		{"text before the block", append([]byte("key for the token server\n"), mustMarshal(t, rsaKey)...), rk},
	}
	for _, tt := range tests {
		got, err := token.ParsePrivateKeyPEM(tt.data)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !got.(interface{ Equal(crypto.PrivateKey) bool }).Equal(tt.want) {
			t.Errorf("%s: wrong key", tt.name)
		}
	}

	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"garbage", []byte("not a key at all")},
		{"certificate only", certPEM},
		{"EC PARAMETERS only", params},
		{"PRIVATE KEY with junk", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")})},
		{"EC PRIVATE KEY with junk", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("junk")})},
		{"RSA PRIVATE KEY with junk", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("junk")})},
		{"SEC 1 labelled PKCS#1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: sec1})},
		{"Ed25519 (registry 2.8 cannot load it)", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})},
		{"truncated PEM", mustMarshal(t, ecKey)[:60]},
	}
	for _, tt := range bad {
		if k, err := token.ParsePrivateKeyPEM(tt.data); err == nil {
			t.Errorf("%s: parsed as %T", tt.name, k)
		}
	}
}

func mustMarshal(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	out, err := token.MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCertificatesPEM: chains round-trip in order; non-certificate blocks
// are skipped; a broken certificate is reported by its position.
func TestCertificatesPEM(t *testing.T) {
	_, c1 := genKey(t, "ES256")
	_, c2 := genKey(t, "ES384")
	chain := []*x509.Certificate{c1, c2}
	out := token.MarshalCertificatesPEM(chain)
	back, err := token.ParseCertificatesPEM(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || !back[0].Equal(c1) || !back[1].Equal(c2) {
		t.Fatal("chain changed in the round trip")
	}
	if len(token.MarshalCertificatesPEM(nil)) != 0 {
		t.Error("empty chain marshals to something")
	}

	key, _ := genKey(t, "ES256")
	withKey := append(mustMarshal(t, key), out...)
	if back, err := token.ParseCertificatesPEM(withKey); err != nil || len(back) != 2 {
		t.Errorf("key block before certificates: %d certs, %v", len(back), err)
	}

	junk := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})
	for name, data := range map[string][]byte{
		"empty":      nil,
		"garbage":    []byte("garbage"),
		"key only":   mustMarshal(t, key),
		"bad DER":    junk,
		"bad second": append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c1.Raw}), junk...),
	} {
		if _, err := token.ParseCertificatesPEM(data); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	_, err = token.ParseCertificatesPEM(append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c1.Raw}), junk...))
	if err == nil || !strings.Contains(err.Error(), "certificate 2") {
		t.Errorf("error %v does not name certificate 2", err)
	}
}
