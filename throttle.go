package registryauth

import (
	"crypto/sha256"
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/regauth/caddy-registry-auth/internal/expiring"
)

// ThrottleConfig limits failed logins per client IP and per user name.
// From Failures failed logins on, each further one locks the key for a
// time that doubles from 1 s up to Window; a key with no failure for a
// Window is forgotten. Remembered (cached) logins are never throttled.
type ThrottleConfig struct {
	// Failures allowed before locking starts. Default 10 (a wrong password
	// from containerd counts twice: POST, then GET). Negative: off.
	Failures int `json:"failures,omitempty"`
	// Window is how long failures are remembered and the longest lock.
	// Default 15m.
	Window caddy.Duration `json:"window,omitempty"`
}

// Throttle defaults.
const (
	DefaultThrottleFailures = 10
	DefaultThrottleWindow   = 15 * time.Minute
	// throttleKeys bounds each of the IP and user tables.
	throttleKeys = 100000
)

// provision makes the throttle tc describes (nil tc: the defaults); nil
// when it is off.
func (tc *ThrottleConfig) provision() (*throttle, error) {
	c := ThrottleConfig{}
	if tc != nil {
		c = *tc
	}
	if c.Failures == 0 {
		c.Failures = DefaultThrottleFailures
	}
	if c.Window == 0 {
		c.Window = caddy.Duration(DefaultThrottleWindow)
	}
	if c.Window < 0 {
		return nil, fmt.Errorf("throttle.window: negative")
	}
	if c.Failures < 0 {
		return nil, nil
	}
	return newThrottle(c.Failures, time.Duration(c.Window), throttleKeys), nil
}

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
// holds at most max keys, and when full it drops faded entries first, then
// unlocked ones. A nil throttle admits everything.
type throttle struct {
	threshold int
	window    time.Duration

	mu      sync.Mutex // over the failures records, which the tables share
	ips     *expiring.Map[string, *failures]
	users   *expiring.Map[string, *failures]
	trusted *expiring.Map[string, struct{}] // user key + address key
}

type failures struct {
	count       int
	inflight    int
	last        time.Time
	lockedUntil time.Time
}

func newThrottle(threshold int, window time.Duration, max int) *throttle {
	// Locked keys and checks in flight are what the throttle is for: drop
	// them last.
	busy := func(f *failures, now time.Time) bool { return f.inflight > 0 || f.lockedUntil.After(now) }
	return &throttle{threshold: threshold, window: window,
		ips:     expiring.New[string](max, busy),
		users:   expiring.New[string](max, busy),
		trusted: expiring.New[string, struct{}](max, nil)}
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
	if t == nil {
		return func(bool, bool) {}, 0
	}
	ak, uk := addressKey(ip), userKey(user)
	t.mu.Lock()
	defer t.mu.Unlock()
	_, trusted := t.trusted.Get(uk+ak, now)
	checkUser := !trusted
	if f, ok := t.ips.Get(ak, now); ok {
		wait = max(wait, t.refusal(f, now, false))
	}
	if f, ok := t.users.Get(uk, now); ok && checkUser {
		wait = max(wait, t.refusal(f, now, true))
	}
	if wait > 0 {
		return nil, wait
	}
	keys := []record{t.entry(t.ips, ak, now)}
	if checkUser {
		keys = append(keys, t.entry(t.users, uk, now))
	}
	for _, r := range keys {
		r.f.inflight++
	}
	return func(ok, failed bool) { t.settle(keys, checkUser, ak, uk, ok, failed) }, 0
}

// record is a failures entry with the table and key it lives under.
type record struct {
	table *expiring.Map[string, *failures]
	key   string
	f     *failures
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
	if t == nil {
		return
	}
	key := userKey(user) + addressKey(ip)
	if _, fresh := t.trusted.Get(key, now.Add(t.window/2)); fresh {
		return // trusted for more than half a window yet: spare the write
	}
	t.trusted.Put(key, struct{}{}, now.Add(t.window), now)
}

func (t *throttle) settle(keys []record, checkedUser bool, ak, uk string, ok, failed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for _, r := range keys {
		r.f.inflight--
		if failed {
			r.f.count++
			r.f.last = now
			if over := r.f.count - t.threshold; over >= 0 {
				lock := time.Duration(math.Min(float64(time.Second)*math.Pow(2, float64(over)), float64(t.window)))
				r.f.lockedUntil = now.Add(lock)
			}
		}
		t.store(r, now)
	}
	if ok {
		// The user's own address is trusted for the user name from now on.
		// The address's count stays (one good account must not wash it
		// clean for guessing at others), and so does a user-name record
		// that a guesser built up elsewhere.
		t.trusted.Put(uk+ak, struct{}{}, now.Add(t.window), now)
		if f, live := t.users.Get(uk, now); checkedUser && live && f.inflight == 0 && f.count < t.threshold && !f.lockedUntil.After(now) {
			t.users.Delete(uk)
		}
	}
}

// entry returns the live record for key, starting afresh after a quiet
// window.
func (t *throttle) entry(table *expiring.Map[string, *failures], key string, now time.Time) record {
	f, ok := table.Get(key, now)
	if !ok {
		f = &failures{last: now}
	}
	r := record{table, key, f}
	t.store(r, now)
	return r
}

// store keeps a record until it fades: a window after its last failure, or
// when its lock ends if that is later.
func (t *throttle) store(r record, now time.Time) {
	until := r.f.last.Add(t.window)
	if r.f.lockedUntil.After(until) {
		until = r.f.lockedUntil
	}
	r.table.Put(r.key, r.f, until, now)
}
