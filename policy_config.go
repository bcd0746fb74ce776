package registryauth

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// PolicyConfig is one policy: who may log in, what they may do, and how
// their tokens are made.
type PolicyConfig struct {
	// Issuer is the tokens' "iss" claim; the registry's auth.token.issuer
	// must be the same. Default: "caddy-registry-auth".
	Issuer string `json:"issuer,omitempty"`
	// Services are the audiences tokens may be issued for: the registry's
	// auth.token.service. A request for any other service is refused
	// (400); a request that names none gets the first.
	Services []string `json:"services,omitempty"`
	// TokenLifetime is how long a token is valid: 1m to 1h, default 5m.
	TokenLifetime caddy.Duration `json:"token_lifetime,omitempty"`
	// Signer is the signing key; by default one is generated and kept in
	// Caddy's storage.
	Signer *SignerConfig `json:"signer,omitempty"`
	// CredentialCacheTTL is how long a successful password check is
	// remembered (as a keyed hash, never the password), so repeated logins
	// cost microseconds instead of a bcrypt compare. Default 5m; a
	// negative value turns the cache off. A changed password never
	// matches an old entry.
	CredentialCacheTTL caddy.Duration `json:"credential_cache_ttl,omitempty"`
	// Throttle slows password guessing; on by default.
	Throttle *ThrottleConfig `json:"throttle,omitempty"`
	// RefreshTokens: issued on `docker login` (offline_token=true) and the
	// OAuth2 password grant with access_type=offline; on by default.
	RefreshTokens *RefreshConfig `json:"refresh_tokens,omitempty"`

	// Users, groups and rules. Passwords, password files and key files may
	// use global placeholders such as {env.VAR} and {file./path}, expanded
	// when the configuration loads.
	policy.Config

	// Files hold more users, groups and rules, reloaded when they change.
	Files []PolicyFile `json:"files,omitempty"`
	// ReloadInterval is how often policy files and htpasswd files are
	// checked for changes. Default 5s; negative: never (they are still
	// read with every Caddy config load).
	ReloadInterval caddy.Duration `json:"reload_interval,omitempty"`

	// AuthenticatorsRaw are sources of users asked, in order, after the
	// policy's own users: the first source that knows a user decides.
	AuthenticatorsRaw []json.RawMessage `json:"authenticators,omitempty" caddy:"namespace=registry_auth.authenticators inline_key=authenticator"`
	// AuthorizersRaw grant access besides the allow rules: a request gets
	// the union of what those and each authorizer grant, minus what the
	// deny rules take away, never more than it asked for.
	AuthorizersRaw []json.RawMessage `json:"authorizers,omitempty" caddy:"namespace=registry_auth.authorizers inline_key=authorizer"`
}

// Defaults and limits of a policy's tokens.
const (
	DefaultIssuer        = "caddy-registry-auth"
	DefaultTokenLifetime = 5 * time.Minute
	// Registries and clients need a token to live at least a minute;
	// tokens are bearer credentials, so they never live long.
	MinTokenLifetime = time.Minute
	MaxTokenLifetime = time.Hour

	DefaultCredentialCacheTTL = 5 * time.Minute
)

// Policy is a provisioned policy, what handlers work with.
type Policy struct {
	Name     string
	Issuer   string
	Services []string
	Lifetime time.Duration
	Signer   *token.Signer

	// current is the compiled users, groups and rules, replaced whole when
	// policy files change: a request works with the one it loaded.
	current      atomic.Pointer[policy.Compiled]
	source       *policySource
	reloadEvery  time.Duration // 0: files are not watched
	loadedDigest [sha256.Size]byte

	cache  *policy.CredentialCache // nil when off
	flight singleflight.Group      // identical password checks at once
	// authenticators are asked after the policy's own users; their
	// successes are remembered under sourcesBinding, which changes with
	// their configuration.
	authenticators []namedAuthenticator
	sourcesBinding []byte
	// owners are the authenticators that own credentials (also in
	// authenticators): a credential one claims goes to it alone.
	owners      []*ownedSource
	authorizers []namedAuthorizer
	throttle    *throttle // nil when off
	minted      *mintCache

	// tokenEndpoint is set when a registry_auth_token handler of its own
	// serves the policy: then it may never hold immutable tags.
	tokenEndpoint atomic.Bool

	refreshLifetime time.Duration     // 0 when refresh tokens are off
	storage         certmagic.Storage // revocations
	keys            *keyring          // keeps Signer in step with the keys in storage
	logger          *zap.Logger
}

// Current returns the policy's compiled users, groups and rules as they
// are now.
func (p *Policy) Current() *policy.Compiled { return p.current.Load() }

// provision makes the policy called name from its configuration.
func (pc *PolicyConfig) provision(ctx caddy.Context, name string, app *App) (*Policy, error) {
	if pc == nil {
		return nil, fmt.Errorf("empty policy")
	}
	p := &Policy{Name: name, logger: app.logger, storage: ctx.Storage(), minted: newMintCache(mintCacheSize)}
	var err error
	if err = pc.provisionTokens(p); err != nil {
		return nil, err
	}
	p.cache = pc.credentialCache(name, app.holdCache)
	if err = p.provisionRules(pc); err != nil {
		return nil, err
	}
	if err = p.loadBackends(ctx, pc); err != nil {
		return nil, err
	}
	if p.throttle, err = pc.Throttle.provision(); err != nil {
		return nil, err
	}
	if p.refreshLifetime, err = pc.RefreshTokens.lifetime(); err != nil {
		return nil, err
	}
	if p.keys, err = pc.Signer.provision(ctx, name, keyTimes{access: p.Lifetime, refresh: p.refreshLifetime}); err != nil {
		return nil, fmt.Errorf("signer: %v", err)
	}
	p.Signer = p.keys.signer
	return p, nil
}

// provisionTokens sets what the policy's tokens say: issuer, audiences and
// lifetime.
func (pc *PolicyConfig) provisionTokens(p *Policy) error {
	p.Issuer, p.Services, p.Lifetime = pc.Issuer, pc.Services, time.Duration(pc.TokenLifetime)
	if p.Issuer == "" {
		p.Issuer = DefaultIssuer
	}
	if p.Lifetime == 0 {
		p.Lifetime = DefaultTokenLifetime
	}
	if p.Lifetime < MinTokenLifetime || p.Lifetime > MaxTokenLifetime {
		return fmt.Errorf("token_lifetime: %s is outside %s to %s", p.Lifetime, MinTokenLifetime, MaxTokenLifetime)
	}
	if len(p.Services) == 0 {
		return fmt.Errorf("services: name at least one (the registry's auth.token.service)")
	}
	for i, s := range p.Services {
		if s == "" {
			return fmt.Errorf("services[%d]: empty", i)
		}
	}
	return nil
}

// credentialCache is the policy's shared credential cache, nil when off.
func (pc *PolicyConfig) credentialCache(name string, hold func(string, time.Duration) *policy.CredentialCache) *policy.CredentialCache {
	switch ttl := time.Duration(pc.CredentialCacheTTL); {
	case ttl == 0:
		return hold(name, DefaultCredentialCacheTTL)
	case ttl > 0:
		return hold(name, ttl)
	}
	return nil
}

// provisionRules compiles the policy's own users and rules with those of
// its files, and says how often the files are checked for changes.
func (p *Policy) provisionRules(pc *PolicyConfig) error {
	source, err := newPolicySource(pc)
	if err != nil {
		return err
	}
	compiled, digest, warnings, err := source.compile()
	if err != nil {
		return err
	}
	for _, w := range warnings {
		p.logger.Warn(w, zap.String("policy", p.Name))
	}
	p.source, p.loadedDigest = source, digest
	p.current.Store(compiled)
	p.reloadEvery, err = pc.reloadEvery(source.watched())
	return err
}

// loadBackends loads the policy's authenticator and authorizer modules.
func (p *Policy) loadBackends(ctx caddy.Context, pc *PolicyConfig) error {
	authenticators, err := loadGuests[Authenticator](ctx, pc, "AuthenticatorsRaw", len(pc.AuthenticatorsRaw))
	if err != nil {
		return err
	}
	// The modules as provisioned, placeholders expanded: any change to
	// what one does makes the remembered successes of all miss.
	binding := sha256.New()
	for i, m := range authenticators {
		described, _ := json.Marshal(m)
		fmt.Fprintf(binding, "%d:%T:%d:", i, m, len(described))
		binding.Write(described)
		named := namedAuthenticator{m, moduleName(m)}
		p.authenticators = append(p.authenticators, named)
		if err := p.addOwner(i, named, described); err != nil {
			return err
		}
	}
	p.sourcesBinding = append([]byte("authenticators\x00"), binding.Sum(nil)...)
	authorizers, err := loadGuests[Authorizer](ctx, pc, "AuthorizersRaw", len(pc.AuthorizersRaw))
	for _, m := range authorizers {
		p.authorizers = append(p.authorizers, namedAuthorizer{m, moduleName(m)})
	}
	return err
}

// addOwner registers the i-th authenticator as the owner of its
// credentials if it is a CredentialOwner, bound to its configuration.
func (p *Policy) addOwner(i int, a namedAuthenticator, described []byte) error {
	owner, ok := a.Authenticator.(CredentialOwner)
	if !ok {
		return nil
	}
	for _, o := range p.owners {
		if o.owner.Owner() == owner.Owner() {
			return fmt.Errorf("authenticators[%d]: a second %s authenticator for %q: one per issuer", i, a.name, owner.Owner())
		}
	}
	sum := sha256.Sum256(append([]byte(fmt.Sprintf("owner\x00%T\x00", owner)), described...))
	p.owners = append(p.owners, &ownedSource{a, owner, sum[:]})
	return nil
}

// loadGuests loads the n modules of one of pc's module fields, each of
// which must be a T.
func loadGuests[T any](ctx caddy.Context, pc *PolicyConfig, field string, n int) ([]T, error) {
	if n == 0 {
		return nil, nil
	}
	what := strings.ToLower(strings.TrimSuffix(field, "Raw"))
	mods, err := ctx.LoadModule(pc, field)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	var out []T
	for i, m := range mods.([]any) {
		t, ok := m.(T)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: %T is not a %T", what, i, m, (*T)(nil))
		}
		out = append(out, t)
	}
	return out, nil
}

// moduleName is a module's name within its namespace, for logs.
func moduleName(m any) string {
	if cm, ok := m.(caddy.Module); ok {
		return cm.CaddyModule().ID.Name()
	}
	return fmt.Sprintf("%T", m)
}

// Audience returns the service a token is for: the requested one if it is
// configured, the first configured one if none was requested.
func (p *Policy) Audience(requested string) (string, bool) {
	if requested == "" {
		return p.Services[0], true
	}
	for _, s := range p.Services {
		if s == requested {
			return s, true
		}
	}
	return "", false
}
