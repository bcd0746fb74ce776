package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/regauth/caddy-registry-auth/internal/bounded"
	"github.com/regauth/caddy-registry-auth/internal/clip"
)

// Errors of Keys.For.
var (
	// ErrKeysUnavailable: the issuer's keys could not be fetched yet, so
	// no token of it can be checked now (the caller should retry).
	ErrKeysUnavailable = errors.New("the issuer's keys are not known yet")
	// ErrUnknownKey: the token names a key the issuer does not publish.
	ErrUnknownKey = errors.New("the token names a key the issuer does not publish")
)

// Bounds on what an issuer's documents may hold.
const (
	maxDocument = 1 << 20
	maxKeys     = 100
	minRSABits  = 2048
	maxRSABits  = 8192
)

// Keys are an issuer's public signing keys: fetched from a source, kept,
// and fetched again when a token names a key they lack, at most once per
// interval, so that a key the issuer rotates in is picked up within
// seconds and a flood of tokens naming unknown keys is not a flood of
// fetches. Callers that need the keys while a fetch runs wait for it; a
// fetch is never bound to one caller's request. Keys are safe for
// concurrent use.
type Keys struct {
	fetch    func(context.Context) ([]byte, error)
	interval time.Duration
	timeout  time.Duration
	// backoff bounds the waits between failed fetches in Keep.
	minBackoff, maxBackoff time.Duration

	ctx   context.Context // ends with Close, and every fetch with it
	close context.CancelFunc

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	known     bool          // a fetch has succeeded
	attempted time.Time     // when the last fetch started
	inflight  chan struct{} // closed when the fetch under way ends
	lastErr   error         // of the last fetch
	fetches   int
}

// NewKeys makes the keys fetch returns (a JWKS document): each fetch is
// bounded by timeout, and a token naming an unknown key causes at most
// one fetch per interval. Nothing is fetched yet.
func NewKeys(fetch func(context.Context) ([]byte, error), interval, timeout time.Duration) *Keys {
	ctx, cancel := context.WithCancel(context.Background())
	return &Keys{fetch: fetch, interval: interval, timeout: timeout,
		minBackoff: time.Second, maxBackoff: time.Minute, ctx: ctx, close: cancel}
}

// Close stops Keep and any fetch under way.
func (k *Keys) Close() { k.close() }

// Known reports whether a fetch has succeeded.
func (k *Keys) Known() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.known
}

// Fetches is how many fetches have ended.
func (k *Keys) Fetches() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fetches
}

// Fetch fetches the keys now, or waits for the fetch under way, and
// returns its error. Keys already known stay when it fails.
func (k *Keys) Fetch(ctx context.Context) error {
	k.mu.Lock()
	done := k.inflight
	if done == nil {
		done = k.startFetch()
	}
	k.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastErr
}

// startFetch starts a fetch; it is called with mu held.
func (k *Keys) startFetch() chan struct{} {
	done := make(chan struct{})
	k.inflight, k.attempted = done, time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(k.ctx, k.timeout)
		keys, err := k.load(ctx)
		cancel()
		k.mu.Lock()
		if err == nil {
			k.keys, k.known = keys, true
		}
		k.lastErr, k.inflight = err, nil
		k.fetches++
		k.mu.Unlock()
		close(done)
	}()
	return done
}

func (k *Keys) load(ctx context.Context) ([]jose.JSONWebKey, error) {
	data, err := k.fetch(ctx)
	if err != nil {
		return nil, err
	}
	return ParseJWKS(data)
}

// For returns the keys that may have signed a token whose header names
// kid: those with that key id, or all of them when kid is empty. When
// none has the id it fetches the keys again (or waits for the fetch under
// way) if the interval allows, and looks once more.
func (k *Keys) For(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	for range 3 {
		k.mu.Lock()
		if found := k.matching(kid); len(found) > 0 {
			k.mu.Unlock()
			return found, nil
		}
		done := k.inflight
		if done == nil && time.Since(k.attempted) >= k.interval {
			done = k.startFetch()
		}
		known, lastErr := k.known, k.lastErr
		k.mu.Unlock()
		if done == nil {
			return nil, k.missing(known, lastErr)
		}
		select {
		case <-done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", ErrKeysUnavailable, ctx.Err())
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if found := k.matching(kid); len(found) > 0 {
		return found, nil
	}
	return nil, k.missing(k.known, k.lastErr)
}

// matching is the known keys with key id kid (all when it is empty); it is
// called with mu held.
func (k *Keys) matching(kid string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range k.keys {
		if kid == "" || key.KeyID == kid {
			out = append(out, key)
		}
	}
	return out
}

// missing is the error for a key not found: unknown if the keys are
// known, unavailable (with the last fetch's error) if not.
func (k *Keys) missing(known bool, lastErr error) error {
	switch {
	case known:
		return ErrUnknownKey
	case lastErr != nil:
		return fmt.Errorf("%w: %v", ErrKeysUnavailable, lastErr)
	}
	return ErrKeysUnavailable
}

// Keep fetches the keys until a fetch succeeds, waiting between attempts
// from a second, doubling up to a minute (report hears of each failure and
// the wait before the next attempt), then again every refresh, so that keys
// the issuer withdrew are dropped. It returns when the keys are closed.
func (k *Keys) Keep(refresh time.Duration, report func(err error, retryIn time.Duration)) {
	backoff := k.minBackoff
	for {
		wait := refresh
		if err := k.Fetch(k.ctx); err != nil {
			if k.ctx.Err() != nil {
				return
			}
			wait = backoff
			report(err, wait)
			backoff = min(2*backoff, k.maxBackoff)
		} else {
			backoff = k.minBackoff
		}
		t := time.NewTimer(wait)
		select {
		case <-k.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// ParseJWKS reads a JSON Web Key Set and keeps the keys that can check
// token signatures: RSA keys of 2048 to 8192 bits and ECDSA keys, for
// signing ("use" absent or "sig"), with no private part. Other keys are
// skipped (an issuer may publish encryption keys too); a set with none
// left is an error.
func ParseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("key set: %v", err)
	}
	var keys []jose.JSONWebKey
	for i, raw := range set.Keys {
		if i == maxKeys {
			break
		}
		if key, ok := signingKey(raw); ok {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key set: none of its %d keys is an RSA or ECDSA public signing key", len(set.Keys))
	}
	return keys, nil
}

// signingKey reads one key of a set, if it is one ParseJWKS keeps.
func signingKey(raw json.RawMessage) (jose.JSONWebKey, bool) {
	var fields struct {
		D   *json.RawMessage `json:"d"`
		Use string           `json:"use"`
	}
	// A private part is never needed, and parsing one costs work.
	if json.Unmarshal(raw, &fields) != nil || fields.D != nil || (fields.Use != "" && fields.Use != "sig") {
		return jose.JSONWebKey{}, false
	}
	var key jose.JSONWebKey
	if key.UnmarshalJSON(raw) != nil || !key.Valid() {
		return jose.JSONWebKey{}, false
	}
	switch pub := key.Key.(type) {
	case *rsa.PublicKey:
		bits := pub.N.BitLen()
		return key, bits >= minRSABits && bits <= maxRSABits
	case *ecdsa.PublicKey:
		return key, true
	}
	return jose.JSONWebKey{}, false
}

// FileKeys is a key source that reads a JWKS file (say, a Kubernetes
// cluster's, from `kubectl get --raw /openid/v1/jwks`).
func FileKeys(path string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readBounded(f, path)
	}
}

// DiscoveredKeys is a key source that finds the keys the way OpenID
// Connect clients do: the issuer's discovery document, at
// <issuer>/.well-known/openid-configuration, names the issuer (which must
// be issuer exactly) and its jwks_uri, where the keys are. allowed checks
// the jwks_uri before it is fetched.
func DiscoveredKeys(client *http.Client, issuer string, allowed func(*url.URL) error) func(context.Context) ([]byte, error) {
	discovery := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	return func(ctx context.Context) ([]byte, error) {
		data, err := get(ctx, client, discovery)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("%s: %v", discovery, err)
		}
		if doc.Issuer != issuer {
			return nil, fmt.Errorf("%s names the issuer %q, not %q", discovery, clip.String(doc.Issuer, 200), issuer)
		}
		u, err := url.Parse(doc.JWKSURI)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%s: jwks_uri %q is not an absolute URL", discovery, clip.String(doc.JWKSURI, 200))
		}
		if err := allowed(u); err != nil {
			return nil, fmt.Errorf("%s: jwks_uri: %v", discovery, err)
		}
		return get(ctx, client, doc.JWKSURI)
	}
}

// get fetches a document of at most maxDocument bytes; anything but 200
// is an error.
func get(ctx context.Context, client *http.Client, target string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("%s: %v", target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d", target, resp.StatusCode)
	}
	return readBounded(resp.Body, target)
}

func readBounded(r io.Reader, what string) ([]byte, error) {
	data, err := bounded.Read(r, maxDocument)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	return data, nil
}
