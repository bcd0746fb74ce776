package token

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxTokenTime (year 3000) bounds the times a token may carry.
const maxTokenTime = 32503680000

// VerifyLeeway is the clock skew Verify tolerates on exp and nbf.
const VerifyLeeway = 30 * time.Second

// Header modes: how a token names the key that signed it.
const (
	// HeaderX5C carries the certificate chain (x5c) and the libtrust key id.
	// Registry 2.8 and 3.x both accept it with a rootcertbundle.
	HeaderX5C = "x5c"
	// HeaderKID carries only a key id: distribution 3.x's thumbprint of a
	// root certificate's key, or a custom id listed in the registry's jwks
	// file (a 3.x registry configured with jwks only rejects x5c tokens).
	HeaderKID = "kid"
)

// SignerOptions tune a Signer.
type SignerOptions struct {
	// Algorithm is the JWS algorithm. Empty means the key's natural one:
	// ES256/ES384/ES512 by curve, RS256 for RSA.
	Algorithm string
	// Header is HeaderX5C (default) or HeaderKID.
	Header string
	// KeyID overrides the key id; with HeaderKID the default is the
	// distribution 3.x thumbprint.
	KeyID string
}

// KeySet is what a Signer works with at one moment: the key that signs,
// the other keys it publishes (a staged next key, a previous one whose
// tokens are still alive), keys it only verifies (retired from the
// bundle, kept for the refresh tokens they signed), and the secret that
// binds refresh tokens to passwords.
type KeySet struct {
	Signing   *Key
	Published []*Key
	Retired   []*Key
	Secret    []byte
}

// keyState is a KeySet made ready for use: keys by id, and the public
// documents, computed once per change.
type keyState struct {
	gen    uint64 // one more with every Use
	set    KeySet
	byID   map[string]*Key
	algs   []string // every algorithm of the set, for the parser
	bundle []byte
	jwks   []byte
}

// Signer makes and checks registry tokens. It signs with one key and
// verifies with every key of its set, each pinned to its own algorithm.
// The set can be replaced at any time (Use) while tokens are signed and
// verified: each call works with one set.
type Signer struct {
	state atomic.Pointer[keyState]
	gens  atomic.Uint64
}

// NewSigner makes a signer of one key, whose refresh secret is derived
// from it. It checks that the chain's leaf holds the key's public half and
// that the algorithm fits the key.
func NewSigner(key crypto.Signer, chain []*x509.Certificate, opts SignerOptions) (*Signer, error) {
	k, err := NewKey(key, chain, opts)
	if err != nil {
		return nil, err
	}
	secret, err := DeriveSecret(key)
	if err != nil {
		return nil, err
	}
	return NewKeySetSigner(KeySet{Signing: k, Secret: secret})
}

// NewKeySetSigner makes a signer of a key set.
func NewKeySetSigner(set KeySet) (*Signer, error) {
	s := new(Signer)
	return s, s.Use(set)
}

// Use replaces the signer's key set. The signing key must have its private
// half, the secret must be set, and no two keys may share an id.
func (s *Signer) Use(set KeySet) error {
	st, err := newKeyState(set)
	if err != nil {
		return err
	}
	st.gen = s.gens.Add(1)
	s.state.Store(st)
	return nil
}

// Generation changes whenever the key set does (Use): what remembers a
// token it verified must verify it again once it changed, since a key may
// have been withdrawn.
func (s *Signer) Generation() uint64 { return s.state.Load().gen }

func newKeyState(set KeySet) (*keyState, error) {
	switch {
	case set.Signing == nil || !set.Signing.CanSign():
		return nil, errors.New("the key set has no key that can sign")
	case len(set.Secret) < 16:
		return nil, errors.New("the key set has no refresh secret")
	}
	st := &keyState{set: set, byID: map[string]*Key{}}
	for _, k := range st.byKey() {
		for _, id := range k.ids {
			if st.byID[id] != nil {
				return nil, fmt.Errorf("two keys of the set have the id %s", id)
			}
			st.byID[id] = k
		}
		if !slices.Contains(st.algs, k.method.Alg()) {
			st.algs = append(st.algs, k.method.Alg())
		}
	}
	var err error
	st.bundle, st.jwks, err = PublicDocuments(set)
	return st, err
}

// PublicDocuments are the certificate bundle and the JWKS of a key set's
// published keys: what CertificatesPEM and JWKS return once a signer uses
// it.
func PublicDocuments(set KeySet) (bundle, jwks []byte, err error) {
	published := slices.Concat([]*Key{set.Signing}, set.Published)
	jwks, err = jwksOf(published)
	return bundleOf(published), jwks, err
}

// Keys returns the signer's key set as it is now.
func (s *Signer) Keys() KeySet { return s.state.Load().set }

// Secret is the key for HMACs of refresh tokens: the same on every
// instance that shares the key set, unknown to anyone else.
func (s *Signer) Secret() []byte { return s.state.Load().set.Secret }

// Algorithm is the JWS algorithm the signer uses.
func (s *Signer) Algorithm() string { return s.state.Load().set.Signing.Algorithm() }

// KeyID is the key id written in every token header.
func (s *Signer) KeyID() string { return s.state.Load().set.Signing.kid }

// Certificates is the chain sent as x5c, leaf first.
func (s *Signer) Certificates() []*x509.Certificate { return s.state.Load().set.Signing.chain }

// Sign returns the compact JWS of the claims, signed by the signing key.
func (s *Signer) Sign(c *Claims) (string, error) {
	k := s.state.Load().set.Signing
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	header := k.header
	if c.Kind != "" {
		// Only we verify refresh tokens: no certificate chain, so they
		// stay small enough for a Basic header (containerd's fallback).
		header = k.kidHeader
	}
	signing := header + "." + base64.RawURLEncoding.EncodeToString(body)
	sig, err := k.method.Sign(signing, k.private)
	if err != nil {
		return "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// NewClaims fills the registered claims of a token issued now. The times
// are whole seconds (both registries reject fractions) and nbf is not in
// the future (zot allows no leeway).
func NewClaims(issuer, subject, audience string, lifetime time.Duration, now time.Time, access []Access) *Claims {
	iat := now.Unix()
	if access == nil {
		access = []Access{} // "access": [] rather than null
	}
	return &Claims{
		Issuer:    issuer,
		Subject:   subject,
		Audience:  audience,
		IssuedAt:  iat,
		NotBefore: iat,
		Expiry:    iat + int64(lifetime/time.Second),
		ID:        RandomID(),
		Access:    access,
	}
}

// RandomID returns 128 random bits in hex, for token ids.
func RandomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails since Go 1.24
	return hex.EncodeToString(b[:])
}

// Verify checks a token one of the signer's keys made: the key is the one
// the token's kid names (a token without one may be any key of its
// algorithm), the algorithm is pinned to that key (so "none", HS256 and
// foreign keys fail), then the signature, exp (which must be present),
// nbf, the issuer and that the audience is one of audiences. Key material
// inside the token's header is never used.
func (s *Signer) Verify(raw, issuer string, audiences []string, now time.Time) (*Claims, error) {
	return s.verify(raw, issuer, audiences, now, true)
}

// verify is Verify, with the retired keys or without them.
func (s *Signer) verify(raw, issuer string, audiences []string, now time.Time, retired bool) (*Claims, error) {
	st := s.state.Load()
	var c Claims
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) { return st.keyFor(t, retired) },
		jwt.WithValidMethods(st.algs),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		// One token, one spelling: no loose base64 in any part.
		jwt.WithStrictDecoding(),
		// Instances sharing a key may differ by a few seconds of clock.
		jwt.WithLeeway(VerifyLeeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return nil, err
	}
	// Times beyond any real token would overflow inside the parser's time
	// arithmetic and wrap into the past.
	for _, t := range []int64{c.Expiry, c.NotBefore, c.IssuedAt} {
		if t < 0 || t > maxTokenTime {
			return nil, fmt.Errorf("token time %d is out of range", t)
		}
	}
	// The parser skips the issuer check when the expected one is empty.
	if c.Issuer != issuer {
		return nil, fmt.Errorf("token is from issuer %q", c.Issuer)
	}
	for _, a := range audiences {
		if c.Audience == a {
			return &c, nil
		}
	}
	return nil, fmt.Errorf("token is for audience %q", c.Audience)
}

// errUnknownKey: the token names a key that is not (or no longer) ours.
var errUnknownKey = errors.New("token signed by an unknown key")

// keyFor picks the key a token is verified with and pins its algorithm;
// retired keys count only when retired is set. Our tokens always name
// their key; one without a kid may be any key of its algorithm, and the
// parser tries each.
func (st *keyState) keyFor(t *jwt.Token, retired bool) (any, error) {
	alg := t.Method.Alg()
	if kid, named := t.Header["kid"]; named {
		id, _ := kid.(string)
		k := st.byID[id]
		switch {
		case k == nil, !retired && slices.Contains(st.set.Retired, k):
			return nil, errUnknownKey
		case k.method.Alg() != alg:
			return nil, fmt.Errorf("algorithm %s is not that of key %s", alg, id)
		}
		return k.public, nil
	}
	var set jwt.VerificationKeySet
	for _, k := range st.byKey() {
		if k.method.Alg() == alg && (retired || !slices.Contains(st.set.Retired, k)) {
			set.Keys = append(set.Keys, k.public)
		}
	}
	if len(set.Keys) == 0 {
		return nil, errUnknownKey
	}
	return set, nil
}

// byKey lists every key of the set once.
func (st *keyState) byKey() []*Key {
	return slices.Concat([]*Key{st.set.Signing}, st.set.Published, st.set.Retired)
}

// ErrWrongKind: a valid token of the other kind, an access token where a
// refresh token is due or the reverse.
var ErrWrongKind = errors.New("token of the wrong kind")

// VerifyAccess checks an access token for one of services: what the proxy
// lets pass as a bearer. A refresh token is never one, whatever its
// audience, and a retired key's access tokens have all expired before it
// was retired, so it verifies none: only keys registries trust do.
func (s *Signer) VerifyAccess(raw, issuer string, services []string, now time.Time) (*Claims, error) {
	c, err := s.verify(raw, issuer, services, now, false)
	if err == nil && c.Kind != "" {
		return nil, ErrWrongKind
	}
	return c, err
}

// VerifyRefresh checks a refresh token for service: its own audience, its
// kind and a subject.
func (s *Signer) VerifyRefresh(raw, issuer, service string, now time.Time) (*Claims, error) {
	c, err := s.Verify(raw, issuer, []string{RefreshAudience(service)}, now)
	switch {
	case err != nil:
		return nil, err
	case c.Kind != KindRefresh || c.Subject == "":
		return nil, ErrWrongKind
	case c.IssuedAtNano != 0 && c.IssuedAtNano/int64(time.Second) != c.IssuedAt:
		return nil, fmt.Errorf("iat_nano does not match iat")
	}
	return c, nil
}

// CertificatesPEM is the bundle a registry's rootcertbundle should hold:
// the chains of every published key, the signing key's first.
func (s *Signer) CertificatesPEM() []byte { return s.state.Load().bundle }

// JWKS is the published keys as a JSON Web Key Set, each with the key id
// its tokens carry, for a registry configured with jwks.
func (s *Signer) JWKS() ([]byte, error) { return s.state.Load().jwks, nil }
