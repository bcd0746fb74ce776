package policy

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// hit is Recall as a yes or no.
func hit(c *CredentialCache, k CacheKey, now time.Time) bool {
	_, ok := c.Recall(k, now)
	return ok
}

func TestCredentialCacheExpiresAndIsBounded(t *testing.T) {
	c := NewCredentialCache(time.Minute, 3)
	now := time.Now()
	for i := 0; i < 10; i++ {
		c.Remember(c.Key("u", string(rune('a'+i)), nil), Identity{}, true, time.Time{}, now)
	}
	if c.Len() > 3 {
		t.Fatalf("%d entries, bound 3", c.Len())
	}
	id := c.Key("u", "z", nil)
	c.Remember(id, Identity{}, true, time.Time{}, now)
	if !hit(c, id, now.Add(59*time.Second)) {
		t.Fatal("entry gone within its TTL")
	}
	if hit(c, id, now.Add(59*time.Second+61*time.Second)) {
		t.Fatal("entry alive more than a TTL after its last use")
	}
	// Used without pause, an entry lives up to CacheMaxAge after the check.
	c.Remember(id, Identity{}, true, time.Time{}, now)
	for at := time.Duration(0); at < CacheMaxAge; at += 30 * time.Second {
		if !hit(c, id, now.Add(at)) {
			t.Fatalf("entry in use lost after %s", at)
		}
	}
	if hit(c, id, now.Add(CacheMaxAge+time.Second)) {
		t.Fatal("entry outlived CacheMaxAge")
	}
	if c.Key("ab", "c", nil) == c.Key("a", "bc", nil) {
		t.Fatal("ids of different name/password splits collide")
	}
}

// An entry a source's success made (sliding false) is never extended:
// a password changed at that source cannot be seen here.
// TestCredentialCacheKeepsItsOwnCopy: changing the identity a caller
// remembered, its groups or its origin's, never changes what the cache
// answers later.
func TestCredentialCacheKeepsItsOwnCopy(t *testing.T) {
	c := NewCredentialCache(time.Minute, 10)
	now := time.Now()
	id := Identity{Name: "ci", Groups: []string{"acme"}, Origin: &Origin{Issuer: "https://i", Groups: []string{"acme"}}}
	k := c.Key("ci", "token", nil)
	c.Remember(k, id, false, time.Time{}, now)
	id.Groups[0], id.Origin.Groups[0], id.Origin.Issuer = "admins", "admins", "https://other"
	got, ok := c.Recall(k, now)
	if !ok || got.Groups[0] != "acme" || got.Origin.Groups[0] != "acme" || got.Origin.Issuer != "https://i" {
		t.Fatalf("recalled %+v, origin %+v", got, got.Origin)
	}
}

func TestCredentialCacheExternalEntriesLiveOneTTL(t *testing.T) {
	c := NewCredentialCache(time.Minute, 10)
	now := time.Now()
	k := c.Key("bob", "pw", []byte("external\x00ldap"))
	c.Remember(k, Identity{Name: "bob", Groups: []string{"devs"}}, false, time.Time{}, now)
	if id, ok := c.Recall(k, now.Add(50*time.Second)); !ok || id.Name != "bob" || len(id.Groups) != 1 || id.Groups[0] != "devs" {
		t.Fatalf("Recall = %v, %v", id, ok)
	}
	if hit(c, k, now.Add(61*time.Second)) {
		t.Fatal("an external entry outlived one TTL after its check")
	}
}

// An entry capped by its credential's expiry ends then, however long the
// TTL, and is never extended: a token is worth nothing past its exp.
func TestCredentialCacheEntryEndsAtItsCap(t *testing.T) {
	c := NewCredentialCache(time.Hour, 10)
	now := time.Now()
	k := c.Key("https://issuer sub", "a.job.token", nil)
	exp := now.Add(90 * time.Second)
	c.Remember(k, Identity{Name: "gh/acme/app"}, true, exp, now)
	if id, ok := c.Recall(k, now.Add(89*time.Second)); !ok || id.Name != "gh/acme/app" {
		t.Fatalf("Recall before the cap = %v, %v", id, ok)
	}
	if hit(c, k, exp) {
		t.Fatal("the entry is recalled at its credential's expiry")
	}
	// A cap after the TTL changes nothing.
	c.Remember(k, Identity{}, false, now.Add(2*time.Hour), now)
	if hit(c, k, now.Add(time.Hour+time.Second)) {
		t.Fatal("the entry outlived its TTL")
	}
}

// With every hash slot taken, a check gives up after the wait with ErrBusy.
func TestHashSlotsBoundTheWait(t *testing.T) {
	for i := 0; i < cap(hashSlots); i++ {
		hashSlots <- struct{}{}
	}
	defer func() {
		for i := 0; i < cap(hashSlots); i++ {
			<-hashSlots
		}
	}()
	p, _, err := Compile(Config{Users: []User{{Name: "alice", Password: hashOf(t, "pw")}}}, WithHashWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Authenticate("alice", "pw"); !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
	if p.Users().Compares() != 0 {
		t.Fatal("a compare ran without a slot")
	}
}

// BenchmarkAuthenticateBcrypt is the cold path at bcrypt's default cost.
func BenchmarkAuthenticateBcrypt(b *testing.B) {
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	p, _, err := Compile(Config{Users: []User{{Name: "alice", Password: string(h)}}})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := p.Authenticate("alice", "pw"); err != nil {
			b.Fatal(err)
		}
	}
}

// A plaintext password is hashed with a new salt at every load; what keys
// the cache and refresh-token fingerprints must not change with it.
func TestPlaintextUsersAreStableAcrossLoads(t *testing.T) {
	cache := NewCredentialCache(time.Minute, 100)
	cfg := Config{Users: []User{{Name: "robot", Password: "s3cret", Plaintext: true}, {Name: "anchor", Password: hashOf(t, "x")}}}
	first, _, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("k")
	a, _ := first.Users().Fingerprint("robot", key)
	b, _ := second.Users().Fingerprint("robot", key)
	if a != b {
		t.Fatal("a reload changed a plaintext user's fingerprint: their refresh tokens would die")
	}
	if _, err := first.Authenticate("robot", "s3cret"); err != nil {
		t.Fatal(err)
	}
	b1, _ := first.Users().Binding("robot")
	cache.Remember(cache.Key("robot", "s3cret", b1), Identity{}, true, time.Time{}, time.Now())
	b2, _ := second.Users().Binding("robot")
	if !hit(cache, cache.Key("robot", "s3cret", b2), time.Now()) {
		t.Fatal("a reload lost a plaintext user's cached login")
	}
	cfg.Users[0].Password = "changed"
	third, _, _ := Compile(cfg)
	if c, _ := third.Users().Fingerprint("robot", key); c == a {
		t.Fatal("a new plaintext password kept the fingerprint")
	}
}
