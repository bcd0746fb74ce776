package registryauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/internal/clip"
	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

func init() {
	caddy.RegisterModule(ProxyHandler{})
}

// DefaultTokenPath is where the proxy serves its token endpoint.
const DefaultTokenPath = "/auth/token"

// ProxyHandler is an authenticating reverse proxy in front of a registry
// (http.handlers.registry_auth_proxy). Clients talk only to Caddy: each
// /v2/ request is authorized against the policy for exactly the access the
// registry will check, and forwarded with a token the registry can verify
// (or ignore, when it runs without auth on a private address). Basic
// credentials never reach the registry.
//
// The proxy also serves the token endpoint on token_path, so the Bearer
// challenges it sends point at this same host, and beside it the public
// documents (certs.pem and jwks.json in token_path's directory). Other
// requests outside /v2/ go to the next handler.
type ProxyHandler struct {
	// TokenHandler is the token endpoint served on token_path; its policy
	// field names the registry_auth policy both use.
	TokenHandler
	// Service is the audience of the tokens the proxy mints and accepts,
	// one of the policy's services. Default: the policy's first service.
	Service string `json:"service,omitempty"`
	// TokenPath is the path of the token endpoint on this site.
	// Default: /auth/token.
	TokenPath string `json:"token_path,omitempty"`
	// Realm overrides the challenge realm, an absolute URL. By default it
	// is the token path on the request's own scheme and host.
	Realm string `json:"realm,omitempty"`
	// Upstream is the configuration of the reverse_proxy handler that
	// reaches the registry: every reverse_proxy feature applies.
	Upstream json.RawMessage `json:"upstream,omitempty"`

	service        string
	proxy          caddyhttp.MiddlewareHandler // the loaded reverse_proxy
	verified       *verifiedTokens
	unreachableLog *rareLog
	tags           *tagLocks
}

// CaddyModule returns the Caddy module information.
func (ProxyHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.registry_auth_proxy",
		New: func() caddy.Module { return new(ProxyHandler) },
	}
}

// Provision finds the policy and loads the reverse proxy.
func (h *ProxyHandler) Provision(ctx caddy.Context) (err error) {
	if h.TokenPath == "" {
		h.TokenPath = DefaultTokenPath
	}
	h.TokenHandler.inProxy = true
	if err = h.TokenHandler.Provision(ctx); err != nil {
		return err
	}
	var ok bool
	if h.service, ok = h.policy.Audience(h.Service); !ok {
		return fmt.Errorf("service: %q is not one of policy %q's services %v", h.Service, h.policy.Name, h.policy.Services)
	}
	if len(h.Upstream) == 0 {
		return errors.New("upstream: the registry to proxy to is missing")
	}
	mod, err := ctx.LoadModuleByID("http.handlers.reverse_proxy", h.Upstream)
	if err != nil {
		return fmt.Errorf("upstream: %v", err)
	}
	h.proxy = mod.(caddyhttp.MiddlewareHandler)
	h.verified = newVerifiedTokens(verifiedTokensSize)
	h.tags = new(tagLocks)
	h.unreachableLog = &rareLog{interval: unreachableLogInterval}
	return nil
}

// Validate checks the paths.
func (h *ProxyHandler) Validate() error {
	if !strings.HasPrefix(h.TokenPath, "/") || strings.HasPrefix(h.TokenPath, "/v2/") || h.TokenPath == "/v2" {
		return fmt.Errorf("token_path: %q must be an absolute path outside /v2/", h.TokenPath)
	}
	if h.Realm != "" && !strings.HasPrefix(h.Realm, "https://") && !strings.HasPrefix(h.Realm, "http://") {
		return fmt.Errorf("realm: %q must be an absolute http(s) URL (clients do not resolve relative realms)", h.Realm)
	}
	return nil
}

// ServeHTTP authorizes a registry request and forwards it, or refuses it.
func (h *ProxyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	path := r.URL.Path
	if path == h.TokenPath || isPublicDocument(path, h.TokenPath) {
		return h.TokenHandler.ServeHTTP(w, r, next)
	}
	if path != "/v2" && !strings.HasPrefix(path, "/v2/") {
		return next.ServeHTTP(w, r)
	}
	route, code, msg, ok := checkRequest(r)
	if !ok {
		return h.refuse(w, r, http.StatusBadRequest, code, msg, "", nil)
	}
	auth := r.Header.Values("Authorization")
	if len(auth) > 1 {
		return h.refuse(w, r, http.StatusBadRequest, "UNAUTHORIZED", "several Authorization headers", "", nil)
	}
	if len(auth) == 1 && hasScheme(auth[0], "Bearer") {
		return h.serveBearer(w, r, next, route, strings.TrimSpace(auth[0][len("Bearer"):]))
	}
	return h.serveCredentials(w, r, next, route, auth)
}

func hasScheme(header, scheme string) bool {
	return len(header) > len(scheme) && strings.EqualFold(header[:len(scheme)], scheme) && header[len(scheme)] == ' '
}

// serveCredentials handles Basic credentials or none: authenticate,
// authorize the route and forward with a token minted for it.
func (h *ProxyHandler) serveCredentials(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, route token.Route, auth []string) error {
	user, password, hasCreds, err := token.ParseBasic(auth)
	if err != nil {
		return h.refuse(w, r, authorizationStatus(err), "UNAUTHORIZED", err.Error(), "", &route)
	}
	// One policy for the whole request, whatever reloads meanwhile.
	snap := h.policy.Current()
	var id Identity
	if hasCreds {
		if id, err = h.policy.login(r.Context(), snap, clientIP(r), user, password); err != nil {
			status, code, _, msg, retry := loginRefusal(err)
			if retry != "" {
				w.Header().Set("Retry-After", retry)
			}
			return h.refuse(w, r, status, code, msg, "", &route)
		}
	} else if route.Base {
		// Clients read the challenge from the anonymous version check.
		return h.refuse(w, r, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required", "", &route)
	}

	var granted []token.Scope
	if !route.Base {
		requested := []token.Scope{route.Scope}
		if route.MountFrom != nil {
			requested = append(requested, *route.MountFrom)
		}
		granted = h.policy.authorize(r.Context(), snap, id, h.service, clientIP(r), requested)
		if len(granted) == 0 || granted[0] != route.Scope {
			if route.Scope.Type == token.TypeRegistry && !id.Anonymous() {
				return h.serveCatalog(w, r, snap, id, route)
			}
			if id.Anonymous() {
				return h.refuse(w, r, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required", "", &route)
			}
			missing := route.Scope.Actions
			if len(granted) > 0 && granted[0].Name == route.Scope.Name {
				missing &^= granted[0].Actions
			}
			msg := fmt.Sprintf("requested access to the resource is denied: %s on %s", strings.Join(missing.Strings(), ","), route.Scope.Name)
			return h.deny(w, r, id.Name, msg, explainRefusal(snap, id, route.Scope))
		}
		if route.MountFrom != nil && len(granted) < 2 {
			dropMount(r)
		}
	}
	m, err := h.policy.mint(snap, id, h.service, granted, time.Now())
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("signing token: %v", err))
	}
	r.Header.Set("Authorization", "Bearer "+m.raw)
	return h.pass(w, r, next, snap, id.Name, route)
}

// pass forwards an authorized request, unless it would move or remove an
// immutable tag.
func (h *ProxyHandler) pass(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, snap *policy.Compiled, user string, route token.Route) error {
	done, err := h.guardTags(r, snap, route)
	var imm errImmutable
	switch {
	case errors.As(err, &imm):
		return h.deny(w, r, user, imm.msg, "immutable tag rule "+imm.rule)
	case errors.As(err, new(errManifestUnread)):
		return h.refuse(w, r, http.StatusBadRequest, "MANIFEST_INVALID", "the manifest could not be read", "", nil)
	case err != nil:
		h.logger.Error("could not learn whether a tag is immutable; refused", zap.String("path", r.URL.Path), zap.Error(err))
		return h.unavailable(w, "the registry could not say whether the tag is immutable; try again")
	}
	defer done()
	setUser(r, user)
	return h.forward(w, r, next)
}

// deny answers 403 DENIED with a message that says what was refused
// (never the policy), and names in the audit line the rules that decided.
func (h *ProxyHandler) deny(w http.ResponseWriter, r *http.Request, user, msg, rules string) error {
	count(metrics.proxyRequests, "denied")
	h.logger.Info("registry request refused",
		zap.Int("status", http.StatusForbidden),
		zap.String("reason", msg),
		zap.String("rules", rules),
		zap.String("user", clip.String(user, 128)),
		zap.String("client_ip", clientIP(r)),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path))
	return writeRegistryError(w, http.StatusForbidden, "DENIED", msg)
}

// refuse answers as the registry would: its JSON error body and version
// header, and on 401 a Bearer challenge naming our token endpoint and, when
// there is one, the single scope the request needs.
func (h *ProxyHandler) refuse(w http.ResponseWriter, r *http.Request, status int, code, msg, challengeErr string, route *token.Route) error {
	if status == http.StatusUnauthorized {
		c := "Bearer realm=" + quote(h.realm(r)) + ",service=" + quote(h.service)
		if route != nil && !route.Base {
			c += ",scope=" + quote(route.Scope.String())
		}
		if challengeErr != "" {
			c += ",error=" + quote(challengeErr)
		}
		w.Header().Set("WWW-Authenticate", c)
	}
	count(metrics.proxyRequests, proxyDecision(status, challengeErr))
	h.logger.Info("registry request refused",
		zap.Int("status", status),
		zap.String("reason", msg),
		zap.String("client_ip", clientIP(r)),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path))
	return writeRegistryError(w, status, code, msg)
}

// proxyDecision names a refusal for the metrics.
func proxyDecision(status int, challengeErr string) string {
	switch {
	case challengeErr != "":
		return challengeErr // invalid_token or insufficient_scope
	case status == http.StatusUnauthorized:
		return "challenged"
	case status == http.StatusForbidden:
		return "denied"
	case status == http.StatusTooManyRequests:
		return "throttled"
	case status == http.StatusServiceUnavailable:
		return "busy"
	}
	return "bad_request"
}

// realm is the absolute URL of the token endpoint on this host.
func (h *ProxyHandler) realm(r *http.Request) string {
	if h.Realm != "" {
		return h.Realm
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + h.TokenPath
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*ProxyHandler)(nil)
	_ caddy.Validator             = (*ProxyHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*ProxyHandler)(nil)
)
