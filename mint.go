package registryauth

import (
	"strconv"
	"strings"
	"time"

	"github.com/regauth/caddy-registry-auth/internal/expiring"
	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// minted is a signed access token and its times.
type minted struct {
	raw      string
	iat, exp int64
}

// mintCache lets a policy reuse an access token it signed for the same
// subject, service and grant, instead of signing one per request: clients
// ask for the same token again and again (Docker per repository and per
// expiry, a CI fleet with one robot's credentials, every proxied request).
//
// Reuse never gives more than a fresh decision: the caller decides the
// grant on every request (login, refresh-token checks, the policy as it is
// now, revocations), and only a token for exactly that grant, subject and
// service, signed by the current key set, is reused (keyed by the
// signer's generation, not the key id, which an operator's key_id keeps
// the same across keys: after an emergency the withdrawn key's tokens are
// never handed out again). A reload that changes
// what a user gets, a new password or a revocation change the decision, so
// the old token is simply not asked for. What reuse changes is only how
// long the token has left: at least max(60 s, half its lifetime), so a
// registry never sees one about to expire; with a lifetime of a minute
// nothing is reused.
type mintCache = expiring.Map[string, minted]

// mintCacheSize bounds the tokens a policy keeps for reuse.
const mintCacheSize = 10000

func newMintCache(max int) *mintCache { return expiring.New[string, minted](max, nil) }

// minReuseLeft is the least life a reused token has left.
const minReuseLeft = time.Minute

// mint returns an access token for id at service granting exactly
// granted: a recent one from the cache, or one signed now. The token
// carries id's groups that the policy cannot find again by itself (see
// policy.Compiled.ForeignGroups), for the proxy.
func (p *Policy) mint(snap *policy.Compiled, id Identity, service string, granted []token.Scope, now time.Time) (minted, error) {
	groups := snap.ForeignGroups(id)
	key := strconv.FormatUint(p.Signer.Generation(), 10) + "\x00" + id.Name + "\x00" + service + "\x00" + token.FormatScopes(granted) + "\x00" + strings.Join(groups, "\x00")
	if m, ok := p.minted.Get(key, now); ok {
		return m, nil
	}
	claims := token.NewClaims(p.Issuer, id.Name, service, p.Lifetime, now, token.AccessClaim(granted))
	claims.Groups = groups
	raw, err := p.Signer.Sign(claims)
	if err != nil {
		return minted{}, err
	}
	m := minted{raw: raw, iat: claims.IssuedAt, exp: claims.Expiry}
	reuseUntil := time.Unix(m.exp, 0).Add(-max(minReuseLeft, p.Lifetime/2))
	if reuseUntil.After(now) {
		p.minted.Put(key, m, reuseUntil, now)
	}
	return m, nil
}
