package registryauth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/regauth/caddy-registry-auth/policy"
)

func sha(body string) string { return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(body))) }

// immutableProxy is the test proxy with `immutable_tags ** v*` and a
// registry where alice/x has v1 and latest.
func immutableProxy(t *testing.T) *proxyFixture {
	t.Helper()
	f := newTestProxy(t)
	c, _, err := policy.Compile(policy.Config{
		Users: []policy.User{{Name: "alice", Password: storedHashes["alice-pw"]}, {Name: "admin", Password: storedHashes["admin-pw"]}},
		Rules: []policy.Rule{
			{Effect: "allow", Subjects: []string{"user:alice"}, Actions: []string{"pull", "push"}, Resources: []string{"alice/**"}},
			{Effect: "allow", Subjects: []string{"user:admin"}, Actions: []string{"*"}, Resources: []string{"**", "registry:catalog"}},
		},
		ImmutableTags: []policy.ImmutableTags{{Repositories: "**", Tags: []string{"v*"}, Origin: "Caddyfile:9"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.h.policy.current.Store(c)
	f.up.tags = map[string]string{"alice/x:v1": sha("manifest one"), "alice/x:latest": sha("manifest two")}
	return f
}

func putManifest(t *testing.T, f *proxyFixture, target, body, auth string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPut, target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	r.Header.Set("Authorization", auth)
	return f.serve(t, r)
}

func TestProxyImmutableTags(t *testing.T) {
	f := immutableProxy(t)
	alice := basic("alice", "alice-pw")
	t.Run("the first push of an immutable tag", func(t *testing.T) {
		f.forwarded(t, putManifest(t, f, "/v2/alice/x/manifests/v2", "manifest three", alice))
	})
	t.Run("moving it is refused, admins included", func(t *testing.T) {
		for _, auth := range []string{alice, basic("admin", "admin-pw")} {
			w := putManifest(t, f, "/v2/alice/x/manifests/v1", "another manifest", auth)
			f.refused(t, w, http.StatusForbidden, "DENIED", "")
			if !strings.Contains(w.Body.String(), "tag v1 of alice/x is immutable") || strings.Contains(w.Body.String(), "Caddyfile") {
				t.Fatalf("the message must name the tag and never the policy: %s", w.Body)
			}
		}
	})
	t.Run("the same manifest again is an idempotent push", func(t *testing.T) {
		f.forwarded(t, putManifest(t, f, "/v2/alice/x/manifests/v1", "manifest one", alice))
	})
	t.Run("other tags are free", func(t *testing.T) {
		f.forwarded(t, putManifest(t, f, "/v2/alice/x/manifests/latest", "anything", alice))
	})
	t.Run("deleting the tag, or its manifest by digest, is refused", func(t *testing.T) {
		admin := basic("admin", "admin-pw")
		f.refused(t, f.do(t, http.MethodDelete, "/v2/alice/x/manifests/v1", admin), http.StatusForbidden, "DENIED", "")
		w := f.do(t, http.MethodDelete, "/v2/alice/x/manifests/"+sha("manifest one"), admin)
		f.refused(t, w, http.StatusForbidden, "DENIED", "")
		if !strings.Contains(w.Body.String(), "tagged v1") {
			t.Fatalf("%s", w.Body)
		}
		f.forwarded(t, f.do(t, http.MethodDelete, "/v2/alice/x/manifests/"+sha("manifest two"), admin))
		f.forwarded(t, f.do(t, http.MethodDelete, "/v2/alice/x/manifests/latest", admin))
	})
	t.Run("with a bearer token too", func(t *testing.T) {
		tok := f.sign(t, "alice", scope("alice/x", 3))
		f.refused(t, putManifest(t, f, "/v2/alice/x/manifests/v1", "another manifest", "Bearer "+tok), http.StatusForbidden, "DENIED", "")
	})
}

// When the proxy cannot learn what an immutable tag points at, it never
// guesses: 503, counted as the registry being unavailable (not as busy
// logins). A manifest body the client fails to send is the client's
// fault: 400.
func TestProxyImmutableTagsWhenUnsure(t *testing.T) {
	alice := basic("alice", "alice-pw")
	t.Run("the registry cannot answer", func(t *testing.T) {
		f := immutableProxy(t)
		f.up.failOwn = http.StatusInternalServerError
		decisions := proxyDecisionCounts("unavailable", "busy")
		w := putManifest(t, f, "/v2/alice/x/manifests/v1", "manifest one", alice)
		f.refused(t, w, http.StatusServiceUnavailable, "UNAVAILABLE", "")
		if w.Header().Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		if got := decisions(); got["unavailable"] != 1 || got["busy"] != 0 {
			t.Fatalf("counted %v", got)
		}
	})
	t.Run("the client's body breaks off", func(t *testing.T) {
		f := immutableProxy(t)
		r := httptest.NewRequest(http.MethodPut, "/v2/alice/x/manifests/v1", iotest.ErrReader(errors.New("connection reset by peer")))
		r.Header.Set("Authorization", alice)
		f.refused(t, f.serve(t, r), http.StatusBadRequest, "MANIFEST_INVALID", "")
	})
}
