package registryauth

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestThrottleLocksGrowingAndFades(t *testing.T) {
	th := newThrottle(3, time.Minute, 100)
	now := time.Now()
	for i := 0; i < 2; i++ {
		th.failed("1.2.3.4", "alice", now)
	}
	if w := th.wait("1.2.3.4", "alice", now); w != 0 {
		t.Fatalf("locked after 2 failures (threshold 3): %s", w)
	}
	th.failed("1.2.3.4", "alice", now)
	if w := th.wait("9.9.9.9", "alice", now); w != time.Second {
		t.Fatalf("user lock after the 3rd failure %s, want 1s", w)
	}
	if w := th.wait("1.2.3.4", "bob", now); w != time.Second {
		t.Fatalf("IP lock after the 3rd failure %s, want 1s", w)
	}
	th.failed("1.2.3.4", "alice", now)
	if w := th.wait("9.9.9.9", "alice", now); w != 2*time.Second {
		t.Fatalf("lock after the 4th failure %s, want 2s (doubling)", w)
	}
	for i := 0; i < 20; i++ {
		th.failed("1.2.3.4", "alice", now)
	}
	if w := th.wait("9.9.9.9", "alice", now); w != time.Minute {
		t.Fatalf("lock %s, want the window (1m) at most", w)
	}
	// A success clears the name, not the address.
	th.succeeded("alice")
	if w := th.wait("9.9.9.9", "alice", now); w != 0 {
		t.Fatalf("name still locked after a success: %s", w)
	}
	if w := th.wait("1.2.3.4", "carol", now); w == 0 {
		t.Fatal("a success for alice unlocked the guessing address")
	}
	// After a quiet window, everything is forgotten.
	later := now.Add(2 * time.Minute)
	th.failed("1.2.3.4", "dave", later)
	if w := th.wait("1.2.3.4", "dave", later); w != 0 {
		t.Fatalf("old failures still count after the window: %s", w)
	}
}

func TestThrottleIsBounded(t *testing.T) {
	th := newThrottle(3, time.Minute, 50)
	now := time.Now()
	for i := 0; i < 1000; i++ {
		th.failed("10.0.0."+strconv.Itoa(i), "user"+strconv.Itoa(i), now)
	}
	if len(th.ips) > 50 || len(th.users) > 50 {
		t.Fatalf("tables hold %d and %d keys, bound 50", len(th.ips), len(th.users))
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
	before := h.policy.Rules.Compares()
	w := get(t, h, svc, basic("alice", "another-guess"))
	wantError(t, w, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if w.Header().Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", w.Header().Get("Retry-After"))
	}
	if h.policy.Rules.Compares() != before {
		t.Fatal("a throttled guess still ran bcrypt")
	}
	grantOf(t, h, get(t, h, svc, basic("alice", "alice-pw")))
}
