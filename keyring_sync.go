package registryauth

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/token"
)

// How the keyring follows the keys in storage while Caddy runs: every
// sync_interval it reads the document, applies a change to the signer
// (made here, through the admin API, or on another instance) and writes
// the public documents when the published keys changed.

// sync reads the document and applies what changed; when an automatic
// step is due, it takes the lock and runs it. Run every sync_interval.
func (k *keyring) sync(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	raw, err := k.storage.Load(ctx, keyringKey(k.name))
	if err != nil {
		return fmt.Errorf("reading %s: %v", keyringKey(k.name), err)
	}
	doc, err := parseKeyring(raw)
	if err != nil {
		return err
	}
	if k.due(doc, k.clock()) {
		if raw, doc, err = k.update(ctx, func(*keyringDoc, time.Time) error { return nil }, false); err != nil {
			return err
		}
	} else if raw, err = marshalKeyring(doc); err != nil {
		// Compared in the form this version writes: a document stored
		// in another form (a newer version's fields, a restored backup)
		// is not a change each time it is read.
		return err
	}
	return k.apply(raw, doc)
}

// apply builds the signer's key set from the document, unless it is the
// one applied last, and writes the public documents if they changed.
func (k *keyring) apply(raw []byte, d *keyringDoc) error {
	if k.signer != nil && bytes.Equal(raw, k.applied) {
		return nil
	}
	set, err := k.keySet(d)
	if err != nil {
		return err
	}
	if k.exporting {
		// The files first: what a registry reads from them is never
		// behind what the endpoints serve or the signer signs with.
		if err := k.export(set); err != nil {
			return err
		}
	}
	if k.signer == nil {
		k.signer, err = token.NewKeySetSigner(set)
	} else {
		err = k.signer.Use(set)
	}
	if err != nil {
		return err
	}
	k.applied = raw
	setKeyGauges(k.name, d)
	k.logger.Info("signing keys in use", zap.String("policy", k.name), zap.String("signing", d.find(keySigning).ID),
		zap.String("kid", set.Signing.KeyID()), zap.Int("published", 1+len(set.Published)), zap.Int("verify_only", len(set.Retired)))
	return nil
}

// keySet makes the signer's keys of the document: the signing key with
// its private half (from the document or a key file), the others public.
func (k *keyring) keySet(d *keyringDoc) (token.KeySet, error) {
	set := token.KeySet{Secret: d.RefreshSecret}
	for _, s := range d.Keys {
		chain, err := token.ParseCertificatesPEM([]byte(s.CertPEM))
		if err != nil {
			return set, fmt.Errorf("key %s: %v", s.ID, err)
		}
		opts := token.SignerOptions{Algorithm: s.Algorithm, Header: k.cfg.Header}
		var key *token.Key
		switch s.State {
		case keySigning:
			opts.KeyID = k.cfg.KeyID
			var private crypto.Signer
			if private, err = k.privateOf(s); err == nil {
				key, err = token.NewKey(private, chain, opts)
			}
			set.Signing = key
		case keyRetired:
			key, err = token.NewVerifyKey(chain, opts)
			set.Retired = append(set.Retired, key)
		default:
			key, err = token.NewVerifyKey(chain, opts)
			set.Published = append(set.Published, key)
		}
		if err != nil {
			return set, fmt.Errorf("key %s: %v", s.ID, err)
		}
	}
	return set, nil
}

// privateOf is a key's private half: in the document, or in a key file
// of this instance's configuration.
func (k *keyring) privateOf(s storedKey) (crypto.Signer, error) {
	if s.KeyPEM != "" {
		return token.ParsePrivateKeyPEM([]byte(s.KeyPEM))
	}
	if f := k.fileByID(s.ID); f != nil {
		return f.private, nil
	}
	return nil, fmt.Errorf("neither the keyring nor this instance's key files hold the private key: give every instance sharing the storage the same next_key_file")
}

// export writes the bundle and JWKS files of a key set if they changed
// since the last write.
func (k *keyring) export(set token.KeySet) error {
	bundle, jwks, err := token.PublicDocuments(set)
	if err != nil {
		return err
	}
	both := append(append([]byte{}, bundle...), jwks...)
	if bytes.Equal(both, k.exported) {
		return nil
	}
	if err := k.cfg.export(bundle, jwks); err != nil {
		return err
	}
	k.exported = both
	return nil
}

// start writes the public documents and, from now on, whenever they
// change; the admin API reaches this keyring from now on.
func (k *keyring) start() error {
	k.mu.Lock()
	k.exporting = true
	err := k.export(k.signer.Keys())
	k.mu.Unlock()
	if err == nil {
		runningKeyrings.put(k)
	}
	return err
}

// run syncs every sync_interval until stop is closed. A failure is logged
// once until it changes; the keys in use stay.
func (k *keyring) run(stop <-chan struct{}) {
	defer func() {
		// A policy no newer config took over is gone: so are its gauges.
		if runningKeyrings.remove(k) {
			deleteKeyGauges(k.name)
		}
	}()
	tick := time.NewTicker(k.times.sync)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := k.sync(ctx)
		cancel()
		k.report(err)
	}
}

func (k *keyring) report(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case err == nil && k.lastErr != "":
		k.logger.Info("the signing keys in storage can be read again", zap.String("policy", k.name))
		k.lastErr = ""
	case err != nil && err.Error() != k.lastErr:
		k.logger.Error("syncing the signing keys from storage failed; the keys in use stay", zap.String("policy", k.name), zap.Error(err))
		k.lastErr = err.Error()
	}
}

// runningKeyrings are the keyrings of the running config, by policy name,
// for the admin API.
var runningKeyrings = keyringIndex{m: map[string]*keyring{}}

type keyringIndex struct {
	sync.Mutex
	m map[string]*keyring
}

func (x *keyringIndex) put(k *keyring) {
	x.Lock()
	defer x.Unlock()
	x.m[k.name] = k
}

// remove forgets k unless a newer config's keyring took its place, and
// reports whether it did.
func (x *keyringIndex) remove(k *keyring) bool {
	x.Lock()
	defer x.Unlock()
	if x.m[k.name] != k {
		return false
	}
	delete(x.m, k.name)
	return true
}

func (x *keyringIndex) get(name string) *keyring {
	x.Lock()
	defer x.Unlock()
	return x.m[name]
}
