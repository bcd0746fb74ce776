package registryauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/regauth/caddy-registry-auth/policy"
)

func init() { caddy.RegisterModule(HTTPAuthenticator{}) }

// HTTPAuthenticator asks an HTTP service whether a password is right: it
// POSTs to the URL with the credentials in a Basic Authorization header.
// Only a 2xx answer means yes; its body may be a JSON object whose
// "groups" (an array of strings) feed "group:" rules. 401 and 403 mean
// no. Anything else (another status, a redirect, a timeout, a malformed
// body) is an error, and the login is refused. The service answers for
// every name, so it is best listed last.
type HTTPAuthenticator struct {
	HTTPService
}

// CaddyModule returns the Caddy module information.
func (HTTPAuthenticator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "registry_auth.authenticators.http", New: func() caddy.Module { return new(HTTPAuthenticator) }}
}

// Provision checks the URL and builds the client.
func (a *HTTPAuthenticator) Provision(caddy.Context) error { return a.provision() }

// Authenticate asks the service.
func (a *HTTPAuthenticator) Authenticate(ctx context.Context, name, password string) (Identity, error) {
	if password == "" {
		return Identity{}, policy.ErrBadCredentials
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"+password))
	status, body, err := a.post(ctx, basic, []byte(`{}`))
	switch {
	case err != nil:
		return Identity{}, err
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return Identity{}, policy.ErrBadCredentials
	case status < 200 || status > 299:
		return Identity{}, fmt.Errorf("%s answered %d", a.where, status)
	}
	id := Identity{Name: name}
	if len(bytes.TrimSpace(body)) > 0 {
		var answer struct {
			Groups []string `json:"groups"`
		}
		if err := json.Unmarshal(body, &answer); err != nil {
			return Identity{}, fmt.Errorf("%s answered %d with a body that is not a JSON object with groups: %v", a.where, status, err)
		}
		id.Groups = answer.Groups
	}
	return id, nil
}

// Interface guards.
var (
	_ Authenticator         = (*HTTPAuthenticator)(nil)
	_ caddy.Provisioner     = (*HTTPAuthenticator)(nil)
	_ caddy.CleanerUpper    = (*HTTPAuthenticator)(nil)
	_ caddyfile.Unmarshaler = (*HTTPAuthenticator)(nil)
)
