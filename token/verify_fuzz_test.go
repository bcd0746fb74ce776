package token_test

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/regauth/caddy-registry-auth/token"
)

// FuzzVerify's fixed world: one issuer, the audiences Verify accepts, and a
// clock in whole seconds.
const fuzzIssuer = "fuzz-issuer"

var (
	fuzzAudiences = []string{"other.example.com", "registry.example.com"}
	fuzzNow       = time.Unix(1_700_000_000, 0)
)

// verifyFixture is the signer of one fuzz process, made once: every worker
// process generates its own key, so tokens signed in one process are
// foreign keys' tokens in the others.
type verifyFixture struct {
	key    *ecdsa.PrivateKey
	signer *token.Signer
	header string // the encoded JOSE header of every token the signer makes
	valid  string // a token the signer made with valid claims
	// made holds every token the signer made (nothing else is signed
	// through it) and whether its claims are valid at fuzzNow.
	made map[string]bool
	// seeds are the signer's tokens for f.Add, valid ones first.
	seeds []string
}

var (
	fixtureOnce sync.Once
	fixture     *verifyFixture
	fixtureErr  error
)

func getVerifyFixture(tb testing.TB) *verifyFixture {
	tb.Helper()
	fixtureOnce.Do(func() { fixture, fixtureErr = newVerifyFixture() })
	if fixtureErr != nil {
		tb.Fatal(fixtureErr)
	}
	return fixture
}

func newVerifyFixture() (*verifyFixture, error) {
	key, cert, err := token.GenerateKey("ES256", "fuzz", fuzzNow)
	if err != nil {
		return nil, err
	}
	s, err := token.NewSigner(key, []*x509.Certificate{cert}, token.SignerOptions{})
	if err != nil {
		return nil, err
	}
	fx := &verifyFixture{key: key.(*ecdsa.PrivateKey), signer: s, made: map[string]bool{}}
	for _, c := range []*token.Claims{
		token.NewClaims(fuzzIssuer, "alice", "registry.example.com", 5*time.Minute, fuzzNow, sampleAccess()),
		token.NewClaims(fuzzIssuer, "", "other.example.com", time.Minute, fuzzNow.Add(-59*time.Second), nil),
		// Expired a second less than the leeway ago: still valid.
		token.NewClaims(fuzzIssuer, "alice", "registry.example.com", 5*time.Minute, fuzzNow.Add(-5*time.Minute-token.VerifyLeeway+time.Second), nil),
		// Invalid: expired, expired exactly the leeway ago, not yet valid
		// beyond the leeway, a refresh token, another audience, another
		// issuer, no issuer, no exp.
		token.NewClaims(fuzzIssuer, "alice", "registry.example.com", 5*time.Minute, fuzzNow.Add(-time.Hour), sampleAccess()),
		token.NewClaims(fuzzIssuer, "alice", "registry.example.com", 5*time.Minute, fuzzNow.Add(-5*time.Minute-token.VerifyLeeway), nil),
		token.NewClaims(fuzzIssuer, "alice", "registry.example.com", 5*time.Minute, fuzzNow.Add(token.VerifyLeeway+time.Second), nil),
		{Issuer: fuzzIssuer, Subject: "alice", Audience: token.RefreshAudience("registry.example.com"), Expiry: fuzzNow.Unix() + 3600, Kind: token.KindRefresh, Fingerprint: "x"},
		token.NewClaims(fuzzIssuer, "alice", "evil.example.com", 5*time.Minute, fuzzNow, sampleAccess()),
		token.NewClaims("evil-issuer", "alice", "registry.example.com", 5*time.Minute, fuzzNow, sampleAccess()),
		token.NewClaims("", "alice", "registry.example.com", 5*time.Minute, fuzzNow, sampleAccess()),
		{Issuer: fuzzIssuer, Audience: "registry.example.com", IssuedAt: fuzzNow.Unix(), Access: sampleAccess()},
	} {
		raw, err := s.Sign(c)
		if err != nil {
			return nil, err
		}
		fx.made[raw] = claimsValid(c)
		fx.seeds = append(fx.seeds, raw)
	}
	fx.valid = fx.seeds[0]
	if !fx.made[fx.valid] || !fx.made[fx.seeds[1]] || !fx.made[fx.seeds[2]] || fx.made[fx.seeds[3]] || fx.made[fx.seeds[4]] || fx.made[fx.seeds[5]] {
		return nil, errors.New("FuzzVerify fixture: the seed tokens' claims are not what they say")
	}
	fx.header, _, _ = strings.Cut(fx.valid, ".")
	return fx, nil
}

// claimsValid is the oracle: what Verify may accept at fuzzNow. exp must be
// present and now before exp+VerifyLeeway; nbf (if present) at most
// VerifyLeeway after now.
func claimsValid(c *token.Claims) bool {
	now := fuzzNow.Unix()
	leeway := int64(token.VerifyLeeway / time.Second)
	return c.Issuer == fuzzIssuer && slices.Contains(fuzzAudiences, c.Audience) &&
		c.Expiry != 0 && now-leeway < c.Expiry && c.NotBefore <= now+leeway
}

// decodeClaims reads a payload segment as golang-jwt does: unpadded
// base64url, then encoding/json.
func decodeClaims(seg string) (*token.Claims, bool) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, false
	}
	var c token.Claims
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, false
	}
	return &c, true
}

// headerAlg is the alg of a header segment, "" if there is none.
func headerAlg(seg string) string {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return ""
	}
	var h map[string]any
	if json.Unmarshal(b, &h) != nil {
		return ""
	}
	alg, _ := h["alg"].(string)
	return alg
}

// signWithKey signs header.payload (encoded segments) with the fixture's
// private key, bypassing the Signer: a token with our real signature over
// any header and claims.
func (fx *verifyFixture) signWithKey(tb testing.TB, header, payload string) string {
	tb.Helper()
	signing := header + "." + payload
	sig, err := jwt.SigningMethodES256.Sign(signing, fx.key)
	if err != nil {
		tb.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func (fx *verifyFixture) verify(raw string) (*token.Claims, error) {
	return fx.signer.Verify(raw, fuzzIssuer, fuzzAudiences, fuzzNow)
}

// FuzzVerify: Signer.Verify never panics, and accepts exactly what it
// should:
//
//  1. raw itself: accepted only if the signer made it with valid claims
//     (and then always accepted, with those claims);
//  2. the signer's valid token with the byte at pos of its header or
//     payload XORed with flip: accepted if and only if flip is 0;
//  3. raw's claims (raw as the payload, or, if raw is header.payload.sig,
//     that header and payload) signed with the signer's private key:
//     accepted only with alg ES256 and claims valid by claimsValid, and
//     then returning exactly those claims. This reaches the claim checks
//     that step 1 cannot reach in a fuzz worker, whose key differs from the
//     one that signed the seeds.
func FuzzVerify(f *testing.F) {
	fx := getVerifyFixture(f)
	for i, raw := range fx.seeds {
		f.Add(raw, uint16(i*37), byte(i%3))
	}
	validClaims := `{"iss":"fuzz-issuer","sub":"alice","aud":"registry.example.com","exp":1700000300,"nbf":1700000000,"iat":1700000000,"jti":"x","access":[]}`
	hdr, payload, _ := strings.Cut(fx.valid, ".")
	payload, sig, _ := strings.Cut(payload, ".")
	otherKey, _ := freshKey(f, "ES256")
	pub, err := x509.MarshalPKIXPublicKey(fx.key.Public())
	if err != nil {
		f.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	for _, raw := range []string{
		// alg none, in several spellings, and HS256 keyed with the public
		// key (the algorithm-confusion attack).
		craft(f, `{"alg":"none","typ":"JWT"}`, validClaims, nil, nil),
		craft(f, `{"alg":"None"}`, validClaims, nil, nil) + sig,
		craft(f, `{"alg":"HS256","typ":"JWT"}`, validClaims, jwt.SigningMethodHS256, pub),
		craft(f, `{"alg":"HS256","typ":"JWT"}`, validClaims, jwt.SigningMethodHS256, pubPEM),
		// Another key, also with its public key in the header.
		craft(f, `{"alg":"ES256","typ":"JWT"}`, validClaims, jwt.SigningMethodES256, otherKey),
		craft(f, `{"alg":"ES256","jwk":{"kty":"EC","crv":"P-256"},"x5c":["AAAA"]}`, validClaims, jwt.SigningMethodES256, otherKey),
		craft(f, `{"alg":"ES384"}`, validClaims, jwt.SigningMethodES256, otherKey),
		// Truncated and mutated tokens of the signer.
		fx.valid[:len(fx.valid)-1],
		fx.valid[:len(fx.valid)/2],
		hdr + "." + payload,
		hdr + "." + payload + ".",
		hdr + "." + payload + "." + sig + ".",
		hdr + "." + payload + "." + sig[1:],
		hdr + "." + payload + "." + "A" + sig[1:],
		hdr + "." + payload[:len(payload)-2] + "." + sig,
		hdr + "==." + payload + "." + sig,
		" " + fx.valid,
		"Bearer " + fx.valid,
		// Another token's claims under the valid signature.
		hdr + "." + strings.Split(fx.seeds[3], ".")[1] + "." + sig,
		"", ".", "..", "a.b.c", "e30.e30.", "e30.e30.e30",
		// Claims alone, for step 3.
		validClaims,
		`{"iss":"fuzz-issuer","aud":["registry.example.com"],"exp":1700000300}`,
		`{"iss":"fuzz-issuer","aud":"registry.example.com","exp":"1700000300"}`,
		`{"iss":"fuzz-issuer","aud":"registry.example.com","exp":1700000300.5}`,
		`{"ISS":"fuzz-issuer","Aud":"registry.example.com","EXP":1700000001,"nbf":-1}`,
		`{"iss":"fuzz-issuer","aud":"evil","aud":"registry.example.com","exp":1700000001,"nbf":1700000000}`,
		`{"iss":"fuzz-issuer","aud":"registry.example.com","exp":9223372036854775807}`,
		`{"iss":"fuzz-issuer","aud":"registry.example.com","exp":1699999970}`,
		`{"iss":"fuzz-issuer","aud":"registry.example.com","exp":1700000300,"nbf":1700000031}`,
		`{"iss":"fuzz-issuer","aud":"registry.example.com","exp":1700000300,"kind":"refresh","fpr":"x"}`,
		`[]`, `{}`, `"x"`, `{"exp":1e400}`,
	} {
		f.Add(raw, uint16(len(raw)), byte(0x20))
	}

	f.Fuzz(func(t *testing.T, raw string, pos uint16, flip byte) {
		fx := getVerifyFixture(t)

		// 1. raw as a token.
		c, err := fx.verify(raw)
		valid, made := fx.made[raw]
		switch {
		case err == nil && !(made && valid):
			t.Fatalf("Verify accepted a token the signer did not make with valid claims (made %v): %q -> %+v", made, raw, c)
		case err != nil && made && valid:
			t.Fatalf("Verify refused the signer's valid token %q: %v", raw, err)
		case err == nil:
			want, _ := decodeClaims(strings.Split(raw, ".")[1])
			if !reflect.DeepEqual(c, want) {
				t.Fatalf("Verify returned %+v, the token holds %+v", c, want)
			}
		}

		// 2. The valid token with one byte of its header or payload
		// changed.
		signingLen := strings.LastIndexByte(fx.valid, '.')
		mutated := []byte(fx.valid)
		i := int(pos) % signingLen
		mutated[i] ^= flip
		_, err = fx.verify(string(mutated))
		if flip == 0 && err != nil {
			t.Fatalf("Verify refused the signer's valid token: %v", err)
		}
		if flip != 0 && err == nil {
			t.Fatalf("Verify accepted the valid token with byte %d XOR %#x: %q", i, flip, mutated)
		}

		// 3. raw's claims under our real signature.
		check := func(tok, header, payload string) {
			t.Helper()
			c, err := fx.verify(tok)
			if err != nil {
				return
			}
			want, ok := decodeClaims(payload)
			switch {
			case headerAlg(header) != "ES256":
				t.Fatalf("Verify accepted header alg %q: %q", headerAlg(header), tok)
			case !ok:
				t.Fatalf("Verify accepted undecodable claims: %q", tok)
			case !claimsValid(want):
				t.Fatalf("Verify accepted invalid claims %+v: %q", want, tok)
			case !reflect.DeepEqual(c, want):
				t.Fatalf("Verify returned %+v, the token holds %+v", c, want)
			}
		}
		p := base64.RawURLEncoding.EncodeToString([]byte(raw))
		check(fx.signWithKey(t, fx.header, p), fx.header, p)
		if parts := strings.Split(raw, "."); len(parts) == 3 {
			check(fx.signWithKey(t, parts[0], parts[1]), parts[0], parts[1])
		}
	})
}

// TestVerifyRefusesOverflowingTimes: an nbf far in the future must not
// wrap into the past inside the parser (found by reading FuzzVerify's
// target; it needs our key, so it is a test here rather than a seed).
func TestVerifyRefusesOverflowingTimes(t *testing.T) {
	key, cert, err := token.GenerateKey("ES256", "t", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := token.NewSigner(key, []*x509.Certificate{cert}, token.SignerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	c := token.NewClaims("iss", "", "aud", time.Minute, now, nil)
	c.NotBefore = 9223372036854775807
	raw, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(raw, "iss", []string{"aud"}, now); err == nil {
		t.Fatal("a token valid only from the end of time was accepted")
	}
	// One token, one spelling: a changed last signature character fails.
	good, _ := s.Sign(token.NewClaims("iss", "", "aud", time.Minute, now, nil))
	if _, err := s.Verify(good, "iss", []string{"aud"}, now); err != nil {
		t.Fatal(err)
	}
	last := good[len(good)-1]
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, last)
	tampered := good[:len(good)-1] + string(alphabet[i^1])
	if _, err := s.Verify(tampered, "iss", []string{"aud"}, now); err == nil {
		t.Fatal("a token with a changed signature spelling was accepted")
	}
}
