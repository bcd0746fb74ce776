package registryauth

import (
	"context"

	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// Authorizer grants access besides a policy's rules: an HTTP service, or a
// module of your own in the registry_auth.authorizers namespace. What a
// request gets is the union of what the allow rules and every authorizer
// grant, minus what the deny rules take away, intersected with what was
// requested: an authorizer can add access, but never past a deny rule or
// beyond what was asked. An authorizer that fails grants nothing.
type Authorizer interface {
	// Authorize returns the part of req.Scopes that req.Identity may have.
	// It may return any subset, in any order; anything not requested is
	// ignored.
	Authorize(ctx context.Context, req AccessRequest) ([]token.Scope, error)
}

// AccessRequest is what an Authorizer decides on.
type AccessRequest struct {
	Identity Identity
	// Service is the audience the token is for (the registry).
	Service string
	// ClientIP is the address the request came from.
	ClientIP string
	// Scopes are the requested resources and actions, already validated
	// and merged. A requested "*" is token.Every: pull, push and delete
	// plus the All bit, which Strings writes as "*".
	Scopes []token.Scope
}

// namedAuthorizer is an authorizer with the name logs give it.
type namedAuthorizer struct {
	Authorizer
	name string
}

// authorize returns what id gets of requested under snap, the policy as
// the request found it: what its allow rules and every authorizer grant,
// minus what its deny rules take away, never more than requested. The
// result follows requested's order and leaves out what got nothing.
func (p *Policy) authorize(ctx context.Context, snap *policy.Compiled, id Identity, service, ip string, requested []token.Scope) []token.Scope {
	rules := snap.Rules()
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
