package registryauth

import (
	"crypto/sha256"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/regauth/caddy-registry-auth/internal/expiring"
	"github.com/regauth/caddy-registry-auth/token"
)

// serveBearer checks a token the client already holds. We verify it
// ourselves: the registry behind may run without auth.
func (h *ProxyHandler) serveBearer(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, route token.Route, raw string) error {
	claims, err := h.verify(raw, time.Now())
	if err != nil {
		return h.refuse(w, r, http.StatusUnauthorized, "UNAUTHORIZED", "invalid token", "invalid_token", &route)
	}
	if route.Scope.Type == token.TypeRegistry && !covers(claims.Access, route.Scope) {
		// The token's subject, and the groups it carries, may still see
		// part of the catalog.
		snap := h.policy.Current()
		return h.serveCatalog(w, r, snap, snap.WithGroups(Identity{Name: claims.Subject, Groups: claims.Groups}), route)
	}
	if !route.Base && !covers(claims.Access, route.Scope) {
		return h.refuse(w, r, http.StatusUnauthorized, "UNAUTHORIZED", "insufficient scope", "insufficient_scope", &route)
	}
	if route.MountFrom != nil && !covers(claims.Access, *route.MountFrom) {
		dropMount(r)
	}
	return h.pass(w, r, next, h.policy.Current(), claims.Subject, route)
}

// covers reports whether a token's access claim holds every action of s.
func covers(access []token.Access, s token.Scope) bool {
	var held token.Actions
	for _, a := range access {
		if a.Type == s.Type && a.Name == s.Name {
			for _, act := range a.Actions {
				held |= token.ParseAction(act)
			}
		}
	}
	return held&s.Actions == s.Actions
}

// verifiedTokens remembers the bearer tokens the proxy verified, until
// they expire: Docker and containerd send the same token with every
// request of a pull, and verifying an ES256 signature costs more than
// everything else the proxy does. Only successes are kept, keyed by a
// digest of the whole token, with the generation of the key set that
// verified them: after any change of the keys (a rotation, an emergency
// that withdraws a key) every token is verified again.
type verifiedTokens = expiring.Map[[sha256.Size]byte, verifiedToken]

type verifiedToken struct {
	claims     *token.Claims
	signer     *token.Signer
	generation uint64
}

// verifiedTokensSize bounds the tokens the proxy remembers.
const verifiedTokensSize = 10000

func newVerifiedTokens(max int) *verifiedTokens {
	return expiring.New[[sha256.Size]byte, verifiedToken](max, nil)
}

// verify checks an access token for the proxy's service, or finds it
// checked already.
func (h *ProxyHandler) verify(raw string, now time.Time) (*token.Claims, error) {
	signer := h.policy.Signer
	generation := signer.Generation()
	key := sha256.Sum256([]byte(raw))
	if v, ok := h.verified.Get(key, now); ok && v.signer == signer && v.generation == generation {
		return v.claims, nil
	}
	claims, err := signer.VerifyAccess(raw, h.policy.Issuer, []string{h.service}, now)
	if err != nil {
		return nil, err
	}
	h.verified.Put(key, verifiedToken{claims, signer, generation}, time.Unix(claims.Expiry, 0), now)
	return claims, nil
}
