package token

import (
	"errors"
	"fmt"
	"strings"
)

// Resource types a registry checks.
const (
	TypeRepository = "repository"
	TypeRegistry   = "registry"

	// CatalogName is the only registry-type resource: the repository list.
	CatalogName = "catalog"
)

// Limits on a token request's scopes. ggcr piles up every scope it has
// seen, so the count is generous; beyond it the request is refused rather
// than producing a token too large to travel in a header.
const (
	MaxScopes      = 256
	MaxScopeLength = 512
)

// Scope is one resource and a set of actions on it, as asked for in a
// request or granted in a token.
type Scope struct {
	Type    string
	Name    string
	Actions Actions
}

// String is the scope's wire form, type:name:actions.
func (s Scope) String() string { return s.Type + ":" + s.Name + ":" + s.Actions.String() }

// Access is a scope in the form a token's "access" claim carries it.
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// ErrBadScope is wrapped by every error ParseScopes returns, so callers can
// answer 400.
var ErrBadScope = errors.New("invalid scope")

// ParseScopes parses the scope parameters of a token request. Each value
// may hold several scopes separated by spaces (ggcr and regclient pass a
// challenge's whole scope string as one value); empty pieces are dropped.
//
// The result merges repeated resources (union of actions) in the order of
// first appearance. Scopes the registry would never check are dropped, not
// refused: unknown types, unknown actions, invalid repository names, a
// registry resource other than the catalog. Only text that is not a scope
// at all, or too much of it, is an error.
func ParseScopes(values []string) ([]Scope, error) {
	var out []Scope
	index := map[string]int{}
	count := 0
	for _, v := range values {
		for _, piece := range strings.Fields(v) {
			count++
			if count > MaxScopes {
				return nil, fmt.Errorf("%w: more than %d scopes", ErrBadScope, MaxScopes)
			}
			s, keep, err := parseScope(piece)
			if err != nil {
				return nil, err
			}
			if !keep {
				continue
			}
			key := s.Type + ":" + s.Name
			if i, ok := index[key]; ok {
				out[i].Actions |= s.Actions
				continue
			}
			index[key] = len(out)
			out = append(out, s)
		}
	}
	return out, nil
}

// parseScope splits type:name:actions. The name is everything between the
// first and the last colon, so it may carry a host:port.
func parseScope(piece string) (s Scope, keep bool, err error) {
	if len(piece) > MaxScopeLength {
		return s, false, fmt.Errorf("%w: a scope is longer than %d bytes", ErrBadScope, MaxScopeLength)
	}
	first := strings.IndexByte(piece, ':')
	last := strings.LastIndexByte(piece, ':')
	if first <= 0 || first == last {
		return s, false, fmt.Errorf("%w: %q is not type:name:actions", ErrBadScope, piece)
	}
	typ, name, actions := piece[:first], piece[first+1:last], piece[last+1:]
	s = Scope{Type: normalizeType(typ), Name: name, Actions: ParseActions(actions)}
	switch s.Type {
	case TypeRepository:
		keep = ValidRepositoryName(name)
	case TypeRegistry:
		// The catalog is granted as the literal "*" only.
		keep = name == CatalogName
		s.Actions &= All
	}
	return s, keep && s.Actions != 0, nil
}

// normalizeType maps a resource class such as Docker plugins'
// "repository(plugin)" to its type: registries reject the class form in a
// token. Types this package does not know come back empty.
func normalizeType(typ string) string {
	if base, class, ok := strings.Cut(typ, "("); ok {
		if !strings.HasSuffix(class, ")") || !isClass(class[:len(class)-1]) {
			return ""
		}
		typ = base
	}
	switch typ {
	case TypeRepository, TypeRegistry:
		return typ
	}
	return ""
}

func isClass(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLowerAlnum(s[i]) {
			return false
		}
	}
	return true
}

// AccessClaim turns granted scopes into the token's "access" claim. The
// result is never nil, so it marshals as [] rather than null.
func AccessClaim(granted []Scope) []Access {
	out := make([]Access, 0, len(granted))
	for _, g := range granted {
		out = append(out, Access{Type: g.Type, Name: g.Name, Actions: g.Actions.Strings()})
	}
	return out
}

// FormatScopes joins scopes with spaces, as the OAuth2 "scope" response
// field and challenges carry them.
func FormatScopes(scopes []Scope) string {
	parts := make([]string, len(scopes))
	for i, s := range scopes {
		parts[i] = s.String()
	}
	return strings.Join(parts, " ")
}
