package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// GeneratedCertLifetime is how long a generated signing certificate is
// valid. Registries reject tokens whose x5c leaf has expired, so it is long;
// the key never leaves the host, only this certificate does.
const GeneratedCertLifetime = 10 * 365 * 24 * time.Hour

// Algorithms are the JWS algorithms tokens are signed with: those both
// registry families verify.
var Algorithms = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512"}

// CheckAlgorithm refuses an algorithm tokens are not signed with.
func CheckAlgorithm(alg string) error {
	if !slices.Contains(Algorithms, alg) {
		return fmt.Errorf("unsupported signing algorithm %q (want %s)", alg, strings.Join(Algorithms, ", "))
	}
	return nil
}

// CheckHeader refuses a header mode other than HeaderX5C and HeaderKID
// ("" is the default, HeaderX5C).
func CheckHeader(mode string) error {
	if mode != "" && mode != HeaderX5C && mode != HeaderKID {
		return fmt.Errorf("header: want %s or %s, got %q", HeaderX5C, HeaderKID, mode)
	}
	return nil
}

// GenerateKey makes a signing key for the algorithm (ES256, ES384, ES512 or
// RS256/RS384/RS512) and a self-signed certificate for it, which then is
// both the x5c leaf and the registry's root certificate bundle.
func GenerateKey(alg, commonName string, now time.Time) (crypto.Signer, *x509.Certificate, error) {
	var key crypto.Signer
	var err error
	switch alg {
	case "ES256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256", "RS384", "RS512":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		// Every algorithm of Algorithms has a case above; this one is
		// either not supported or was added there without one.
		if err := CheckAlgorithm(alg); err != nil {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("no key generator for algorithm %s", alg)
	}
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(GeneratedCertLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

// ParsePrivateKeyPEM reads an EC or RSA private key in PKCS#8, SEC 1 or
// PKCS#1 PEM form.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no private key PEM block found")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue // e.g. "EC PARAMETERS" before the key
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %v", block.Type, err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		}
		return nil, fmt.Errorf("unsupported private key type %T (want EC or RSA)", key)
	}
}

// MarshalPrivateKeyPEM writes a key as PKCS#8 PEM.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertificatesPEM reads a certificate chain, leaf first.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate %d: %v", len(chain)+1, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block found")
	}
	return chain, nil
}

// MarshalCertificatesPEM writes a chain as concatenated PEM blocks.
func MarshalCertificatesPEM(chain []*x509.Certificate) []byte {
	var out []byte
	for _, c := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// LibtrustKeyID is the key id registry 2.8 derives from a public key: the
// first 240 bits of the SHA-256 of its PKIX DER form, base32, in twelve
// groups of four joined by colons.
func LibtrustKeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	enc := base32.StdEncoding.EncodeToString(sum[:30])
	groups := make([]string, 0, 12)
	for i := 0; i < len(enc); i += 4 {
		groups = append(groups, enc[i:i+4])
	}
	return strings.Join(groups, ":"), nil
}

// DistributionThumbprint is the key id distribution 3.1 derives from a
// trusted root: a SHA-256 JWK thumbprint whose EC coordinates and RSA
// modulus are NOT left-padded to their full size, so it differs from RFC
// 7638 for a few keys. It must be computed exactly that way to be found.
func DistributionThumbprint(pub crypto.PublicKey) (string, error) {
	var payload string
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		x, y, err := ecCoordinates(k)
		if err != nil {
			return "", err
		}
		payload = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, k.Curve.Params().Name,
			b64(bytes.TrimLeft(x, "\x00")), b64(bytes.TrimLeft(y, "\x00")))
	case *rsa.PublicKey:
		payload = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`,
			b64(big.NewInt(int64(k.E)).Bytes()), b64(k.N.Bytes()))
	default:
		return "", fmt.Errorf("unsupported public key type %T", pub)
	}
	sum := sha256.Sum256([]byte(payload))
	return b64(sum[:]), nil
}

// ecCoordinates returns a point's coordinates padded to the curve size.
func ecCoordinates(pub *ecdsa.PublicKey) (x, y []byte, err error) {
	point, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, nil, err
	}
	size := (len(point) - 1) / 2
	return point[1 : 1+size], point[1+size:], nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk is one entry of a JSON Web Key Set (RFC 7517), public parts only.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

func publicJWK(pub crypto.PublicKey, alg, kid string) (jwk, error) {
	k := jwk{Use: "sig", Alg: alg, Kid: kid}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		// RFC 7518 §6.2.1.2: coordinates are padded to the curve size;
		// JWKS readers such as go-jose refuse shorter ones.
		x, y, err := ecCoordinates(p)
		if err != nil {
			return k, err
		}
		k.Kty, k.Crv = "EC", p.Curve.Params().Name
		k.X, k.Y = b64(x), b64(y)
	case *rsa.PublicKey:
		k.Kty = "RSA"
		k.N, k.E = b64(p.N.Bytes()), b64(big.NewInt(int64(p.E)).Bytes())
	default:
		return k, fmt.Errorf("unsupported public key type %T", pub)
	}
	return k, nil
}

// bundleOf is the PEM bundle of the keys' chains, each certificate once.
func bundleOf(keys []*Key) []byte {
	var certs []*x509.Certificate
	for _, k := range keys {
		for _, c := range k.chain {
			if !slices.ContainsFunc(certs, func(d *x509.Certificate) bool { return d.Equal(c) }) {
				certs = append(certs, c)
			}
		}
	}
	return MarshalCertificatesPEM(certs)
}

// jwksOf is the JSON Web Key Set of the keys' public halves, each with
// the key id its tokens carry.
func jwksOf(keys []*Key) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	for _, k := range keys {
		j, err := publicJWK(k.public, k.method.Alg(), k.kid)
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, j)
	}
	return json.MarshalIndent(set, "", "  ")
}
