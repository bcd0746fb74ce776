// Package registryauth makes Caddy the front door of a private container
// registry. The registry_auth app holds named policies (users, groups,
// rules, and the key that signs tokens); the registry_auth_token handler is
// the token endpoint of the distribution token-auth protocol, and
// registry_auth_proxy an authenticating reverse proxy in front of a
// registry. ARCHITECTURE.md says where each decision is made.
package registryauth

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/policy"
)

func init() {
	caddy.RegisterModule(App{})
}

// AppName is the app's module ID and its key under "apps" in JSON.
const AppName = "registry_auth"

// DefaultPolicy is the name of the policy a handler uses when it names none,
// and of the policy the Caddyfile global option defines without a name.
const DefaultPolicy = "default"

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

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: AppName, New: func() caddy.Module { return new(App) }}
}

// Provision compiles every policy and loads (or generates) its key.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	// The key gauges are set while policies load.
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
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
		p, err := a.Policies[name].provision(ctx, name, a)
		if err != nil {
			return fmt.Errorf("policy %q: %v", name, err)
		}
		a.policies[name] = p
	}
	return nil
}

// credentialCaches keeps each policy's credential cache across config
// reloads: the new config takes it before the old one lets go.
var credentialCaches = caddy.NewUsagePool()

// pooledCache lets a CredentialCache live in a caddy.UsagePool.
type pooledCache struct{ *policy.CredentialCache }

func (pooledCache) Destruct() error { return nil }

// credentialCacheSize bounds each policy's credential cache.
const credentialCacheSize = 10000

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

// Start writes the public certificate bundles and key sets that policies
// are configured to export, for registries to read, and starts watching
// policy files and the keys in storage.
func (a *App) Start() error {
	for _, p := range a.policies {
		if err := p.keys.start(); err != nil {
			return fmt.Errorf("policy %q: %v", p.Name, err)
		}
	}
	a.stop, a.watchers = make(chan struct{}), new(sync.WaitGroup)
	for _, p := range a.policies {
		if p.reloadEvery > 0 {
			a.watchers.Go(func() { p.watch(a.stop, p.reloadEvery, p.loadedDigest) })
		}
		a.watchers.Go(func() { p.keys.run(a.stop) })
	}
	return nil
}

// Stop ends the file and key watchers and waits for them, so that none
// changes a policy of a config that is no longer running.
func (a *App) Stop() error {
	if a.stop != nil {
		close(a.stop)
		a.stop = nil
		a.watchers.Wait()
	}
	return nil
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

// validPolicyName keeps a policy name to what can safely name a storage
// key: letters, digits, '-', '_' and '.', not starting with '.'.
func validPolicyName(name string) bool {
	if name == "" || len(name) > 128 || name[0] == '.' {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
