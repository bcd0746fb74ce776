package registryauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// Refresh tokens of identities an issuer outside the policy vouched for
// (a CredentialOwner's, such as a CI job's OIDC token). No password of
// theirs is kept here to bind a refresh token to, so it is bound instead
// to what vouched for them: the issuer, the subject and the name and
// groups it mapped to are signed in it, with a fingerprint of the owning
// authenticator's configuration (a changed configuration, or the
// authenticator gone, revokes it). It lives no longer than the origin
// allows (the token's exp plus the authenticator's grace), so that a push
// that outlasts a short job token still finishes, and revocation by user
// name works as for everyone.

// issueOwnedRefresh makes a refresh token for id, whose Origin is set, at
// service; none ("") when its owner is gone or its time is up.
func (p *Policy) issueOwnedRefresh(id Identity, service string, now time.Time) (string, error) {
	o := p.ownerOf(id.Origin.Issuer)
	lifetime := min(p.refreshLifetime, id.Origin.RefreshUntil.Sub(now))
	if o == nil || lifetime < time.Second {
		return "", nil
	}
	c := refreshClaims(p.Issuer, id.Name, service, o.fingerprint(p.Signer.Secret()), lifetime, now)
	c.OriginIssuer, c.OriginSubject, c.Groups = id.Origin.Issuer, id.Origin.Subject, id.Origin.Groups
	return p.Signer.Sign(c)
}

// ownedRefreshIdentity is the identity a verified refresh token of an
// owned identity names, with the policy's groups added, if its owner is
// still configured as it was.
func (p *Policy) ownedRefreshIdentity(snap *policy.Compiled, c *token.Claims) (Identity, bool) {
	o := p.ownerOf(c.OriginIssuer)
	if o == nil || !hmac.Equal([]byte(o.fingerprint(p.Signer.Secret())), []byte(c.Fingerprint)) {
		return Identity{}, false
	}
	origin := &policy.Origin{Issuer: c.OriginIssuer, Subject: c.OriginSubject, Groups: c.Groups, RefreshUntil: time.Unix(c.Expiry, 0)}
	return snap.WithGroups(Identity{Name: c.Subject, Groups: c.Groups, Origin: origin}), true
}

// ownerOf is the authenticator that owns the issuer's credentials, if any.
func (p *Policy) ownerOf(issuer string) *ownedSource {
	for _, o := range p.owners {
		if o.owner.Owner() == issuer {
			return o
		}
	}
	return nil
}

// fingerprint is an HMAC under key of the owner's configuration: the same
// on every instance sharing the signing key and the configuration.
func (o *ownedSource) fingerprint(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("owner\x00"))
	m.Write(o.binding)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}
