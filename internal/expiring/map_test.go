package expiring

import (
	"strconv"
	"testing"
	"time"
)

func TestGetHonoursExpiry(t *testing.T) {
	m := New[string, int](10, nil)
	now := time.Now()
	m.Put("a", 1, now.Add(time.Minute), now)
	if v, ok := m.Get("a", now.Add(59*time.Second)); !ok || v != 1 {
		t.Fatalf("Get before expiry = %d, %v", v, ok)
	}
	if _, ok := m.Get("a", now.Add(time.Minute)); ok {
		t.Fatal("an entry is still there at its expiry")
	}
	if _, ok := m.Get("b", now); ok {
		t.Fatal("a missing key was found")
	}
	m.Delete("a")
	if m.Len() != 0 {
		t.Fatalf("Len %d after Delete", m.Len())
	}
}

func TestBoundedExpiredFirst(t *testing.T) {
	m := New[string, int](5, nil)
	now := time.Now()
	for i := range 5 {
		until := now.Add(time.Hour)
		if i%2 == 0 {
			until = now.Add(time.Second) // will have expired
		}
		m.Put(strconv.Itoa(i), i, until, now)
	}
	later := now.Add(time.Minute)
	m.Put("new", 9, later.Add(time.Hour), later)
	for _, k := range []string{"1", "3", "new"} {
		if _, ok := m.Get(k, later); !ok {
			t.Errorf("live entry %s was dropped while expired ones made room", k)
		}
	}
	if m.Len() != 3 {
		t.Errorf("Len %d, want the three live entries", m.Len())
	}
	for i := range 100 {
		m.Put("x"+strconv.Itoa(i), i, later.Add(time.Hour), later)
		if m.Len() > 5 {
			t.Fatalf("Len %d past the bound 5", m.Len())
		}
	}
}

func TestKeepProtectsUntilNothingElseIsLeft(t *testing.T) {
	m := New[string, bool](4, func(locked bool, _ time.Time) bool { return locked })
	now := time.Now()
	until := now.Add(time.Hour)
	m.Put("locked", true, until, now)
	for i := range 50 {
		m.Put(strconv.Itoa(i), false, until, now)
	}
	if _, ok := m.Get("locked", now); !ok {
		t.Fatal("a protected entry was dropped while unprotected ones were there")
	}
	for i := range 10 {
		m.Put("l"+strconv.Itoa(i), true, until, now)
	}
	if m.Len() > 4 {
		t.Fatalf("Len %d: protection must not break the bound", m.Len())
	}
}

func TestReplacingAKeyNeedsNoRoom(t *testing.T) {
	m := New[string, int](2, nil)
	now := time.Now()
	m.Put("a", 1, now.Add(time.Hour), now)
	m.Put("b", 2, now.Add(time.Hour), now)
	m.Put("a", 3, now.Add(time.Hour), now)
	if v, ok := m.Get("b", now); !ok || v != 2 {
		t.Fatal("replacing a key evicted another")
	}
}
