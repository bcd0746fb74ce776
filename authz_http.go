package registryauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/regauth/caddy-registry-auth/internal/expiring"
	"github.com/regauth/caddy-registry-auth/token"
)

func init() { caddy.RegisterModule(HTTPAuthorizer{}) }

// HTTPAuthorizer asks an HTTP service what a request may do. It POSTs a
// JSON object:
//
//	{"user": "alice", "groups": ["dev"], "service": "registry.example.com",
//	 "client_ip": "192.0.2.7",
//	 "scopes": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]}
//
// ("user" is "" for anonymous requests) and expects a 2xx answer
//
//	{"scopes": [{"type": "repository", "name": "team/app", "actions": ["pull"]}]}
//
// listing what it grants: any subset of what was asked, per resource.
// Anything else grants nothing. Answers are reused for the same question
// for cache_ttl.
type HTTPAuthorizer struct {
	HTTPService
	// CacheTTL is how long an answer is reused for the same question
	// (user, groups, service, client IP and scopes). Default 10s;
	// negative: never.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	ttl     time.Duration
	answers *expiring.Map[[sha256.Size]byte, []token.Scope]
}

// DefaultAuthorizerCacheTTL is how long an HTTP authorizer's answer is reused.
const DefaultAuthorizerCacheTTL = 10 * time.Second

// authorizerCacheSize bounds the answers an HTTP authorizer keeps.
const authorizerCacheSize = 10000

type authzScope struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// CaddyModule returns the Caddy module information.
func (HTTPAuthorizer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "registry_auth.authorizers.http", New: func() caddy.Module { return new(HTTPAuthorizer) }}
}

// Provision checks the URL and builds the client.
func (a *HTTPAuthorizer) Provision(caddy.Context) error {
	a.ttl = time.Duration(a.CacheTTL)
	if a.ttl == 0 {
		a.ttl = DefaultAuthorizerCacheTTL
	}
	a.answers = expiring.New[[sha256.Size]byte, []token.Scope](authorizerCacheSize, nil)
	return a.provision()
}

// Authorize asks the service, or reuses its recent answer.
func (a *HTTPAuthorizer) Authorize(ctx context.Context, req AccessRequest) ([]token.Scope, error) {
	question := struct {
		User     string       `json:"user"`
		Groups   []string     `json:"groups"`
		Service  string       `json:"service"`
		ClientIP string       `json:"client_ip"`
		Scopes   []authzScope `json:"scopes"`
	}{req.Identity.Name, req.Identity.Groups, req.Service, req.ClientIP, make([]authzScope, len(req.Scopes))}
	if question.Groups == nil {
		question.Groups = []string{}
	}
	for i, s := range req.Scopes {
		question.Scopes[i] = authzScope{s.Type, s.Name, s.Actions.Strings()}
	}
	body, err := json.Marshal(question)
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256(body)
	if granted, ok := a.answers.Get(key, time.Now()); ok && a.ttl > 0 {
		return granted, nil
	}
	status, answer, err := a.post(ctx, "", body)
	if err != nil {
		return nil, err
	}
	if status < 200 || status > 299 {
		return nil, fmt.Errorf("%s answered %d", a.where, status)
	}
	var parsed struct {
		Scopes []authzScope `json:"scopes"`
	}
	if err := json.Unmarshal(answer, &parsed); err != nil {
		return nil, fmt.Errorf("%s answered with a body that is not a JSON object with scopes: %v", a.where, err)
	}
	// Keep only what was asked: the rest would be dropped anyway, and
	// must not fill the cache.
	held := make([]token.Actions, len(req.Scopes))
	for _, s := range parsed.Scopes {
		var actions token.Actions
		for _, word := range s.Actions {
			actions |= token.ParseAction(word)
		}
		for i, want := range req.Scopes {
			if s.Type == want.Type && s.Name == want.Name {
				held[i] |= actions & want.Actions
			}
		}
	}
	var granted []token.Scope
	for i, want := range req.Scopes {
		if held[i] != 0 {
			granted = append(granted, token.Scope{Type: want.Type, Name: want.Name, Actions: held[i]})
		}
	}
	if a.ttl > 0 {
		a.answers.Put(key, granted, time.Now().Add(a.ttl), time.Now())
	}
	return granted, nil
}

// Interface guards.
var (
	_ Authorizer            = (*HTTPAuthorizer)(nil)
	_ caddy.Provisioner     = (*HTTPAuthorizer)(nil)
	_ caddy.CleanerUpper    = (*HTTPAuthorizer)(nil)
	_ caddyfile.Unmarshaler = (*HTTPAuthorizer)(nil)
)
