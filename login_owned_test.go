package registryauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regauth/caddy-registry-auth/policy"
)

// fakeOwner owns the passwords "jwt.<caller>.<verdict>": it names the
// caller "gh/<caller>" when the verdict is "ok", refuses "bad", does not
// know "unknown", and fails "down".
type fakeOwner struct {
	issuer  string
	expires time.Time
	mu      sync.Mutex
	calls   int
	users   []string // the Basic user names it was asked with
}

func (f *fakeOwner) Owner() string { return f.issuer }

func (f *fakeOwner) Claim(password string) (OwnedCredential, bool) {
	parts := strings.Split(password, ".")
	if len(parts) != 3 || parts[0] != "jwt" {
		return OwnedCredential{}, false
	}
	return OwnedCredential{Caller: f.issuer + " " + parts[1], Expires: f.expires}, true
}

func (f *fakeOwner) Authenticate(_ context.Context, name, password string) (Identity, error) {
	f.mu.Lock()
	f.calls++
	f.users = append(f.users, name)
	f.mu.Unlock()
	parts := strings.Split(password, ".")
	switch parts[2] {
	case "ok":
		return Identity{Name: "gh/" + parts[1], Groups: []string{"acme"}, Origin: &policy.Origin{Issuer: f.issuer, Subject: parts[1]}}, nil
	case "bad":
		return Identity{}, ErrBadCredentials
	case "unknown":
		return Identity{}, ErrUnknownUser
	}
	return Identity{}, errors.New("issuer unreachable")
}

func (f *fakeOwner) asked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// ownerPolicy is chainPolicy (own user alice) with a policy user named
// ci, an ordinary source that knows ci too, and then the owner: the
// routing must send the owner's credentials past both.
func ownerPolicy(t *testing.T, owner *fakeOwner) (*Policy, *fakeSource) {
	t.Helper()
	other := &fakeSource{user: "ci", password: "jwt.acme.ok"}
	p, _ := chainPolicy(t, other, owner)
	c, _, err := policy.Compile(policy.Config{Users: []policy.User{{Name: "ci", Password: mustHash(t, "jwt.acme.ok")}}})
	if err != nil {
		t.Fatal(err)
	}
	p.current.Store(c)
	p.owners = []*ownedSource{{namedAuthenticator{owner, "oidc"}, owner, []byte("binding")}}
	return p, other
}

func TestOwnedCredentialsGoToTheirOwnerOnly(t *testing.T) {
	ctx := context.Background()
	owner := &fakeOwner{issuer: "https://issuer"}
	p, other := ownerPolicy(t, owner)
	id, err := p.login(ctx, p.Current(), "192.0.2.1", "ci", "jwt.acme.ok")
	if err != nil || id.Name != "gh/acme" || id.Origin == nil || id.Origin.Issuer != "https://issuer" {
		t.Fatalf("login with an owned credential: %+v, %v", id, err)
	}
	if other.calls != 0 || p.Current().Users().Compares() != 0 {
		t.Fatalf("the credential reached other sources: %d calls, %d compares", other.calls, p.Current().Users().Compares())
	}
	// The policy's ci keeps its own password, which no owner claims.
	if id, err := p.login(ctx, p.Current(), "192.0.2.1", "ci", "ci-password"); !errors.Is(err, ErrBadCredentials) || id.Name != "" {
		t.Fatalf("ci with a wrong password: %+v, %v", id, err)
	}
	t.Run("a credential its owner does not know is refused, not passed on", func(t *testing.T) {
		if _, err := p.login(ctx, p.Current(), "192.0.2.1", "ci", "jwt.acme.unknown"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("got %v", err)
		}
		if other.calls != 0 {
			t.Fatal("the next source was asked")
		}
	})
	t.Run("an owner that cannot answer refuses the login (503)", func(t *testing.T) {
		if _, err := p.login(ctx, p.Current(), "192.0.2.1", "ci", "jwt.acme.down"); !errors.Is(err, errSourceDown) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("an owner's name must still be a user name", func(t *testing.T) {
		if _, err := p.login(ctx, p.Current(), "192.0.2.1", "ci", "jwt.a:b.ok"); !errors.Is(err, errSourceDown) {
			t.Fatalf("a name with a colon: %v", err)
		}
	})
}

// An owner standing first in the order never sees an ordinary password:
// the sources after it answer for their users as before.
func TestOwnersAreNotAskedInTheOrder(t *testing.T) {
	owner := &fakeOwner{issuer: "https://issuer"}
	later := &fakeSource{user: "bob", password: "bob-pw"}
	p, _ := chainPolicy(t, owner, later)
	p.owners = []*ownedSource{{namedAuthenticator{owner, "oidc"}, owner, []byte("binding")}}
	if id, err := p.login(context.Background(), p.Current(), "", "bob", "bob-pw"); err != nil || id.Name != "bob" {
		t.Fatalf("a later source's user: %+v, %v", id, err)
	}
	if owner.asked() != 0 {
		t.Fatalf("the owner was asked %d times about an ordinary password", owner.asked())
	}
}

// The cache keys on the credential and the user name, and a remembered
// success ends at the credential's expiry.
func TestOwnedCredentialsInTheCache(t *testing.T) {
	ctx := context.Background()
	owner := &fakeOwner{issuer: "https://issuer", expires: time.Now().Add(300 * time.Millisecond)}
	p, _ := ownerPolicy(t, owner)
	for range 3 {
		if id, err := p.login(ctx, p.Current(), "", "ci", "jwt.acme.ok"); err != nil || id.Name != "gh/acme" || id.Origin == nil {
			t.Fatalf("%+v, %v", id, err)
		}
	}
	if owner.asked() != 1 {
		t.Fatalf("owner asked %d times for one credential, want 1", owner.asked())
	}
	if _, err := p.login(ctx, p.Current(), "", "someone", "jwt.acme.ok"); err != nil || owner.asked() != 2 {
		t.Fatalf("another user name with the same credential: %v, asked %d times (it may require a name)", err, owner.asked())
	}
	time.Sleep(time.Until(owner.expires))
	if _, err := p.login(ctx, p.Current(), "", "ci", "jwt.acme.ok"); err != nil || owner.asked() != 3 {
		t.Fatalf("after the credential's expiry: %v, asked %d times, want the owner asked again", err, owner.asked())
	}
}

// One caller's failures lock that caller, never the shared user name: other
// jobs logging in as ci from the same address go on.
func TestOwnedCredentialsThrottledByCaller(t *testing.T) {
	ctx := context.Background()
	owner := &fakeOwner{issuer: "https://issuer"}
	p, _ := ownerPolicy(t, owner)
	p.cache = nil
	p.throttle = newThrottle(limitsFor(3, time.Minute), 100)
	// The user name is part of what an owner checks: each is a new guess.
	for i := range 3 {
		if _, err := p.login(ctx, p.Current(), "192.0.2.1", fmt.Sprint("ci", i), "jwt.stale.bad"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	var th errThrottled
	if _, err := p.login(ctx, p.Current(), "192.0.2.1", "ci", "jwt.stale.bad"); !errors.As(err, &th) {
		t.Fatalf("the failing caller's next guess: %v, want throttled", err)
	}
	if _, err := p.login(ctx, p.Current(), "192.0.2.1", "ci", "jwt.fresh.ok"); err != nil {
		t.Fatalf("another job as ci: %v", err)
	}
}

func TestOneOwnerPerIssuer(t *testing.T) {
	p := &Policy{}
	a, b := &fakeOwner{issuer: "https://i"}, &fakeOwner{issuer: "https://i"}
	if err := p.addOwner(0, namedAuthenticator{a, "oidc"}, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := p.addOwner(1, namedAuthenticator{&fakeSource{}, "fake"}, []byte("{}")); err != nil || len(p.owners) != 1 {
		t.Fatalf("an ordinary authenticator: %v, %d owners", err, len(p.owners))
	}
	err := p.addOwner(2, namedAuthenticator{b, "oidc"}, []byte("{}"))
	if err == nil || !strings.Contains(err.Error(), `authenticators[2]: a second oidc authenticator for "https://i"`) {
		t.Fatalf("a second owner of one issuer: %v", err)
	}
}
