package policy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"time"

	"github.com/regauth/caddy-registry-auth/internal/expiring"
)

// CredentialCache remembers successful password checks for a while, so
// that a client logging in again (Docker does for every repository and
// every token expiry; a proxied CI fleet on every request) costs a hash
// lookup instead of a bcrypt compare or a directory round trip.
//
// Entries are keyed by an HMAC, under a key that never leaves the process,
// of the user name, the password and a binding: what identifies the
// password where it is kept (a user's stored hash) or the source that
// checked it (its configuration). The plaintext is never kept, and a
// changed password or source never hits an old entry. Failures are never
// remembered. One cache serves every reload of a policy, since stale
// entries cannot match.
type CredentialCache struct {
	ttl     time.Duration
	entries *expiring.Map[CacheKey, remembered]
	keys    *Keyer
}

// CacheKey identifies one set of credentials checked against one binding.
type CacheKey [sha256.Size]byte

// Keyer digests credentials with an HMAC under a random key that never
// leaves the process: what the credential cache and the login throttle
// know a password by, never the password itself.
type Keyer struct {
	// macs are HMACs under the key, reused: a digest is computed on
	// every login, and a new HMAC costs more than the hashing.
	macs sync.Pool
}

// NewKeyer makes a Keyer with a key of its own.
func NewKeyer() *Keyer {
	var key [32]byte
	_, _ = rand.Read(key[:]) // crypto/rand.Read never fails since Go 1.24
	k := &Keyer{}
	k.macs.New = func() any { return hmac.New(sha256.New, key[:]) }
	return k
}

// Key is the digest of name and password checked against binding.
func (k *Keyer) Key(name, password string, binding []byte) CacheKey {
	m := k.macs.Get().(hash.Hash)
	defer k.macs.Put(m)
	m.Reset()
	// Lengths first, so that no two different triples run together alike.
	var lens [12]byte
	for i, n := range []int{len(name), len(password), len(binding)} {
		binary.BigEndian.PutUint32(lens[4*i:], uint32(n))
	}
	m.Write(lens[:])
	m.Write([]byte(name))
	m.Write([]byte(password))
	m.Write(binding)
	var out CacheKey
	m.Sum(out[:0])
	return out
}

// CacheMaxAge bounds how long a check is remembered in all, however often
// it is used: then it is checked again.
const CacheMaxAge = 24 * time.Hour

type remembered struct {
	checked time.Time
	// sliding entries (a stored hash, whose change the cache sees) live
	// ttl after their last use, up to CacheMaxAge; the others (a source
	// whose password change the cache cannot see) one ttl after the check.
	sliding bool
	id      Identity
}

// NewCredentialCache makes a cache whose entries live for ttl, holding at
// most max of them.
func NewCredentialCache(ttl time.Duration, max int) *CredentialCache {
	return &CredentialCache{ttl: ttl, entries: expiring.New[CacheKey, remembered](max, nil), keys: NewKeyer()}
}

// Key is the cache key of name and password checked against binding.
func (c *CredentialCache) Key(name, password string, binding []byte) CacheKey {
	return c.keys.Key(name, password, binding)
}

// Recall reports whether a check of k succeeded recently, with the
// identity its source gave, and extends a sliding entry.
func (c *CredentialCache) Recall(k CacheKey, now time.Time) (id Identity, ok bool) {
	r, ok := c.entries.Get(k, now)
	if ok && r.sliding {
		until := now.Add(c.ttl)
		if limit := r.checked.Add(CacheMaxAge); until.After(limit) {
			until = limit
		}
		c.entries.Put(k, r, until, now)
	}
	return r.id, ok
}

// Remember records a successful check of k. sliding says whether a change
// of password would change k (see remembered). notAfter, unless zero, ends
// the entry then whatever its ttl: a token's own expiry, after which the
// credential is worth nothing. When full the cache drops arbitrary
// entries: a dropped entry only costs one more check.
func (c *CredentialCache) Remember(k CacheKey, id Identity, sliding bool, notAfter, now time.Time) {
	// The cache keeps its own copy: what the caller does with id later
	// never changes what a later Recall returns.
	id.Groups = append([]string(nil), id.Groups...)
	if id.Origin != nil {
		o := *id.Origin
		o.Groups = append([]string(nil), o.Groups...)
		id.Origin = &o
	}
	r := remembered{checked: now, sliding: sliding && notAfter.IsZero(), id: id}
	until := now.Add(c.ttl)
	if !notAfter.IsZero() && notAfter.Before(until) {
		until = notAfter
	}
	c.entries.Put(k, r, until, now)
}

// Len is the number of remembered checks.
func (c *CredentialCache) Len() int { return c.entries.Len() }
