package registryauth

import (
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"
)

// What the keyring does beside the operator's steps: it brings the keys in
// line with the configuration when it loads, and runs the automatic
// rotation of generated keys.

// reconcile brings the document in line with the configuration when it
// loads: key files decide which key signs; a generated key replaces one
// from files when they are gone from the configuration.
func (k *keyring) reconcile(d *keyringDoc, now time.Time) error {
	if len(k.files) > 0 {
		return k.reconcileFiles(d, now)
	}
	// Keys of files no longer configured are staged no more.
	d.Keys = slices.DeleteFunc(d.Keys, func(s storedKey) bool { return s.State == keyStaged && s.Source == sourceFile })
	if signing := d.find(keySigning); signing.Source != sourceGenerated {
		gen, _, err := k.generate(now)
		if err != nil {
			return err
		}
		k.logger.Warn("key_file is gone from the configuration: a generated key signs from now on; registries must be restarted with the new bundle",
			zap.String("policy", k.name))
		return d.replaceSigning(gen, now, k.times)
	}
	return nil
}

// reconcileFiles: the signing key must be key_file's or next_key_file's
// (promoted there); next_key_file's key is the staged one.
func (k *keyring) reconcileFiles(d *keyringDoc, now time.Time) error {
	if k.fileByID(d.find(keySigning).ID) == nil {
		if err := k.adoptKeyFile(d, now); err != nil {
			return err
		}
	}
	for _, f := range k.files {
		if slices.Contains(d.Withdrawn, f.id) && f.id != d.find(keySigning).ID {
			k.logger.Warn("a key file holds a key withdrawn by an emergency rotation: remove it from the configuration",
				zap.String("policy", k.name), zap.String("key", f.id))
		}
	}
	var next *fileKey
	if len(k.files) == 2 {
		next = k.files[1]
	}
	if s := d.find(keyStaged); s != nil && (next == nil || s.ID != next.id) {
		// The configuration is the truth about key files: a key staged
		// from a next_key_file no longer named is unstaged.
		k.logger.Warn("the staged key is not this configuration's next_key_file: unstaged", zap.String("policy", k.name), zap.String("key", s.ID))
		d.Keys = slices.DeleteFunc(d.Keys, func(s storedKey) bool { return s.State == keyStaged })
	}
	if next == nil {
		return nil
	}
	switch known := d.byID(next.id); {
	case known == nil:
		s, err := k.storedFromFile(next)
		if err != nil {
			return err
		}
		if err := d.stage(s); err != nil {
			return fmt.Errorf("next_key_file: %v", err)
		}
	case known.State == keyPrevious || known.State == keyRetired:
		return fmt.Errorf("next_key_file holds key %s, which signed before: stage a new key", next.id)
	}
	return nil
}

// adoptKeyFile makes key_file's key sign when the document's signing key
// is in no configured file. A key the document does not know was replaced
// without staging: it signs at once. A staged key that moved from
// next_key_file to key_file is promoted by this configuration.
func (k *keyring) adoptKeyFile(d *keyringDoc, now time.Time) error {
	cur, signing := k.files[0], d.find(keySigning)
	switch known := d.byID(cur.id); {
	case slices.Contains(d.Withdrawn, cur.id):
		return fmt.Errorf("key_file holds key %s, withdrawn by an emergency rotation: configure a new key", cur.id)
	case known == nil:
		s, err := k.storedFromFile(cur)
		if err != nil {
			return err
		}
		k.logger.Warn("key_file holds a new key, which signs at once: registries not restarted with its certificate refuse its tokens (stage the next key with next_key_file to rotate without an outage)",
			zap.String("policy", k.name), zap.String("key", s.ID))
		return d.replaceSigning(s, now, k.times)
	case known.State == keyStaged:
		return d.promote(now, k.times)
	}
	return fmt.Errorf("storage says key %s signs (since %s), which neither key_file nor next_key_file holds here: give every instance sharing the storage the same signer files",
		signing.ID, signing.Promoted.Format(time.RFC3339))
}

// fileByID returns the configured key file's key with id, or nil.
func (k *keyring) fileByID(id string) *fileKey {
	for _, f := range k.files {
		if f.id == id {
			return f
		}
	}
	return nil
}

// advance runs the automatic steps that are due, and drops the keys whose
// tokens have all expired.
func (k *keyring) advance(d *keyringDoc, now time.Time) error {
	if k.cfg.automatic() {
		stage, _, _ := k.plan.due(d, now)
		if stage {
			next, _, err := k.generate(now)
			if err != nil {
				return err
			}
			if err := d.stage(next); err != nil {
				return err
			}
			k.logger.Warn("staged the next signing key: restart the registries with the new bundle before it is promoted",
				zap.String("policy", k.name), zap.String("key", next.ID), zap.Time("promotion", k.plan.promoteAt(d.find(keySigning))))
		}
		_, promote, retire := k.plan.due(d, now)
		if promote {
			if err := d.promote(now, k.times); err != nil {
				return err
			}
			k.logger.Info("promoted the staged signing key", zap.String("policy", k.name), zap.String("key", d.find(keySigning).ID))
		}
		if retire {
			if err := d.retire(now, false); err != nil {
				return err
			}
		}
	}
	d.dropExpired(now)
	return nil
}

// due reports whether a sync must take the lock and change the document.
func (k *keyring) due(d *keyringDoc, now time.Time) bool {
	if k.cfg.automatic() {
		if stage, promote, retire := k.plan.due(d, now); stage || promote || retire {
			return true
		}
	}
	return d.expired(now)
}
