package registryauth

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
)

// forward hands an authorized request to reverse_proxy. When the registry
// cannot be reached at all (nothing was sent to the client yet), the
// client gets the registry's own error format instead of an empty 502.
func (h *ProxyHandler) forward(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripForwarding(r.Header)
	err := h.proxy.ServeHTTP(w, r, next)
	if err == nil || !unreachable(err) {
		count(metrics.proxyRequests, "forwarded")
		return err
	}
	h.unreachableLog.note(h.logger, err)
	return h.unavailable(w, "the registry behind this proxy is not reachable")
}

// unavailable answers 503 UNAVAILABLE when the registry behind could not
// be reached, or could not answer the proxy's own question: each such
// request is counted once, as unavailable, which the upstream alert
// divides by all proxied requests.
func (h *ProxyHandler) unavailable(w http.ResponseWriter, msg string) error {
	count(metrics.proxyRequests, "unavailable")
	w.Header().Set("Retry-After", "5")
	return writeRegistryError(w, http.StatusServiceUnavailable, "UNAVAILABLE", msg)
}

// unreachable reports whether reverse_proxy failed before any response:
// no connection to any upstream, or no upstream available.
func unreachable(err error) bool {
	if errors.As(err, new(reverseproxy.DialError)) {
		return true
	}
	var herr caddyhttp.HandlerError
	return errors.As(err, &herr) && herr.StatusCode == http.StatusServiceUnavailable
}

// rareLog logs an error at most once per interval, with how many more
// there were since the last line: a registry that is down for a minute
// must not write a log line per request.
type rareLog struct {
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// unreachableLogInterval is how often a registry that is down is logged.
const unreachableLogInterval = 10 * time.Second

func (l *rareLog) note(logger *zap.Logger, err error) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < l.interval {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	logger.Error("the registry behind the proxy is not reachable; answering 503",
		zap.Error(err), zap.Int("more_since_last_line", suppressed))
}
