package registryauth

import (
	"context"

	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// authorize returns what id gets of requested: what the policy's rules
// grant, joined by what each authorizer grants, never more than requested.
// The result follows requested's order and leaves out what got nothing.
func (p *Policy) authorize(ctx context.Context, id policy.Identity, service, ip string, requested []token.Scope) []token.Scope {
	granted := p.Rules().Authorize(id, requested)
	if len(p.authorizers) == 0 || len(requested) == 0 {
		return granted
	}
	held := make([]token.Actions, len(requested))
	add := func(scopes []token.Scope) {
		for _, g := range scopes {
			for i, want := range requested {
				if g.Type == want.Type && g.Name == want.Name {
					held[i] |= g.Actions & want.Actions
				}
			}
		}
	}
	add(granted)
	req := AccessRequest{Identity: id, Service: service, ClientIP: ip, Scopes: requested}
	for _, a := range p.authorizers {
		scopes, err := a.Authorize(ctx, req)
		if err != nil {
			p.logger.Error("authorizer failed; it grants nothing", zap.String("policy", p.Name), zap.String("authorizer", a.name), zap.Error(err))
			continue
		}
		add(scopes)
	}
	out := granted[:0:0]
	for i, want := range requested {
		if held[i] != 0 {
			out = append(out, token.Scope{Type: want.Type, Name: want.Name, Actions: held[i]})
		}
	}
	return out
}
