package registryauth

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

func init() { caddy.RegisterModule(RulesAuthorizer{}) }

// RulesAuthorizer is a set of allow and deny rules, as a policy's own
// allow and deny lines are, as a module: for a team that states its rules
// in a module of their own, or for rules next to other authorizers. Its
// deny rules limit its own allows only; the policy's own deny rules limit
// everything.
type RulesAuthorizer struct {
	// Rules, as a policy's rules.
	Rules []policy.Rule `json:"rules"`

	rules *policy.Rules
}

// CaddyModule returns the Caddy module information.
func (RulesAuthorizer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "registry_auth.authorizers.rules", New: func() caddy.Module { return new(RulesAuthorizer) }}
}

// Provision compiles the rules.
func (a *RulesAuthorizer) Provision(caddy.Context) (err error) {
	if len(a.Rules) == 0 {
		return fmt.Errorf("no rules")
	}
	a.rules, err = policy.CompileRules(a.Rules)
	return err
}

// Authorize evaluates the rules.
func (a *RulesAuthorizer) Authorize(_ context.Context, req AccessRequest) ([]token.Scope, error) {
	return a.rules.Authorize(req.Identity, req.Scopes), nil
}

// Interface guards.
var (
	_ Authorizer            = (*RulesAuthorizer)(nil)
	_ caddy.Provisioner     = (*RulesAuthorizer)(nil)
	_ caddyfile.Unmarshaler = (*RulesAuthorizer)(nil)
)
