package registryauth

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/regauth/caddy-registry-auth/policy"
)

func init() { caddy.RegisterModule(StaticAuthenticator{}) }

// StaticAuthenticator is a list of users with bcrypt hashes, stated in the
// configuration or in htpasswd files: what a policy's own user and
// htpasswd lines are, as a module that can stand anywhere in the order of
// authenticators (say, break-glass accounts asked after a directory).
// The policy's own users are always asked first, with the equal-time
// dummy compare for names they lack; a name reaches this module only after
// that compare, so a name it lacks costs nothing more here.
type StaticAuthenticator struct {
	// Users with a bcrypt hash, or plaintext (hashed at load). Passwords
	// may be placeholders such as {env.VAR}.
	Users []policy.User `json:"users,omitempty"`
	// HtpasswdFiles of name:bcrypt-hash lines, read at load.
	HtpasswdFiles []string `json:"htpasswd_files,omitempty"`

	users *policy.Users
}

// CaddyModule returns the Caddy module information.
func (StaticAuthenticator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "registry_auth.authenticators.static", New: func() caddy.Module { return new(StaticAuthenticator) }}
}

// Provision checks and compiles the users.
func (a *StaticAuthenticator) Provision(ctx caddy.Context) error {
	cfg := expandUsers(policy.Config{Users: a.Users, HtpasswdFiles: a.HtpasswdFiles})
	if len(cfg.Users) == 0 && len(cfg.HtpasswdFiles) == 0 {
		return fmt.Errorf("no users: give user lines or htpasswd files")
	}
	users, warnings, err := policy.CompileUsers(cfg.Users, cfg.HtpasswdFiles)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		ctx.Logger().Warn(w)
	}
	a.users = users
	return nil
}

// Authenticate checks the password of a user of the list.
func (a *StaticAuthenticator) Authenticate(ctx context.Context, name, password string) (Identity, error) {
	if !a.users.Knows(name) {
		return Identity{}, ErrUnknownUser
	}
	return userSet{a.users}.Authenticate(ctx, name, password)
}

// Interface guards.
var (
	_ Authenticator         = (*StaticAuthenticator)(nil)
	_ caddy.Provisioner     = (*StaticAuthenticator)(nil)
	_ caddyfile.Unmarshaler = (*StaticAuthenticator)(nil)
)
