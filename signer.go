package registryauth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/token"
)

// SignerConfig says which key signs a policy's tokens, how tokens name it
// and how it is rotated. With neither key_file nor cert_file, a key is
// generated once and kept in Caddy's storage, so every Caddy instance
// sharing that storage signs with the same key, and it is replaced before
// its certificate ends. Every key, its state and the refresh-token secret
// live in the storage's keyring document (rotation.go, keyring.go).
type SignerConfig struct {
	// KeyFile is a PEM private key (EC P-256/P-384/P-521 or RSA ≥ 2048
	// bits). Requires CertFile.
	KeyFile string `json:"key_file,omitempty"`
	// CertFile is the PEM certificate chain of KeyFile, leaf first. The
	// registry's rootcertbundle must hold its root (or the leaf itself).
	CertFile string `json:"cert_file,omitempty"`
	// NextKeyFile and NextCertFile are the next key, staged: published in
	// the bundle and JWKS beside the current one at once, signing only
	// once promoted through the admin API. Only with key_file.
	NextKeyFile  string `json:"next_key_file,omitempty"`
	NextCertFile string `json:"next_cert_file,omitempty"`
	// Algorithm is the JWS algorithm. For a generated key: ES256
	// (default), ES384, ES512, RS256, RS384 or RS512; a change applies to
	// the next key generated. For key files it must fit the keys and
	// defaults to what each key implies.
	Algorithm string `json:"algorithm,omitempty"`
	// Header is "x5c" (default: certificate chain and libtrust key id,
	// accepted by registry 2.8 and 3.x with a rootcertbundle) or "kid"
	// (key id only, for a 3.x registry configured with a jwks file).
	Header string `json:"header,omitempty"`
	// KeyID overrides the key id of the signing key. It names one key, so
	// generated keys are then never rotated automatically nor staged.
	// With header "kid" it defaults to distribution 3.x's thumbprint.
	KeyID string `json:"key_id,omitempty"`
	// BundleFile, if set, is where the certificate bundle (the
	// registry's rootcertbundle) is written when the app starts and
	// whenever the published keys change.
	BundleFile string `json:"bundle_file,omitempty"`
	// JWKSFile, if set, is where the JSON Web Key Set (the registry's
	// jwks) is written when the app starts and whenever the published
	// keys change.
	JWKSFile string `json:"jwks_file,omitempty"`
	// Rotation is "auto" (default for generated keys: stage a new key
	// stage_period before promoting it, promote it a week before the
	// certificate ends or rotate_every after the last promotion, retire
	// the old one once its access tokens have expired) or "manual"
	// (only through the admin API; always so for key files).
	Rotation string `json:"rotation,omitempty"`
	// RotateEvery replaces a generated key this often. Default: only
	// before its certificate ends.
	RotateEvery caddy.Duration `json:"rotate_every,omitempty"`
	// StagePeriod is how long a generated key is staged before automatic
	// promotion: the time to restart registries with the new bundle.
	// Default 7 days.
	StagePeriod caddy.Duration `json:"stage_period,omitempty"`
	// SyncInterval is how often the keys in storage are read, so that a
	// change made by another instance (or the admin API) takes effect
	// here. Default 10s, at least 1s.
	SyncInterval caddy.Duration `json:"sync_interval,omitempty"`
}

// Defaults of the signer.
const (
	// defaultAlgorithm is what a generated key signs with: small, fast
	// tokens that every registry verifies.
	defaultAlgorithm    = "ES256"
	DefaultStagePeriod  = 7 * 24 * time.Hour
	DefaultSyncInterval = 10 * time.Second
	minSyncInterval     = time.Second
)

// Rotation modes.
const (
	rotationAuto   = "auto"
	rotationManual = "manual"
)

// fileKey is a key read from key_file or next_key_file.
type fileKey struct {
	id      string
	private crypto.Signer
	chain   []*x509.Certificate
}

// provision returns the keyring of the policy called name, whose signer
// the policy uses: its keys loaded from storage (generated there, or
// recorded from the key files, on first use). A nil sc is the default.
func (sc *SignerConfig) provision(ctx caddy.Context, name string, times keyTimes) (*keyring, error) {
	var c SignerConfig
	if sc != nil {
		c = *sc
	}
	for _, f := range []*string{&c.KeyFile, &c.CertFile, &c.NextKeyFile, &c.NextCertFile} {
		*f = expand(*f)
	}
	return openKeyring(ctx, name, c, ctx.Storage(), ctx.Logger(), times)
}

// openKeyring checks the configuration, reads the key files and opens the
// policy's keyring in storage.
func openKeyring(ctx context.Context, name string, c SignerConfig, storage certmagic.Storage, logger *zap.Logger, times keyTimes) (*keyring, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	k := &keyring{name: name, cfg: c, storage: storage, logger: logger, times: times, clock: time.Now}
	k.times.sync = c.syncInterval()
	k.plan = rotationPlan{every: time.Duration(c.RotateEvery), stagePeriod: c.stagePeriod()}
	var err error
	if k.files, err = c.readFiles(logger, name); err != nil {
		return nil, err
	}
	return k, k.open(ctx)
}

// validate checks the fields that go together.
func (sc *SignerConfig) validate() error {
	files := sc.KeyFile != "" || sc.CertFile != ""
	if sc.Algorithm != "" {
		if err := token.CheckAlgorithm(sc.Algorithm); err != nil {
			return fmt.Errorf("algorithm: %v", err)
		}
	}
	switch {
	case (sc.KeyFile == "") != (sc.CertFile == ""):
		return errors.New("key_file and cert_file go together")
	case (sc.NextKeyFile == "") != (sc.NextCertFile == ""):
		return errors.New("next_key_file and next_cert_file go together")
	case sc.NextKeyFile != "" && !files:
		return errors.New("next_key_file: only with key_file (generated keys are staged through the admin API)")
	case token.CheckHeader(sc.Header) != nil:
		return token.CheckHeader(sc.Header)
	case sc.Rotation != "" && sc.Rotation != rotationAuto && sc.Rotation != rotationManual:
		return fmt.Errorf("rotation: %q is neither auto nor manual", sc.Rotation)
	case files && sc.Rotation == rotationAuto:
		return errors.New("rotation: key files are rotated by hand (next_key_file, then promote); auto is for generated keys")
	case files && (sc.RotateEvery != 0 || sc.StagePeriod != 0):
		return errors.New("rotate_every and stage_period: only for generated keys")
	case sc.KeyID != "" && (sc.NextKeyFile != "" || sc.RotateEvery != 0 || sc.Rotation == rotationAuto):
		return errors.New("key_id names a single key: remove it to rotate keys")
	case sc.RotateEvery < 0 || sc.StagePeriod < 0:
		return errors.New("rotate_every and stage_period: must be positive")
	case sc.RotateEvery != 0 && time.Duration(sc.RotateEvery) <= sc.stagePeriod():
		return fmt.Errorf("rotate_every: %s must be longer than stage_period (%s)", time.Duration(sc.RotateEvery), sc.stagePeriod())
	case sc.SyncInterval != 0 && time.Duration(sc.SyncInterval) < minSyncInterval:
		return fmt.Errorf("sync_interval: at least %s", minSyncInterval)
	}
	return nil
}

func (sc *SignerConfig) stagePeriod() time.Duration {
	if sc.StagePeriod == 0 {
		return DefaultStagePeriod
	}
	return time.Duration(sc.StagePeriod)
}

func (sc *SignerConfig) syncInterval() time.Duration {
	if sc.SyncInterval == 0 {
		return DefaultSyncInterval
	}
	return time.Duration(sc.SyncInterval)
}

// automatic reports whether generated keys rotate without an operator.
func (sc *SignerConfig) automatic() bool {
	return sc.KeyFile == "" && sc.KeyID == "" && sc.Rotation != rotationManual
}

// generatedAlgorithm is the algorithm of keys generated from now on.
func (sc *SignerConfig) generatedAlgorithm() string {
	if sc.Algorithm == "" {
		return defaultAlgorithm
	}
	return sc.Algorithm
}

// readFiles reads key_file and next_key_file: none, the current key, or
// the current and the next.
func (sc *SignerConfig) readFiles(logger *zap.Logger, name string) ([]*fileKey, error) {
	var keys []*fileKey
	for _, pair := range [][2]string{{sc.KeyFile, sc.CertFile}, {sc.NextKeyFile, sc.NextCertFile}} {
		if pair[0] == "" {
			break
		}
		if fi, err := os.Stat(pair[0]); err == nil && fi.Mode().Perm()&0o004 != 0 {
			logger.Warn("a signing key file is readable by every user of this host: chmod o-r it",
				zap.String("policy", name), zap.String("file", pair[0]))
		}
		k, err := readKeyPair(pair[0], pair[1], len(keys) > 0)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 2 && keys[0].id == keys[1].id {
		return nil, errors.New("next_key_file holds the same key as key_file")
	}
	return keys, nil
}

func readKeyPair(keyFile, certFile string, next bool) (*fileKey, error) {
	prefix := ""
	if next {
		prefix = "next_"
	}
	private, err := readPEMFile(prefix+"key_file", keyFile, token.ParsePrivateKeyPEM)
	if err != nil {
		return nil, err
	}
	chain, err := readPEMFile(prefix+"cert_file", certFile, token.ParseCertificatesPEM)
	if err != nil {
		return nil, err
	}
	if _, err := token.NewKey(private, chain, token.SignerOptions{}); err != nil {
		return nil, fmt.Errorf("%skey_file %s: %v", prefix, keyFile, err)
	}
	id, err := publicKeyID(private.Public())
	return &fileKey{id: id, private: private, chain: chain}, err
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

// publicKeyID names a key in the keyring: the first 16 bytes of the
// SHA-256 of its public half, in hex.
func publicKeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:16]), nil
}

// export writes the public certificate bundle and JWKS where configured.
func (sc *SignerConfig) export(bundle, jwks []byte) error {
	if sc.BundleFile != "" {
		if err := writeFileAtomic(sc.BundleFile, bundle); err != nil {
			return fmt.Errorf("bundle_file: %v", err)
		}
	}
	if sc.JWKSFile != "" {
		if err := writeFileAtomic(sc.JWKSFile, jwks); err != nil {
			return fmt.Errorf("jwks_file: %v", err)
		}
	}
	return nil
}

// writeFileAtomic replaces a file by rename, so a registry reading it at
// start never sees half of it. The temporary file is unique, so instances
// that write the same file at once never mix their writes.
func writeFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // gone after the rename; cleans up on failure
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
