package registryauth

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

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

// login checks credentials for both handlers: a remembered success at once;
// otherwise, unless the IP or name is locked, one password check whose
// outcome the throttle counts.
func (p *Policy) login(ip, user, password string) (policy.Identity, error) {
	if id, ok := p.Rules.Remembered(user, password); ok {
		count(metrics.logins, "cached")
		if p.throttle != nil {
			p.throttle.trust(ip, user, time.Now())
		}
		return id, nil
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
	id, err := p.Rules.Authenticate(user, password)
	done(err == nil, errors.Is(err, policy.ErrBadCredentials))
	result := "ok"
	switch {
	case errors.Is(err, policy.ErrBusy):
		result = "busy"
	case err != nil:
		result = "failed"
	}
	count(metrics.logins, result)
	if metrics.loginSeconds != nil {
		metrics.loginSeconds.WithLabelValues(result).Observe(time.Since(start).Seconds())
	}
	return id, err
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
	}
	return http.StatusUnauthorized, "UNAUTHORIZED", "invalid_grant", "authentication required: wrong user name or password", ""
}
