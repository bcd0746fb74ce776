package registryauth

import (
	"context"
	"errors"
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

	users *policy.Policy
}

// CaddyModule returns the Caddy module information.
func (StaticAuthenticator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "registry_auth.authenticators.static", New: func() caddy.Module { return new(StaticAuthenticator) }}
}

// Provision checks and compiles the users.
func (a *StaticAuthenticator) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	cfg := policy.Config{Users: append([]policy.User(nil), a.Users...)}
	for i := range cfg.Users {
		cfg.Users[i].Password = repl.ReplaceKnown(cfg.Users[i].Password, "")
	}
	for _, f := range a.HtpasswdFiles {
		cfg.HtpasswdFiles = append(cfg.HtpasswdFiles, repl.ReplaceKnown(f, ""))
	}
	if len(cfg.Users) == 0 && len(cfg.HtpasswdFiles) == 0 {
		return fmt.Errorf("no users: give user lines or htpasswd files")
	}
	users, warnings, err := policy.Compile(cfg)
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
func (a *StaticAuthenticator) Authenticate(_ context.Context, name, password string) (Identity, error) {
	if !a.users.Knows(name) {
		return Identity{}, ErrUnknownUser
	}
	id, err := a.users.Authenticate(name, password)
	if errors.Is(err, policy.ErrBusy) {
		return Identity{}, err
	}
	return Identity{Name: id.Name}, err
}

// UnmarshalCaddyfile reads:
//
//	authenticator static {
//		user     <name> <bcrypt-hash>
//		user     <name> plaintext <password>
//		htpasswd <path>
//	}
func (a *StaticAuthenticator) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "user":
			u, err := userLine(d)
			if err != nil {
				return err
			}
			a.Users = append(a.Users, u)
		case "htpasswd":
			var path string
			if err := oneArg(d, &path); err != nil {
				return err
			}
			a.HtpasswdFiles = append(a.HtpasswdFiles, path)
		default:
			return d.Errf("unknown static authenticator subdirective %q", d.Val())
		}
	}
	return nil
}

// Interface guards.
var (
	_ Authenticator         = (*StaticAuthenticator)(nil)
	_ caddy.Provisioner     = (*StaticAuthenticator)(nil)
	_ caddyfile.Unmarshaler = (*StaticAuthenticator)(nil)
)
