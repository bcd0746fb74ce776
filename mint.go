package registryauth

import (
	"time"

	"github.com/regauth/caddy-registry-auth/internal/expiring"
	"github.com/regauth/caddy-registry-auth/token"
)

// mintCache lets a policy reuse an access token it signed for the same
// subject, service and grant, instead of signing one per request. A token
// is reused only during the first half of its life, so the registry never
// sees one about to expire, and nothing cached outlives the token's exp.
// The grant itself is still decided on every request: the cache only skips
// the signature.
type mintCache = expiring.Map[string, string]

// mintCacheSize bounds the tokens a policy keeps for reuse.
const mintCacheSize = 10000

func newMintCache(max int) *mintCache { return expiring.New[string, string](max, nil) }

// sign signs a new access token for subject at service granting exactly
// granted, issued at now.
func (p *Policy) sign(subject, service string, granted []token.Scope, now time.Time) (string, *token.Claims, error) {
	claims := token.NewClaims(p.Issuer, subject, service, p.Lifetime, now, token.AccessClaim(granted))
	raw, err := p.Signer.Sign(claims)
	return raw, claims, err
}

// mint returns an access token for subject at service granting exactly
// granted: a recent one from the cache, or a new one.
func (p *Policy) mint(subject, service string, granted []token.Scope, now time.Time) (string, error) {
	// A token of a key that no longer signs is not reused: after a
	// promotion, every instance mints with the new key.
	key := p.Signer.KeyID() + "\x00" + subject + "\x00" + service + "\x00" + token.FormatScopes(granted)
	if raw, ok := p.minted.Get(key, now); ok {
		return raw, nil
	}
	raw, claims, err := p.sign(subject, service, granted, now)
	if err != nil {
		return "", err
	}
	p.minted.Put(key, raw, time.Unix(claims.IssuedAt, 0).Add(p.Lifetime/2), now)
	return raw, nil
}
