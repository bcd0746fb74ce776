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

	set *policy.Policy
}

// CaddyModule returns the Caddy module information.
func (RulesAuthorizer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "registry_auth.authorizers.rules", New: func() caddy.Module { return new(RulesAuthorizer) }}
}

// Provision compiles the rules.
func (a *RulesAuthorizer) Provision(caddy.Context) error {
	if len(a.Rules) == 0 {
		return fmt.Errorf("no rules")
	}
	set, err := policy.CompileRules(a.Rules)
	if err != nil {
		return err
	}
	a.set = set
	return nil
}

// Authorize evaluates the rules.
func (a *RulesAuthorizer) Authorize(_ context.Context, req AccessRequest) ([]token.Scope, error) {
	return a.set.Authorize(req.Identity, req.Scopes), nil
}

// UnmarshalCaddyfile reads:
//
//	authorizer rules {
//		allow <subject[,subject...]> <action[,action...]> <resource...>
//		deny  <subject[,subject...]> <action[,action...]> <resource...>
//	}
func (a *RulesAuthorizer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "allow", "deny":
			rule, err := ruleLine(d)
			if err != nil {
				return err
			}
			a.Rules = append(a.Rules, rule)
		default:
			return d.Errf("unknown rules authorizer subdirective %q", d.Val())
		}
	}
	return nil
}

// Interface guards.
var (
	_ Authorizer            = (*RulesAuthorizer)(nil)
	_ caddy.Provisioner     = (*RulesAuthorizer)(nil)
	_ caddyfile.Unmarshaler = (*RulesAuthorizer)(nil)
)
