package registryauth

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// BenchmarkProxyOverhead is what the proxy adds to a registry request
// before reverse_proxy takes it: a manifest GET with Basic credentials
// the cache remembers, and one with a bearer token. The upstream answers
// at once and reads nothing, so only the proxy's own work is measured.
// Run: go test -run '^$' -bench ProxyOverhead -benchmem
func BenchmarkProxyOverhead(b *testing.B) {
	t := &testing.T{}
	f := newTestProxy(t)
	f.h.proxy = answerAtOnce{}
	bearer := f.sign(t, "alice", scope("alice/x", 1))
	for _, c := range []struct{ name, auth string }{
		{"basic", basic("alice", "alice-pw")},
		{"bearer", "Bearer " + bearer},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/v2/alice/x/manifests/v1", nil)
			r.Header.Set("Authorization", c.auth)
			w := httptest.NewRecorder()
			_ = f.h.ServeHTTP(w, r.Clone(r.Context()), nil) // the first login fills the cache
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				req := r.Clone(r.Context())
				if err := f.h.ServeHTTP(discard{}, req, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// answerAtOnce stands for a registry that answers 200 without reading the
// request.
type answerAtOnce struct{}

func (answerAtOnce) ServeHTTP(w http.ResponseWriter, _ *http.Request, _ caddyhttp.Handler) error {
	w.WriteHeader(http.StatusOK)
	return nil
}

// discard is a ResponseWriter that keeps nothing.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}
