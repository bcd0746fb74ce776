package registryauth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/policy"
)

// cachedPolicy is a policy whose one user, alice, has password, with a
// credential cache of its own and no throttle.
func cachedPolicy(t testing.TB, cache *policy.CredentialCache, password string) *Policy {
	t.Helper()
	p := &Policy{Name: "t", logger: zap.NewNop(), cache: cache}
	p.current.Store(compileAlice(t, password))
	return p
}

func compileAlice(t testing.TB, password string) *policy.Compiled {
	t.Helper()
	c, _, err := policy.Compile(policy.Config{Users: []policy.User{{Name: "alice", Password: mustHash(t, password)}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func loginAs(p *Policy, user, password string) error {
	_, err := p.login(context.Background(), p.Current(), "", user, password)
	return err
}

// A remembered success skips bcrypt; failures and unknown users never do.
func TestCredentialCacheHitsOnlyOnSuccess(t *testing.T) {
	cache := policy.NewCredentialCache(time.Minute, 100)
	p := cachedPolicy(t, cache, "pw")
	for i := 0; i < 3; i++ {
		if err := loginAs(p, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.Current().Users().Compares(); n != 1 {
		t.Fatalf("3 right logins ran %d compares, want 1", n)
	}
	for i := 0; i < 3; i++ {
		if err := loginAs(p, "alice", "wrong"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
		if err := loginAs(p, "mallory", "pw"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("unknown user: %v", err)
		}
	}
	if n := p.Current().Users().Compares(); n != 7 {
		t.Fatalf("after 6 failures %d compares, want 7: failures must never be cached", n)
	}
	if cache.Len() != 1 {
		t.Fatalf("cache holds %d entries, want 1", cache.Len())
	}
}

// A new password (a reload with a new hash) never matches the old entry,
// even though the cache outlives the compiled policy.
func TestCredentialCacheSurvivesReloadButNotPasswordChange(t *testing.T) {
	cache := policy.NewCredentialCache(time.Minute, 100)
	p := cachedPolicy(t, cache, "old")
	if err := loginAs(p, "alice", "old"); err != nil {
		t.Fatal(err)
	}
	p.current.Store(compileAlice(t, "new"))
	if err := loginAs(p, "alice", "old"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password after a change: %v", err)
	}
	if err := loginAs(p, "alice", "new"); err != nil {
		t.Fatal(err)
	}
	// A policy without the user at all: the cached success is useless.
	gone, _, err := policy.Compile(policy.Config{Users: []policy.User{{Name: "bob", Password: mustHash(t, "x")}}})
	if err != nil {
		t.Fatal(err)
	}
	p.current.Store(gone)
	if err := loginAs(p, "alice", "new"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("deleted user: %v", err)
	}
}

// Concurrent identical checks share one bcrypt compare.
func TestCredentialCacheCollapsesConcurrentChecks(t *testing.T) {
	p := cachedPolicy(t, policy.NewCredentialCache(time.Minute, 100), "pw")
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := loginAs(p, "alice", "pw"); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := p.Current().Users().Compares(); n >= 20 {
		t.Fatalf("20 concurrent logins ran %d compares", n)
	}
}

// BenchmarkLoginCached is the repeated-login path: an HMAC and a map
// lookup instead of a bcrypt compare.
func BenchmarkLoginCached(b *testing.B) {
	p := cachedPolicy(b, policy.NewCredentialCache(time.Hour, 100), "pw")
	if err := loginAs(p, "alice", "pw"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := loginAs(p, "alice", "pw"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
