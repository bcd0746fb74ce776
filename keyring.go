package registryauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/token"
)

// keyring keeps a policy's signer in step with its keys in Caddy's
// storage: it creates the keyring document on first use, runs the steps
// of rotation.go under the storage lock, applies what changed (here or on
// another instance sharing the storage) to the signer, and writes the
// public documents whenever the published keys change.
type keyring struct {
	name    string
	cfg     SignerConfig // placeholders expanded
	storage certmagic.Storage
	logger  *zap.Logger
	times   keyTimes
	plan    rotationPlan
	files   []*fileKey // key_file's key, then next_key_file's
	signer  *token.Signer
	clock   func() time.Time // time.Now, but in tests

	mu        sync.Mutex // one step at a time in this process
	applied   []byte     // the document the signer was built from
	exported  []byte     // the public documents last written
	exporting bool       // the app runs: write them when they change
	lastErr   string     // the last failure of sync, logged once
}

// keyringKey is where a policy's keys live in storage.
func keyringKey(policyName string) string {
	return path.Join("registry_auth", "signers", policyName, "keyring.json")
}

// legacyDir is where versions before the keyring kept a generated key.
func legacyDir(policyName, alg string) string {
	return path.Join("registry_auth", "signers", policyName, alg)
}

// open loads the keys when the configuration loads: the document is made
// on first use and brought in line with the configured key files, and
// the automatic steps that are due run.
func (k *keyring) open(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	raw, doc, err := k.update(ctx, k.reconcile, true)
	if err != nil {
		return err
	}
	if err := k.apply(raw, doc); err != nil {
		return err
	}
	if leaf := k.signer.Certificates()[0]; k.clock().After(leaf.NotAfter) {
		return fmt.Errorf("signing certificate expired on %s: registries would reject every token", leaf.NotAfter.Format(time.DateOnly))
	}
	return nil
}

// update changes the document under the storage lock: change, then the
// automatic steps that are due, then the document is stored if it differs.
// A missing document is created only if create is set (at a config load):
// a sync that finds none must not mint a new key.
func (k *keyring) update(ctx context.Context, change func(*keyringDoc, time.Time) error, create bool) ([]byte, *keyringDoc, error) {
	key := keyringKey(k.name)
	if err := k.storage.Lock(ctx, key); err != nil {
		return nil, nil, fmt.Errorf("locking %s in storage: %v", key, err)
	}
	// Unlock even if the admin client went away mid-request.
	defer func() { _ = k.storage.Unlock(context.WithoutCancel(ctx), key) }()
	doc, err := k.load(ctx)
	var before []byte // nil: store whatever comes out
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		doc, err = k.create(ctx)
	case errors.Is(err, fs.ErrNotExist):
		err = fmt.Errorf("the keys of policy %q are missing from storage (%s)", k.name, key)
	case err == nil:
		before, err = marshalKeyring(doc)
	}
	if err != nil {
		return nil, nil, err
	}
	now := k.clock().UTC().Truncate(time.Second)
	if err := change(doc, now); err != nil {
		return nil, nil, err
	}
	if err := k.advance(doc, now); err != nil {
		return nil, nil, err
	}
	after, err := marshalKeyring(doc)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(before, after) {
		if err := k.storage.Store(ctx, key, after); err != nil {
			return nil, nil, fmt.Errorf("storing %s: %v", key, err)
		}
	}
	return after, doc, nil
}

func (k *keyring) load(ctx context.Context) (*keyringDoc, error) {
	raw, err := k.storage.Load(ctx, keyringKey(k.name))
	if err != nil {
		return nil, err
	}
	return parseKeyring(raw)
}

// parseKeyring reads a stored document and refuses one a signer could
// not use. Unknown fields are kept out, not refused: a newer version may
// have written them.
func parseKeyring(raw []byte) (*keyringDoc, error) {
	var d keyringDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("stored keyring: %v", err)
	}
	if err := d.check(); err != nil {
		return nil, fmt.Errorf("stored keyring: %v", err)
	}
	return &d, nil
}

// marshalKeyring is the stored form: indented, for the operator who
// inspects a backup.
func marshalKeyring(d *keyringDoc) ([]byte, error) { return json.MarshalIndent(d, "", "  ") }

// create makes the first document: the configured key file's key (and the
// next one staged), the key an earlier version generated, or a new key.
// The refresh secret is derived from that first key, as earlier versions
// derived it, so their refresh tokens stay valid.
func (k *keyring) create(ctx context.Context) (*keyringDoc, error) {
	var first storedKey
	var private crypto.Signer
	var err error
	switch {
	case len(k.files) > 0:
		private = k.files[0].private
		first, err = k.storedFromFile(k.files[0])
	default:
		first, private, err = k.loadLegacy(ctx)
		if errors.Is(err, fs.ErrNotExist) {
			first, private, err = k.generate(k.clock())
			if err == nil {
				k.logger.Info("generated a token signing key", zap.String("policy", k.name),
					zap.String("algorithm", first.Algorithm), zap.String("storage_key", keyringKey(k.name)))
			}
		}
	}
	if err != nil {
		return nil, err
	}
	secret, err := token.DeriveSecret(private)
	if err != nil {
		return nil, err
	}
	first.State = keySigning
	d := &keyringDoc{Keys: []storedKey{first}, RefreshSecret: secret}
	if len(k.files) == 2 {
		next, err := k.storedFromFile(k.files[1])
		if err != nil {
			return nil, err
		}
		return d, d.stage(next)
	}
	return d, nil
}

// loadLegacy reads the key an earlier version generated, if there is one.
func (k *keyring) loadLegacy(ctx context.Context) (storedKey, crypto.Signer, error) {
	alg := k.cfg.generatedAlgorithm()
	dir := legacyDir(k.name, alg)
	keyPEM, err := k.storage.Load(ctx, path.Join(dir, "key.pem"))
	if err != nil {
		return storedKey{}, nil, err
	}
	certPEM, err := k.storage.Load(ctx, path.Join(dir, "cert.pem"))
	if err != nil {
		return storedKey{}, nil, err
	}
	private, err := token.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return storedKey{}, nil, fmt.Errorf("stored signing key %s: %v", dir, err)
	}
	chain, err := token.ParseCertificatesPEM(certPEM)
	if err != nil {
		return storedKey{}, nil, fmt.Errorf("stored signing certificate %s: %v", dir, err)
	}
	s, err := storedOf(private, chain, alg, sourceGenerated, chain[0].NotBefore)
	k.logger.Info("the generated signing key moves into the keyring", zap.String("policy", k.name),
		zap.String("from", dir), zap.String("to", keyringKey(k.name)))
	return s, private, err
}

// generate makes a new key with its self-signed certificate.
func (k *keyring) generate(now time.Time) (storedKey, crypto.Signer, error) {
	alg := k.cfg.generatedAlgorithm()
	private, cert, err := token.GenerateKey(alg, "caddy-registry-auth token signer ("+k.name+")", now)
	if err != nil {
		return storedKey{}, nil, err
	}
	s, err := storedOf(private, []*x509.Certificate{cert}, alg, sourceGenerated, now)
	return s, private, err
}

// storedFromFile records a key file's key: its certificate, never its
// private half, which stays in the file.
func (k *keyring) storedFromFile(f *fileKey) (storedKey, error) {
	key, err := token.NewKey(f.private, f.chain, token.SignerOptions{Algorithm: k.cfg.Algorithm})
	if err != nil {
		return storedKey{}, fmt.Errorf("key %s: %v", f.id, err)
	}
	return storedOf(nil, f.chain, key.Algorithm(), sourceFile, f.chain[0].NotBefore)
}

// storedOf is the stored form of a key; private is nil for key files.
func storedOf(private crypto.Signer, chain []*x509.Certificate, alg, source string, created time.Time) (storedKey, error) {
	id, err := publicKeyID(chain[0].PublicKey)
	if err != nil {
		return storedKey{}, err
	}
	s := storedKey{ID: id, Source: source, Algorithm: alg, Created: created.UTC().Truncate(time.Second),
		NotAfter: chain[0].NotAfter.UTC(), CertPEM: string(token.MarshalCertificatesPEM(chain))}
	if private != nil {
		keyPEM, err := token.MarshalPrivateKeyPEM(private)
		if err != nil {
			return s, err
		}
		s.KeyPEM = string(keyPEM)
	}
	return s, nil
}
