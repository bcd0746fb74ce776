package registryauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI is the admin.api.registry_auth module: it revokes refresh
// tokens through Caddy's admin endpoint, and rotates the signing keys
// (admin_keys.go).
//
//	GET  /registry_auth/revocations?policy=NAME
//	POST /registry_auth/revocations  {"policy":"default","user":"alice"}
//	POST /registry_auth/revocations  {"policy":"default","all":true}
//
// A POST revokes the refresh tokens of the user (or of everyone) issued
// before "before" (RFC 3339), default now. Revocations live in Caddy's
// storage, shared by every instance that uses it.
type adminAPI struct {
	ctx caddy.Context
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.registry_auth", New: func() caddy.Module { return new(adminAPI) }}
}

// Provision keeps the context, for its storage.
func (a *adminAPI) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	return nil
}

// Routes returns the admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/registry_auth/revocations", Handler: caddy.AdminHandlerFunc(a.revocations)},
		{Pattern: keysRoute, Handler: caddy.AdminHandlerFunc(a.keys)},
		{Pattern: keysRoute + "/", Handler: caddy.AdminHandlerFunc(a.keys)},
	}
}

// revokeRequest is the body of a revocation.
type revokeRequest struct {
	Policy string    `json:"policy"`
	User   string    `json:"user"`
	All    bool      `json:"all"`
	Before time.Time `json:"before"`
}

func (a *adminAPI) revocations(w http.ResponseWriter, r *http.Request) error {
	storage := a.ctx.Storage()
	switch r.Method {
	case http.MethodGet:
		name := r.URL.Query().Get("policy")
		if name == "" {
			name = DefaultPolicy
		}
		if !validPolicyName(name) {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid policy name %q", name)}
		}
		rev, err := loadRevocations(r.Context(), storage, name)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		return json.NewEncoder(w).Encode(rev)
	case http.MethodPost:
		var req revokeRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding the revocation: %v", err)}
		}
		if req.Policy == "" {
			req.Policy = DefaultPolicy
		}
		if !validPolicyName(req.Policy) {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid policy name %q", req.Policy)}
		}
		if req.All == (req.User != "") {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf(`give either "user" or "all": true`)}
		}
		if req.Before.IsZero() {
			// One second ahead: tokens carry whole-second issue times,
			// so one issued in this very second is revoked too.
			req.Before = time.Now().Add(time.Second).Truncate(time.Second)
		}
		rev, err := updateRevocations(r.Context(), storage, req.Policy, func(rv *Revocations) {
			if req.All {
				if req.Before.After(rv.AllBefore) {
					rv.AllBefore = req.Before
				}
				return
			}
			if rv.Users == nil {
				rv.Users = map[string]time.Time{}
			}
			if req.Before.After(rv.Users[req.User]) {
				rv.Users[req.User] = req.Before
			}
		})
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		return json.NewEncoder(w).Encode(rev)
	}
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("GET or POST")}
}

// Interface guards.
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
