package registryauth

import (
	"math"
	"sync"
	"time"
)

// throttle slows password guessing. Failed logins are counted per client
// IP and per user name; from the threshold on, each key is locked for a
// time that doubles with every further failure, up to the window. A
// locked key is answered 429 before any bcrypt compare runs. Logins whose
// credentials the cache remembers never reach it, so an attacker guessing
// alice's password cannot lock alice out of her running sessions.
//
// Counts fade: a key with no failure for a whole window is forgotten.
// Memory is bounded: each table keeps at most max keys, dropping the
// stalest (expired first, then arbitrary ones) when full.
type throttle struct {
	threshold int
	window    time.Duration
	max       int

	mu    sync.Mutex
	ips   map[string]*failures
	users map[string]*failures
}

type failures struct {
	count       int
	last        time.Time
	lockedUntil time.Time
}

func newThrottle(threshold int, window time.Duration, max int) *throttle {
	return &throttle{threshold: threshold, window: window, max: max,
		ips: map[string]*failures{}, users: map[string]*failures{}}
}

// wait returns how long the IP or the user name is still locked, or 0.
func (t *throttle) wait(ip, user string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var w time.Duration
	for _, f := range []*failures{t.ips[ip], t.users[user]} {
		if f != nil && f.lockedUntil.After(now) {
			w = max(w, f.lockedUntil.Sub(now))
		}
	}
	return w
}

// failed counts a failed login.
func (t *throttle) failed(ip, user string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.count(t.ips, ip, now)
	t.count(t.users, user, now)
}

// succeeded forgets the user name's failures (not the IP's: one good
// account must not wash an address clean for guessing at others).
func (t *throttle) succeeded(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.users, user)
}

func (t *throttle) count(table map[string]*failures, key string, now time.Time) {
	f := table[key]
	if f == nil || now.Sub(f.last) > t.window {
		if len(table) >= t.max {
			t.evict(table, now)
		}
		f = &failures{}
		table[key] = f
	}
	f.count++
	f.last = now
	if over := f.count - t.threshold; over >= 0 {
		lock := time.Duration(math.Min(float64(time.Second)*math.Pow(2, float64(over)), float64(t.window)))
		f.lockedUntil = now.Add(lock)
	}
}

func (t *throttle) evict(table map[string]*failures, now time.Time) {
	for k, f := range table {
		if now.Sub(f.last) > t.window && !f.lockedUntil.After(now) {
			delete(table, k)
		}
	}
	for k := range table {
		if len(table) < t.max {
			return
		}
		delete(table, k)
	}
}
