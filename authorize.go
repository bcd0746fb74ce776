package registryauth

import (
	"context"

	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// authorize returns what id gets of requested under rules, the policy as
// the request found it: what its allow rules and every authorizer grant,
// minus what its deny rules take away, never more than requested. The
// result follows requested's order and leaves out what got nothing.
func (p *Policy) authorize(ctx context.Context, rules *policy.Policy, id policy.Identity, service, ip string, requested []token.Scope) []token.Scope {
	if len(p.authorizers) == 0 {
		return rules.Authorize(id, requested)
	}
	allowed := make([]token.Actions, len(requested))
	denied := make([]token.Actions, len(requested))
	for i, want := range requested {
		allowed[i], denied[i] = rules.Decide(id, want)
	}
	req := AccessRequest{Identity: id, Service: service, ClientIP: ip, Scopes: requested}
	for _, a := range p.authorizers {
		scopes, err := a.Authorize(ctx, req)
		if err != nil {
			p.logger.Error("authorizer failed; it grants nothing", zap.String("policy", p.Name), zap.String("authorizer", a.name), zap.Error(err))
			continue
		}
		for _, g := range scopes {
			for i, want := range requested {
				if g.Type == want.Type && g.Name == want.Name {
					allowed[i] |= g.Actions
				}
			}
		}
	}
	var granted []token.Scope
	for i, want := range requested {
		if g := policy.Limit(allowed[i], denied[i]) & want.Actions; g != 0 {
			granted = append(granted, token.Scope{Type: want.Type, Name: want.Name, Actions: g})
		}
	}
	return granted
}
