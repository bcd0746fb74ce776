package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// Key is one key of a Signer: its certificate chain, the one algorithm
// its tokens may carry, and the ids a token may name it by. A Key without
// its private half only verifies: a key that signs no more but whose
// tokens are still alive.
type Key struct {
	private crypto.Signer // nil: verify-only
	public  crypto.PublicKey
	method  jwt.SigningMethod
	chain   []*x509.Certificate
	// kid is written in the tokens this key signs; ids are every id a
	// token may name it by (kid, the libtrust id, the 3.x thumbprint), so
	// tokens signed before the header mode changed still find it.
	kid string
	ids []string
	// header is the encoded JOSE header of access tokens; kidHeader has
	// no x5c, for refresh tokens that only we verify.
	header, kidHeader string
}

// NewKey makes a signing key: the chain's leaf must hold the private
// key's public half and the algorithm must fit the key.
func NewKey(private crypto.Signer, chain []*x509.Certificate, opts SignerOptions) (*Key, error) {
	if len(chain) == 0 {
		return nil, errors.New("no certificate for the signing key")
	}
	pub, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if private == nil || !ok || !pub.Equal(private.Public()) {
		return nil, errors.New("the first certificate does not belong to the signing key")
	}
	k, err := NewVerifyKey(chain, opts)
	if err != nil {
		return nil, err
	}
	k.private = private
	return k, nil
}

// NewVerifyKey makes a key that only verifies, from its certificate chain.
func NewVerifyKey(chain []*x509.Certificate, opts SignerOptions) (*Key, error) {
	if len(chain) == 0 {
		return nil, errors.New("no certificate for the key")
	}
	pub := chain[0].PublicKey
	alg, err := algorithmFor(pub, opts.Algorithm)
	if err != nil {
		return nil, err
	}
	k := &Key{public: pub, method: jwt.GetSigningMethod(alg), chain: chain, kid: opts.KeyID}
	libtrust, err := LibtrustKeyID(pub)
	if err != nil {
		return nil, err
	}
	thumbprint, err := DistributionThumbprint(pub)
	if err != nil {
		return nil, err
	}
	hdr := map[string]any{"alg": alg, "typ": "JWT"}
	switch opts.Header {
	case "", HeaderX5C:
		if k.kid == "" {
			k.kid = libtrust
		}
		x5c := make([]string, len(chain))
		for i, c := range chain {
			x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
		}
		hdr["x5c"] = x5c
	case HeaderKID:
		if k.kid == "" {
			k.kid = thumbprint
		}
	default:
		return nil, CheckHeader(opts.Header)
	}
	k.ids = []string{k.kid}
	for _, id := range []string{libtrust, thumbprint} {
		if id != k.kid {
			k.ids = append(k.ids, id)
		}
	}
	hdr["kid"] = k.kid
	if k.header, err = encodeHeader(hdr); err != nil {
		return nil, err
	}
	delete(hdr, "x5c")
	k.kidHeader, err = encodeHeader(hdr)
	return k, err
}

func encodeHeader(hdr map[string]any) (string, error) {
	raw, err := json.Marshal(hdr)
	return base64.RawURLEncoding.EncodeToString(raw), err
}

// algorithmFor pins the algorithm to the key type: a curve has exactly one
// ECDSA algorithm, and RSA keys sign with PKCS#1 v1.5, which both registry
// families verify (PSS only 3.x).
func algorithmFor(pub crypto.PublicKey, want string) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
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
	case *rsa.PublicKey:
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
	return "", fmt.Errorf("unsupported key type %T", pub)
}

// KeyID is the key id written in the tokens this key signs.
func (k *Key) KeyID() string { return k.kid }

// Algorithm is the one JWS algorithm of this key's tokens.
func (k *Key) Algorithm() string { return k.method.Alg() }

// Certificates is the key's certificate chain, leaf first.
func (k *Key) Certificates() []*x509.Certificate { return k.chain }

// CanSign reports whether the key has its private half.
func (k *Key) CanSign() bool { return k.private != nil }

// DeriveSecret derives a key for HMACs from a private key: every instance
// that holds the private key computes the same, nobody else can.
func DeriveSecret(private crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(private)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("caddy-registry-auth secret\x00"), der...))
	return sum[:], nil
}
