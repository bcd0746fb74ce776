package registryauth

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the plugin's Prometheus collectors, served with Caddy's own
// on the admin endpoint's /metrics. Every label takes a value from a small
// fixed set, or names a policy or an owner module of the config: never a
// user, repository or path.
var metrics struct {
	once          sync.Once
	tokenRequests *prometheus.CounterVec   // outcome
	logins        *prometheus.CounterVec   // result, source
	loginSeconds  *prometheus.HistogramVec // result, for checks that ran bcrypt
	proxyRequests *prometheus.CounterVec   // decision
	cacheLookups  *prometheus.CounterVec   // result
	reloads       *prometheus.CounterVec   // result

	signingCertExpiry *prometheus.GaugeVec // policy
	signingKeyCreated *prometheus.GaugeVec // policy
	stagedKeyCreated  *prometheus.GaugeVec // policy
}

// counters are the plugin's counters: where each is kept, its name, its
// labels, each label's values and what it counts.
var counters = []struct {
	dst    **prometheus.CounterVec
	name   string
	labels []string
	values [][]string // per label
	help   string
}{
	{&metrics.tokenRequests, "token_requests_total", []string{"outcome"},
		[][]string{{"granted", "partial", "denied", "bad_request", "unauthorized", "throttled", "busy"}},
		"Token endpoint requests by outcome: granted, partial, denied, bad_request, unauthorized, throttled, busy."},
	{&metrics.logins, "logins_total", []string{"result", "source"},
		[][]string{{"cached", "ok", "failed", "throttled", "busy", "unavailable"}, {sourcePassword, "oidc"}},
		"Password logins by result: cached (credential cache hit), ok, failed, throttled, busy (no hash slot free), unavailable (an authenticator could not answer); and by source: password (the policy's users and authenticators in order), or the module name of the authenticator that owns the credential (oidc)."},
	{&metrics.proxyRequests, "proxy_requests_total", []string{"decision"},
		[][]string{{"forwarded", "challenged", "denied", "invalid_token", "insufficient_scope", "bad_request", "throttled", "busy", "unavailable"}},
		"Registry requests through registry_auth_proxy by decision: forwarded, challenged, denied, invalid_token, insufficient_scope, bad_request, throttled, busy, unavailable (the registry could not be reached)."},
	{&metrics.cacheLookups, "credential_cache_lookups_total", []string{"result"},
		[][]string{{"hit", "miss"}},
		"Credential cache lookups of password logins by result: hit (no password check needed) or miss."},
	{&metrics.reloads, "policy_reloads_total", []string{"result"},
		[][]string{{"ok", "failed"}},
		"Reloads of changed policy and htpasswd files by result: ok, or failed (the previous policy stays in force)."},
}

// children are the counters of every label value, made once: counting on
// every request then costs a map lookup and an atomic add, not the
// hashing of the label that CounterVec does.
var children = map[*prometheus.CounterVec]map[labelValues]prometheus.Counter{}

// labelValues are a counter's label values (it has one or two), a map key
// made without allocating.
type labelValues [2]string

func labelsOf(values []string) labelValues {
	var l labelValues
	copy(l[:], values)
	return l
}

// gauges are the plugin's gauges of the signing keys, each labelled with
// the policy's name and set whenever a policy's keys load or change.
var gauges = []struct {
	dst        **prometheus.GaugeVec
	name, help string
}{
	{&metrics.signingCertExpiry, "signing_certificate_expiry_timestamp_seconds",
		"End of the signing key's certificate, in Unix time, by policy: registries refuse the tokens of an expired certificate."},
	{&metrics.signingKeyCreated, "signing_key_created_timestamp_seconds",
		"Creation of the signing key (for key files: the start of its certificate), in Unix time, by policy."},
	{&metrics.stagedKeyCreated, "staged_key_created_timestamp_seconds",
		"Creation of the staged next key, in Unix time, by policy; 0 when no key is staged. A key staged long ago waits for the registries' restart and its promotion."},
}

// createMetrics makes the collectors, once per process.
func createMetrics() {
	const ns, sub = "caddy", "registry_auth"
	metrics.once.Do(func() {
		for _, c := range counters {
			*c.dst = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: c.name, Help: c.help}, c.labels)
			children[*c.dst] = map[labelValues]prometheus.Counter{}
			for _, vals := range combinations(c.values) {
				children[*c.dst][labelsOf(vals)] = (*c.dst).WithLabelValues(vals...)
			}
		}
		for _, g := range gauges {
			*g.dst = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: g.name, Help: g.help}, []string{"policy"})
		}
		metrics.loginSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "login_check_seconds",
			Help:    "Time of password checks that the credential cache did not answer (bcrypt, with the wait for a hash slot, and any other source asked), by result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"})
	})
}

// registerMetrics creates the collectors once per process and registers
// them with a config's registry (each config reload has a new one).
func registerMetrics(reg *prometheus.Registry) error {
	createMetrics()
	collectors := []prometheus.Collector{metrics.loginSeconds}
	for _, c := range counters {
		collectors = append(collectors, *c.dst)
	}
	for _, g := range gauges {
		collectors = append(collectors, *g.dst)
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return err
		}
	}
	return nil
}

// count adds one to a counter if the metrics exist (unit tests build
// handlers without Caddy, so without them). Label values outside the
// counter's fixed sets are a bug; they are still counted.
func count(v *prometheus.CounterVec, labels ...string) {
	if v == nil {
		return
	}
	if c, ok := children[v][labelsOf(labels)]; ok {
		c.Inc()
		return
	}
	v.WithLabelValues(labels...).Inc()
}

// combinations is every choice of one value per label, in order.
func combinations(values [][]string) [][]string {
	out := [][]string{nil}
	for _, vs := range values {
		var next [][]string
		for _, prefix := range out {
			for _, v := range vs {
				next = append(next, append(append([]string(nil), prefix...), v))
			}
		}
		out = next
	}
	return out
}

// setKeyGauges sets the gauges of a policy's keys from its keyring.
func setKeyGauges(policyName string, d *keyringDoc) {
	createMetrics()
	signing := d.find(keySigning)
	metrics.signingCertExpiry.WithLabelValues(policyName).Set(float64(signing.NotAfter.Unix()))
	metrics.signingKeyCreated.WithLabelValues(policyName).Set(float64(signing.Created.Unix()))
	staged := 0.0
	if s := d.find(keyStaged); s != nil {
		staged = float64(s.Created.Unix())
	}
	metrics.stagedKeyCreated.WithLabelValues(policyName).Set(staged)
}

// deleteKeyGauges removes the gauges of a policy that is no longer
// configured.
func deleteKeyGauges(policyName string) {
	createMetrics()
	for _, g := range gauges {
		(*g.dst).DeleteLabelValues(policyName)
	}
}
