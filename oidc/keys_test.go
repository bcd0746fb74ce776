package oidc

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// An issuer down at start: Keep retries with a growing wait, reporting
// each failure, until the keys are known; Close stops it.
func TestKeepRetriesUntilTheKeysAreKnown(t *testing.T) {
	key := newRSAKey(t, "k1", 0)
	ti := newTestIssuer(t, key)
	ti.setDown(true)
	k := NewKeys(ti.source(), time.Hour, time.Second)
	k.minBackoff, k.maxBackoff = 10*time.Millisecond, 40*time.Millisecond
	var mu sync.Mutex
	var waits []time.Duration
	stopped := make(chan struct{})
	go func() {
		k.Keep(time.Hour, func(err error, retryIn time.Duration) {
			mu.Lock()
			waits = append(waits, retryIn)
			n := len(waits)
			mu.Unlock()
			if n == 4 {
				ti.setDown(false)
			}
		})
		close(stopped)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The interval is an hour: only Keep fetches.
		if keys, err := k.For(context.Background(), "k1"); err == nil && len(keys) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the keys never became known")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	got := append([]time.Duration(nil), waits...)
	mu.Unlock()
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond}
	if len(got) != len(want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits %v, want %v", got, want)
		}
	}
	k.Close()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Keep did not return after Close")
	}
}

// Keys from a file: read again when a token names a key it lacks, so that
// an operator's new file is picked up without a reload.
func TestFileKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	a, b := newRSAKey(t, "a", 0), newECKey(t, "b")
	if err := os.WriteFile(path, jwks(t, a), 0o600); err != nil {
		t.Fatal(err)
	}
	k := NewKeys(FileKeys(path), 0, time.Second)
	if err := k.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := k.For(context.Background(), "b"); err != ErrUnknownKey {
		t.Fatalf("key b before it is in the file: %v", err)
	}
	if err := os.WriteFile(path, jwks(t, a, b), 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, err := k.For(context.Background(), "b"); err != nil || len(keys) != 1 {
		t.Fatalf("key b after it is in the file: %v", err)
	}
	if err := os.WriteFile(path, []byte(`{"keys":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.Fetch(context.Background()); err == nil {
		t.Fatal("a broken file was read without error")
	}
	if _, err := k.For(context.Background(), "a"); err != nil {
		t.Fatalf("known keys were dropped by a broken file: %v", err)
	}
}
