package registryauth

import (
	"bytes"
	"cmp"
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
		{Pattern: "/registry_auth/explain", Handler: caddy.AdminHandlerFunc(a.explain)},
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
			// Everything issued until now; a login right after this keeps
			// its refresh token (they carry nanosecond issue times).
			req.Before = time.Now()
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

// explain answers what `caddy registry-auth explain` prints, from the
// running configuration (policy files as loaded now):
//
//	GET /registry_auth/explain?policy=NAME&user=NAME|-&group=G&scope=SCOPE...
//
// It never authenticates anyone: it takes the user and groups as given.
func (a *adminAPI) explain(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("GET")}
	}
	q := r.URL.Query()
	req := explainRequest{policy: cmp.Or(q.Get("policy"), DefaultPolicy), user: q.Get("user"), groups: q["group"], scopes: q["scope"]}
	p, err := policyFromContext(caddy.ActiveContext(), req.policy)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: err}
	}
	var out bytes.Buffer
	if _, err := req.write(&out, p.Current(), len(p.authorizers) > 0); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = w.Write(out.Bytes())
	return err
}

// Interface guards.
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
