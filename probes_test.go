package registryauth

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/regauth/caddy-registry-auth/policy"
)

// A typo'd key in JSON config is an error, never a rule that matches
// everything (Caddy decodes module config strictly).
func TestJSONTypoIsAnError(t *testing.T) {
	for _, raw := range []string{
		`{"policies":{"default":{"servces":["r"]}}}`,
		`{"policies":{"default":{"services":["r"],"rules":[{"effect":"allow","subject":["everyone"],"actions":["pull"],"resources":["**"]}]}}}`,
		`{"policies":{"default":{"services":["r"],"signer":{"keyfile":"/k"}}}}`,
	} {
		var app App
		if err := caddy.StrictUnmarshalJSON([]byte(raw), &app); err == nil {
			t.Errorf("accepted %s", raw)
		}
	}
}

// 50,000 scopes in one request are refused at once, never turned into an
// enormous token.
func TestFiftyThousandScopes(t *testing.T) {
	h := newTestHandler(t)
	q := "service=" + testService + strings.Repeat("&scope=repository:lib/x:pull", 50000)
	start := time.Now()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/auth/token?"+q, nil)
	if err := h.ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	wantError(t, w, http.StatusBadRequest, "BAD_REQUEST")
	t.Logf("answered in %s", time.Since(start))
}

// BenchmarkLoginTiming reports the median time of the three paths a login
// can take: unknown user, wrong password, right password (with the cache
// off, as a first login). They must be alike: one bcrypt compare each.
func BenchmarkLoginTiming(b *testing.B) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.DefaultCost)
	p, _, err := policy.Compile(policy.Config{Users: []policy.User{{Name: "alice", Password: string(hash)}}})
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct{ name, user, password string }{
		{"unknown user", "mallory", "right"},
		{"wrong password", "alice", "wrong"},
		{"right password", "alice", "right"},
	}
	times := make([][]time.Duration, len(cases))
	for i := 0; b.Loop(); i++ {
		c := i % len(cases)
		start := time.Now()
		_, _ = p.Authenticate(cases[c].user, cases[c].password)
		times[c] = append(times[c], time.Since(start))
	}
	for i, c := range cases {
		if len(times[i]) == 0 {
			continue
		}
		slices.Sort(times[i])
		b.ReportMetric(float64(times[i][len(times[i])/2].Microseconds())/1000, "ms-median-"+strings.ReplaceAll(c.name, " ", "-"))
	}
}
