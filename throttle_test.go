package registryauth

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clock is the fake time the throttle tests run on.
var epoch = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func testThrottle(failures int, window time.Duration) *throttle {
	return newThrottle(limitsFor(failures, window), 100000)
}

// try runs one attempt of password for account from ip at now, the check
// taking 50 ms; right says whether the password is the account's. It
// returns the verdict.
func try(th *throttle, ip, account, password string, right bool, now time.Time) verdict {
	v := th.admit(th.newAttempt(ip, account, password, []byte("binding")), now)
	if v.done != nil {
		o := wrongPassword
		if right {
			o = rightPassword
		}
		v.done(o, now.Add(v.wait+50*time.Millisecond))
	}
	return v
}

// admitted reports whether a verdict let the check run with no wait.
func admitted(v verdict) bool { return !v.known && !v.refuse && v.wait == 0 }

// A guesser at one account from one address gets F distinct guesses per
// window, then 429 with a Retry-After of at most the window. Repeating a
// guess is free and gives nothing. (Was: a lock for the IP and the user
// name doubling from 1 s after 10 failures; now only the pair is locked.)
func TestThrottleOneAddressOneAccount(t *testing.T) {
	th := testThrottle(5, 15*time.Minute)
	now := epoch
	for i := range 5 {
		if v := try(th, "192.0.2.1", "alice", "guess"+strconv.Itoa(i), false, now); !admitted(v) {
			t.Fatalf("guess %d not admitted: %+v", i+1, v)
		}
		now = now.Add(time.Second)
	}
	v := try(th, "192.0.2.1", "alice", "guess-6", false, now)
	if !v.refuse || v.wait <= 0 || v.wait > 15*time.Minute {
		t.Fatalf("6th distinct guess: %+v, want 429 with a Retry-After within the window", v)
	}
	// The right password from that address waits too: the one case a
	// right password waits, her own tool failing from her own address.
	if v := try(th, "192.0.2.1", "alice", "right", true, now); !v.refuse {
		t.Fatalf("right password from the locked pair: %+v", v)
	}
	// The lock ends when the oldest guess leaves the window.
	if v := try(th, "192.0.2.1", "alice", "guess-6", false, epoch.Add(15*time.Minute+time.Second)); !admitted(v) {
		t.Fatalf("after the window: %+v", v)
	}
}

// containerd's POST-then-GET fallback sends a wrong password twice: one
// guess, and the second needs no check.
func TestThrottleRepeatIsOneFailure(t *testing.T) {
	th := testThrottle(5, 15*time.Minute)
	if v := try(th, "192.0.2.1", "alice", "wrong", false, epoch); !admitted(v) {
		t.Fatalf("POST: %+v", v)
	}
	if v := try(th, "192.0.2.1", "alice", "wrong", false, epoch.Add(10*time.Millisecond)); !v.known {
		t.Fatalf("GET with the same password: %+v, want answered as known wrong", v)
	}
	pair, _ := th.pairs.Get(userKey("alice")+addressKey("192.0.2.1"), epoch)
	if len(pair.wrong) != 1 {
		t.Fatalf("%d guesses recorded, want 1", len(pair.wrong))
	}
}

// Defect 1: a bot retrying a stale password (and, worse, cycling through
// several) never shuts out the other users behind its address.
func TestThrottleStaleBotSparesItsNeighbours(t *testing.T) {
	for _, distinct := range []int{1, 12} {
		t.Run(fmt.Sprintf("%d distinct passwords", distinct), func(t *testing.T) {
			th := testThrottle(5, 15*time.Minute)
			now := epoch
			for i := range 200 {
				try(th, "198.51.100.7", "ci-bot", "old-"+strconv.Itoa(i%distinct), false, now)
				now = now.Add(3 * time.Second)
			}
			for _, user := range []string{"puller", "pusher", "admin"} {
				if v := try(th, "198.51.100.7", user, "right", true, now); !admitted(v) {
					t.Fatalf("%s with the right password from the bot's address: %+v", user, v)
				}
			}
		})
	}
}

// Defect 2: guesses at a victim from 14 addresses never lock her out of a
// new address.
func TestThrottleVictimOnANewAddress(t *testing.T) {
	th := testThrottle(5, 15*time.Minute)
	now := epoch
	for i := range 14 {
		try(th, "203.0.113."+strconv.Itoa(i+1), "victim", "guess"+strconv.Itoa(i), false, now)
		now = now.Add(time.Second)
	}
	if v := try(th, "192.0.2.200", "victim", "right", true, now); !admitted(v) {
		t.Fatalf("the victim's right password from a new address: %+v", v)
	}
}

// Parallel guesses cannot slip past the pair's limit: checks in flight
// count before their failures are known.
func TestThrottleCountsAttemptsInFlight(t *testing.T) {
	th := testThrottle(3, time.Minute)
	var admittedCount int
	for i := range 100 {
		if v := th.admit(th.newAttempt("192.0.2.1", "alice", "g"+strconv.Itoa(i), nil), epoch); v.done != nil {
			admittedCount++
		}
	}
	if admittedCount != 3 {
		t.Fatalf("%d parallel attempts admitted, limit 3", admittedCount)
	}
}

// Identical logins in parallel from one address (a CI job's parallel
// pulls with one robot's password, before the cache knows it) are one
// guess: all are admitted, and a wrong one counts once.
func TestThrottleParallelIdenticalLogins(t *testing.T) {
	th := testThrottle(3, time.Minute)
	var dones []func(outcome, time.Time)
	for i := range 16 {
		v := th.admit(th.newAttempt("192.0.2.1", "robot", "same", nil), epoch)
		if !admitted(v) {
			t.Fatalf("parallel login %d: %+v", i+1, v)
		}
		dones = append(dones, v.done)
	}
	for _, d := range dones {
		d(wrongPassword, epoch)
	}
	pair, _ := th.pairs.Get(userKey("robot")+addressKey("192.0.2.1"), epoch)
	if len(pair.wrong) != 1 || len(pair.pending) != 0 {
		t.Fatalf("%d guesses recorded, %d pending; want 1 and 0", len(pair.wrong), len(pair.pending))
	}
}

// A spraying address is slowed to one check per addressGate, while pairs
// that logged in before pass at once.
func TestThrottleSprayingAddressIsSlowed(t *testing.T) {
	th := testThrottle(5, 15*time.Minute)
	now := epoch
	if v := try(th, "192.0.2.9", "regular", "right", true, now); !admitted(v) {
		t.Fatal(v)
	}
	var waited, refused int
	for i := range 200 {
		v := try(th, "192.0.2.9", "user"+strconv.Itoa(i), "123456", false, now)
		if v.wait > 0 {
			waited++
		}
		if v.refuse {
			refused++
		}
		now = now.Add(100 * time.Millisecond)
	}
	if waited == 0 || refused == 0 {
		t.Fatalf("a spray of 200 accounts in 20 s: %d waited, %d refused", waited, refused)
	}
	if admittedChecks := 200 - refused; admittedChecks > th.sprayAccounts+int(20*time.Second/th.addressGate)+int(th.maxWait/th.addressGate)+1 {
		t.Fatalf("%d checks of a spray admitted in 20 s", admittedChecks)
	}
	if v := try(th, "192.0.2.9", "regular", "right", true, now); !admitted(v) {
		t.Fatalf("a user who logged in from the sprayer's address before: %+v", v)
	}
}

// attackResult is what a simulated hour of attack gave.
type attackResult struct {
	checks      int           // wrong guesses whose check ran
	victimWorst time.Duration // the victim's longest wait before her check
	victim429   int           // the victim's refusals
	retryWorst  time.Duration // the longest Retry-After she was given
}

// simulateAttack runs one hour: guessers from `addresses` addresses at
// `rate` guesses/s in all, at one account, while the victim logs in from a
// new address every minute with the right password.
func simulateAttack(th *throttle, addresses int, rate float64) attackResult {
	var res attackResult
	step := time.Duration(float64(time.Second) / rate)
	victimNext := epoch.Add(30 * time.Second)
	for now, n := epoch, 0; now.Before(epoch.Add(time.Hour)); now, n = now.Add(step), n+1 {
		ip := fmt.Sprintf("10.%d.%d.%d", (n%addresses)/65536, (n%addresses)/256%256, (n%addresses)%256)
		if v := try(th, ip, "victim", "guess-"+strconv.Itoa(n), false, now); v.done != nil {
			res.checks++
		}
		if !now.Before(victimNext) {
			v := try(th, fmt.Sprintf("192.0.2.%d", victimNext.Sub(epoch)/time.Minute), "victim", "right", true, now)
			if v.refuse {
				res.victim429++
				res.retryWorst = max(res.retryWorst, v.wait)
			} else {
				res.victimWorst = max(res.victimWorst, v.wait)
			}
			victimNext = victimNext.Add(time.Minute)
		}
	}
	return res
}

// The distributed attack within the figures of THROTTLE.md: 100 addresses,
// 20 guesses/s in all, for an hour. The victim is never refused and never
// waits; the guesses checked stay under the stated bound.
func TestThrottleDistributedAttackWithinFigures(t *testing.T) {
	th := testThrottle(DefaultThrottleFailures, DefaultThrottleWindow)
	res := simulateAttack(th, 100, 20)
	t.Logf("100 addresses, 20/s, 1 h: %d guesses checked; victim: worst wait %s, %d refusals", res.checks, res.victimWorst, res.victim429)
	if res.victim429 != 0 || res.victimWorst != 0 {
		t.Fatalf("the victim was refused %d times, waited up to %s", res.victim429, res.victimWorst)
	}
	if bound := th.guessBound(100); res.checks > bound {
		t.Fatalf("%d guesses checked in an hour, bound %d", res.checks, bound)
	}
}

// Past the figures: 5,000 addresses. Guesses stay bounded whatever the
// number of addresses. The victim from new addresses competes with the
// attack for the account's gate: each attempt is answered within the
// gate's wait (a check, or 429 with a Retry-After of at most a little more
// than that), and nothing outlives the attack: a minute after it stops she
// logs in at once.
func TestThrottleDistributedAttackPastFigures(t *testing.T) {
	th := testThrottle(DefaultThrottleFailures, DefaultThrottleWindow)
	res := simulateAttack(th, 5000, 20)
	t.Logf("5,000 addresses, 20/s, 1 h: %d guesses checked; victim: %d refusals of 60 (Retry-After up to %s), worst wait %s", res.checks, res.victim429, res.retryWorst, res.victimWorst)
	if bound := th.guessBound(-1); res.checks > bound {
		t.Fatalf("%d guesses checked in an hour, bound %d", res.checks, bound)
	}
	if res.victimWorst > th.maxWait || res.retryWorst > th.maxWait+th.accountGate {
		t.Fatalf("the victim waited up to %s, was told to retry after up to %s", res.victimWorst, res.retryWorst)
	}
	if v := try(th, "192.0.2.250", "victim", "right", true, epoch.Add(time.Hour+time.Minute)); !admitted(v) {
		t.Fatalf("a minute after the attack: %+v", v)
	}
}

// The property: in random interleavings of guessers (at most 100
// addresses and 20 guesses/s in all, at a few accounts, some spraying) and
// rightful users (from new addresses, or from addresses they logged in
// from before, one of them shared with a stale bot), no rightful user ever
// gets 429 or waits, and each account's checked guesses per hour stay
// under the bound.
func TestThrottleProperty(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		th := testThrottle(DefaultThrottleFailures, DefaultThrottleWindow)
		accounts := []string{"alice", "bob", "carol"}
		addresses := 20 + rng.Intn(81)
		checks := map[string]int{}
		home := map[string]string{"alice": "192.0.2.1", "bob": "192.0.2.2", "carol": "198.51.100.7"}
		for _, a := range accounts {
			try(th, home[a], a, "right-"+a, true, epoch)
		}
		now := epoch
		for n := 0; now.Before(epoch.Add(time.Hour)); n++ {
			now = now.Add(time.Duration(rng.Intn(100)+1) * time.Millisecond) // up to 20/s in all
			switch r := rng.Intn(100); {
			case r < 90: // a guess
				ip := "10.0." + strconv.Itoa(rng.Intn(addresses)/256) + "." + strconv.Itoa(rng.Intn(addresses)%256)
				target := accounts[rng.Intn(len(accounts))]
				if rng.Intn(10) == 0 {
					target = "sprayed-" + strconv.Itoa(rng.Intn(1000))
				}
				if v := try(th, ip, target, "guess-"+strconv.Itoa(rng.Intn(1_000_000)), false, now); v.done != nil {
					checks[target]++
				}
			case r < 95: // the stale bot next to carol
				try(th, "198.51.100.7", "ci-bot", "stale", false, now)
			default: // a rightful user, from home or a new address
				a := accounts[rng.Intn(len(accounts))]
				ip := home[a]
				if rng.Intn(2) == 0 {
					ip = "172.16." + strconv.Itoa(n/256%256) + "." + strconv.Itoa(n%256)
				}
				if v := try(th, ip, a, "right-"+a, true, now); !admitted(v) {
					t.Fatalf("seed %d: %s from %s at %s: %+v", seed, a, ip, now.Sub(epoch), v)
				}
			}
		}
		for _, a := range accounts {
			if checks[a] > th.guessBound(addresses) {
				t.Fatalf("seed %d: %d guesses at %s checked, bound %d", seed, checks[a], a, th.guessBound(addresses))
			}
		}
	}
}

func TestThrottleKeysAreBoundedAndGrouped(t *testing.T) {
	th := newThrottle(limitsFor(3, time.Minute), 50)
	long := strings.Repeat("x", 60000)
	for i := range 1000 {
		try(th, "10.0."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256), long+strconv.Itoa(i), "p", false, epoch)
	}
	for name, n := range map[string]int{"pairs": th.pairs.Len(), "accounts": th.accounts.Len(), "addresses": th.addresses.Len(), "trusted": th.trusted.Len()} {
		if n > 50 {
			t.Fatalf("%s table holds %d keys, bound 50", name, n)
		}
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
// limit is passed, before any bcrypt compare, while the real user's
// remembered login still works.
func TestTokenHandlerThrottles(t *testing.T) {
	h := newTestHandler(t)
	h.policy.throttle = testThrottle(4, time.Minute)
	svc := "service=" + testService
	grantOf(t, h, get(t, h, svc, basic("alice", "alice-pw"))) // remembered from now on
	for i := 0; i < 4; i++ {
		wantError(t, get(t, h, svc, basic("alice", "guess"+strconv.Itoa(i))), http.StatusUnauthorized, "UNAUTHORIZED")
	}
	before := h.policy.Current().Users().Compares()
	w := get(t, h, svc, basic("alice", "another-guess"))
	wantError(t, w, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q, want 1 to 60 (the window)", w.Header().Get("Retry-After"))
	}
	// A guess repeated at once is known to be wrong: 401, no check.
	wantError(t, get(t, h, svc, basic("alice", "guess0")), http.StatusUnauthorized, "UNAUTHORIZED")
	if h.policy.Current().Users().Compares() != before {
		t.Fatal("a throttled guess still ran bcrypt")
	}
	grantOf(t, h, get(t, h, svc, basic("alice", "alice-pw")))
}

// Refused attempts cost nothing, not even a table entry; many different
// users behind one address may log in at once.
func TestThrottleRefusalsAddNothing(t *testing.T) {
	th := testThrottle(2, time.Minute)
	try(th, "6.6.6.6", "x", "a", false, epoch)
	try(th, "6.6.6.6", "x", "b", false, epoch) // the pair is locked
	pairs := th.pairs.Len()
	for range 50 {
		if v := try(th, "6.6.6.6", "x", "c", false, epoch); !v.refuse {
			t.Fatal("a locked pair was admitted")
		}
	}
	if th.pairs.Len() != pairs {
		t.Fatalf("refused attempts added %d entries", th.pairs.Len()-pairs)
	}
	var dones []func(outcome, time.Time)
	for i := 0; i < 20; i++ {
		v := th.admit(th.newAttempt("10.0.0.1", "runner"+strconv.Itoa(i), "pw", nil), epoch)
		if !admitted(v) {
			t.Fatalf("login %d of many users behind one address refused", i)
		}
		dones = append(dones, v.done)
	}
	for _, d := range dones {
		d(rightPassword, epoch)
	}
}

// A login the cache answers renews the trust of its address, so a user
// whose logins are all cached passes the gates of an attacked account.
func TestCachedLoginRenewsTrust(t *testing.T) {
	h := newTestHandler(t)
	h.policy.throttle = testThrottle(2, time.Minute)
	if _, err := h.policy.login(context.Background(), h.policy.Current(), "10.0.0.1", "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	key := userKey("alice") + addressKey("10.0.0.1")
	h.policy.throttle.trusted.Put(key, struct{}{}, time.Now().Add(time.Second), time.Now()) // nearly lapsed
	if _, err := h.policy.login(context.Background(), h.policy.Current(), "10.0.0.1", "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.policy.throttle.trusted.Get(key, time.Now().Add(30*time.Minute)); !ok {
		t.Fatal("a cached login did not renew the trust")
	}
}

// guessBound is the most wrong guesses at one account whose check can run
// in any hour, from `addresses` addresses (negative: any number).
// THROTTLE.md derives it; the tests hold the throttle to it.
func (l throttleLimits) guessBound(addresses int) int {
	free := l.accountFree + int(float64(l.accountFree)*time.Hour.Seconds()/l.window.Seconds())
	fresh := 2 * l.freshPerHour // a full bucket, and an hour of refill
	if addresses >= 0 {
		// An address is new to the account again only memory after its
		// last wrong guess there: in an hour, once per started memory.
		fresh = min(fresh, addresses*int((time.Hour+l.memory-1)/l.memory))
	}
	gated := int(time.Hour/l.accountGate) + int(l.maxWait/l.accountGate) + 1
	return free + fresh + gated
}
