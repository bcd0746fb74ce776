package token

import (
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of a registry token. Both registry families reject
// an array audience and non-integer times, so the standard claim types
// (whose audience is an array by a package-wide switch) are not used.
type Claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  string   `json:"aud"`
	Expiry    int64    `json:"exp"`
	NotBefore int64    `json:"nbf"`
	IssuedAt  int64    `json:"iat"`
	ID        string   `json:"jti"`
	Access    []Access `json:"access"`

	// Kind is "refresh" in refresh tokens and absent in access tokens.
	Kind string `json:"kind,omitempty"`
	// Fingerprint, in refresh tokens, is a keyed hash of the user's
	// password hash when the token was issued: a new password revokes it.
	// In refresh tokens of an identity an issuer outside the policy
	// vouched for, it is a keyed hash of the configuration of the
	// authenticator that checked it: a new configuration revokes it.
	Fingerprint string `json:"fpr,omitempty"`
	// Groups are groups a source other than the policy itself (a
	// directory, an identity provider) gave the subject. In access tokens
	// they are those the policy's rules name: the proxy needs them to work
	// out what a bearer of the token may see (its catalog); registries
	// ignore claims they do not know. In refresh tokens of an identity an
	// outside issuer vouched for, they are the groups that issuer gave.
	Groups []string `json:"grp,omitempty"`
	// IssuedAtNano, in refresh tokens, is the issue time in nanoseconds:
	// iat has whole seconds, and a revocation must tell a token issued
	// just before it from one issued just after, in the same second.
	IssuedAtNano int64 `json:"iat_nano,omitempty"`
	// OriginIssuer and OriginSubject, in refresh tokens of an identity an
	// issuer outside the policy vouched for (a workload's OIDC token),
	// name that issuer and the subject it named.
	OriginIssuer  string `json:"oiss,omitempty"`
	OriginSubject string `json:"osub,omitempty"`
}

// Issued is when the token was issued, as precisely as it says.
func (c *Claims) Issued() time.Time {
	if c.IssuedAtNano != 0 {
		return time.Unix(0, c.IssuedAtNano)
	}
	return time.Unix(c.IssuedAt, 0)
}

// KindRefresh marks refresh tokens.
const KindRefresh = "refresh"

// RefreshAudience is the audience of refresh tokens for a service. It is
// never a service name, so registries and the proxy, which accept only
// their service, refuse a refresh token used as an access token.
func RefreshAudience(service string) string { return "refresh-token:" + service }

// Interface guard: the jwt parser validates times through this interface.
var _ jwt.Claims = (*Claims)(nil)

func numericDate(sec int64) *jwt.NumericDate {
	if sec == 0 {
		return nil
	}
	return jwt.NewNumericDate(time.Unix(sec, 0))
}

// GetExpirationTime implements jwt.Claims.
func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return numericDate(c.Expiry), nil }

// GetIssuedAt implements jwt.Claims.
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error) { return numericDate(c.IssuedAt), nil }

// GetNotBefore implements jwt.Claims.
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error) { return numericDate(c.NotBefore), nil }

// GetIssuer implements jwt.Claims.
func (c *Claims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c *Claims) GetSubject() (string, error) { return c.Subject, nil }

// GetAudience implements jwt.Claims.
func (c *Claims) GetAudience() (jwt.ClaimStrings, error) { return jwt.ClaimStrings{c.Audience}, nil }
