package registryauth

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the plugin's Prometheus collectors, served with Caddy's own
// on the admin endpoint's /metrics. Every label takes a value from a small
// fixed set: never a user, repository or path.
var metrics struct {
	once          sync.Once
	tokenRequests *prometheus.CounterVec   // outcome
	logins        *prometheus.CounterVec   // result, source
	loginSeconds  *prometheus.HistogramVec // result, for checks that ran bcrypt
	proxyRequests *prometheus.CounterVec   // decision
	cacheLookups  *prometheus.CounterVec   // result
	reloads       *prometheus.CounterVec   // result
}

// counters are the plugin's counters: where each is kept, its name, its
// labels and what it counts.
var counters = []struct {
	dst    **prometheus.CounterVec
	name   string
	labels []string
	help   string
}{
	{&metrics.tokenRequests, "token_requests_total", []string{"outcome"},
		"Token endpoint requests by outcome: granted, partial, denied, bad_request, unauthorized, throttled, busy."},
	{&metrics.logins, "logins_total", []string{"result", "source"},
		"Password logins by result: cached (credential cache hit), ok, failed, throttled, busy (no hash slot free), unavailable (an authenticator could not answer); and by source: password (the policy's users and authenticators in order), or the module name of the authenticator that owns the credential (oidc)."},
	{&metrics.proxyRequests, "proxy_requests_total", []string{"decision"},
		"Registry requests through registry_auth_proxy by decision: forwarded, challenged, denied, invalid_token, insufficient_scope, bad_request, throttled, busy."},
	{&metrics.cacheLookups, "credential_cache_lookups_total", []string{"result"},
		"Credential cache lookups of password logins by result: hit (no password check needed) or miss."},
	{&metrics.reloads, "policy_reloads_total", []string{"result"},
		"Reloads of changed policy and htpasswd files by result: ok, or failed (the previous policy stays in force)."},
}

// registerMetrics creates the collectors once per process and registers
// them with a config's registry (each config reload has a new one).
func registerMetrics(reg *prometheus.Registry) error {
	const ns, sub = "caddy", "registry_auth"
	metrics.once.Do(func() {
		for _, c := range counters {
			*c.dst = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: c.name, Help: c.help}, c.labels)
		}
		metrics.loginSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "login_check_seconds",
			Help:    "Time of password checks that the credential cache did not answer (bcrypt, with the wait for a hash slot, and any other source asked), by result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"})
	})
	collectors := []prometheus.Collector{metrics.loginSeconds}
	for _, c := range counters {
		collectors = append(collectors, *c.dst)
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return err
		}
	}
	return nil
}

// count adds one to a counter if the metrics exist (unit tests build
// handlers without Caddy, so without them).
func count(v *prometheus.CounterVec, labels ...string) {
	if v != nil {
		v.WithLabelValues(labels...).Inc()
	}
}
