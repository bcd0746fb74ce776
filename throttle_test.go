package registryauth

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regauth/caddy-registry-auth/internal/expiring"
)

// liveRecord is the live failures record of key in a throttle table.
func liveRecord(table *expiring.Map[string, *failures], key string) *failures {
	f, _ := table.Get(key, time.Now())
	return f
}

// fail runs n admitted attempts that fail.
func fail(t *testing.T, th *throttle, ip, user string, n int, now time.Time) {
	t.Helper()
	for i := 0; i < n; i++ {
		done, wait := th.admit(ip, user, now)
		if wait > 0 {
			t.Fatalf("attempt %d refused early (wait %s)", i+1, wait)
		}
		done(false, true)
	}
}

func TestThrottleLocksGrowing(t *testing.T) {
	th := newThrottle(3, time.Minute, 100)
	now := time.Now()
	fail(t, th, "1.2.3.4", "alice", 3, now)
	if _, w := th.admit("9.9.9.9", "alice", now); w < 900*time.Millisecond || w > 1100*time.Millisecond {
		t.Fatalf("user lock after the 3rd failure %s, want about 1s", w)
	}
	if _, w := th.admit("1.2.3.4", "bob", now); w < 900*time.Millisecond || w > 1100*time.Millisecond {
		t.Fatalf("address lock after the 3rd failure %s, want about 1s", w)
	}
	liveRecord(th.users, userKey("alice")).lockedUntil = time.Time{} // pretend the lock ran out
	liveRecord(th.ips, addressKey("1.2.3.4")).lockedUntil = time.Time{}
	fail(t, th, "1.2.3.4", "alice", 1, now)
	if _, w := th.admit("9.9.9.9", "alice", now); w < 1900*time.Millisecond {
		t.Fatalf("lock after the 4th failure %s, want about 2s (doubling)", w)
	}
	for i := 0; i < 20; i++ {
		liveRecord(th.users, userKey("alice")).lockedUntil = time.Time{}
		liveRecord(th.ips, addressKey("1.2.3.4")).lockedUntil = time.Time{}
		fail(t, th, "1.2.3.4", "alice", 1, now)
	}
	if _, w := th.admit("9.9.9.9", "alice", now); w > time.Minute+100*time.Millisecond || w < 59*time.Second {
		t.Fatalf("lock %s, want the window (1m), no more", w)
	}
}

// Parallel guesses cannot slip past the threshold: attempts in flight
// count before their failures are known.
func TestThrottleCountsAttemptsInFlight(t *testing.T) {
	th := newThrottle(3, time.Minute, 100)
	now := time.Now()
	var admitted int
	for i := 0; i < 100; i++ {
		if _, w := th.admit("1.2.3.4", "alice", now); w == 0 {
			admitted++
		}
	}
	if admitted != 3 {
		t.Fatalf("%d parallel attempts admitted, threshold 3", admitted)
	}
}

// Guessing at alice from elsewhere does not lock alice out where she
// logged in before; her address's own failures still count.
func TestThrottleDoesNotLockOutTheUser(t *testing.T) {
	th := newThrottle(3, time.Minute, 100)
	now := time.Now()
	done, _ := th.admit("10.0.0.1", "alice", now)
	done(true, false)
	fail(t, th, "6.6.6.6", "alice", 3, now)
	if _, w := th.admit("7.7.7.7", "alice", now); w == 0 {
		t.Fatal("the user name is not locked for other addresses")
	}
	if _, w := th.admit("10.0.0.1", "alice", now); w != 0 {
		t.Fatalf("alice is locked out of her own address: %s", w)
	}
}

func TestThrottleKeysAreBoundedAndGrouped(t *testing.T) {
	th := newThrottle(3, time.Minute, 50)
	now := time.Now()
	long := strings.Repeat("x", 60000)
	for i := 0; i < 1000; i++ {
		fail(t, th, "10.0."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256), long+strconv.Itoa(i), 1, now)
	}
	if th.ips.Len() > 50 || th.users.Len() > 50 {
		t.Fatalf("tables hold %d and %d keys, bound 50", th.ips.Len(), th.users.Len())
	}
	if k := userKey(long + "1"); len(k) > 16 {
		t.Fatalf("a user key of %d bytes", len(k))
	}
	if addressKey("2001:db8:1:2:aaaa::1") != addressKey("2001:db8:1:2:bbbb::2") || addressKey("2001:db8:1:3::1") == addressKey("2001:db8:1:2::1") {
		t.Fatal("IPv6 addresses are not grouped by /64")
	}
	if addressKey("192.0.2.1") == addressKey("192.0.2.2") {
		t.Fatal("IPv4 addresses grouped")
	}
}

// Through the handler: guesses are answered 429 with Retry-After once the
// threshold is passed, before any bcrypt compare, while the real user's
// remembered login still works.
func TestTokenHandlerThrottles(t *testing.T) {
	h := newTestHandler(t)
	h.policy.throttle = newThrottle(4, time.Minute, 100)
	svc := "service=" + testService
	grantOf(t, h, get(t, h, svc, basic("alice", "alice-pw"))) // remembered from now on
	for i := 0; i < 4; i++ {
		wantError(t, get(t, h, svc, basic("alice", "guess"+strconv.Itoa(i))), http.StatusUnauthorized, "UNAUTHORIZED")
	}
	before := h.policy.Current().Users().Compares()
	w := get(t, h, svc, basic("alice", "another-guess"))
	wantError(t, w, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if w.Header().Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", w.Header().Get("Retry-After"))
	}
	if h.policy.Current().Users().Compares() != before {
		t.Fatal("a throttled guess still ran bcrypt")
	}
	grantOf(t, h, get(t, h, svc, basic("alice", "alice-pw")))
}

// Refused attempts cost nothing, not even a table entry; many different
// users behind one address may log in at once.
func TestThrottleRefusalsAddNothing(t *testing.T) {
	th := newThrottle(2, time.Minute, 100)
	now := time.Now()
	fail(t, th, "6.6.6.6", "x", 2, now) // the address is locked
	users := th.users.Len()
	for i := 0; i < 50; i++ {
		if _, w := th.admit("6.6.6.6", "user"+strconv.Itoa(i), now); w == 0 {
			t.Fatal("a locked address was admitted")
		}
	}
	if th.users.Len() != users {
		t.Fatalf("refused attempts added %d user entries", th.users.Len()-users)
	}
	var dones []func(bool, bool)
	for i := 0; i < 20; i++ {
		done, w := th.admit("10.0.0.1", "runner"+strconv.Itoa(i), now)
		if w != 0 {
			t.Fatalf("login %d of many users behind one address refused", i)
		}
		dones = append(dones, done)
	}
	for _, d := range dones {
		d(true, false)
	}
}

// A login the cache answers renews the trust of its address, so a user
// whose logins are all cached is never locked out of it.
func TestCachedLoginRenewsTrust(t *testing.T) {
	h := newTestHandler(t)
	h.policy.throttle = newThrottle(2, time.Minute, 100)
	if _, err := h.policy.login(context.Background(), h.policy.Current(), "10.0.0.1", "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	key := userKey("alice") + addressKey("10.0.0.1")
	h.policy.throttle.trusted.Put(key, struct{}{}, time.Now().Add(time.Second), time.Now()) // nearly lapsed
	if _, err := h.policy.login(context.Background(), h.policy.Current(), "10.0.0.1", "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.policy.throttle.trusted.Get(key, time.Now().Add(30*time.Second)); !ok {
		t.Fatal("a cached login did not renew the trust")
	}
}
