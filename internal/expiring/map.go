// Package expiring is the one bounded map with expiring entries that the
// plugin's caches and counters are built on: remembered logins, reused
// tokens, an authorizer's answers and the throttle's records.
package expiring

import (
	"sync"
	"time"
)

// Map holds at most max entries, each until its own expiry. It is safe for
// concurrent use.
//
// When a Put finds the map full it makes room in this order: expired
// entries, then entries that keep does not protect, then any. Losing an
// entry must only ever cost the caller work (one more password check, one
// more signature), never safety: callers that cannot afford to lose some
// entries protect them with keep.
type Map[K comparable, V any] struct {
	max  int
	keep func(V, time.Time) bool

	mu      sync.Mutex
	entries map[K]entry[V]
}

type entry[V any] struct {
	value V
	until time.Time
}

// New makes a map of at most max entries. keep may be nil.
func New[K comparable, V any](max int, keep func(v V, now time.Time) bool) *Map[K, V] {
	return &Map[K, V]{max: max, keep: keep, entries: map[K]entry[V]{}}
}

// Get returns the value stored under k unless it has expired at now.
func (m *Map[K, V]) Get(k K, now time.Time) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[k]
	if !ok || !now.Before(e.until) {
		var zero V
		return zero, false
	}
	return e.value, true
}

// Put stores v under k until the given time.
func (m *Map[K, V]) Put(k K, v V, until, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, exists := m.entries[k]; !exists && len(m.entries) >= m.max {
		m.makeRoom(now)
	}
	m.entries[k] = entry[V]{v, until}
}

// Delete forgets k.
func (m *Map[K, V]) Delete(k K) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, k)
}

// Len is the number of entries, expired ones included until they are
// dropped.
func (m *Map[K, V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// makeRoom frees at least one place; it is called with the lock held and
// the map full. Expired entries all go (they are useless); then, only as
// many as needed, unprotected entries, then any.
func (m *Map[K, V]) makeRoom(now time.Time) {
	for k, e := range m.entries {
		if !now.Before(e.until) {
			delete(m.entries, k)
		}
	}
	for _, protected := range []func(V) bool{
		func(v V) bool { return m.keep != nil && m.keep(v, now) },
		func(V) bool { return false },
	} {
		for k, e := range m.entries {
			if len(m.entries) < m.max {
				return
			}
			if !protected(e.value) {
				delete(m.entries, k)
			}
		}
	}
}
