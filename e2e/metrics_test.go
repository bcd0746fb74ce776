package e2e

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape returns the registry_auth samples of Caddy's /metrics, by series.
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://localhost:2999/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddy_registry_auth_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetrics drives a session through the token endpoint and the proxy,
// then checks the counters moved and that a flood of random users, paths
// and repositories adds no label values: the series stay a small fixed set.
func TestMetrics(t *testing.T) {
	proxy := startProxied(t)
	before := scrape(t)

	if err := push(t, proxy, "alice/metrics:v1", "alice", randomImage(t)); err != nil {
		t.Fatal(err)
	}
	get := func(url, user, pw string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get(shared.realm+"?service="+service, "alice", "wrong")
	get("http://"+proxy.host+"/v2/alice/metrics/tags/list", "reader", passwords["reader"])
	get("http://"+proxy.host+"/v2/alice/metrics/tags/list", "reader", passwords["reader"]) // remembered
	get("http://"+proxy.host+"/v2/alice/metrics/tags/list", "", "")
	after := scrape(t)
	for _, series := range []string{
		`caddy_registry_auth_token_requests_total{outcome="granted"}`,
		`caddy_registry_auth_token_requests_total{outcome="unauthorized"}`,
		`caddy_registry_auth_logins_total{result="failed",source="password"}`,
		`caddy_registry_auth_proxy_requests_total{decision="forwarded"}`,
		`caddy_registry_auth_proxy_requests_total{decision="challenged"}`,
		`caddy_registry_auth_credential_cache_lookups_total{result="hit"}`,
		`caddy_registry_auth_credential_cache_lookups_total{result="miss"}`,
	} {
		if after[series] <= before[series] {
			t.Errorf("%s did not grow (%v → %v)", series, before[series], after[series])
		}
	}

	// Earlier tests may have left alice in the credential cache.
	okOrCached := func(m map[string]float64) float64 {
		return m[`caddy_registry_auth_logins_total{result="ok",source="password"}`] + m[`caddy_registry_auth_logins_total{result="cached",source="password"}`]
	}
	if okOrCached(after) <= okOrCached(before) {
		t.Errorf("successful logins (ok + cached) did not grow")
	}

	// 10,000 requests with random users, passwords, repositories and paths.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		user := fmt.Sprintf("user%d", rng.IntN(1<<30))
		repo := fmt.Sprintf("r%d/x%d", rng.IntN(1<<30), i)
		switch i % 3 {
		case 0:
			get(shared.realm+"?service="+service+"&scope=repository:"+repo+":pull", user, "pw")
		case 1:
			get("http://"+proxy.host+"/v2/"+repo+"/manifests/v"+strconv.Itoa(i), "", "")
		default:
			get("http://"+proxy.host+"/v2/"+repo+"/whatever/"+strconv.Itoa(i), "alice", passwords["alice"])
		}
	}
	// Every label value comes from the plugin's fixed sets, whatever the
	// requests were: the series are bounded by construction (at most 86:
	// logins_total has 6 results × 2 sources).
	allowed := map[string]string{
		"outcome":  " granted partial denied bad_request unauthorized throttled busy ",
		"result":   " cached ok failed throttled busy unavailable hit miss ",
		"decision": " forwarded challenged denied invalid_token insufficient_scope bad_request throttled busy unavailable ",
		"source":   " password oidc ",
		"le":       " 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 +Inf ",
		"policy":   " default ", // the policies of the configuration
	}
	labelRE := regexp.MustCompile(`(\w+)="([^"]*)"`)
	final := scrape(t)
	for series := range final {
		for _, m := range labelRE.FindAllStringSubmatch(series, -1) {
			if set, known := allowed[m[1]]; !known || !strings.Contains(set, " "+m[2]+" ") {
				t.Errorf("a series carries a label value outside the fixed sets: %s", series)
			}
		}
	}
	if len(final) > 86 {
		t.Fatalf("%d registry_auth series after 10,000 random requests: labels are not bounded", len(final))
	}
	t.Logf("%d registry_auth series, every label value from the fixed sets", len(final))

	// The key gauges are set when the policy's keys load.
	now := float64(time.Now().Unix())
	expiry := final[`caddy_registry_auth_signing_certificate_expiry_timestamp_seconds{policy="default"}`]
	created := final[`caddy_registry_auth_signing_key_created_timestamp_seconds{policy="default"}`]
	staged, ok := final[`caddy_registry_auth_staged_key_created_timestamp_seconds{policy="default"}`]
	if expiry < now+300*24*3600 || created > now || created < now-24*3600 || !ok || staged != 0 {
		t.Errorf("key gauges: certificate ends %v, key created %v, staged %v (present %v), now %v", expiry, created, staged, ok, now)
	}
}
