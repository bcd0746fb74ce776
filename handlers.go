package registryauth

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/token"
)

// provisionHandler is what both handlers do first: find their policy,
// register the metrics, and name the logger their decisions go to, a
// logger of its own so that operators can route the audit trail:
// log { include http.handlers.registry_auth_token.audit }
func provisionHandler(ctx caddy.Context, policyName string) (*Policy, *zap.Logger, error) {
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return nil, nil, err
	}
	p, err := policyFromContext(ctx, policyName)
	return p, ctx.Logger().Named("audit"), err
}

// setUser names the user in the request's placeholders, so that Caddy's
// access log carries it as user_id.
func setUser(r *http.Request, name string) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok && name != "" {
		repl.Set("http.auth.user.id", name)
	}
}

// authorizationStatus is the status of a request whose Authorization
// header ParseBasic refused: 401 for another scheme (the client should use
// Basic), 400 for a malformed header.
func authorizationStatus(err error) int {
	if errors.Is(err, token.ErrNotBasic) {
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}

// clientIP is the address Caddy determined for the client, which honours
// the server's trusted_proxies and nothing else.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}
