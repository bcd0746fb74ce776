package registryauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// RefreshConfig governs refresh tokens: what `docker login` stores instead
// of the password (as its identitytoken) and trades for access tokens.
type RefreshConfig struct {
	// Disabled stops issuing refresh tokens and accepting them.
	Disabled bool `json:"disabled,omitempty"`
	// Lifetime of a refresh token. Default 90 days.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
}

// DefaultRefreshLifetime is how long a refresh token is valid by default.
const DefaultRefreshLifetime = 90 * 24 * time.Hour

// lifetime is how long refresh tokens live; 0 when they are off.
func (rc *RefreshConfig) lifetime() (time.Duration, error) {
	switch {
	case rc == nil:
		return DefaultRefreshLifetime, nil
	case rc.Disabled:
		return 0, nil
	case rc.Lifetime < 0:
		return 0, fmt.Errorf("refresh_tokens.lifetime: negative")
	case rc.Lifetime > 0:
		return time.Duration(rc.Lifetime), nil
	}
	return DefaultRefreshLifetime, nil
}

// errRevocationsUnavailable: the revocations could not be read, so a
// refresh token cannot be accepted now (503: the client should retry).
var errRevocationsUnavailable = errors.New("refresh tokens cannot be checked right now, try again shortly")

// errRefreshRefused: a refresh token that is invalid, expired, for another
// service, revoked, or whose user is gone or has a new password.
var errRefreshRefused = errors.New("the refresh token is not valid")

// issueRefresh makes a refresh token for subject at service: bound to
// both, carrying no access, and to the user's current password.
func (p *Policy) issueRefresh(snap *policy.Compiled, subject, service string, now time.Time) (string, error) {
	fp, ok := snap.Users().Fingerprint(subject, p.Signer.Secret())
	if !ok {
		return "", errRefreshRefused
	}
	return p.Signer.Sign(refreshClaims(p.Issuer, subject, service, fp, p.refreshLifetime, now))
}

// refreshClaims are the claims of every refresh token: its kind, its own
// audience, the fingerprint that binds it, and its issue time to the
// nanosecond, so a revocation made a moment before it never refuses it.
func refreshClaims(issuer, subject, service, fingerprint string, lifetime time.Duration, now time.Time) *token.Claims {
	c := token.NewClaims(issuer, subject, token.RefreshAudience(service), lifetime, now, nil)
	c.Kind, c.Fingerprint, c.IssuedAtNano = token.KindRefresh, fingerprint, now.UnixNano()
	return c
}

// refreshIdentity checks a refresh token presented for service and
// returns its user as the policy knows them now: a deleted user, a new
// password or a revocation after the token was issued refuses it.
func (p *Policy) refreshIdentity(snap *policy.Compiled, raw, service string, now time.Time) (Identity, error) {
	if p.refreshLifetime == 0 {
		return Identity{}, errRefreshRefused
	}
	c, err := p.Signer.VerifyRefresh(raw, p.Issuer, service, now)
	if err != nil {
		return Identity{}, errRefreshRefused
	}
	id, ok := p.refreshSubject(snap, c)
	if !ok {
		return Identity{}, errRefreshRefused
	}
	if p.storage != nil {
		rev, err := loadRevocations(context.Background(), p.storage, p.Name)
		if err != nil {
			// Never accept what may be revoked; the detail is for the log.
			return Identity{}, fmt.Errorf("%w: %v", errRevocationsUnavailable, err)
		}
		if rev.revoked(c.Subject, c.Issued()) {
			return Identity{}, errRefreshRefused
		}
	}
	return id, nil
}

// refreshSubject is the identity a verified refresh token names, if its
// binding holds: a user's current password, or for an identity an issuer
// outside the policy vouched for, its owner's configuration
// (refresh_owned.go).
func (p *Policy) refreshSubject(snap *policy.Compiled, c *token.Claims) (Identity, bool) {
	if c.OriginIssuer != "" {
		return p.ownedRefreshIdentity(snap, c)
	}
	fp, ok := snap.Users().Fingerprint(c.Subject, p.Signer.Secret())
	if !ok || fp != c.Fingerprint {
		return Identity{}, false
	}
	return snap.User(c.Subject)
}
