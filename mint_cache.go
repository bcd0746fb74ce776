package registryauth

import (
	"sync"
	"time"
)

// mintCache lets the proxy reuse a token it minted for the same subject
// and grant, instead of signing one per request. A token is reused only
// during the first half of its life, so the registry never sees one about
// to expire, and nothing cached outlives the token's exp. The grant itself
// is still evaluated on every request: the cache only skips the signing.
type mintCache struct {
	max int

	mu      sync.Mutex
	entries map[string]mintedToken
}

type mintedToken struct {
	raw      string
	reuseEnd time.Time
}

func newMintCache(max int) *mintCache {
	return &mintCache{max: max, entries: map[string]mintedToken{}}
}

// get returns a token for key that may still be reused at now.
func (c *mintCache) get(key string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.entries[key]
	if !ok || !now.Before(t.reuseEnd) {
		return "", false
	}
	return t.raw, true
}

// put remembers a token issued at iat for lifetime.
func (c *mintCache) put(key, raw string, iat time.Time, lifetime time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		now := time.Now()
		for k, t := range c.entries {
			if !now.Before(t.reuseEnd) || len(c.entries) >= c.max {
				delete(c.entries, k)
			}
		}
	}
	c.entries[key] = mintedToken{raw: raw, reuseEnd: iat.Add(lifetime / 2)}
}
