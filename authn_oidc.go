package registryauth

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/internal/clip"
	"github.com/regauth/caddy-registry-auth/oidc"
	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

func init() { caddy.RegisterModule(OIDCAuthenticator{}) }

// OIDCAuthenticator lets workloads log in with the OpenID Connect identity
// token their platform hands them (a GitHub Actions or GitLab CI job, a
// Kubernetes service account, any OIDC provider) as the password: no
// static secret anywhere. A password that is a token of its issuer goes to
// it alone, whatever the user name and wherever it stands in the order
// (see CredentialOwner); the login's name is made from the token's claims
// by the username template. A policy may have one per issuer.
//
// Tokens are checked with go-jose: one of the issuer's keys (from its
// discovery document, or jwks_file) by kid, an RSA or ECDSA algorithm, the
// issuer exactly, the audience, exp, nbf and iat with 60 s of leeway, a
// maximum age. An issuer that cannot be reached does not stop Caddy from
// starting: its keys are fetched again with a growing wait, and its tokens
// are answered 503 until they are known.
type OIDCAuthenticator struct {
	// Issuer is the exact "iss" of the tokens, an https URL (http only on
	// a loopback address). Its keys are found through
	// <issuer>/.well-known/openid-configuration unless JWKSFile is set.
	Issuer string `json:"issuer"`
	// Audience must be one of the token's "aud". Required.
	Audience string `json:"audience"`
	// Username is the template of the name the policy sees: a literal
	// prefix holding a '/' (so that no issuer can mint a name outside its
	// own namespace), then claims: "gh/{claims.repository}". Every claim it
	// uses must be a non-empty string, or the login is refused.
	Username string `json:"username"`
	// Groups are templates of group names; an array claim gives one group
	// per element, and a missing claim drops that group.
	Groups []string `json:"groups,omitempty"`
	// Require maps claim paths to the value each must equal (all of them).
	Require map[string]string `json:"require,omitempty"`
	// JWKSFile holds the issuer's keys (a JWKS document) instead of
	// discovery, read again when a token names a key it lacks.
	JWKSFile string `json:"jwks_file,omitempty"`
	// CAFile is a PEM file of the certificates to trust for the issuer
	// instead of the system's.
	CAFile string `json:"ca_file,omitempty"`
	// UserName, if set, is the Basic user name clients must send.
	UserName string `json:"user_name,omitempty"`
	// MaxTokenAge bounds now − iat. Default 24h.
	MaxTokenAge caddy.Duration `json:"max_token_age,omitempty"`
	// RefreshGrace is how long past the token's exp a refresh token made
	// from it lives (never longer than the policy's refresh lifetime).
	// Default 1h.
	RefreshGrace caddy.Duration `json:"refresh_grace,omitempty"`
	// JWKSRefetchInterval is the least time between two fetches of the
	// keys that tokens naming unknown keys cause. Default 10s.
	JWKSRefetchInterval caddy.Duration `json:"jwks_refetch_interval,omitempty"`
	// Timeout bounds each fetch of the issuer's documents. Default 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	verifier *oidc.Verifier
	username oidc.Template
	groups   []oidc.Template
	require  []oidc.Requirement
	grace    time.Duration
	logger   *zap.Logger
}

// OIDC defaults.
const (
	DefaultOIDCMaxTokenAge         = 24 * time.Hour
	DefaultOIDCRefreshGrace        = time.Hour
	DefaultOIDCJWKSRefetchInterval = 10 * time.Second
	// oidcKeysRefresh is how often known keys are fetched again, so that
	// a key the issuer withdrew is dropped.
	oidcKeysRefresh = time.Hour
)

// CaddyModule returns the Caddy module information.
func (OIDCAuthenticator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "registry_auth.authenticators.oidc", New: func() caddy.Module { return new(OIDCAuthenticator) }}
}

// Provision checks the configuration, compiles the templates and starts
// fetching the issuer's keys in the background. Only a jwks_file that
// cannot be read fails it: an issuer that cannot be reached is retried.
func (a *OIDCAuthenticator) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.Issuer, a.Audience = expand(a.Issuer), expand(a.Audience)
	a.JWKSFile, a.CAFile = expand(a.JWKSFile), expand(a.CAFile)
	if err := a.compile(); err != nil {
		return err
	}
	fetch, err := a.keySource()
	if err != nil {
		return err
	}
	interval := durationOr(a.JWKSRefetchInterval, DefaultOIDCJWKSRefetchInterval)
	keys := oidc.NewKeys(fetch, interval, durationOr(a.Timeout, DefaultBackendTimeout))
	a.verifier = &oidc.Verifier{Issuer: a.Issuer, Audience: a.Audience,
		MaxAge: durationOr(a.MaxTokenAge, DefaultOIDCMaxTokenAge), Keys: keys}
	if a.JWKSFile != "" {
		if err := keys.Fetch(ctx); err != nil {
			keys.Close()
			return fmt.Errorf("jwks_file: %v", err)
		}
	}
	logger, issuer := a.logger, a.Issuer
	go keys.Keep(oidcKeysRefresh, func(err error, retryIn time.Duration) {
		msg := "cannot fetch the issuer's keys; its tokens are refused with 503 until they are known"
		if keys.Known() {
			msg = "cannot fetch the issuer's keys again; the known ones stay in use"
		}
		logger.Error(msg, zap.String("issuer", issuer), zap.Error(err), zap.Duration("retry_in", retryIn))
	})
	return nil
}

// compile checks the fields and compiles the templates and requirements.
func (a *OIDCAuthenticator) compile() (err error) {
	if err := checkIssuer(a.Issuer); err != nil {
		return err
	}
	if a.Audience == "" {
		return errors.New("audience: required (the token's aud must contain it)")
	}
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{{"max_token_age", a.MaxTokenAge}, {"refresh_grace", a.RefreshGrace}, {"jwks_refetch_interval", a.JWKSRefetchInterval}, {"timeout", a.Timeout}} {
		if d.v < 0 {
			return fmt.Errorf("%s: negative", d.name)
		}
	}
	if a.UserName != "" {
		if err := token.CheckUserName(a.UserName); err != nil {
			return fmt.Errorf("user_name: %v", err)
		}
	}
	if a.username, err = parseUsernameTemplate(a.Username); err != nil {
		return err
	}
	a.groups = nil
	for i, g := range a.Groups {
		t, err := oidc.ParseTemplate(g)
		if err != nil {
			return fmt.Errorf("groups[%d]: %v", i, err)
		}
		a.groups = append(a.groups, t)
	}
	a.require = nil
	for _, claim := range slices.Sorted(maps.Keys(a.Require)) {
		path, err := oidc.ParsePath(claim)
		if err != nil {
			return fmt.Errorf("require: %v", err)
		}
		a.require = append(a.require, oidc.Requirement{Path: path, Value: a.Require[claim]})
	}
	a.grace = durationOr(a.RefreshGrace, DefaultOIDCRefreshGrace)
	return nil
}

// parseUsernameTemplate reads the username template, which must start
// with a literal prefix holding a '/' after at least one character: names
// from the issuer then live under that prefix, and can never be "admin"
// or the name of a policy user without one.
func parseUsernameTemplate(s string) (oidc.Template, error) {
	if s == "" {
		return oidc.Template{}, errors.New(`username: required, a template such as "gh/{claims.repository}"`)
	}
	t, err := oidc.ParseTemplate(s)
	if err != nil {
		return t, fmt.Errorf("username: %v", err)
	}
	if prefix := t.LiteralPrefix(); strings.Index(prefix, "/") < 1 {
		return t, fmt.Errorf("username: %q must start with a literal prefix that holds a '/' (such as gh/), so that names from this issuer cannot be any other source's", s)
	}
	return t, nil
}

// checkIssuer: an absolute https URL, or http on a loopback address (the
// rule of every document fetched from the issuer too).
func checkIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("issuer: want an absolute https URL without query, got %q", issuer)
	}
	if err := checkHTTPTransport(u); err != nil {
		return fmt.Errorf("issuer: %v", err)
	}
	return nil
}

// keySource is where the issuer's keys come from: the file, or discovery
// over a client that verifies the issuer's certificate.
func (a *OIDCAuthenticator) keySource() (func(context.Context) ([]byte, error), error) {
	if a.JWKSFile != "" {
		return oidc.FileKeys(a.JWKSFile), nil
	}
	tlsConfig, err := tlsConfigFor(a.CAFile, "")
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	client := &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return oidc.DiscoveredKeys(client, a.Issuer, checkHTTPTransport), nil
}

// durationOr is d, or def when d is unset.
func durationOr(d caddy.Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Cleanup stops fetching the issuer's keys.
func (a *OIDCAuthenticator) Cleanup() error {
	if a.verifier != nil {
		a.verifier.Keys.Close()
	}
	return nil
}

// Owner is the issuer: a policy has one oidc authenticator per issuer.
func (a *OIDCAuthenticator) Owner() string { return a.Issuer }

// Claim takes the tokens whose iss is the issuer, before any check; the
// caller is the issuer and the token's sub.
func (a *OIDCAuthenticator) Claim(password string) (OwnedCredential, bool) {
	p, ok := oidc.Peek(password)
	if !ok || p.Issuer != a.Issuer {
		return OwnedCredential{}, false
	}
	return OwnedCredential{Caller: p.Issuer + " " + p.Subject, Expires: p.Expiry}, true
}

// Authenticate checks the token and maps its claims to an identity. A
// password that is no token of its issuer is not its business (the login
// path never gives it one).
func (a *OIDCAuthenticator) Authenticate(ctx context.Context, name, password string) (Identity, error) {
	if _, ok := a.Claim(password); !ok {
		return Identity{}, ErrUnknownUser
	}
	if a.UserName != "" && name != a.UserName {
		return a.refuse(fmt.Errorf("user name %q, want %q", clip.String(name, 128), a.UserName))
	}
	tok, err := a.verifier.Verify(ctx, password, time.Now())
	switch {
	case errors.Is(err, oidc.ErrKeysUnavailable):
		return Identity{}, fmt.Errorf("issuer %s: %v", a.Issuer, err)
	case err != nil:
		return a.refuse(err)
	}
	id, err := a.identity(tok)
	if err != nil {
		return a.refuse(err)
	}
	return id, nil
}

// refuse logs why a token was refused (never the token) and refuses it.
func (a *OIDCAuthenticator) refuse(why error) (Identity, error) {
	a.logger.Info("token refused", zap.String("issuer", a.Issuer), zap.String("reason", why.Error()))
	return Identity{}, ErrBadCredentials
}

// identity is who a verified token names: the requirements must hold, the
// username template must render to a valid user name, and the groups are
// what the group templates give.
func (a *OIDCAuthenticator) identity(tok *oidc.Token) (Identity, error) {
	for _, r := range a.require {
		if err := r.Check(tok.Claims); err != nil {
			return Identity{}, err
		}
	}
	name, err := a.username.Render(tok.Claims)
	if err != nil {
		return Identity{}, fmt.Errorf("username: %v", err)
	}
	if err := token.CheckUserName(name); err != nil {
		return Identity{}, fmt.Errorf("username: %v", err)
	}
	var groups []string
	for _, t := range a.groups {
		values, err := t.Expand(tok.Claims, MaxGroups)
		if err != nil {
			return Identity{}, fmt.Errorf("groups: %v", err)
		}
		for _, g := range values {
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
	}
	if err := checkGroups(groups); err != nil {
		return Identity{}, fmt.Errorf("groups: %v", err)
	}
	origin := &policy.Origin{Issuer: a.Issuer, Subject: tok.Subject, Groups: groups, RefreshUntil: tok.Expiry.Add(a.grace)}
	return Identity{Name: name, Groups: groups, Origin: origin}, nil
}

// Interface guards.
var (
	_ CredentialOwner       = (*OIDCAuthenticator)(nil)
	_ caddy.Provisioner     = (*OIDCAuthenticator)(nil)
	_ caddy.CleanerUpper    = (*OIDCAuthenticator)(nil)
	_ caddyfile.Unmarshaler = (*OIDCAuthenticator)(nil)
)
