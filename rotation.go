package registryauth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/regauth/caddy-registry-auth/token"
)

// A policy's signing keys and their rotation, as kept in storage: the
// document and the steps that change it. Nothing here touches storage or
// Caddy (keyring.go does); every step is a function of the document and
// the time, so that every instance sharing the storage takes the same one.

// The states of a key. A key is staged (published, so registries restarted
// now trust it), then signs, then is previous (still published: registries
// must keep trusting what it signed), then retired (out of the bundle,
// verified by us alone for the refresh tokens it signed), then dropped.
const (
	keyStaged   = "staged"
	keySigning  = "signing"
	keyPrevious = "previous"
	keyRetired  = "retired"
)

// Where a key's private half lives.
const (
	sourceGenerated = "generated" // in the document itself
	sourceFile      = "file"      // in key_file or next_key_file
)

// storedKey is one key of the document.
type storedKey struct {
	// ID is the hex SHA-256 (first 16 bytes) of the public key.
	ID        string    `json:"id"`
	State     string    `json:"state"`
	Source    string    `json:"source"`
	Algorithm string    `json:"algorithm"`
	Created   time.Time `json:"created"`
	NotAfter  time.Time `json:"not_after"` // the end of its certificate
	Promoted  time.Time `json:"promoted,omitzero"`
	Demoted   time.Time `json:"demoted,omitzero"`
	// RetireAfter: the last access token it signed has expired, so it may
	// leave the bundle. VerifyUntil: the last refresh token it signed has
	// expired, so it is dropped.
	RetireAfter time.Time `json:"retire_after,omitzero"`
	VerifyUntil time.Time `json:"verify_until,omitzero"`
	CertPEM     string    `json:"cert_pem"`
	KeyPEM      string    `json:"key_pem,omitempty"` // generated keys only
}

// keyringDoc is a policy's keys, one JSON document replaced whole under
// the storage lock.
type keyringDoc struct {
	Keys []storedKey `json:"keys"`
	// RefreshSecret keys the HMAC that binds refresh tokens to password
	// hashes. It is set once, derived from the first key (so refresh
	// tokens issued before keys were kept here stay valid), and survives
	// rotations; only an emergency replaces it.
	RefreshSecret []byte `json:"refresh_secret"`
	// Withdrawn are the ids of keys an emergency took out: never used
	// again, even if a key file still names one.
	Withdrawn []string `json:"withdrawn,omitempty"`
}

// keyTimes say how long a key that stopped signing stays published and
// verifiable.
type keyTimes struct {
	access  time.Duration // the policy's token_lifetime
	refresh time.Duration // its refresh token lifetime, 0 when off
	sync    time.Duration // how late another instance may notice a change
}

// registryLeeway is the clock skew distribution allows on exp: a registry
// accepts a token that long after it expired.
const registryLeeway = time.Minute

// conflictError is a step that the document's state does not allow now
// (409 from the admin API).
type conflictError struct{ msg string }

func (e conflictError) Error() string { return e.msg }

func conflict(format string, args ...any) error { return conflictError{fmt.Sprintf(format, args...)} }

// find returns the first key in state, or nil.
func (d *keyringDoc) find(state string) *storedKey {
	for i := range d.Keys {
		if d.Keys[i].State == state {
			return &d.Keys[i]
		}
	}
	return nil
}

// byID returns the key with id, or nil.
func (d *keyringDoc) byID(id string) *storedKey {
	for i := range d.Keys {
		if d.Keys[i].ID == id {
			return &d.Keys[i]
		}
	}
	return nil
}

// check refuses a document a running signer could not use.
func (d *keyringDoc) check() error {
	signing := 0
	for _, k := range d.Keys {
		switch k.State {
		case keySigning:
			signing++
		case keyStaged, keyPrevious, keyRetired:
		default:
			return fmt.Errorf("key %s has the unknown state %q", k.ID, k.State)
		}
	}
	switch {
	case signing != 1:
		return fmt.Errorf("%d signing keys, want exactly one", signing)
	case len(d.RefreshSecret) < 16:
		return errors.New("no refresh secret")
	}
	return nil
}

// stage adds k as the next key. There is one next key at a time.
func (d *keyringDoc) stage(k storedKey) error {
	if s := d.find(keyStaged); s != nil {
		return conflict("key %s is already staged (since %s): promote it first", s.ID, s.Created.Format(time.RFC3339))
	}
	if slices.Contains(d.Withdrawn, k.ID) {
		return conflict("key %s was withdrawn by an emergency rotation", k.ID)
	}
	k.State = keyStaged
	d.Keys = append(d.Keys, k)
	return nil
}

// promote makes the staged key sign. The key it replaces stays published
// until every access token it signed has expired, counting the instances
// that sign with it until they notice, and verifiable until its last
// refresh token has expired.
func (d *keyringDoc) promote(now time.Time, t keyTimes) error {
	next := d.find(keyStaged)
	if next == nil {
		return conflict("no key is staged: stage one first (and restart the registries with the new bundle)")
	}
	if cur := d.find(keySigning); cur != nil {
		cur.State, cur.Demoted = keyPrevious, now
		cur.RetireAfter = now.Add(t.sync + t.access + registryLeeway)
		cur.VerifyUntil = now.Add(t.sync + max(t.access, t.refresh) + token.VerifyLeeway)
	}
	next.State, next.Promoted = keySigning, now
	return nil
}

// retire takes previous keys out of the bundle: those whose access tokens
// have all expired, or all of them if forced.
func (d *keyringDoc) retire(now time.Time, force bool) error {
	var waiting *storedKey
	done := 0
	for i := range d.Keys {
		k := &d.Keys[i]
		switch {
		case k.State != keyPrevious:
		case force || !now.Before(k.RetireAfter):
			k.State = keyRetired
			done++
		default:
			waiting = k
		}
	}
	switch {
	case done > 0:
		return nil
	case waiting != nil:
		return conflict("key %s may leave the bundle from %s on, when the last access token it signed has expired (force to retire it now: registries restarted before then would refuse those tokens)",
			waiting.ID, waiting.RetireAfter.UTC().Format(time.RFC3339))
	}
	return conflict("no previous key to retire")
}

// emergency makes k sign at once and withdraws every other key: what they
// signed, access and refresh tokens alike, is refused from now on. The
// refresh secret is replaced too, by one derived from k.
func (d *keyringDoc) emergency(k storedKey, secret []byte, now time.Time) {
	for _, old := range d.Keys {
		if old.ID != k.ID && !slices.Contains(d.Withdrawn, old.ID) {
			d.Withdrawn = append(d.Withdrawn, old.ID)
		}
	}
	k.State, k.Promoted = keySigning, now
	k.Demoted, k.RetireAfter, k.VerifyUntil = time.Time{}, time.Time{}, time.Time{}
	d.Keys = []storedKey{k}
	d.RefreshSecret = secret
}

// expired reports whether a key that stopped signing has nothing alive
// left to verify.
func (d *keyringDoc) expired(now time.Time) bool {
	return slices.ContainsFunc(d.Keys, func(k storedKey) bool { return keyExpired(k, now) })
}

func keyExpired(k storedKey, now time.Time) bool {
	return (k.State == keyPrevious || k.State == keyRetired) && !k.VerifyUntil.IsZero() && now.After(k.VerifyUntil)
}

// dropExpired removes the keys expired reports.
func (d *keyringDoc) dropExpired(now time.Time) bool {
	n := len(d.Keys)
	d.Keys = slices.DeleteFunc(d.Keys, func(k storedKey) bool { return keyExpired(k, now) })
	return len(d.Keys) != n
}

// replaceSigning makes k sign at once without a staging period, the old
// signing key becoming previous: what a changed key_file (or a switch
// between key files and a generated key) means. Registries that have not
// been given k's certificate refuse its tokens.
func (d *keyringDoc) replaceSigning(k storedKey, now time.Time, t keyTimes) error {
	d.Keys = slices.DeleteFunc(d.Keys, func(s storedKey) bool { return s.State == keyStaged || s.ID == k.ID })
	if err := d.stage(k); err != nil {
		return err
	}
	return d.promote(now, t)
}

// rotationPlan is when generated keys are replaced without an operator.
type rotationPlan struct {
	// every: a key signs this long at most (0: until shortly before its
	// certificate ends).
	every time.Duration
	// stagePeriod: a key is staged this long before it signs, so that
	// registries restart with it in their bundle in the meantime.
	stagePeriod time.Duration
}

// expiryMargin: a generated key is promoted away this long before its
// certificate ends, leaving a week to notice a rotation that did not run.
const expiryMargin = 7 * 24 * time.Hour

// promoteAt is when the plan replaces the signing key.
func (p rotationPlan) promoteAt(signing *storedKey) time.Time {
	at := signing.NotAfter.Add(-expiryMargin)
	if p.every > 0 {
		start := signing.Promoted
		if start.IsZero() {
			start = signing.Created
		}
		at = minTime(at, start.Add(p.every))
	}
	return at
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// due says which automatic steps are due at now: stage a new key, promote
// the staged one (it must have been staged for the whole period, unless
// the signing certificate has already ended), retire previous keys.
func (p rotationPlan) due(d *keyringDoc, now time.Time) (stage, promote, retire bool) {
	signing, staged := d.find(keySigning), d.find(keyStaged)
	if signing != nil && signing.Source == sourceGenerated {
		at := p.promoteAt(signing)
		stage = staged == nil && !now.Before(at.Add(-p.stagePeriod))
		promote = staged != nil && (!now.Before(at) && !now.Before(staged.Created.Add(p.stagePeriod)) || now.After(signing.NotAfter))
	}
	retire = slices.ContainsFunc(d.Keys, func(k storedKey) bool { return k.State == keyPrevious && !now.Before(k.RetireAfter) })
	return stage, promote, retire
}
