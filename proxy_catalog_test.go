package registryauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/token"
)

// walkCatalog follows the catalog's Link headers from /v2/_catalog?n=n
// as a client does, and returns every name, the pages, and the Links.
func walkCatalog(t *testing.T, f *proxyFixture, n int, auth ...string) (names []string, pages int, links []string) {
	t.Helper()
	target := fmt.Sprintf("/v2/_catalog?n=%d", n)
	for target != "" {
		w := f.do(t, http.MethodGet, target, auth...)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", target, w.Code, w.Body)
		}
		var body struct{ Repositories []string }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if len(body.Repositories) > n {
			t.Fatalf("a page of %d names, n=%d", len(body.Repositories), n)
		}
		names = append(names, body.Repositories...)
		pages++
		target = ""
		if link := w.Header().Get("Link"); link != "" {
			links = append(links, link)
			m := regexp.MustCompile(`^<(/v2/_catalog\?[^>]+)>; rel="next"$`).FindStringSubmatch(link)
			if m == nil {
				t.Fatalf("Link %q", link)
			}
			target = m[1]
		}
	}
	return names, pages, links
}

// The catalog of a caller who may not list it: exactly the repositories it
// may pull, in order, every name once, whatever the page size; Links
// never name a repository the caller cannot see.
func TestProxyFilteredCatalog(t *testing.T) {
	f := newTestProxy(t)
	f.up.catalog = []string{"admin/secret", "alice/a", "alice/b", "lib/x", "other/hidden", "public/p", "zzz/hidden"}
	want := "alice/a alice/b lib/x" // public/** is for anonymous only in this policy
	for n := 1; n <= 5; n++ {
		names, _, links := walkCatalog(t, f, n, basic("alice", "alice-pw"))
		if got := strings.Join(names, " "); got != want {
			t.Fatalf("n=%d: %q, want %q", n, got, want)
		}
		for _, l := range links {
			if strings.Contains(l, "hidden") || strings.Contains(l, "secret") {
				t.Fatalf("n=%d: a Link names a hidden repository: %s", n, l)
			}
		}
	}
	t.Run("a bearer token without the catalog scope", func(t *testing.T) {
		tok := f.sign(t, "alice")
		names, _, _ := walkCatalog(t, f, 2, "Bearer "+tok)
		if got := strings.Join(names, " "); got != want {
			t.Fatalf("%q", got)
		}
	})
	t.Run("an anonymous token lists what anonymous may pull", func(t *testing.T) {
		names, _, _ := walkCatalog(t, f, 10, "Bearer "+f.sign(t, ""))
		if got := strings.Join(names, " "); got != "public/p" {
			t.Fatalf("%q", got)
		}
	})
	t.Run("no credentials still get the challenge", func(t *testing.T) {
		f.refused(t, f.do(t, http.MethodGet, "/v2/_catalog"), http.StatusUnauthorized, "UNAUTHORIZED", challengeFor("registry:catalog:*", ""))
	})
	t.Run("the groups a token carries count", func(t *testing.T) {
		f.h.policy.current.Store(compileWith(t, `{"effect":"allow","subjects":["group:ldap-devs"],"actions":["pull"],"resources":["other/**"]}`))
		c := token.NewClaims("test-issuer", "dir-user", testService, 300e9, nowTime(), nil)
		c.Groups = []string{"ldap-devs"}
		raw, err := f.h.policy.Signer.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		names, _, _ := walkCatalog(t, f, 10, "Bearer "+raw)
		if got := strings.Join(names, " "); got != "other/hidden" {
			t.Fatalf("%q", got)
		}
	})
	t.Run("a name the client chose as last", func(t *testing.T) {
		w := f.do(t, http.MethodGet, "/v2/_catalog?n=10&last=alice/b", basic("admin", "admin-pw"))
		if w.Code != http.StatusOK || f.up.calls != 1 {
			t.Fatalf("admin's catalog is the registry's own: %d, forwarded %d", w.Code, f.up.calls)
		}
		f.h.policy.current.Store(newTestHandler(t).policy.Current())
		w = f.do(t, http.MethodGet, "/v2/_catalog?n=10&last=alice/a", basic("alice", "alice-pw"))
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `["alice/b","lib/x"]`) {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	})
	t.Run("a forged cursor is refused", func(t *testing.T) {
		w := f.do(t, http.MethodGet, "/v2/_catalog?last="+url.QueryEscape(cursorPrefix+"AAAA"), basic("alice", "alice-pw"))
		if w.Code != http.StatusBadRequest {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	})
}

// A registry of 25,000 repositories of which alice sees 3: no request
// reads more than maxUpstreamPages pages, pages may be empty, and the
// walk still finds the three, in order, once.
func TestProxyCatalogBound(t *testing.T) {
	f := newTestProxy(t)
	for i := range 25000 {
		f.up.catalog = append(f.up.catalog, fmt.Sprintf("hidden/r%05d", i))
	}
	f.up.catalog = append(f.up.catalog, "lib/one", "lib/three", "lib/two")
	var perRequest []int
	names, pages, _ := walkCatalogCounting(t, f, 100, &perRequest, basic("alice", "alice-pw"))
	if got := strings.Join(names, " "); got != "lib/one lib/three lib/two" {
		t.Fatalf("%q", got)
	}
	for i, n := range perRequest {
		if n > maxUpstreamPages {
			t.Fatalf("request %d read %d registry pages, bound %d", i+1, n, maxUpstreamPages)
		}
	}
	t.Logf("%d requests, registry pages per request %v", pages, perRequest)
}

func walkCatalogCounting(t *testing.T, f *proxyFixture, n int, perRequest *[]int, auth ...string) ([]string, int, []string) {
	t.Helper()
	var names []string
	pages := 0
	target := fmt.Sprintf("/v2/_catalog?n=%d", n)
	for target != "" {
		w := f.do(t, http.MethodGet, target, auth...)
		*perRequest = append(*perRequest, f.up.internal)
		var body struct{ Repositories []string }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusOK {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		names = append(names, body.Repositories...)
		pages++
		target = ""
		if m := regexp.MustCompile(`^<(/v2/_catalog\?[^>]+)>`).FindStringSubmatch(w.Header().Get("Link")); m != nil {
			target = m[1]
		}
	}
	return names, pages, nil
}
