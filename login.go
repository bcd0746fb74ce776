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

// A CredentialOwner is an Authenticator that knows its own credentials
// when it sees them: say, a token its issuer signed. Such a password goes
// to it alone, whatever the user name and wherever it stands in the order,
// so no other source ever receives it, and a policy user named like the
// Basic user name does not shadow it; any other password never reaches it. Its identities carry names of its
// own making (a job token's "gh/acme/app" for the Basic user "ci"). The
// throttle and the credential cache key on the caller it names, never on
// the user name, which many callers may share.
type CredentialOwner interface {
	Authenticator
	// Owner names what it owns, say its issuer's URL: what the Origin of
	// its identities names. Two authenticators of a policy may not own
	// the same.
	Owner() string
	// Claim reports, without checking anything, whether password is one
	// of its credentials, and if so who it says the caller is.
	Claim(password string) (OwnedCredential, bool)
}

// OwnedCredential is what an owner says of a credential before checking
// it.
type OwnedCredential struct {
	// Caller identifies the caller among all the owner's (an issuer and a
	// subject): the throttle's key in place of the user name.
	Caller string
	// Expires, unless zero, is when the credential stops being good: a
	// remembered success ends then.
	Expires time.Time
}

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

// ownedSource is an authenticator that owns credentials, with a digest of
// its configuration, which binds its remembered successes and the refresh
// tokens of its identities.
type ownedSource struct {
	namedAuthenticator
	owner   CredentialOwner
	binding []byte
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
//  2. the credentials are routed (see route);
//  3. a success the credential cache remembers passes at once;
//  4. the throttle (throttle.go) may answer a repeated wrong password at
//     once, refuse (429), or hold the attempt a few seconds;
//  5. the sources are asked (see askSources and askOwner), and the
//     throttle and the metrics count the outcome.
func (p *Policy) login(ctx context.Context, snap *policy.Compiled, ip, user, password string) (Identity, error) {
	if token.CheckUserName(user) != nil {
		// No source could hold such a name, and an HTTP service would
		// split "alice:x" at the colon: never ask anyone.
		count(metrics.logins, "failed", sourcePassword)
		return Identity{}, ErrBadCredentials
	}
	r := p.route(snap, user, password)
	if id, ok := p.recall(snap, r); ok {
		count(metrics.logins, "cached", r.source)
		p.throttle.trust(ip, r.caller, time.Now())
		return id, nil
	}
	v := p.throttle.admit(p.throttle.newAttempt(ip, r.caller, password, r.binding), time.Now())
	switch {
	case v.known:
		count(metrics.logins, "failed", r.source)
		return Identity{}, ErrBadCredentials
	case v.refuse:
		count(metrics.logins, "throttled", r.source)
		return Identity{}, errThrottled{v.wait}
	}
	start := time.Now()
	id, err := p.check(ctx, v.wait, snap, r, user, password)
	v.done(throttleOutcome(err), time.Now())
	result := loginResult(err)
	count(metrics.logins, result, r.source)
	if metrics.loginSeconds != nil {
		metrics.loginSeconds.WithLabelValues(result).Observe(time.Since(start).Seconds())
	}
	return id, err
}

// sourcePassword labels the metrics of logins routed to every source in
// order.
const sourcePassword = "password"

// A route is where a login's credentials go and what they are known by.
type route struct {
	owner  *ownedSource // nil: every source in order
	caller string       // the throttle's key: the user name, or the owner's caller
	// binding is what the credentials are checked against: the user's
	// stored hash, or the configuration of what would be asked.
	binding []byte
	key     policy.CacheKey // the credential cache's key
	// own: the key binds the stored hash of one of the policy's users.
	own bool
	// notAfter, unless zero, ends a remembered success.
	notAfter time.Time
	source   string // for the metrics
}

// route sends credentials an authenticator claims to it alone, keyed by
// the caller it names; the rest go to every source in order, keyed by the
// user name. The binding is the user's current password when the user is
// one of the policy's own, else the configuration of the authenticators
// that would be asked (and for an owner the user name too, which it may
// require): a changed password or configuration never finds an old cache
// entry, and counts as a new guess for the throttle.
func (p *Policy) route(snap *policy.Compiled, user, password string) route {
	for _, o := range p.owners {
		if c, ok := o.owner.Claim(password); ok {
			r := route{owner: o, caller: c.Caller, notAfter: c.Expires, source: o.name,
				binding: append(append([]byte(nil), o.binding...), "\x00"+user...)}
			if p.cache != nil {
				r.key = p.cache.Key(c.Caller, password, r.binding)
			}
			return r
		}
	}
	binding, own := snap.Users().Binding(user)
	if !own {
		binding = p.sourcesBinding
	}
	r := route{caller: user, binding: binding, own: own, source: sourcePassword}
	if p.cache != nil {
		r.key = p.cache.Key(user, password, binding)
	}
	return r
}

// recall is the one credential-cache lookup of a login.
func (p *Policy) recall(snap *policy.Compiled, r route) (Identity, bool) {
	if p.cache == nil {
		return Identity{}, false
	}
	id, ok := p.cache.Recall(r.key, time.Now())
	if !ok {
		count(metrics.cacheLookups, "miss")
		return Identity{}, false
	}
	count(metrics.cacheLookups, "hit")
	return snap.WithGroups(id), true
}

// check waits as the throttle said, asks the sources the route names and
// remembers a success, for as long as the route allows. Identical checks
// under way at once share one question to the sources.
func (p *Policy) check(ctx context.Context, wait time.Duration, snap *policy.Compiled, r route, user, password string) (Identity, error) {
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return Identity{}, errThrottled{wait}
		}
	}
	ask := func(ctx context.Context) (Identity, error) {
		if r.owner != nil {
			return p.askOwner(ctx, r.owner, user, password)
		}
		return p.askSources(ctx, snap, user, password)
	}
	if p.cache == nil {
		id, err := ask(ctx)
		return snap.WithGroups(id), err
	}
	shared, err, _ := p.flight.Do(string(r.key[:]), func() (any, error) {
		// Not bound to the first asker's request: the others share it.
		id, err := ask(context.WithoutCancel(ctx))
		if err == nil {
			p.cache.Remember(r.key, id, r.own, r.notAfter, time.Now())
		}
		return id, err
	})
	if err != nil {
		return Identity{}, err
	}
	return snap.WithGroups(shared.(Identity)), nil
}

// askSources asks the policy's own users, then each authenticator in
// order (but the credential owners), until one knows the user. The own
// users are always asked, with one bcrypt compare against a dummy hash
// when the name is not theirs, so that a name's time does not tell which
// source has it. The identity is
// the source's, without the policy's groups, and must bear the name asked
// about.
func (p *Policy) askSources(ctx context.Context, snap *policy.Compiled, user, password string) (Identity, error) {
	sources := append([]namedAuthenticator{{userSet{snap.Users()}, "policy"}}, p.authenticators...)
	for _, a := range sources {
		if _, owner := a.Authenticator.(CredentialOwner); owner {
			continue // it answers only for what it claims (route)
		}
		id, err := a.Authenticate(ctx, user, password)
		if errors.Is(err, ErrUnknownUser) {
			continue
		}
		if err == nil && id.Name != user {
			err = fmt.Errorf("answered for user %q", id.Name)
		}
		return p.vouch(a, id, err)
	}
	return Identity{}, ErrBadCredentials
}

// askOwner asks the one authenticator that owns the credentials. It names
// the caller as it sees fit: it alone vouches for that name. Not knowing
// a credential it claimed is a refusal.
func (p *Policy) askOwner(ctx context.Context, o *ownedSource, user, password string) (Identity, error) {
	id, err := o.Authenticate(ctx, user, password)
	if errors.Is(err, ErrUnknownUser) {
		err = ErrBadCredentials
	}
	return p.vouch(o.namedAuthenticator, id, err)
}

// vouch turns a source's answer into the login's: a refusal stands, a
// success must hold a valid name and bounded groups, and anything else
// means the source could not answer, which refuses the login and is
// logged.
func (p *Policy) vouch(a namedAuthenticator, id Identity, err error) (Identity, error) {
	switch {
	case errors.Is(err, ErrBadCredentials), errors.Is(err, policy.ErrBusy):
		return Identity{}, err
	case err == nil:
		if err = token.CheckUserName(id.Name); err == nil {
			err = checkGroups(id.Groups)
		}
	}
	if err != nil {
		p.logger.Error("authenticator failed; login refused", zap.String("policy", p.Name), zap.String("authenticator", a.name), zap.Error(err))
		return Identity{}, errSourceDown
	}
	return id, nil
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
