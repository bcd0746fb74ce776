// Package registryauth makes Caddy the front door of a private container
// registry. The registry_auth app holds named policies (users, groups,
// rules, and the key that signs tokens); the registry_auth_token handler is
// the token endpoint of the distribution token-auth protocol.
package registryauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

func init() {
	caddy.RegisterModule(App{})
	caddy.RegisterModule(TokenHandler{})
}

// AppName is the app's module ID and its key under "apps" in JSON.
const AppName = "registry_auth"

// DefaultPolicy is the name of the policy a handler uses when it names none,
// and of the policy the Caddyfile global option defines without a name.
const DefaultPolicy = "default"

// Defaults and limits of a policy.
const (
	DefaultIssuer        = "caddy-registry-auth"
	DefaultTokenLifetime = 5 * time.Minute
	// Registries and clients need a token to live at least a minute;
	// tokens are bearer credentials, so they never live long.
	MinTokenLifetime = time.Minute
	MaxTokenLifetime = time.Hour

	DefaultCredentialCacheTTL = 5 * time.Minute
	// credentialCacheSize bounds each policy's credential cache.
	credentialCacheSize = 10000
)

// App is the registry_auth app: the policies that token and proxy handlers
// share, stated once per configuration.
type App struct {
	// Policies by name. A handler that names no policy uses "default".
	Policies map[string]*PolicyConfig `json:"policies,omitempty"`

	policies map[string]*Policy
	caches   []string // keys this app holds in credentialCaches
	logger   *zap.Logger
	stop     chan struct{} // closed by Stop: file watchers end
	watchers *sync.WaitGroup
}

// credentialCaches keeps each policy's credential cache across config
// reloads: the new config takes it before the old one lets go.
var credentialCaches = caddy.NewUsagePool()

// pooledCache lets a CredentialCache live in a caddy.UsagePool.
type pooledCache struct{ *policy.CredentialCache }

func (pooledCache) Destruct() error { return nil }

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

// ThrottleConfig limits failed logins per client IP and per user name.
// From Failures failed logins on, each further one locks the key for a
// time that doubles from 1 s up to Window; a key with no failure for a
// Window is forgotten. Remembered (cached) logins are never throttled.
type ThrottleConfig struct {
	// Failures allowed before locking starts. Default 10 (a wrong password
	// from containerd counts twice: POST, then GET). Negative: off.
	Failures int `json:"failures,omitempty"`
	// Window is how long failures are remembered and the longest lock.
	// Default 15m.
	Window caddy.Duration `json:"window,omitempty"`
}

// Throttle defaults.
const (
	DefaultThrottleFailures = 10
	DefaultThrottleWindow   = 15 * time.Minute
	// throttleKeys bounds each of the IP and user tables.
	throttleKeys = 100000
)

// Policy is a provisioned policy, what handlers work with.
type Policy struct {
	Name     string
	Issuer   string
	Services []string
	Lifetime time.Duration
	Signer   *token.Signer
	// rules is the compiled users, groups and rules, replaced whole when
	// policy files change: a request works with the one it loaded.
	rules          atomic.Pointer[policy.Policy]
	source         *policySource
	reloadEvery    time.Duration // 0: files are not watched
	loadedDigest   [sha256.Size]byte
	cache          *policy.CredentialCache // nil when off
	authenticators []namedAuthenticator
	authorizers    []namedAuthorizer
	logger         *zap.Logger
	export         SignerConfig
	throttle       *throttle // nil when off
	// refreshLifetime is 0 when refresh tokens are off.
	refreshLifetime time.Duration
	// storage holds the policy's revocations.
	storage certmagic.Storage
}

type namedAuthenticator struct {
	Authenticator
	name string
	// source tells the credential cache which authenticator, as configured,
	// said yes: a changed configuration never hits an old entry.
	source string
}

type namedAuthorizer struct {
	Authorizer
	name string
}

// Rules returns the policy's compiled users, groups and rules as they are now.
func (p *Policy) Rules() *policy.Policy { return p.rules.Load() }

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: AppName, New: func() caddy.Module { return new(App) }}
}

// Provision compiles every policy and loads (or generates) its key.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.policies = make(map[string]*Policy, len(a.Policies))
	names := make([]string, 0, len(a.Policies))
	for name := range a.Policies {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !validPolicyName(name) {
			return fmt.Errorf("policy %q: a name has letters, digits, '-', '_' and '.' only", name)
		}
		p, err := a.Policies[name].provision(ctx, name, a.logger, a.holdCache)
		if err != nil {
			return fmt.Errorf("policy %q: %v", name, err)
		}
		a.policies[name] = p
	}
	return nil
}

// holdCache returns the shared credential cache for a policy name and TTL.
func (a *App) holdCache(name string, ttl time.Duration) *policy.CredentialCache {
	key := name + "/" + ttl.String()
	v, _, _ := credentialCaches.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledCache{policy.NewCredentialCache(ttl, credentialCacheSize)}, nil
	})
	a.caches = append(a.caches, key)
	return v.(pooledCache).CredentialCache
}

// Cleanup lets go of the credential caches.
func (a *App) Cleanup() error {
	for _, key := range a.caches {
		_, _ = credentialCaches.Delete(key)
	}
	return nil
}

func (pc *PolicyConfig) provision(ctx caddy.Context, name string, logger *zap.Logger, holdCache func(string, time.Duration) *policy.CredentialCache) (*Policy, error) {
	if pc == nil {
		return nil, fmt.Errorf("empty policy")
	}
	p := &Policy{Name: name, Issuer: pc.Issuer, Services: pc.Services, Lifetime: time.Duration(pc.TokenLifetime)}
	if p.Issuer == "" {
		p.Issuer = DefaultIssuer
	}
	if p.Lifetime == 0 {
		p.Lifetime = DefaultTokenLifetime
	}
	if p.Lifetime < MinTokenLifetime || p.Lifetime > MaxTokenLifetime {
		return nil, fmt.Errorf("token_lifetime: %s is outside %s to %s", p.Lifetime, MinTokenLifetime, MaxTokenLifetime)
	}
	if len(p.Services) == 0 {
		return nil, fmt.Errorf("services: name at least one (the registry's auth.token.service)")
	}
	for i, s := range p.Services {
		if s == "" {
			return nil, fmt.Errorf("services[%d]: empty", i)
		}
	}

	// Secrets come from the environment or files, never the config text.
	repl := caddy.NewReplacer()
	cfg := pc.Config
	cfg.Users = append([]policy.User(nil), pc.Users...)
	for i := range cfg.Users {
		cfg.Users[i].Password = repl.ReplaceKnown(cfg.Users[i].Password, "")
	}
	cfg.HtpasswdFiles = make([]string, len(pc.HtpasswdFiles))
	for i, f := range pc.HtpasswdFiles {
		cfg.HtpasswdFiles[i] = repl.ReplaceKnown(f, "")
	}
	var opts []policy.Option
	switch ttl := time.Duration(pc.CredentialCacheTTL); {
	case ttl == 0:
		p.cache = holdCache(name, DefaultCredentialCacheTTL)
	case ttl > 0:
		p.cache = holdCache(name, ttl)
	}
	if p.cache != nil {
		opts = append(opts, policy.WithCredentialCache(p.cache))
	}
	files := make([]PolicyFile, len(pc.Files))
	for i, f := range pc.Files {
		f.Path = repl.ReplaceKnown(f.Path, "")
		if f.Path == "" {
			return nil, fmt.Errorf("files[%d]: path: empty", i)
		}
		switch f.Format {
		case "", FormatNative, FormatDockerAuth, FormatAlauda:
		default:
			return nil, fmt.Errorf("files[%d]: format: unknown %q (want native, docker_auth or alauda)", i, f.Format)
		}
		files[i] = f
	}
	p.source = &policySource{base: cfg, files: files, opts: opts}
	rules, digest, warnings, err := p.source.compile()
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		logger.Warn(w, zap.String("policy", name))
	}
	p.rules.Store(rules)
	p.loadedDigest = digest
	p.logger = logger
	if p.source.watched() && pc.ReloadInterval >= 0 {
		p.reloadEvery = time.Duration(pc.ReloadInterval)
		if p.reloadEvery == 0 {
			p.reloadEvery = DefaultReloadInterval
		}
		if p.reloadEvery < MinReloadInterval {
			return nil, fmt.Errorf("reload_interval: %s is less than %s", p.reloadEvery, MinReloadInterval)
		}
	}
	if err := p.loadBackends(ctx, pc); err != nil {
		return nil, err
	}

	tc := ThrottleConfig{}
	if pc.Throttle != nil {
		tc = *pc.Throttle
	}
	if tc.Failures == 0 {
		tc.Failures = DefaultThrottleFailures
	}
	if tc.Window == 0 {
		tc.Window = caddy.Duration(DefaultThrottleWindow)
	}
	if tc.Window < 0 {
		return nil, fmt.Errorf("throttle.window: negative")
	}
	if tc.Failures > 0 {
		p.throttle = newThrottle(tc.Failures, time.Duration(tc.Window), throttleKeys)
	}

	p.storage = ctx.Storage()
	p.refreshLifetime = DefaultRefreshLifetime
	if rc := pc.RefreshTokens; rc != nil {
		switch {
		case rc.Disabled:
			p.refreshLifetime = 0
		case rc.Lifetime < 0:
			return nil, fmt.Errorf("refresh_tokens.lifetime: negative")
		case rc.Lifetime > 0:
			p.refreshLifetime = time.Duration(rc.Lifetime)
		}
	}

	var sc SignerConfig
	if pc.Signer != nil {
		sc = *pc.Signer
	}
	sc.KeyFile, sc.CertFile = repl.ReplaceKnown(sc.KeyFile, ""), repl.ReplaceKnown(sc.CertFile, "")
	if p.Signer, err = sc.load(ctx, name); err != nil {
		return nil, fmt.Errorf("signer: %v", err)
	}
	p.export = sc
	return p, nil
}

// Start writes the public certificate bundles and key sets that policies
// are configured to export, for registries to read, and starts watching
// policy files.
func (a *App) Start() error {
	for _, p := range a.policies {
		if err := p.export.export(p.Signer); err != nil {
			return fmt.Errorf("policy %q: %v", p.Name, err)
		}
	}
	a.stop, a.watchers = make(chan struct{}), new(sync.WaitGroup)
	for _, p := range a.policies {
		if p.reloadEvery > 0 {
			a.watchers.Go(func() { p.watch(a.stop, p.reloadEvery, p.loadedDigest) })
		}
	}
	return nil
}

// Stop ends the file watchers and waits for them, so that none reloads a
// policy of a config that is no longer running.
func (a *App) Stop() error {
	if a.stop != nil {
		close(a.stop)
		a.stop = nil
		a.watchers.Wait()
	}
	return nil
}

// loadBackends loads the policy's authenticator and authorizer modules.
func (p *Policy) loadBackends(ctx caddy.Context, pc *PolicyConfig) error {
	if pc.AuthenticatorsRaw != nil {
		mods, err := ctx.LoadModule(pc, "AuthenticatorsRaw")
		if err != nil {
			return fmt.Errorf("authenticators: %v", err)
		}
		for i, m := range mods.([]any) {
			a, ok := m.(Authenticator)
			if !ok {
				return fmt.Errorf("authenticators[%d]: %T is not an Authenticator", i, m)
			}
			// The module as provisioned, placeholders expanded: any change
			// to what it does makes its cached successes miss.
			described, _ := json.Marshal(m)
			sum := sha256.Sum256(append([]byte(fmt.Sprintf("%d:%T:", i, m)), described...))
			p.authenticators = append(p.authenticators, namedAuthenticator{a, moduleName(m), hex.EncodeToString(sum[:16])})
		}
	}
	if pc.AuthorizersRaw != nil {
		mods, err := ctx.LoadModule(pc, "AuthorizersRaw")
		if err != nil {
			return fmt.Errorf("authorizers: %v", err)
		}
		for i, m := range mods.([]any) {
			a, ok := m.(Authorizer)
			if !ok {
				return fmt.Errorf("authorizers[%d]: %T is not an Authorizer", i, m)
			}
			p.authorizers = append(p.authorizers, namedAuthorizer{a, moduleName(m)})
		}
	}
	return nil
}

// moduleName is a module's name within its namespace, for logs.
func moduleName(m any) string {
	if cm, ok := m.(caddy.Module); ok {
		return cm.CaddyModule().ID.Name()
	}
	return fmt.Sprintf("%T", m)
}

// Policy returns the provisioned policy called name.
func (a *App) Policy(name string) (*Policy, error) {
	if name == "" {
		name = DefaultPolicy
	}
	p, ok := a.policies[name]
	if !ok {
		return nil, fmt.Errorf("no registry_auth policy named %q is configured", name)
	}
	return p, nil
}

// policyFromContext finds the named policy of the registry_auth app, for
// handlers. It fails clearly when the app is not configured at all.
func policyFromContext(ctx caddy.Context, name string) (*Policy, error) {
	appIface, err := ctx.AppIfConfigured(AppName)
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, fmt.Errorf("the %s app is not configured: add a registry_auth global option (or apps.%s in JSON)", AppName, AppName)
	}
	if err != nil {
		return nil, err
	}
	return appIface.(*App).Policy(name)
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

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
