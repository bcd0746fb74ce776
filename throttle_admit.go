package registryauth

import "time"

// admit decides on an attempt at now. It is a pure function of the
// throttle's tables and now, so tests drive it with a fake clock.
func (t *throttle) admit(a attempt, now time.Time) verdict {
	if t == nil {
		return verdict{done: func(outcome, time.Time) {}}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pk := a.account + a.address
	pair, _ := t.pairs.Get(pk, now)
	if pair == nil {
		pair = &pairRecord{pending: map[guess]*pendingGuess{}}
	}
	if pg := pair.pending[a.guess]; pg != nil {
		pg.attempts++
		return verdict{wait: max(0, pg.readyAt.Sub(now)), done: func(_ outcome, at time.Time) {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.release(pair, a.guess)
		}}
	}
	repeat := false
	if at, ok := pair.wrongAt(a.guess); ok && now.Sub(at) < t.window {
		if now.Sub(at) < t.repeatMemo {
			return verdict{known: true}
		}
		repeat = true // checked again, but not a new guess
	}
	if lock := t.pairLock(pair, now); lock > 0 {
		return verdict{refuse: true, wait: lock}
	}
	_, trusted := t.trusted.Get(pk, now)
	var g gates
	if !trusted && !repeat {
		if refused := t.passGates(&g, a, pair, now); refused > 0 {
			return verdict{refuse: true, wait: refused}
		}
	}
	pair.pending[a.guess] = &pendingGuess{attempts: 1, readyAt: now.Add(g.wait)}
	t.storePair(pk, pair, now)
	return verdict{wait: g.wait, done: func(o outcome, at time.Time) {
		t.settle(a, pk, pair, &g, trusted || repeat, o, at)
	}}
}

// gates is what an admitted attempt took from its account: a token to give
// back if the attempt turns out not to be a wrong guess, and the wait.
type gates struct {
	refund func() // nil when no token was taken
	wait   time.Duration
}

// gate spaces the checks it lets through by every.
type gate struct {
	next  *time.Time
	every time.Duration
}

// passGates admits an attempt from an address that never logged in to
// this account: through the address's gate if it sprays, and through the
// account's buckets or, when they are empty, its gate. It returns the
// Retry-After of a refusal, or 0 with g filled in.
func (t *throttle) passGates(g *gates, a attempt, pair *pairRecord, now time.Time) time.Duration {
	addr, _ := t.addresses.Get(a.address, now)
	acct, ok := t.accounts.Get(a.account, now)
	if !ok {
		acct = &accountRecord{free: fullBucket(t.accountFree, now), fresh: fullBucket(t.freshPerHour, now)}
	}
	var gs []gate
	if addr != nil && t.spraying(addr, now) {
		gs = append(gs, gate{&addr.gateNext, t.addressGate})
	}
	fresh := len(pair.pending) == 0 && (len(pair.wrong) == 0 || now.Sub(pair.wrong[len(pair.wrong)-1].at) >= t.memory)
	switch {
	case acct.free.take(t.accountFree, t.window, now):
		g.refund = func() { acct.free.refund(t.accountFree) }
	case fresh && acct.fresh.take(t.freshPerHour, time.Hour, now):
		g.refund = func() { acct.fresh.refund(t.freshPerHour) }
	default:
		gs = append(gs, gate{&acct.gateNext, t.accountGate})
	}
	start := now
	for _, gt := range gs {
		start = maxTime(start, *gt.next)
	}
	if wait := start.Sub(now); wait > t.maxWait {
		if g.refund != nil {
			g.refund()
		}
		return wait
	}
	for _, gt := range gs {
		*gt.next = start.Add(gt.every)
	}
	g.wait = start.Sub(now)
	t.accounts.Put(a.account, acct, now.Add(t.memory), now)
	if addr != nil {
		t.addresses.Put(a.address, addr, now.Add(t.window), now)
	}
	return 0
}

// settle records the outcome of an admitted attempt. A wrong password is a
// new guess for its pair, its account and its address, unless it was a
// repeat or came from a pair that logged in before (the user's own tool).
func (t *throttle) settle(a attempt, pk string, pair *pairRecord, g *gates, own bool, o outcome, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.release(pair, a.guess)
	switch {
	case o == wrongPassword:
		pair.wrong = appendDistinct(pair.wrong, mark[guess]{a.guess, now}, t.pairGuesses)
		if !own {
			t.recordSpray(a, now)
		}
	case o == rightPassword:
		t.trusted.Put(pk, struct{}{}, now.Add(t.memory), now)
		fallthrough
	default:
		// Not a wrong guess: the account's token goes back.
		if g.refund != nil {
			g.refund()
		}
	}
	t.storePair(pk, pair, now)
}

// release ends one attempt's share of a pending guess.
func (t *throttle) release(pair *pairRecord, g guess) {
	if pg := pair.pending[g]; pg != nil {
		if pg.attempts--; pg.attempts == 0 {
			delete(pair.pending, g)
		}
	}
}

// recordSpray notes that a.account failed from a.address.
func (t *throttle) recordSpray(a attempt, now time.Time) {
	addr, ok := t.addresses.Get(a.address, now)
	if !ok {
		addr = &addressRecord{}
	}
	addr.failed = appendDistinct(addr.failed, mark[string]{a.account, now}, t.sprayAccounts)
	t.addresses.Put(a.address, addr, now.Add(t.window), now)
}

// pairLock is how long a pair stays locked: until the oldest of its last
// F wrong guesses leaves the window, or a second while the distinct
// guesses being checked would take it past F.
func (t *throttle) pairLock(p *pairRecord, now time.Time) time.Duration {
	live := 0
	for _, w := range p.wrong {
		if now.Sub(w.at) < t.window {
			live++
		}
	}
	switch {
	case live >= t.pairGuesses:
		return p.wrong[len(p.wrong)-t.pairGuesses].at.Add(t.window).Sub(now)
	case live+len(p.pending) >= t.pairGuesses:
		return time.Second
	}
	return 0
}

// spraying reports whether an address failed for many accounts lately.
func (t *throttle) spraying(a *addressRecord, now time.Time) bool {
	return len(a.failed) >= t.sprayAccounts && now.Sub(a.failed[0].at) < t.window
}

// storePair keeps a pair record as long as it may matter: its wrong
// guesses make the address a known one for the account for t.memory.
func (t *throttle) storePair(pk string, p *pairRecord, now time.Time) {
	until := now.Add(t.repeatMemo)
	if n := len(p.wrong); n > 0 {
		until = maxTime(until, p.wrong[n-1].at.Add(t.memory))
	}
	t.pairs.Put(pk, p, until, now)
}

// wrongAt returns when g was last tried and found wrong.
func (p *pairRecord) wrongAt(g guess) (time.Time, bool) {
	for _, w := range p.wrong {
		if w.what == g {
			return w.at, true
		}
	}
	return time.Time{}, false
}

// appendDistinct adds m to the list, replacing an older mark of the same
// thing, keeping at most n marks, oldest first.
func appendDistinct[T comparable](list []mark[T], m mark[T], n int) []mark[T] {
	out := list[:0]
	for _, old := range list {
		if old.what != m.what {
			out = append(out, old)
		}
	}
	out = append(out, m)
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// bucket is a token bucket that refills continuously.
type bucket struct {
	tokens float64
	at     time.Time
}

func fullBucket(capacity int, now time.Time) bucket { return bucket{float64(capacity), now} }

// take takes a token if there is one; the bucket refills capacity tokens
// per period.
func (b *bucket) take(capacity int, period time.Duration, now time.Time) bool {
	b.tokens += now.Sub(b.at).Seconds() * float64(capacity) / period.Seconds()
	b.tokens, b.at = min(b.tokens, float64(capacity)), now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refund(capacity int) { b.tokens = min(b.tokens+1, float64(capacity)) }

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// trust marks the account as logging in from ip: the credential cache
// answered, so the throttle never saw the login.
func (t *throttle) trust(ip, account string, now time.Time) {
	if t == nil {
		return
	}
	pk := userKey(account) + addressKey(ip)
	if _, fresh := t.trusted.Get(pk, now.Add(t.memory/2)); fresh {
		return // trusted for more than half its time yet: spare the write
	}
	t.trusted.Put(pk, struct{}{}, now.Add(t.memory), now)
}
