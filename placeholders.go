package registryauth

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/regauth/caddy-registry-auth/policy"
)

// expand replaces Caddy's global placeholders ({env.VAR}, {file./path})
// in a configuration value, once, when the configuration loads: secrets
// then stay out of the configuration's text.
func expand(s string) string { return caddy.NewReplacer().ReplaceKnown(s, "") }

// expandUsers expands the placeholders in users' passwords and in htpasswd
// file paths, leaving cfg itself as it was.
func expandUsers(cfg policy.Config) policy.Config {
	users := make([]policy.User, len(cfg.Users))
	for i, u := range cfg.Users {
		u.Password = expand(u.Password)
		users[i] = u
	}
	files := make([]string, len(cfg.HtpasswdFiles))
	for i, f := range cfg.HtpasswdFiles {
		files[i] = expand(f)
	}
	cfg.Users, cfg.HtpasswdFiles = users, files
	return cfg
}
