package registryauth

import (
	"errors"
	"fmt"
	"net/http"
	pathpkg "path"
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
	caddy.RegisterModule(TokenHandler{})
}

// TokenHandler is the token endpoint of the distribution token-auth
// protocol (http.handlers.registry_auth_token). A client that a registry
// challenged asks it for a token with Basic credentials (GET) or an OAuth2
// password grant (POST); it gets a JWT granting the part of the requested
// scopes that the policy allows.
//
// Requests whose path ends in /certs.pem or /jwks.json get the policy's
// public certificate bundle or key set instead, for configuring registries.
type TokenHandler struct {
	// Policy names the registry_auth policy to use. Default: "default".
	Policy string `json:"policy,omitempty"`

	policy *Policy
	logger *zap.Logger
	// inProxy is set for the token endpoint a registry_auth_proxy serves:
	// its tokens come back to the proxy, which enforces what tokens
	// cannot say (immutable tags).
	inProxy bool
}

// CaddyModule returns the Caddy module information.
func (TokenHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.registry_auth_token",
		New: func() caddy.Module { return new(TokenHandler) },
	}
}

// Provision finds the policy in the registry_auth app. A token endpoint
// of its own refuses a policy with immutable tags: a registry that checks
// its tokens would let any pusher move a tag.
func (h *TokenHandler) Provision(ctx caddy.Context) (err error) {
	if h.policy, h.logger, err = provisionHandler(ctx, h.Policy); err != nil || h.inProxy {
		return err
	}
	h.policy.tokenEndpoint.Store(true)
	return h.policy.servable(h.policy.Current())
}

// servable refuses a compiled policy that a token endpoint of its own
// serves and that holds immutable tags: at load (the handler's
// Provision) and at every reload of its files (watch).
func (p *Policy) servable(c *policy.Compiled) error {
	if p.tokenEndpoint.Load() && c.HasImmutableTags() {
		return fmt.Errorf("policy %q has immutable_tags, which only registry_auth_proxy can enforce, and a registry_auth_token handler serves it: the registry would let anyone who may push move a tag. Give this handler a policy of its own without immutable_tags", p.Name)
	}
	return nil
}

// ServeHTTP answers token requests and the public key documents.
func (h *TokenHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	switch {
	case strings.HasSuffix(r.URL.Path, "/"+certsDocument):
		return h.servePublic(w, r, "application/x-pem-file", h.policy.Signer.CertificatesPEM())
	case strings.HasSuffix(r.URL.Path, "/"+jwksDocument):
		jwks, err := h.policy.Signer.JWKS()
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		return h.servePublic(w, r, "application/json", jwks)
	}

	var req *tokenRequest
	var rerr *requestError
	switch r.Method {
	case http.MethodGet:
		req, rerr = parseGetRequest(r)
	case http.MethodPost:
		req, rerr = parsePostRequest(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		rerr = &requestError{status: http.StatusMethodNotAllowed, code: "UNSUPPORTED", oauth: "invalid_request", msg: "the token endpoint answers GET and POST"}
	}
	if rerr != nil {
		// Whatever its status, a request we could not read is logged as such.
		return h.refuse(w, r, req, decision{}, rerr, "bad_request", rerr.msg)
	}
	return h.issue(w, r, req)
}

// The public documents, by name: the token handler answers them on any
// path that ends in one, the proxy beside its token_path (/auth/token:
// /auth/certs.pem and /auth/jwks.json).
const (
	certsDocument = "certs.pem"
	jwksDocument  = "jwks.json"
)

// isPublicDocument reports whether p names a public document in the
// directory of tokenPath.
func isPublicDocument(p, tokenPath string) bool {
	name := pathpkg.Base(p)
	return (name == certsDocument || name == jwksDocument) && pathpkg.Dir(p) == pathpkg.Dir(tokenPath)
}

func (h *TokenHandler) servePublic(w http.ResponseWriter, r *http.Request, contentType string, body []byte) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, nil)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

// decision is what the token endpoint settled on for a request, for the
// answer and the log.
type decision struct {
	service   string
	requested []token.Scope
	granted   []token.Scope
	// rules, for a request not granted in full, names the rules that
	// decided (see explainRefusal), for the audit line only.
	rules string
	// subject is who the request was granted as, origin the issuer
	// outside the policy that vouched for it, if any.
	subject, origin string
}

// issue authenticates, authorizes and answers with a token.
func (h *TokenHandler) issue(w http.ResponseWriter, r *http.Request, req *tokenRequest) error {
	p := h.policy
	var d decision
	var ok bool
	if d.service, ok = p.Audience(req.service); !ok {
		rerr := badRequest("invalid_request", "unknown service %q", req.service)
		return h.refuse(w, r, req, d, rerr, "bad_request", rerr.msg)
	}
	var err error
	if d.requested, err = token.ParseScopes(req.scopes); err != nil {
		rerr := badRequest("invalid_scope", "%v", err)
		return h.refuse(w, r, req, decision{service: d.service}, rerr, "bad_request", rerr.msg)
	}

	// One policy for the whole request, whatever reloads meanwhile.
	snap := p.Current()
	now := time.Now()
	id, rerr, reason := h.identify(r, req, snap, d.service, now)
	if rerr != nil {
		return h.refuse(w, r, req, d, rerr, refusalOutcome(rerr.status), reason)
	}
	setUser(r, id.Name)
	if d.subject = id.Name; id.Origin != nil {
		d.origin = id.Origin.Issuer
	}
	d.granted = p.authorize(r.Context(), snap, id, d.service, clientIP(r), d.requested)
	d.rules = refusedRules(snap, id, d.requested, d.granted)
	m, err := p.mint(snap, id, d.service, d.granted, now)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("signing token: %v", err))
	}
	h.log(r, req, d, grantOutcome(d.requested, d.granted), "")

	// A reused token answers with its own times, as it did when fresh.
	resp := tokenResponse{
		Token:       m.raw,
		AccessToken: m.raw,
		ExpiresIn:   m.exp - m.iat,
		IssuedAt:    time.Unix(m.iat, 0).UTC().Format(time.RFC3339),
	}
	if req.oauth {
		resp.Scope = token.FormatScopes(d.granted)
	}
	if resp.RefreshToken, err = h.refreshToken(req, snap, id, d.service, now); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("signing refresh token: %v", err))
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, resp)
}

// identify says who the request is from: the user of a refresh token, of
// credentials, or anonymous. A refusal comes with the reason to log.
func (h *TokenHandler) identify(r *http.Request, req *tokenRequest, snap *policy.Compiled, service string, now time.Time) (Identity, *requestError, string) {
	p := h.policy
	switch {
	case req.refresh != "" && p.refreshLifetime == 0 && req.oauth:
		// So that containerd falls back to GET with the password.
		rerr := badRequest("unsupported_grant_type", "refresh tokens are turned off")
		return Identity{}, rerr, rerr.msg
	case req.refresh != "":
		id, err := p.refreshIdentity(snap, req.refresh, service, now)
		switch {
		case errors.Is(err, errRevocationsUnavailable):
			return id, &requestError{http.StatusServiceUnavailable, "UNAVAILABLE", "temporarily_unavailable", errRevocationsUnavailable.Error(), "5"}, err.Error()
		case err != nil:
			return id, &requestError{status: http.StatusUnauthorized, code: "UNAUTHORIZED", oauth: "invalid_grant", msg: err.Error()}, err.Error()
		}
		req.user = id.Name
		return id, nil, ""
	case req.hasCreds:
		id, err := p.login(r.Context(), snap, clientIP(r), req.user, req.password)
		if err != nil {
			status, code, oauth, msg, retry := loginRefusal(err)
			return id, &requestError{status, code, oauth, msg, retry}, ""
		}
		return id, nil, ""
	}
	return Identity{}, nil, ""
}

// refreshToken is the refresh token the answer carries, if any.
func (h *TokenHandler) refreshToken(req *tokenRequest, snap *policy.Compiled, id Identity, service string, now time.Time) (string, error) {
	switch {
	case req.refresh != "":
		// The same one back: Docker stores the first and never a new one.
		return req.refresh, nil
	case req.offline && h.policy.refreshLifetime > 0 && id.Origin != nil:
		// Vouched for by an issuer outside the policy (refresh_owned.go).
		return h.policy.issueOwnedRefresh(id, service, now)
	case req.offline && h.policy.refreshLifetime > 0 && snap.Users().Knows(id.Name):
		// Only the policy's own users: a password changed in a directory
		// or an HTTP service cannot be seen here, so it could not revoke
		// the refresh token. Others keep logging in with their password.
		return h.policy.issueRefresh(snap, id.Name, service, now)
	}
	return "", nil
}

// tokenResponse carries the token under both names: Docker's GET path
// reads "token", Docker's POST path, containerd and oras "access_token".
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
	Scope       string `json:"scope,omitempty"`
	// RefreshToken is what `docker login` stores as its identitytoken.
	RefreshToken string `json:"refresh_token,omitempty"`
}

// refusalOutcome names a refused login or refresh token for the log and
// metrics.
func refusalOutcome(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "throttled"
	case http.StatusServiceUnavailable:
		return "busy"
	case http.StatusUnauthorized:
		return "unauthorized"
	}
	return "bad_request"
}

// grantOutcome names a granted token request by how much of the request
// it got.
func grantOutcome(requested, granted []token.Scope) string {
	switch {
	case len(granted) == 0 && len(requested) > 0:
		return "denied"
	case len(granted) < len(requested):
		return "partial"
	}
	for i := range granted {
		if granted[i].Actions != requested[i].Actions {
			return "partial"
		}
	}
	return "granted"
}

// refuse logs a refused request and answers in the registry's error
// format, with the OAuth2 fields too for POST, a Basic challenge on 401
// and Retry-After where the client should try again.
func (h *TokenHandler) refuse(w http.ResponseWriter, r *http.Request, req *tokenRequest, d decision, e *requestError, outcome, reason string) error {
	h.log(r, req, d, outcome, reason)
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm=`+quote(h.policy.Issuer))
	}
	if e.retryAfter != "" {
		w.Header().Set("Retry-After", e.retryAfter)
	}
	body := errorBody{Errors: []errorEntry{{Code: e.code, Message: e.msg}}}
	if req != nil && req.oauth {
		body.OAuthError, body.OAuthDescription = e.oauth, e.msg
	}
	return writeJSON(w, e.status, body)
}

// log writes the one line a decision gets. It names the user, never a
// password or token.
func (h *TokenHandler) log(r *http.Request, req *tokenRequest, d decision, outcome, reason string) {
	fields := []zap.Field{
		zap.String("outcome", outcome),
		zap.String("client_ip", clientIP(r)),
		zap.String("service", d.service),
	}
	if req != nil {
		fields = append(fields, zap.String("user", clip.String(req.user, 128)))
	}
	if d.origin != "" {
		// The name the issuer's token mapped to, and the issuer: the Basic
		// user name (say "ci") tells nothing.
		fields = append(fields, zap.String("subject", d.subject), zap.String("origin", d.origin))
	}
	if d.requested != nil {
		fields = append(fields, zap.String("requested", token.FormatScopes(d.requested)))
	}
	if outcome == "granted" || outcome == "partial" || outcome == "denied" {
		fields = append(fields, zap.String("granted", token.FormatScopes(d.granted)))
	}
	if reason != "" {
		fields = append(fields, zap.String("reason", reason))
	}
	if d.rules != "" {
		fields = append(fields, zap.String("rules", d.rules))
	}
	h.logger.Info("token request", fields...)
	count(metrics.tokenRequests, outcome)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*TokenHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*TokenHandler)(nil)
)
