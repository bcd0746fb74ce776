package registryauth

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// Identity is who a request is from: a user name ("" for anonymous) and
// the groups that "group:" rules match.
type Identity = policy.Identity

// Authenticator is a source of users besides a policy's own (its users,
// htpasswd files and policy files): a directory, an HTTP service, or a
// module of your own in the registry_auth.authenticators namespace.
//
// A policy asks its own users first and then its authenticators in order.
// The first source that knows a user decides for that user: a wrong
// password there fails the login even if a later source has the same name,
// and a source that cannot answer fails it too. Nothing is ever allowed
// because a source was down.
type Authenticator interface {
	// Authenticate checks a user name and password and returns the user's
	// identity (its Name must be name; its Groups feed "group:" rules),
	// or one of:
	//   - ErrUnknownUser: this source has no such user; the next is asked;
	//   - ErrBadCredentials: the user exists and the password is wrong;
	//   - any other error: the source could not answer; the login fails
	//     and the error is logged (never shown to the client).
	// It must return by ctx's deadline.
	Authenticate(ctx context.Context, name, password string) (Identity, error)
}

// Errors an Authenticator returns.
var (
	ErrUnknownUser    = policy.ErrUnknownUser
	ErrBadCredentials = policy.ErrBadCredentials
)

// Bounds on the groups a source may give one user. A source that gives
// more fails the login: dropping some could drop one a deny rule names.
const (
	MaxGroups      = 1024
	MaxGroupLength = 1024
)

// errSourceDown: an authenticator could not answer, so the login is refused
// (503: the client may retry; nothing is counted against the user).
var errSourceDown = errors.New("the user directory cannot be reached, try again shortly")

// errThrottled: the client IP or user name is locked after failed logins.
type errThrottled struct{ wait time.Duration }

func (e errThrottled) Error() string {
	return fmt.Sprintf("too many failed logins, try again in %s", e.retryAfter())
}

func (e errThrottled) retryAfter() string {
	return strconv.Itoa(int(math.Ceil(e.wait.Seconds())))
}

// namedAuthenticator is a source of users with the name logs give it.
type namedAuthenticator struct {
	Authenticator
	name string
}

// userSet makes compiled users a source of users: a policy's own, always
// asked first, and the static authenticator's.
type userSet struct{ *policy.Users }

// Authenticate runs exactly one bcrypt compare, whoever the name is.
func (u userSet) Authenticate(_ context.Context, name, password string) (Identity, error) {
	if err := u.Check(name, password); err != nil {
		return Identity{}, err
	}
	return Identity{Name: name}, nil
}

// login decides who presents these credentials, for both handlers, against
// snap, the policy as the request found it. In this order:
//  1. a name no source could hold fails at once;
//  2. a success the credential cache remembers passes at once;
//  3. the throttle (throttle.go) may answer a repeated wrong password at
//     once, refuse (429), or hold the attempt a few seconds;
//  4. the sources are asked in order (see askSources), and the throttle
//     and the metrics count the outcome.
func (p *Policy) login(ctx context.Context, snap *policy.Compiled, ip, user, password string) (Identity, error) {
	if token.CheckUserName(user) != nil {
		// No source could hold such a name, and an HTTP service would
		// split "alice:x" at the colon: never ask anyone.
		count(metrics.logins, "failed")
		return Identity{}, ErrBadCredentials
	}
	binding, own := p.binding(snap, user)
	var key policy.CacheKey
	if p.cache != nil {
		key = p.cache.Key(user, password, binding)
	}
	if id, ok := p.recall(snap, key, user); ok {
		count(metrics.logins, "cached")
		p.throttle.trust(ip, user, time.Now())
		return id, nil
	}
	v := p.throttle.admit(p.throttle.newAttempt(ip, user, password, binding), time.Now())
	switch {
	case v.known:
		count(metrics.logins, "failed")
		return Identity{}, ErrBadCredentials
	case v.refuse:
		count(metrics.logins, "throttled")
		return Identity{}, errThrottled{v.wait}
	}
	start := time.Now()
	id, err := p.check(ctx, v.wait, snap, key, own, user, password)
	v.done(throttleOutcome(err), time.Now())
	result := loginResult(err)
	count(metrics.logins, result)
	if metrics.loginSeconds != nil {
		metrics.loginSeconds.WithLabelValues(result).Observe(time.Since(start).Seconds())
	}
	return id, err
}

// binding is what a login's password is checked against, for keys that
// must change when it does: the user's stored hash when the user is one of
// the policy's own, else the configuration of the authenticators that
// would be asked.
func (p *Policy) binding(snap *policy.Compiled, user string) (binding []byte, own bool) {
	if b, own := snap.Users().Binding(user); own {
		return b, true
	}
	return p.sourcesBinding, false
}

// recall is the one credential-cache lookup of a login.
func (p *Policy) recall(snap *policy.Compiled, key policy.CacheKey, user string) (Identity, bool) {
	if p.cache == nil {
		return Identity{}, false
	}
	groups, ok := p.cache.Recall(key, time.Now())
	if !ok {
		count(metrics.cacheLookups, "miss")
		return Identity{}, false
	}
	count(metrics.cacheLookups, "hit")
	return snap.WithGroups(Identity{Name: user, Groups: groups}), true
}

// check waits as the throttle said, asks the sources and remembers a
// success, for as long as own (a user of the policy, whose new password
// the key would see) allows. Identical checks under way at once share one
// question to the sources.
func (p *Policy) check(ctx context.Context, wait time.Duration, snap *policy.Compiled, key policy.CacheKey, own bool, user, password string) (Identity, error) {
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return Identity{}, errThrottled{wait}
		}
	}
	if p.cache == nil {
		id, err := p.askSources(ctx, snap, user, password)
		return snap.WithGroups(id), err
	}
	shared, err, _ := p.flight.Do(string(key[:]), func() (any, error) {
		// Not bound to the first asker's request: the others share it.
		id, err := p.askSources(context.WithoutCancel(ctx), snap, user, password)
		if err == nil {
			p.cache.Remember(key, id.Groups, own, time.Now())
		}
		return id, err
	})
	if err != nil {
		return Identity{}, err
	}
	return snap.WithGroups(shared.(Identity)), nil
}

// askSources asks the policy's own users, then each authenticator in
// order, until one knows the user. The own users are always asked, with
// one bcrypt compare against a dummy hash when the name is not theirs, so
// that a name's time does not tell which source has it. The identity is
// the source's, without the policy's groups.
func (p *Policy) askSources(ctx context.Context, snap *policy.Compiled, user, password string) (Identity, error) {
	sources := append([]namedAuthenticator{{userSet{snap.Users()}, "policy"}}, p.authenticators...)
	for _, a := range sources {
		id, err := a.Authenticate(ctx, user, password)
		switch {
		case errors.Is(err, ErrUnknownUser):
			continue
		case errors.Is(err, ErrBadCredentials), errors.Is(err, policy.ErrBusy):
			return Identity{}, err
		case err == nil && id.Name != user:
			err = fmt.Errorf("answered for user %q", id.Name)
		case err == nil:
			err = checkGroups(id.Groups)
		}
		if err != nil {
			p.logger.Error("authenticator failed; login refused", zap.String("policy", p.Name), zap.String("authenticator", a.name), zap.Error(err))
			return Identity{}, errSourceDown
		}
		return id, nil
	}
	return Identity{}, ErrBadCredentials
}

// checkGroups bounds what a source may add to the credential cache.
func checkGroups(groups []string) error {
	if len(groups) > MaxGroups {
		return fmt.Errorf("gave %d groups, more than %d", len(groups), MaxGroups)
	}
	for _, g := range groups {
		if len(g) > MaxGroupLength {
			return fmt.Errorf("gave a group name of %d bytes, more than %d", len(g), MaxGroupLength)
		}
	}
	return nil
}

// throttleOutcome is what the throttle learns from a check.
func throttleOutcome(err error) outcome {
	switch {
	case err == nil:
		return rightPassword
	case errors.Is(err, ErrBadCredentials):
		return wrongPassword
	}
	return unchecked
}

// loginResult names a login's outcome for the metrics.
func loginResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, new(errThrottled)):
		return "throttled"
	case errors.Is(err, policy.ErrBusy):
		return "busy"
	case errors.Is(err, errSourceDown):
		return "unavailable"
	}
	return "failed"
}

// loginRefusal is how a failed login is answered: status, registry error
// code, OAuth2 error code, message, and the Retry-After header if any.
func loginRefusal(err error) (status int, code, oauth, msg, retryAfter string) {
	var th errThrottled
	switch {
	case errors.As(err, &th):
		return http.StatusTooManyRequests, "TOOMANYREQUESTS", "temporarily_unavailable", th.Error(), th.retryAfter()
	case errors.Is(err, policy.ErrBusy):
		return http.StatusServiceUnavailable, "UNAVAILABLE", "temporarily_unavailable", err.Error(), "1"
	case errors.Is(err, errSourceDown):
		return http.StatusServiceUnavailable, "UNAVAILABLE", "temporarily_unavailable", err.Error(), "5"
	}
	return http.StatusUnauthorized, "UNAUTHORIZED", "invalid_grant", "authentication required: wrong user name or password", ""
}
