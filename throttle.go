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
// failed (a wrong password), or neither (the check could not run). A
// refused attempt adds nothing to the tables: it costs the server nothing.
func (t *throttle) admit(ip, user string, now time.Time) (done func(ok, failed bool), wait time.Duration) {
	ak, uk := addressKey(ip), userKey(user)
	t.mu.Lock()
	defer t.mu.Unlock()
	checkUser := true
	if until, ok := t.trusted[uk+ak]; ok && now.Before(until) {
		checkUser = false
	}
	if f := t.live(t.ips, ak, now); f != nil {
		wait = max(wait, t.refusal(f, now, false))
	}
	if f := t.live(t.users, uk, now); f != nil && checkUser {
		wait = max(wait, t.refusal(f, now, true))
	}
	if wait > 0 {
		return nil, wait
	}
	keys := []*failures{t.entry(t.ips, ak, now)}
	if checkUser {
		keys = append(keys, t.entry(t.users, uk, now))
	}
	for _, f := range keys {
		f.inflight++
	}
	return func(ok, failed bool) { t.settle(keys, checkUser, ak, uk, ok, failed) }, 0
}

// refusal is how long f keeps an attempt out: its lock, or a second when
// too many checks are in flight. For an address that has not failed yet,
// checks in flight are not limited: many clients behind one NAT may log in
// at once (the user name's limit still holds them to the threshold).
func (t *throttle) refusal(f *failures, now time.Time, isUser bool) time.Duration {
	switch {
	case f.lockedUntil.After(now):
		return f.lockedUntil.Sub(now)
	case f.inflight > 0 && f.count+f.inflight >= t.threshold && (isUser || f.count > 0):
		// Past the threshold (lock run out), one attempt at a time.
		return time.Second
	}
	return 0
}

// trust marks user as logging in from ip: the credential cache answered,
// so the throttle never saw it.
func (t *throttle) trust(ip, user string, now time.Time) {
	key := userKey(user) + addressKey(ip)
	t.mu.Lock()
	defer t.mu.Unlock()
	if until, ok := t.trusted[key]; ok && until.Sub(now) > t.window/2 {
		return // fresh enough: spare the write
	}
	t.setTrusted(key, now)
}

func (t *throttle) setTrusted(key string, now time.Time) {
	if _, ok := t.trusted[key]; !ok && len(t.trusted) >= t.max {
		for k, until := range t.trusted {
			if !now.Before(until) || len(t.trusted) >= t.max {
				delete(t.trusted, k)
			}
		}
	}
	t.trusted[key] = now.Add(t.window)
}

func (t *throttle) settle(keys []*failures, checkedUser bool, ak, uk string, ok, failed bool) {
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
		// The user's own address is trusted for the user name from now on.
		// The address's count stays (one good account must not wash it
		// clean for guessing at others), and so does a user-name record
		// that a guesser built up elsewhere.
		t.setTrusted(uk+ak, now)
		if f := t.users[uk]; checkedUser && f != nil && f.inflight == 0 && f.count < t.threshold && !f.lockedUntil.After(now) {
			delete(t.users, uk)
		}
	}
}

// live returns key's entry unless it has faded.
func (t *throttle) live(table map[string]*failures, key string, now time.Time) *failures {
	f := table[key]
	if f != nil && (f.inflight > 0 || now.Sub(f.last) <= t.window || f.lockedUntil.After(now)) {
		return f
	}
	return nil
}

// entry returns the live entry for key, starting afresh after a quiet
// window.
func (t *throttle) entry(table map[string]*failures, key string, now time.Time) *failures {
	if f := t.live(table, key, now); f != nil {
		return f
	}
	if _, exists := table[key]; !exists && len(table) >= t.max {
		t.evict(table, now)
	}
	f := &failures{last: now}
	table[key] = f
	return f
}

// evict makes room: faded entries first, then those below the threshold,
// then any not locked. Entries with checks in flight stay.
func (t *throttle) evict(table map[string]*failures, now time.Time) {
	for _, drop := range []func(*failures) bool{
		func(f *failures) bool { return now.Sub(f.last) > t.window && !f.lockedUntil.After(now) },
		func(f *failures) bool { return f.count < t.threshold && !f.lockedUntil.After(now) },
		func(f *failures) bool { return !f.lockedUntil.After(now) },
	} {
		for k, f := range table {
			if len(table) < t.max {
				return
			}
			if f.inflight == 0 && drop(f) {
				delete(table, k)
			}
		}
	}
}
