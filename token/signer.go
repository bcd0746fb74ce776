package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

// Signer makes and checks registry tokens with one private key.
type Signer struct {
	key    crypto.Signer
	method jwt.SigningMethod
	chain  []*x509.Certificate
	kid    string
	// header is the encoded JOSE header, the same for every token;
	// kidHeader has no x5c, for refresh tokens that only we verify.
	header, kidHeader string
	// secret is derived from the private key: a key for HMACs that every
	// instance sharing the key agrees on and nobody else can compute.
	secret [32]byte
}

// NewSigner checks that the chain's leaf holds the key's public half and
// that the algorithm fits the key.
func NewSigner(key crypto.Signer, chain []*x509.Certificate, opts SignerOptions) (*Signer, error) {
	if len(chain) == 0 {
		return nil, errors.New("no certificate for the signing key")
	}
	pub, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("the first certificate does not belong to the signing key")
	}
	alg, err := algorithmFor(key, opts.Algorithm)
	if err != nil {
		return nil, err
	}
	s := &Signer{key: key, method: jwt.GetSigningMethod(alg), chain: chain, kid: opts.KeyID}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	s.secret = sha256.Sum256(append([]byte("caddy-registry-auth secret\x00"), der...))
	hdr := map[string]any{"alg": alg, "typ": "JWT"}
	switch opts.Header {
	case "", HeaderX5C:
		if s.kid == "" {
			if s.kid, err = LibtrustKeyID(key.Public()); err != nil {
				return nil, err
			}
		}
		x5c := make([]string, len(chain))
		for i, c := range chain {
			x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
		}
		hdr["x5c"] = x5c
	case HeaderKID:
		if s.kid == "" {
			if s.kid, err = DistributionThumbprint(key.Public()); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("unknown header mode %q (want %q or %q)", opts.Header, HeaderX5C, HeaderKID)
	}
	hdr["kid"] = s.kid
	raw, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	s.header = base64.RawURLEncoding.EncodeToString(raw)
	delete(hdr, "x5c")
	if raw, err = json.Marshal(hdr); err != nil {
		return nil, err
	}
	s.kidHeader = base64.RawURLEncoding.EncodeToString(raw)
	return s, nil
}

// algorithmFor pins the algorithm to the key type: a curve has exactly one
// ECDSA algorithm, and RSA keys sign with PKCS#1 v1.5, which both registry
// families verify (PSS only 3.x).
func algorithmFor(key crypto.Signer, want string) (string, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		var alg string
		switch k.Curve.Params().BitSize {
		case 256:
			alg = "ES256"
		case 384:
			alg = "ES384"
		case 521:
			alg = "ES512"
		default:
			return "", fmt.Errorf("unsupported curve %s", k.Curve.Params().Name)
		}
		if want != "" && want != alg {
			return "", fmt.Errorf("algorithm %s does not fit a %s key (it signs with %s)", want, k.Curve.Params().Name, alg)
		}
		return alg, nil
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key of %d bits is too short (want at least 2048)", k.N.BitLen())
		}
		switch want {
		case "":
			return "RS256", nil
		case "RS256", "RS384", "RS512":
			return want, nil
		}
		return "", fmt.Errorf("algorithm %s does not fit an RSA key (want RS256, RS384 or RS512)", want)
	}
	return "", fmt.Errorf("unsupported key type %T", key)
}

// Secret is a key for HMACs derived from the private key: the same on
// every instance that signs with this key, unknown to anyone else.
func (s *Signer) Secret() []byte { return s.secret[:] }

// Algorithm is the JWS algorithm the signer uses.
func (s *Signer) Algorithm() string { return s.method.Alg() }

// KeyID is the key id written in every token header.
func (s *Signer) KeyID() string { return s.kid }

// Certificates is the chain sent as x5c, leaf first.
func (s *Signer) Certificates() []*x509.Certificate { return s.chain }

// Sign returns the compact JWS of the claims.
func (s *Signer) Sign(c *Claims) (string, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	header := s.header
	if c.Kind != "" {
		// Only we verify refresh tokens: no certificate chain, so they
		// stay small enough for a Basic header (containerd's fallback).
		header = s.kidHeader
	}
	signing := header + "." + base64.RawURLEncoding.EncodeToString(body)
	sig, err := s.method.Sign(signing, s.key)
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

// Verify checks a token this signer made: the algorithm is pinned to our
// key (so "none", HS256 and foreign keys fail), the signature, exp (which
// must be present), nbf, the issuer and that the audience is one of
// audiences. Key material inside the token's header is never used.
func (s *Signer) Verify(raw, issuer string, audiences []string, now time.Time) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return s.key.Public(), nil },
		jwt.WithValidMethods([]string{s.method.Alg()}),
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

// ErrWrongKind: a valid token of the other kind, an access token where a
// refresh token is due or the reverse.
var ErrWrongKind = errors.New("token of the wrong kind")

// VerifyAccess checks an access token for one of services: what the proxy
// lets pass as a bearer. A refresh token is never one, whatever its
// audience.
func (s *Signer) VerifyAccess(raw, issuer string, services []string, now time.Time) (*Claims, error) {
	c, err := s.Verify(raw, issuer, services, now)
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

// CertificatesPEM is the bundle a registry's rootcertbundle should hold.
func (s *Signer) CertificatesPEM() []byte { return MarshalCertificatesPEM(s.chain) }

// JWKS is the public key as a JSON Web Key Set, with the key id tokens
// carry, for a registry configured with jwks.
func (s *Signer) JWKS() ([]byte, error) {
	k, err := publicJWK(s.key.Public(), s.method.Alg(), s.kid)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(struct {
		Keys []jwk `json:"keys"`
	}{[]jwk{k}}, "", "  ")
}
