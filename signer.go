package registryauth

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/token"
)

// SignerConfig says which key signs a policy's tokens and how tokens name
// it. With neither key_file nor cert_file, a key is generated once and kept
// in Caddy's storage, so every Caddy instance sharing that storage signs
// with the same key.
type SignerConfig struct {
	// KeyFile is a PEM private key (EC P-256/P-384/P-521 or RSA ≥ 2048
	// bits). Requires CertFile.
	KeyFile string `json:"key_file,omitempty"`
	// CertFile is the PEM certificate chain of KeyFile, leaf first. The
	// registry's rootcertbundle must hold its root (or the leaf itself).
	CertFile string `json:"cert_file,omitempty"`
	// Algorithm is the JWS algorithm. For a generated key: ES256
	// (default), ES384, ES512, RS256, RS384 or RS512. For a key file it
	// must fit the key and defaults to what the key implies.
	Algorithm string `json:"algorithm,omitempty"`
	// Header is "x5c" (default: certificate chain and libtrust key id,
	// accepted by registry 2.8 and 3.x with a rootcertbundle) or "kid"
	// (key id only, for a 3.x registry configured with a jwks file).
	Header string `json:"header,omitempty"`
	// KeyID overrides the key id. With header "kid" it defaults to
	// distribution 3.x's thumbprint of the key.
	KeyID string `json:"key_id,omitempty"`
	// BundleFile, if set, is where the certificate bundle (the
	// registry's rootcertbundle) is written when the app starts.
	BundleFile string `json:"bundle_file,omitempty"`
	// JWKSFile, if set, is where the JSON Web Key Set (the registry's
	// jwks) is written when the app starts.
	JWKSFile string `json:"jwks_file,omitempty"`
}

// defaultAlgorithm is what a generated key signs with: small, fast tokens
// that every registry verifies.
const defaultAlgorithm = "ES256"

// provision returns the signer of the policy called name, and the
// configuration with its placeholders expanded, which says where the
// public keys are written. A nil sc is the default: a generated key.
func (sc *SignerConfig) provision(ctx caddy.Context, name string) (*token.Signer, SignerConfig, error) {
	var c SignerConfig
	if sc != nil {
		c = *sc
	}
	c.KeyFile, c.CertFile = expand(c.KeyFile), expand(c.CertFile)
	s, err := c.load(ctx, name)
	return s, c, err
}

// load returns the signer for the policy called name.
func (sc *SignerConfig) load(ctx caddy.Context, name string) (*token.Signer, error) {
	key, chain, err := sc.loadKey(ctx, name)
	if err != nil {
		return nil, err
	}
	s, err := token.NewSigner(key, chain, token.SignerOptions{
		Algorithm: sc.Algorithm, Header: sc.Header, KeyID: sc.KeyID,
	})
	if err != nil {
		return nil, err
	}
	if leaf := chain[0]; time.Now().After(leaf.NotAfter) {
		return nil, fmt.Errorf("signing certificate expired on %s: registries would reject every token", leaf.NotAfter.Format(time.DateOnly))
	}
	return s, nil
}

func (sc *SignerConfig) loadKey(ctx caddy.Context, name string) (crypto.Signer, []*x509.Certificate, error) {
	switch {
	case sc.KeyFile != "" && sc.CertFile != "":
		if fi, err := os.Stat(sc.KeyFile); err == nil && fi.Mode().Perm()&0o004 != 0 {
			ctx.Logger().Warn("the signing key file is readable by every user of this host: chmod o-r it",
				zap.String("policy", name), zap.String("key_file", sc.KeyFile))
		}
		return readKeyPair(sc.KeyFile, sc.CertFile)
	case sc.KeyFile != "" || sc.CertFile != "":
		return nil, nil, errors.New("key_file and cert_file go together")
	}
	return sc.loadOrGenerate(ctx, name)
}

func readKeyPair(keyFile, certFile string) (crypto.Signer, []*x509.Certificate, error) {
	key, err := readPEMFile("key_file", keyFile, token.ParsePrivateKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	chain, err := readPEMFile("cert_file", certFile, token.ParseCertificatesPEM)
	return key, chain, err
}

// readPEMFile reads and parses the PEM file a configuration field names.
func readPEMFile[T any](field, path string, parse func([]byte) (T, error)) (T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %v", field, err)
	}
	v, err := parse(data)
	if err != nil {
		return v, fmt.Errorf("%s %s: %v", field, path, err)
	}
	return v, nil
}

// loadOrGenerate keeps a generated key in Caddy's storage. The storage lock
// makes instances that share storage agree on one key: the first generates
// it, the others load it.
func (sc *SignerConfig) loadOrGenerate(ctx caddy.Context, name string) (crypto.Signer, []*x509.Certificate, error) {
	alg := sc.Algorithm
	if alg == "" {
		alg = defaultAlgorithm
	}
	storage := ctx.Storage()
	dir := path.Join("registry_auth", "signers", name, alg)
	keyKey, certKey := path.Join(dir, "key.pem"), path.Join(dir, "cert.pem")

	if err := storage.Lock(ctx, dir); err != nil {
		return nil, nil, fmt.Errorf("locking %s in storage: %v", dir, err)
	}
	defer func() { _ = storage.Unlock(ctx, dir) }()

	keyPEM, kerr := storage.Load(ctx, keyKey)
	certPEM, cerr := storage.Load(ctx, certKey)
	if kerr == nil && cerr == nil {
		key, err := token.ParsePrivateKeyPEM(keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("stored signing key %s: %v", keyKey, err)
		}
		chain, err := token.ParseCertificatesPEM(certPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("stored signing certificate %s: %v", certKey, err)
		}
		return key, chain, nil
	}
	for _, err := range []error{kerr, cerr} {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("loading signing key from storage: %v", err)
		}
	}

	key, cert, err := token.GenerateKey(alg, "caddy-registry-auth token signer ("+name+")", time.Now())
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = token.MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	chain := []*x509.Certificate{cert}
	if err := storage.Store(ctx, keyKey, keyPEM); err != nil {
		return nil, nil, fmt.Errorf("storing signing key: %v", err)
	}
	if err := storage.Store(ctx, certKey, token.MarshalCertificatesPEM(chain)); err != nil {
		return nil, nil, fmt.Errorf("storing signing certificate: %v", err)
	}
	ctx.Logger().Info("generated a token signing key", zap.String("policy", name),
		zap.String("algorithm", alg), zap.String("storage_key", dir))
	return key, chain, nil
}

// export writes the public certificate bundle and JWKS where configured.
func (sc *SignerConfig) export(s *token.Signer) error {
	if sc.BundleFile != "" {
		if err := writeFileAtomic(sc.BundleFile, s.CertificatesPEM()); err != nil {
			return fmt.Errorf("bundle_file: %v", err)
		}
	}
	if sc.JWKSFile != "" {
		jwks, err := s.JWKS()
		if err != nil {
			return err
		}
		if err := writeFileAtomic(sc.JWKSFile, jwks); err != nil {
			return fmt.Errorf("jwks_file: %v", err)
		}
	}
	return nil
}

// writeFileAtomic replaces a file by rename, so a registry reading it at
// start never sees half of it.
func writeFileAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
