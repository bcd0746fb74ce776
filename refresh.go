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

// errRevocationsUnavailable: the revocations could not be read, so a
// refresh token cannot be accepted now (503: the client should retry).
var errRevocationsUnavailable = errors.New("refresh tokens cannot be checked right now, try again shortly")

// errRefreshRefused: a refresh token that is invalid, expired, for another
// service, revoked, or whose user is gone or has a new password.
var errRefreshRefused = errors.New("the refresh token is not valid")

// issueRefresh makes a refresh token for subject at service: bound to
// both, carrying no access, and to the user's current password.
func (p *Policy) issueRefresh(rules *policy.Policy, subject, service string, now time.Time) (string, error) {
	fp, ok := rules.Fingerprint(subject, p.Signer.Secret())
	if !ok {
		return "", errRefreshRefused
	}
	c := token.NewClaims(p.Issuer, subject, token.RefreshAudience(service), p.refreshLifetime, now, nil)
	c.Kind, c.Fingerprint = token.KindRefresh, fp
	return p.Signer.Sign(c)
}

// refreshIdentity checks a refresh token presented for service and
// returns its user as the policy knows them now: a deleted user, a new
// password or a revocation after the token was issued refuses it.
func (p *Policy) refreshIdentity(rules *policy.Policy, raw, service string, now time.Time) (policy.Identity, error) {
	if p.refreshLifetime == 0 {
		return policy.Identity{}, errRefreshRefused
	}
	c, err := p.Signer.Verify(raw, p.Issuer, []string{token.RefreshAudience(service)}, now)
	if err != nil || c.Kind != token.KindRefresh || c.Subject == "" {
		return policy.Identity{}, errRefreshRefused
	}
	fp, ok := rules.Fingerprint(c.Subject, p.Signer.Secret())
	if !ok || fp != c.Fingerprint {
		return policy.Identity{}, errRefreshRefused
	}
	id, ok := rules.User(c.Subject)
	if !ok {
		return policy.Identity{}, errRefreshRefused
	}
	if p.storage != nil {
		rev, err := loadRevocations(context.Background(), p.storage, p.Name)
		if err != nil {
			// Never accept what may be revoked; the detail is for the log.
			return policy.Identity{}, fmt.Errorf("%w: %v", errRevocationsUnavailable, err)
		}
		if rev.revoked(c.Subject, time.Unix(c.IssuedAt, 0)) {
			return policy.Identity{}, errRefreshRefused
		}
	}
	return id, nil
}
