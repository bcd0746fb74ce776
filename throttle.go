package registryauth

import (
	"crypto/sha256"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/regauth/caddy-registry-auth/internal/expiring"
	"github.com/regauth/caddy-registry-auth/policy"
)

// ThrottleConfig bounds password guessing. THROTTLE.md is its threat model:
// what each attack shape gets, and why a right password is never refused
// because of other clients' failures.
type ThrottleConfig struct {
	// Failures is how many distinct wrong passwords one address may try
	// for one account per window before that address is locked for that
	// account (and only for it). Repeating a wrong password (containerd's
	// POST-then-GET, a bot with a stale password) is not a new guess.
	// Default 5. Negative: off.
	Failures int `json:"failures,omitempty"`
	// Window is how long wrong guesses count. Default 15m.
	Window caddy.Duration `json:"window,omitempty"`
}

// Throttle defaults.
const (
	DefaultThrottleFailures = 5
	DefaultThrottleWindow   = 15 * time.Minute
	// throttleKeys bounds each of the throttle's tables.
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
	return newThrottle(limitsFor(c.Failures, time.Duration(c.Window)), throttleKeys), nil
}

// throttleLimits are the throttle's numbers, all derived from the
// configured failures (F) and window (W). THROTTLE.md states the bounds
// they give.
type throttleLimits struct {
	pairGuesses   int           // F distinct wrong passwords per address and account per W
	window        time.Duration // W
	memory        time.Duration // how long an address counts as having failed for an account
	repeatMemo    time.Duration // a repeated wrong password is answered without a check
	accountFree   int           // wrong guesses per W an account takes before it is under attack
	freshPerHour  int           // first guesses from new addresses an attacked account admits per hour
	accountGate   time.Duration // one further check per this, per attacked account
	sprayAccounts int           // distinct accounts failing from one address per W that make it a sprayer
	addressGate   time.Duration // one check per this, per spraying address
	maxWait       time.Duration // the longest a gate makes a login wait; then 429
}

func limitsFor(failures int, window time.Duration) throttleLimits {
	return throttleLimits{
		pairGuesses:   failures,
		window:        window,
		memory:        max(window, time.Hour),
		repeatMemo:    time.Minute,
		accountFree:   2 * failures,
		freshPerHour:  200,
		accountGate:   15 * time.Second,
		sprayAccounts: 4 * failures,
		addressGate:   2 * time.Second,
		maxWait:       15 * time.Second,
	}
}

// throttle slows password guessing without ever refusing a right password
// because of other clients' failures. It keeps, in bounded tables:
//   - per account and address (a pair): the last distinct wrong passwords
//     (keyed digests), which lock that pair, and only it, once there are F
//     within the window; and which answer a repeat of one of them at once;
//   - per account: token buckets that notice a distributed attack and then
//     admit first guesses from new addresses at a bounded rate, and one
//     check at a time, spaced by a gate, from addresses that failed before;
//   - per address: the accounts that failed from it, which make it a
//     sprayer, whose logins then pass one at a time through its own gate;
//   - the pairs that logged in successfully: they pass the account's and
//     the address's gates, so a user is never slowed because others guess
//     at her account or share her address.
//
// A nil throttle admits everything.
type throttle struct {
	throttleLimits
	keys *policy.Keyer // digests the passwords guessed

	mu        sync.Mutex
	pairs     *expiring.Map[string, *pairRecord]
	accounts  *expiring.Map[string, *accountRecord]
	addresses *expiring.Map[string, *addressRecord]
	trusted   *expiring.Map[string, struct{}]
}

// guess is a keyed digest of one set of credentials: the same password for
// the same user and source gives the same digest, nothing else does.
type guess [16]byte

type pairRecord struct {
	wrong []mark[guess] // the last distinct wrong guesses, oldest first
	// pending are the guesses being checked now. Attempts with a guess
	// that is already pending share its turn (identical logins in
	// parallel, a CI job's parallel pulls): they are no new guess.
	pending map[guess]*pendingGuess
}

type pendingGuess struct {
	attempts int
	readyAt  time.Time // when its check may start
}

type accountRecord struct {
	free, fresh bucket
	gateNext    time.Time
}

type addressRecord struct {
	failed   []mark[string] // the last distinct accounts that failed from here
	gateNext time.Time
}

// mark is a thing seen at a time.
type mark[T comparable] struct {
	what T
	at   time.Time
}

func newThrottle(l throttleLimits, max int) *throttle {
	t := &throttle{throttleLimits: l, keys: policy.NewKeyer()}
	// What the throttle is for stays longest when a table is full:
	// locked pairs and checks in flight, attacked accounts, sprayers.
	t.pairs = expiring.New[string](max, func(p *pairRecord, now time.Time) bool {
		return len(p.pending) > 0 || t.pairLock(p, now) > 0
	})
	t.accounts = expiring.New[string](max, func(a *accountRecord, now time.Time) bool { return a.free.tokens < 1 })
	t.addresses = expiring.New[string](max, func(a *addressRecord, now time.Time) bool { return t.spraying(a, now) })
	t.trusted = expiring.New[string, struct{}](max, nil)
	return t
}

// attempt is one login attempt as the throttle sees it.
type attempt struct {
	address string // the client's IP
	account string // what is guessed at: the user name, or a source's own id
	guess   guess
}

// newAttempt keys an attempt; binding is what the password is checked
// against (see Policy.binding), so a changed password is a new guess.
func (t *throttle) newAttempt(ip, account, password string, binding []byte) attempt {
	if t == nil {
		return attempt{}
	}
	var g guess
	key := t.keys.Key(account, password, binding)
	copy(g[:], key[:])
	return attempt{address: addressKey(ip), account: userKey(account), guess: g}
}

// verdict is the throttle's answer to an attempt.
type verdict struct {
	// known: this wrong password was tried from this address for this
	// account a moment ago; answer it as wrong without checking again.
	known bool
	// refuse: answer 429 now; wait is its Retry-After. Otherwise wait is
	// how long to hold the attempt before checking it.
	refuse bool
	wait   time.Duration
	// done must be called with the outcome of an admitted attempt.
	done func(outcome, time.Time)
}

// outcome of a checked attempt, for the throttle.
type outcome int

const (
	unchecked outcome = iota // the check could not run (busy, a source down)
	rightPassword
	wrongPassword
)

// addressKey groups IPv6 addresses by /64, since one host holds a whole /64.
func addressKey(ip string) string {
	parsed := net.ParseIP(ip)
	if parsed == nil || parsed.To4() != nil {
		return ip
	}
	return parsed.Mask(net.CIDRMask(64, 128)).String()
}

// userKey is a fixed-size key for any account name, however long.
func userKey(user string) string {
	sum := sha256.Sum256([]byte(user))
	return string(sum[:16])
}
