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
)

// errThrottled: the client IP or user name is locked after failed logins.
type errThrottled struct{ wait time.Duration }

func (e errThrottled) Error() string {
	return fmt.Sprintf("too many failed logins, try again in %s", e.retryAfter())
}

func (e errThrottled) retryAfter() string {
	return strconv.Itoa(int(math.Ceil(e.wait.Seconds())))
}

// login checks credentials for both handlers against rules, the policy as
// the request found it: a remembered success at once; otherwise, unless
// the IP or name is locked, one password check whose outcome the throttle
// counts.
func (p *Policy) login(ctx context.Context, rules *policy.Policy, ip, user, password string) (policy.Identity, error) {
	if !loginName(user) {
		// No source could hold such a name, and an HTTP service would
		// split "alice:x" at the colon: never ask anyone.
		count(metrics.logins, "failed")
		return policy.Identity{}, policy.ErrBadCredentials
	}
	remembered, ok := p.remembered(rules, user, password)
	if p.cache != nil && ok {
		count(metrics.cacheLookups, "hit")
	} else if p.cache != nil {
		count(metrics.cacheLookups, "miss")
	}
	if ok {
		count(metrics.logins, "cached")
		if p.throttle != nil {
			p.throttle.trust(ip, user, time.Now())
		}
		return remembered, nil
	}
	done := func(ok, failed bool) {}
	if p.throttle != nil {
		var wait time.Duration
		if done, wait = p.throttle.admit(ip, user, time.Now()); wait > 0 {
			count(metrics.logins, "throttled")
			return policy.Identity{}, errThrottled{wait}
		}
	}
	start := time.Now()
	id, err := p.authenticate(ctx, rules, user, password)
	done(err == nil, errors.Is(err, policy.ErrBadCredentials))
	result := "ok"
	switch {
	case errors.Is(err, policy.ErrBusy):
		result = "busy"
	case errors.Is(err, errSourceDown):
		result = "unavailable"
	case err != nil:
		result = "failed"
	}
	count(metrics.logins, result)
	if metrics.loginSeconds != nil {
		metrics.loginSeconds.WithLabelValues(result).Observe(time.Since(start).Seconds())
	}
	return id, err
}

// loginName reports whether name could be a user's: Basic credentials
// cannot carry a ':' in it, and no control character belongs in one.
func loginName(name string) bool {
	for _, c := range name {
		if c == ':' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// remembered finds a recent success of these credentials in the credential
// cache, from the policy's own users or from an authenticator.
func (p *Policy) remembered(rules *policy.Policy, user, password string) (policy.Identity, bool) {
	if id, ok := rules.Remembered(user, password); ok || rules.Knows(user) || p.cache == nil {
		return id, ok
	}
	for _, a := range p.authenticators {
		if groups, ok := p.cache.LookupExternal(a.source, user, password); ok {
			return rules.WithGroups(policy.Identity{Name: user, Groups: groups}), true
		}
	}
	return policy.Identity{}, false
}

// authenticate asks the policy's own users, then each authenticator in
// order, until one knows the user. The own users are always checked with
// bcrypt, against a dummy hash when the name is not theirs, so that a
// name's time does not tell which source has it.
func (p *Policy) authenticate(ctx context.Context, rules *policy.Policy, user, password string) (policy.Identity, error) {
	id, err := rules.Authenticate(user, password)
	if !errors.Is(err, policy.ErrBadCredentials) || rules.Knows(user) {
		return id, err
	}
	for _, a := range p.authenticators {
		id, err := a.Authenticate(ctx, user, password)
		switch {
		case errors.Is(err, ErrUnknownUser):
			continue
		case errors.Is(err, policy.ErrBadCredentials):
			return policy.Identity{}, err
		case err == nil && id.Name != user:
			err = fmt.Errorf("answered for user %q", id.Name)
		case err == nil:
			err = checkGroups(id.Groups)
		}
		if err != nil {
			p.logger.Error("authenticator failed; login refused", zap.String("policy", p.Name), zap.String("authenticator", a.name), zap.Error(err))
			return policy.Identity{}, errSourceDown
		}
		if p.cache != nil {
			p.cache.RememberExternal(a.source, user, password, id.Groups)
		}
		return rules.WithGroups(id), nil
	}
	return policy.Identity{}, policy.ErrBadCredentials
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
