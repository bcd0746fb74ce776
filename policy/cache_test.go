package policy

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func cachedPolicy(t *testing.T, cache *CredentialCache, password string, opts ...Option) *Policy {
	t.Helper()
	p, _, err := Compile(Config{Users: []User{{Name: "alice", Password: hashOf(t, password)}}},
		append([]Option{WithCredentialCache(cache)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A remembered success skips bcrypt; failures and unknown users never do.
func TestCredentialCacheHitsOnlyOnSuccess(t *testing.T) {
	cache := NewCredentialCache(time.Minute, 100)
	p := cachedPolicy(t, cache, "pw")
	for i := 0; i < 3; i++ {
		if _, err := p.Authenticate("alice", "pw"); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.Compares(); n != 1 {
		t.Fatalf("3 right logins ran %d compares, want 1", n)
	}
	for i := 0; i < 3; i++ {
		if _, err := p.Authenticate("alice", "wrong"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
		if _, err := p.Authenticate("mallory", "pw"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("unknown user: %v", err)
		}
	}
	if n := p.Compares(); n != 7 {
		t.Fatalf("after 6 failures %d compares, want 7: failures must never be cached", n)
	}
	if cache.Len() != 1 {
		t.Fatalf("cache holds %d entries, want 1", cache.Len())
	}
}

// A new password (a reload with a new hash) never matches the old entry,
// even though the cache outlives the policy.
func TestCredentialCacheSurvivesReloadButNotPasswordChange(t *testing.T) {
	cache := NewCredentialCache(time.Minute, 100)
	old := cachedPolicy(t, cache, "old")
	if _, err := old.Authenticate("alice", "old"); err != nil {
		t.Fatal(err)
	}
	changed := cachedPolicy(t, cache, "new")
	if _, err := changed.Authenticate("alice", "old"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password after a change: %v", err)
	}
	if _, err := changed.Authenticate("alice", "new"); err != nil {
		t.Fatal(err)
	}
	// A policy without the user at all: the cached success is useless.
	gone, _, err := Compile(Config{Users: []User{{Name: "bob", Password: hashOf(t, "x")}}}, WithCredentialCache(cache))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gone.Authenticate("alice", "new"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("deleted user: %v", err)
	}
}

func TestCredentialCacheExpiresAndIsBounded(t *testing.T) {
	c := NewCredentialCache(time.Minute, 3)
	now := time.Now()
	for i := 0; i < 10; i++ {
		c.remember(c.id("u", string(rune('a'+i)), nil), now)
	}
	if c.Len() > 3 {
		t.Fatalf("%d entries, bound 3", c.Len())
	}
	id := c.id("u", "z", nil)
	c.remember(id, now)
	if !c.hit(id, now.Add(59*time.Second)) {
		t.Fatal("entry gone within its TTL")
	}
	if c.hit(id, now.Add(59*time.Second+61*time.Second)) {
		t.Fatal("entry alive more than a TTL after its last use")
	}
	// Used without pause, an entry lives up to CacheMaxAge after the check.
	c.remember(id, now)
	for at := time.Duration(0); at < CacheMaxAge; at += 30 * time.Second {
		if !c.hit(id, now.Add(at)) {
			t.Fatalf("entry in use lost after %s", at)
		}
	}
	if c.hit(id, now.Add(CacheMaxAge+time.Second)) {
		t.Fatal("entry outlived CacheMaxAge")
	}
	if c.id("ab", "c", nil) == c.id("a", "bc", nil) {
		t.Fatal("ids of different name/password splits collide")
	}
}

// Concurrent identical checks share one bcrypt compare.
func TestCredentialCacheCollapsesConcurrentChecks(t *testing.T) {
	p := cachedPolicy(t, NewCredentialCache(time.Minute, 100), "pw")
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := p.Authenticate("alice", "pw"); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := p.Compares(); n >= 20 {
		t.Fatalf("20 concurrent logins ran %d compares", n)
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
	p := cachedPolicy(t, NewCredentialCache(time.Minute, 100), "pw", WithHashWait(20*time.Millisecond))
	if _, err := p.Authenticate("alice", "pw"); !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
	if p.Compares() != 0 {
		t.Fatal("a compare ran without a slot")
	}
}

// BenchmarkAuthenticateCached is the repeated-login path: an HMAC and a
// map lookup instead of a bcrypt compare.
func BenchmarkAuthenticateCached(b *testing.B) {
	p, _, err := Compile(Config{Users: []User{{Name: "alice", Password: hashOf(b, "pw")}}},
		WithCredentialCache(NewCredentialCache(time.Hour, 100)))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Authenticate("alice", "pw"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Authenticate("alice", "pw"); err != nil {
				b.Fatal(err)
			}
		}
	})
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
	first, _, err := Compile(cfg, WithCredentialCache(cache))
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := Compile(cfg, WithCredentialCache(cache))
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("k")
	a, _ := first.Fingerprint("robot", key)
	b, _ := second.Fingerprint("robot", key)
	if a != b {
		t.Fatal("a reload changed a plaintext user's fingerprint: their refresh tokens would die")
	}
	if _, err := first.Authenticate("robot", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if _, ok := second.Remembered("robot", "s3cret"); !ok {
		t.Fatal("a reload lost a plaintext user's cached login")
	}
	cfg.Users[0].Password = "changed"
	third, _, _ := Compile(cfg, WithCredentialCache(cache))
	if c, _ := third.Fingerprint("robot", key); c == a {
		t.Fatal("a new plaintext password kept the fingerprint")
	}
}
