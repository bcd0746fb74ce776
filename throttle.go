package registryauth

import (
	"crypto/sha256"
	"math"
	"net"
	"sync"
	"time"
)

// throttle slows password guessing. Failed logins are counted per client
// address and per user name; from the threshold on, each further failure
// locks the key for a time that doubles from 1 s up to the window. A locked
// key is answered 429 before any bcrypt compare runs. Attempts in flight
// count as well, so a burst of parallel guesses cannot slip past the
// threshold before the first failures are recorded.
//
// A guesser must not be able to lock a user out: a user-name lock does not
// apply to an address that user logged in from successfully within the
// window, and logins the credential cache remembers never reach the
// throttle at all.
//
// Counts fade: a key with no failure for a whole window is forgotten.
// Memory is bounded: keys are fixed-size (user names are hashed, IPv6
// addresses grouped by /64, since one host holds a whole /64), each table
// holds at most max keys, and when full it drops expired entries first,
// then unlocked ones.
type throttle struct {
	threshold int
	window    time.Duration
	max       int

	mu      sync.Mutex
	ips     map[string]*failures
	users   map[string]*failures
	trusted map[string]time.Time // user key + address key → trusted until
}

type failures struct {
	count       int
	inflight    int
	last        time.Time
	lockedUntil time.Time
}

func newThrottle(threshold int, window time.Duration, max int) *throttle {
	return &throttle{threshold: threshold, window: window, max: max,
		ips: map[string]*failures{}, users: map[string]*failures{}, trusted: map[string]time.Time{}}
}

// addressKey groups IPv6 addresses by /64.
func addressKey(ip string) string {
	parsed := net.ParseIP(ip)
	if parsed == nil || parsed.To4() != nil {
		return ip
	}
	return parsed.Mask(net.CIDRMask(64, 128)).String()
}

// userKey is a fixed-size key for any user name, however long.
func userKey(user string) string {
	sum := sha256.Sum256([]byte(user))
	return string(sum[:16])
}

// admit reserves a password check for ip and user. It returns the wait
// before trying again when either is locked or has too many checks in
// flight; otherwise a done func that must be called with the outcome: ok,
// failed (a wrong password), or neither (the check could not run).
func (t *throttle) admit(ip, user string, now time.Time) (done func(ok, failed bool), wait time.Duration) {
	ak, uk := addressKey(ip), userKey(user)
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := []*failures{t.entry(t.ips, ak, now)}
	if until, ok := t.trusted[uk+ak]; !ok || !now.Before(until) {
		keys = append(keys, t.entry(t.users, uk, now))
	}
	for _, f := range keys {
		switch {
		case f.lockedUntil.After(now):
			wait = max(wait, f.lockedUntil.Sub(now))
		case f.inflight > 0 && f.count+f.inflight >= t.threshold:
			// Past the threshold (lock run out), one attempt at a time.
			wait = max(wait, time.Second)
		}
	}
	if wait > 0 {
		return nil, wait
	}
	for _, f := range keys {
		f.inflight++
	}
	return func(ok, failed bool) { t.settle(keys, ak, uk, ok, failed) }, 0
}

func (t *throttle) settle(keys []*failures, ak, uk string, ok, failed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for _, f := range keys {
		f.inflight--
		if !failed {
			continue
		}
		f.count++
		f.last = now
		if over := f.count - t.threshold; over >= 0 {
			lock := time.Duration(math.Min(float64(time.Second)*math.Pow(2, float64(over)), float64(t.window)))
			f.lockedUntil = now.Add(lock)
		}
	}
	if ok {
		// The user's own address is trusted for the user name from now on;
		// the address's count stays (one good account must not wash it
		// clean for guessing at others).
		if len(t.trusted) >= t.max {
			for k, until := range t.trusted {
				if !now.Before(until) || len(t.trusted) >= t.max {
					delete(t.trusted, k)
				}
			}
		}
		t.trusted[uk+ak] = now.Add(t.window)
		if f := t.users[uk]; f != nil && f.inflight == 0 {
			delete(t.users, uk)
		}
	}
}

// entry returns the live entry for key, starting afresh after a quiet
// window.
func (t *throttle) entry(table map[string]*failures, key string, now time.Time) *failures {
	f := table[key]
	if f != nil && (f.inflight > 0 || now.Sub(f.last) <= t.window || f.lockedUntil.After(now)) {
		return f
	}
	if f == nil && len(table) >= t.max {
		t.evict(table, now)
	}
	f = &failures{last: now}
	table[key] = f
	return f
}

func (t *throttle) evict(table map[string]*failures, now time.Time) {
	for k, f := range table {
		if f.inflight == 0 && now.Sub(f.last) > t.window && !f.lockedUntil.After(now) {
			delete(table, k)
		}
	}
	for _, keepLocked := range []bool{true, false} {
		for k, f := range table {
			if len(table) < t.max {
				return
			}
			if f.inflight == 0 && (!keepLocked || !f.lockedUntil.After(now)) {
				delete(table, k)
			}
		}
	}
}
