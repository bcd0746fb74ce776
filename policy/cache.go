package policy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// CredentialCache remembers successful password checks for a while, so
// that a client logging in again (Docker does for every repository and
// every token expiry; a proxied CI fleet on every request) costs a hash
// lookup instead of a bcrypt compare.
//
// Entries are keyed by an HMAC, under a key that never leaves the process,
// of the user name, the password and the stored hash: the plaintext is
// never kept, and a changed password (a new stored hash) never hits an old
// entry. Failures are never remembered. One cache serves every reload of a
// policy, since stale entries cannot match.
type CredentialCache struct {
	key [32]byte
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[[sha256.Size]byte]cacheEntry
}

// CacheMaxAge bounds how long a check is remembered in all, however often
// it is used: then one bcrypt compare runs again.
const CacheMaxAge = 24 * time.Hour

type cacheEntry struct {
	checked time.Time // when bcrypt last said yes
	expiry  time.Time // ttl after the last use, at most checked+maxAge
	maxAge  time.Duration
	groups  []string // from an external source; nil for the policy's own users
}

// NewCredentialCache makes a cache whose entries live for ttl, holding at
// most max of them.
func NewCredentialCache(ttl time.Duration, max int) *CredentialCache {
	c := &CredentialCache{ttl: ttl, max: max, entries: map[[sha256.Size]byte]cacheEntry{}}
	_, _ = rand.Read(c.key[:]) // crypto/rand.Read never fails since Go 1.24
	return c
}

func (c *CredentialCache) id(name, password string, hash []byte) [sha256.Size]byte {
	m := hmac.New(sha256.New, c.key[:])
	// Lengths first, so that no two different triples run together alike.
	var lens [12]byte
	for i, n := range []int{len(name), len(password), len(hash)} {
		lens[4*i], lens[4*i+1], lens[4*i+2], lens[4*i+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	}
	m.Write(lens[:])
	m.Write([]byte(name))
	m.Write([]byte(password))
	m.Write(hash)
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// hit reports whether the check of id succeeded and was last used less
// than ttl ago, and extends it: a client that keeps logging in (a proxied
// CI job, say) keeps its entry, up to CacheMaxAge after the check.
func (c *CredentialCache) hit(id [sha256.Size]byte, now time.Time) bool {
	_, ok := c.lookup(id, now)
	return ok
}

func (c *CredentialCache) lookup(id [sha256.Size]byte, now time.Time) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok {
		return nil, false
	}
	if now.After(e.expiry) {
		delete(c.entries, id)
		return nil, false
	}
	e.expiry = now.Add(c.ttl)
	if limit := e.checked.Add(e.maxAge); e.expiry.After(limit) {
		e.expiry = limit
	}
	c.entries[id] = e
	return e.groups, true
}

// LookupExternal reports whether a check of these credentials by an
// external source (named by source, which must change whenever that
// source's configuration does) succeeded less than the ttl ago, and the
// groups it returned. Unlike the policy's own users, whose new password
// is a new stored hash, a password changed at the source cannot be seen
// here: so these entries are never extended past one ttl.
func (c *CredentialCache) LookupExternal(source, name, password string) ([]string, bool) {
	return c.lookup(c.id(name, password, []byte("external\x00"+source)), time.Now())
}

// RememberExternal records a success of an external source.
func (c *CredentialCache) RememberExternal(source, name, password string, groups []string) {
	c.store(c.id(name, password, []byte("external\x00"+source)), time.Now(), c.ttl, append([]string(nil), groups...))
}

// remember records a successful check. When full it drops expired entries
// and, if that is not enough, arbitrary ones: a dropped entry only costs
// one more bcrypt compare.
func (c *CredentialCache) remember(id [sha256.Size]byte, now time.Time) {
	c.store(id, now, CacheMaxAge, nil)
}

func (c *CredentialCache) store(id [sha256.Size]byte, now time.Time, maxAge time.Duration, groups []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if now.After(e.expiry) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[id] = cacheEntry{checked: now, expiry: now.Add(c.ttl), maxAge: maxAge, groups: groups}
}

// Len is the number of remembered checks.
func (c *CredentialCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
