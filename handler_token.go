package registryauth

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

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
}

// maxFormBytes bounds a POST body: a form with the maximum number of
// scopes fits easily.
const maxFormBytes = 64 << 10

// CaddyModule returns the Caddy module information.
func (TokenHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.registry_auth_token",
		New: func() caddy.Module { return new(TokenHandler) },
	}
}

// Provision finds the policy in the registry_auth app.
func (h *TokenHandler) Provision(ctx caddy.Context) error {
	// Decisions go to a logger of their own, so operators can route the
	// audit trail: log { include http.handlers.registry_auth_token.audit }
	h.logger = ctx.Logger().Named("audit")
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	p, err := policyFromContext(ctx, h.Policy)
	if err != nil {
		return err
	}
	h.policy = p
	return nil
}

// tokenRequest is a token request once parsed, GET or POST alike.
type tokenRequest struct {
	oauth    bool // POST form: answer in OAuth2 terms
	service  string
	scopes   []string
	user     string
	password string
	hasCreds bool
	// offline asks for a refresh token along with the access token.
	offline bool
	// refresh is a refresh token presented instead of a password.
	refresh string
}

// requestError is a request we refuse, with the status and codes to say so.
type requestError struct {
	status int
	code   string // distribution error code
	oauth  string // OAuth2 error code, for POST
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(oauth, format string, args ...any) *requestError {
	return &requestError{http.StatusBadRequest, "BAD_REQUEST", oauth, fmt.Sprintf(format, args...)}
}

// ServeHTTP answers token requests and the public key documents.
func (h *TokenHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	switch {
	case strings.HasSuffix(r.URL.Path, "/certs.pem"):
		return h.servePublic(w, r, "application/x-pem-file", h.policy.Signer.CertificatesPEM())
	case strings.HasSuffix(r.URL.Path, "/jwks.json"):
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
		rerr = &requestError{http.StatusMethodNotAllowed, "UNSUPPORTED", "invalid_request", "the token endpoint answers GET and POST"}
	}
	if rerr != nil {
		h.log(r, req, "", nil, nil, "bad_request", rerr.msg)
		return h.writeError(w, req, rerr)
	}
	return h.issue(w, r, req)
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

// issue authenticates, authorizes and answers with a token.
func (h *TokenHandler) issue(w http.ResponseWriter, r *http.Request, req *tokenRequest) error {
	p := h.policy
	audience, ok := p.Audience(req.service)
	if !ok {
		rerr := badRequest("invalid_request", "unknown service %q", req.service)
		h.log(r, req, "", nil, nil, "bad_request", rerr.msg)
		return h.writeError(w, req, rerr)
	}
	requested, err := token.ParseScopes(req.scopes)
	if err != nil {
		rerr := badRequest("invalid_scope", "%v", err)
		h.log(r, req, audience, nil, nil, "bad_request", rerr.msg)
		return h.writeError(w, req, rerr)
	}

	// One policy for the whole request, whatever reloads meanwhile.
	rules := p.Rules()
	var id policy.Identity
	now := time.Now()
	if req.refresh != "" && p.refreshLifetime == 0 && req.oauth {
		// So that containerd falls back to GET with the password.
		rerr := badRequest("unsupported_grant_type", "refresh tokens are turned off")
		h.log(r, req, audience, requested, nil, "bad_request", rerr.msg)
		return h.writeError(w, req, rerr)
	}
	if req.refresh != "" {
		if id, err = p.refreshIdentity(rules, req.refresh, audience, now); err != nil {
			if errors.Is(err, errRevocationsUnavailable) {
				h.log(r, req, audience, requested, nil, "busy", err.Error())
				w.Header().Set("Retry-After", "5")
				return h.writeError(w, req, &requestError{http.StatusServiceUnavailable, "UNAVAILABLE", "temporarily_unavailable", errRevocationsUnavailable.Error()})
			}
			h.log(r, req, audience, requested, nil, "unauthorized", err.Error())
			return h.writeError(w, req, &requestError{http.StatusUnauthorized, "UNAUTHORIZED", "invalid_grant", err.Error()})
		}
		req.user = id.Name
	} else if req.hasCreds {
		if id, err = p.login(r.Context(), rules, clientIP(r), req.user, req.password); err != nil {
			status, code, oauth, msg, retry := loginRefusal(err)
			if retry != "" {
				w.Header().Set("Retry-After", retry)
			}
			h.log(r, req, audience, requested, nil, outcomeOf(status), "")
			return h.writeError(w, req, &requestError{status, code, oauth, msg})
		}
	}
	if !id.Anonymous() {
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			repl.Set("http.auth.user.id", id.Name)
		}
	}

	granted := p.authorize(r.Context(), rules, id, audience, clientIP(r), requested)
	claims := token.NewClaims(p.Issuer, id.Name, audience, p.Lifetime, now, token.AccessClaim(granted))
	signed, err := p.Signer.Sign(claims)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("signing token: %v", err))
	}
	h.log(r, req, audience, requested, granted, outcome(requested, granted), "")

	resp := tokenResponse{
		Token:       signed,
		AccessToken: signed,
		ExpiresIn:   claims.Expiry - claims.IssuedAt,
		IssuedAt:    time.Unix(claims.IssuedAt, 0).UTC().Format(time.RFC3339),
	}
	if req.oauth {
		resp.Scope = token.FormatScopes(granted)
	}
	switch {
	case req.refresh != "":
		// The same one back: Docker stores the first and never a new one.
		resp.RefreshToken = req.refresh
	case req.offline && p.refreshLifetime > 0 && rules.Knows(id.Name):
		// Only the policy's own users: a password changed in a directory
		// or an HTTP service cannot be seen here, so it could not revoke
		// the refresh token. Others keep logging in with their password.
		if resp.RefreshToken, err = p.issueRefresh(rules, id.Name, audience, now); err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("signing refresh token: %v", err))
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, resp)
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

// outcomeOf names a refused login for the log.
func outcomeOf(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "throttled"
	case http.StatusServiceUnavailable:
		return "busy"
	}
	return "unauthorized"
}

func outcome(requested, granted []token.Scope) string {
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

// parseGetRequest reads the spec's GET form: credentials in a Basic
// header, parameters in the query.
func parseGetRequest(r *http.Request) (*tokenRequest, *requestError) {
	req := &tokenRequest{}
	user, password, ok, err := token.ParseBasic(r.Header.Values("Authorization"))
	if err != nil {
		return req, authorizationError(err)
	}
	req.user, req.password, req.hasCreds = user, password, ok
	if ok && user == "" && password != "" {
		// containerd's GET fallback carries a refresh token this way.
		req.refresh, req.password, req.hasCreds = password, "", false
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return req, badRequest("invalid_request", "malformed query: %v", err)
	}
	if req.service, err = single(q, "service"); err != nil {
		return req, badRequest("invalid_request", "%v", err)
	}
	account, err := single(q, "account")
	if err != nil {
		return req, badRequest("invalid_request", "%v", err)
	}
	// account is not in the spec; Docker sends the login name. A different
	// name is never honoured.
	if account != "" && req.hasCreds && account != req.user {
		return req, badRequest("invalid_request", "account %q differs from the user name of the credentials", account)
	}
	offline, err := single(q, "offline_token")
	if err != nil {
		return req, badRequest("invalid_request", "%v", err)
	}
	req.offline = offline == "true"
	req.scopes = q["scope"]
	return req, nil
}

func authorizationError(err error) *requestError {
	if errors.Is(err, token.ErrNotBasic) {
		return &requestError{http.StatusUnauthorized, "UNAUTHORIZED", "invalid_client", err.Error()}
	}
	return badRequest("invalid_request", "%v", err)
}

// parsePostRequest reads the OAuth2 form of the token endpoint: the
// password grant. Refresh tokens are not issued, so their grant is
// refused in a way that makes containerd fall back to GET.
func parsePostRequest(w http.ResponseWriter, r *http.Request) (*tokenRequest, *requestError) {
	req := &tokenRequest{oauth: true}
	if len(r.Header.Values("Authorization")) > 1 {
		return req, badRequest("invalid_request", "%v", token.ErrMalformedAuthorization)
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/x-www-form-urlencoded" {
		return req, badRequest("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, &requestError{http.StatusRequestEntityTooLarge, "SIZE_INVALID", "invalid_request", fmt.Sprintf("the form is larger than %d bytes", maxFormBytes)}
		}
		return req, badRequest("invalid_request", "reading the form: %v", err)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return req, badRequest("invalid_request", "malformed form: %v", err)
	}
	var grant, accessType string
	fields := map[string]*string{
		"grant_type":    &grant,
		"service":       &req.service,
		"username":      &req.user,
		"password":      &req.password,
		"refresh_token": &req.refresh,
		"access_type":   &accessType,
	}
	for name, dst := range fields {
		if *dst, err = single(form, name); err != nil {
			return req, badRequest("invalid_request", "%v", err)
		}
	}
	switch grant {
	case "password":
		if req.user == "" {
			return req, badRequest("invalid_request", "username is missing")
		}
		req.hasCreds, req.refresh, req.offline = true, "", accessType == "offline"
	case "refresh_token":
		if req.refresh == "" {
			return req, badRequest("invalid_request", "refresh_token is missing")
		}
		req.user, req.password = "", ""
	case "":
		return req, badRequest("invalid_request", "grant_type is missing")
	default:
		return req, badRequest("unsupported_grant_type", "grant_type %q is not supported", grant)
	}
	req.scopes = form["scope"]
	return req, nil
}

// single returns the one value of a parameter that may appear at most once.
func single(v url.Values, name string) (string, error) {
	switch vals := v[name]; len(vals) {
	case 0:
		return "", nil
	case 1:
		return vals[0], nil
	}
	return "", fmt.Errorf("%s is given more than once", name)
}

// writeError answers in the registry's error format, with the OAuth2
// fields too for POST, and a Basic challenge on 401.
func (h *TokenHandler) writeError(w http.ResponseWriter, req *tokenRequest, e *requestError) error {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm=`+quote(h.policy.Issuer))
	}
	body := errorBody{Errors: []errorEntry{{Code: e.code, Message: e.msg}}}
	if req != nil && req.oauth {
		body.OAuthError, body.OAuthDescription = e.oauth, e.msg
	}
	return writeJSON(w, e.status, body)
}

// log writes the one line a decision gets. It names the user, never a
// password or token.
func (h *TokenHandler) log(r *http.Request, req *tokenRequest, service string, requested, granted []token.Scope, outcome, reason string) {
	fields := []zap.Field{
		zap.String("outcome", outcome),
		zap.String("client_ip", clientIP(r)),
		zap.String("service", service),
	}
	if req != nil {
		fields = append(fields, zap.String("user", truncate(req.user, 128)))
	}
	if requested != nil {
		fields = append(fields, zap.String("requested", token.FormatScopes(requested)))
	}
	if outcome == "granted" || outcome == "partial" || outcome == "denied" {
		fields = append(fields, zap.String("granted", token.FormatScopes(granted)))
	}
	if reason != "" {
		fields = append(fields, zap.String("reason", reason))
	}
	h.logger.Info("token request", fields...)
	count(metrics.tokenRequests, outcome)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*TokenHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*TokenHandler)(nil)
)
