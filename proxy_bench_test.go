package registryauth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkProxyOverhead is what the proxy adds to a registry request
// before reverse_proxy takes it (the upstream here answers at once): a
// manifest GET with Basic credentials the cache remembers, and one with a
// bearer token. Run: go test -run '^$' -bench ProxyOverhead -benchmem
func BenchmarkProxyOverhead(b *testing.B) {
	t := &testing.T{}
	f := newTestProxy(t)
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

// discard is a ResponseWriter that keeps nothing.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}
