package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/regauth/caddy-registry-auth/internal/clip"
)

// Algorithms are those a token may be signed with: RSA and ECDSA
// signatures only. Never "none", and never HS256 and its kind, with which
// anyone holding the issuer's public key could sign.
var Algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.PS256}

// Leeway is the clock skew allowed on exp, nbf and iat.
const Leeway = 60 * time.Second

// MaxTokenSize bounds what is parsed at all. Real identity tokens are 1 to
// 3 KiB.
const MaxTokenSize = 16 << 10

// ErrInvalid wraps every reason a token is refused, except
// ErrKeysUnavailable.
var ErrInvalid = errors.New("invalid token")

// A Verifier checks tokens of one issuer for one audience.
type Verifier struct {
	// Issuer is the exact "iss" tokens must carry.
	Issuer string
	// Audience must be one of the token's "aud".
	Audience string
	// MaxAge bounds now − iat.
	MaxAge time.Duration
	// Keys are the issuer's.
	Keys *Keys
}

// Token is what a verified token says.
type Token struct {
	Subject  string
	Expiry   time.Time
	IssuedAt time.Time
	// Claims are all of the token's claims, as JSON decodes them.
	Claims map[string]any
}

// Verify checks raw: one signature, by an allowed algorithm, with one of
// the issuer's keys (found by the header's kid; never key material from
// the token itself); the issuer exactly; the audience; exp and iat
// present; exp, nbf and iat within Leeway of now; now − iat at most
// MaxAge; a subject. Every refusal wraps ErrInvalid, except a token that
// cannot be checked because the keys are not known: ErrKeysUnavailable.
func (v *Verifier) Verify(ctx context.Context, raw string, now time.Time) (*Token, error) {
	if len(raw) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(raw), MaxTokenSize)
	}
	tok, err := jwt.ParseSigned(raw, Algorithms)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(tok.Headers) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrInvalid, len(tok.Headers))
	}
	header := tok.Headers[0]
	keys, err := v.Keys.For(ctx, header.KeyID)
	switch {
	case errors.Is(err, ErrKeysUnavailable):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: key id %q: %v", ErrInvalid, clip.String(header.KeyID, 64), err)
	}
	var std jwt.Claims
	var all map[string]any
	if err := verifySignature(tok, jose.SignatureAlgorithm(header.Algorithm), keys, &std, &all); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := v.checkClaims(std, now); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return &Token{Subject: std.Subject, Expiry: std.Expiry.Time(), IssuedAt: std.IssuedAt.Time(), Claims: all}, nil
}

// verifySignature tries each candidate key that fits alg and decodes the
// claims with the first whose signature holds.
func verifySignature(tok *jwt.JSONWebToken, alg jose.SignatureAlgorithm, keys []jose.JSONWebKey, out ...any) error {
	tried := 0
	for _, key := range keys {
		if !fits(key, alg) {
			continue
		}
		tried++
		if tok.Claims(key.Key, out...) == nil {
			return nil
		}
	}
	if tried == 0 {
		return fmt.Errorf("no key of the issuer fits the algorithm %s", alg)
	}
	return errors.New("bad signature")
}

// fits reports whether key may check a signature of alg: its own alg, if
// it states one, must be the same, and its type and curve must be alg's.
func fits(key jose.JSONWebKey, alg jose.SignatureAlgorithm) bool {
	if key.Algorithm != "" && key.Algorithm != string(alg) {
		return false
	}
	switch pub := key.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(string(alg), "RS") || strings.HasPrefix(string(alg), "PS")
	case *ecdsa.PublicKey:
		return alg == jose.ES256 && pub.Curve == elliptic.P256() || alg == jose.ES384 && pub.Curve == elliptic.P384()
	}
	return false
}

// checkClaims checks what the signature vouches for.
func (v *Verifier) checkClaims(c jwt.Claims, now time.Time) error {
	switch {
	case c.Issuer != v.Issuer:
		return fmt.Errorf("issuer %q, want %q", clip.String(c.Issuer, 200), v.Issuer)
	case c.Expiry == nil:
		return errors.New("no exp")
	case c.IssuedAt == nil:
		return errors.New("no iat")
	case c.Subject == "":
		return errors.New("no sub")
	}
	err := c.ValidateWithLeeway(jwt.Expected{Issuer: v.Issuer, AnyAudience: jwt.Audience{v.Audience}, Time: now}, Leeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidAudience):
		return fmt.Errorf("audience %q, want %q", clip.String(strings.Join(c.Audience, " "), 200), v.Audience)
	case err != nil:
		return err
	}
	if age := now.Sub(c.IssuedAt.Time()); age > v.MaxAge {
		return fmt.Errorf("issued %s ago, more than the maximum token age %s", age.Round(time.Second), v.MaxAge)
	}
	return nil
}

// Peeked is what a token says before anything is checked: enough to route
// it, never to trust it.
type Peeked struct {
	Issuer  string
	Subject string
	Expiry  time.Time // zero without exp
}

// Peek reads what raw says it is without verifying anything; ok is false
// when raw is not shaped as a compact JWS with a JSON object as its
// payload. It is cheap for what is plainly no token, such as an ordinary
// password, and reads only the payload of what looks like one: a login
// answered from the credential cache routes by it on every request, and
// Verify parses the whole token when it matters.
func Peek(raw string) (p Peeked, ok bool) {
	if len(raw) > MaxTokenSize || !strings.HasPrefix(raw, "eyJ") || strings.Count(raw, ".") != 2 {
		return p, false
	}
	_, rest, _ := strings.Cut(raw, ".")
	encoded, _, _ := strings.Cut(rest, ".")
	payload, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return p, false
	}
	// Only three claims matter here: the standard library's decoder skips
	// the others without building them. A sub or exp of a wrong type must
	// not keep the token from its issuer's authenticator, which refuses it.
	var c struct {
		Issuer  string `json:"iss"`
		Subject any    `json:"sub"`
		Expiry  any    `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return p, false
	}
	p.Issuer = c.Issuer
	p.Subject, _ = c.Subject.(string)
	if exp, _ := c.Expiry.(float64); exp > 0 && exp < maxUnixTime {
		p.Expiry = time.Unix(int64(exp), 0)
	}
	return p, true
}

// maxUnixTime (year 3000) bounds the expiry Peek reports.
const maxUnixTime = 32503680000
