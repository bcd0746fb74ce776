package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	orasremote "oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"
)

// seedRepositories creates the repositories straight in a registry
// without auth: the same tiny image in each, written by 8 workers.
func seedRepositories(t *testing.T, regHost string, repos ...string) {
	t.Helper()
	img := randomImage(t)
	work := make(chan string)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Go(func() {
			for repo := range work {
				dst, err := name.NewTag(regHost+"/"+repo+":v1", name.Insecure)
				if err == nil {
					err = remote.Write(dst, img)
				}
				if err != nil {
					failed.Store(err)
				}
			}
		})
	}
	for _, repo := range repos {
		work <- repo
	}
	close(work)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
}

// Issue 17, the filtered catalog, through Caddy against both registry
// families: five repositories, of which reader may pull two and
// anonymous one; every page size walks exactly those, in order, with
// Links that name nothing hidden; ggcr (crane), regclient (regctl) and
// oras-go list them as reader; admin gets the registry's own answer.
func TestFilteredCatalog(t *testing.T) {
	repos := []string{"alice/one", "alice/two", "carol/x", "public/p", "zeta/hidden"}
	for _, family := range []string{"v3", "v2.8"} {
		t.Run(family, func(t *testing.T) {
			regPort, proxyPort := FreePort(), FreePort()
			starters[family](t, shared, registrySetup{port: regPort, disk: true})
			seedRepositories(t, fmt.Sprintf("localhost:%d", regPort), repos...)
			host := addProxySite(t, proxyPort, regPort)
			// reader may pull alice/** and, as everyone, public/**.
			wantReader := []string{"alice/one", "alice/two", "public/p"}
			for n := 1; n <= 5; n++ {
				names, links := walkLinks(t, host, n, newRawClient(t, host, "reader"))
				if !slices.Equal(names, wantReader) {
					t.Fatalf("n=%d: %v, want %v", n, names, wantReader)
				}
				for _, l := range links {
					if strings.Contains(l, "carol") || strings.Contains(l, "zeta") {
						t.Fatalf("n=%d: a Link names a hidden repository: %s", n, l)
					}
				}
			}
			ctx := context.Background()
			reg, _ := name.NewRegistry(host, name.Insecure)
			crane, err := remote.Catalog(ctx, reg, remote.WithAuth(login("reader")))
			if err != nil || !slices.Equal(crane, wantReader) {
				t.Fatalf("ggcr as reader: %v, %v", crane, err)
			}
			if got := regctlRepos(t, host, "reader"); !slices.Equal(got, wantReader) {
				t.Fatalf("regclient as reader: %v", got)
			}
			if got := orasRepos(t, host, "reader"); !slices.Equal(got, wantReader) {
				t.Fatalf("oras as reader: %v", got)
			}
			anon, err := remote.Catalog(ctx, reg, remote.WithAuth(authn.Anonymous))
			if err != nil || !slices.Equal(anon, []string{"public/p"}) {
				t.Fatalf("anonymous: %v, %v", anon, err)
			}
			if all, err := remote.Catalog(ctx, reg, remote.WithAuth(login("admin"))); err != nil || !slices.Equal(all, repos) {
				t.Fatalf("admin: %v, %v", all, err)
			}
			// No credentials at all: the challenge, as before.
			resp, err := http.Get("http://" + host + "/v2/_catalog")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="registry:catalog:*"`) {
				t.Fatalf("no credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// walkLinks follows Link headers from /v2/_catalog?n=n.
func walkLinks(t *testing.T, host string, n int, c *rawClient) (names, links []string) {
	t.Helper()
	target := fmt.Sprintf("/v2/_catalog?n=%d", n)
	for target != "" {
		resp := c.do(http.MethodGet, target, nil, nil)
		body := expect(t, resp, http.StatusOK, "catalog "+target)
		var page struct{ Repositories []string }
		if err := json.Unmarshal(body, &page); err != nil || len(page.Repositories) > n {
			t.Fatalf("%s: %s (%v)", target, body, err)
		}
		names = append(names, page.Repositories...)
		target = ""
		if link := resp.Header.Get("Link"); link != "" {
			links = append(links, link)
			m := regexp.MustCompile(`^<(/v2/_catalog\?[^>]+)>; rel="next"$`).FindStringSubmatch(link)
			if m == nil {
				t.Fatalf("Link %q is not a next page on this host", link)
			}
			target = m[1]
		}
	}
	return names, links
}

// regctlRepos lists a registry's repositories with regclient, as
// `regctl repo ls` does.
func regctlRepos(t *testing.T, host, user string) []string {
	t.Helper()
	h := config.HostNewName(host)
	h.TLS = config.TLSDisabled
	h.User, h.Pass = user, passwords[user]
	rc := regclient.New(regclient.WithConfigHost(*h))
	rl, err := rc.RepoList(context.Background(), host)
	if err != nil {
		t.Fatalf("regclient: %v", err)
	}
	repos, err := rl.GetRepos()
	if err != nil {
		t.Fatal(err)
	}
	return repos
}

// orasRepos lists a registry's repositories with oras-go, as
// `oras repo ls` does.
func orasRepos(t *testing.T, host, user string) []string {
	t.Helper()
	reg, err := orasremote.NewRegistry(host)
	if err != nil {
		t.Fatal(err)
	}
	reg.PlainHTTP = true
	reg.Client = &orasauth.Client{Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: user, Password: passwords[user]})}
	var repos []string
	err = reg.Repositories(context.Background(), "", func(page []string) error {
		repos = append(repos, page...)
		return nil
	})
	if err != nil {
		t.Fatalf("oras: %v", err)
	}
	return repos
}

// A registry of 3,000 repositories of which reader may pull three: the
// walk finds exactly those, and no request makes the proxy read more than
// its bound of registry pages (10 of 1,000 names).
func TestFilteredCatalogBound(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var catalogReads atomic.Int64
	count := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/_catalog" {
				catalogReads.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	stop, err := StartV3With(l, shared.registryConfig(l.Addr().String(), InMemoryStorage, ""), count)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	regPort := l.Addr().(*net.TCPAddr).Port
	repos := []string{"alice/a", "alice/b", "alice/c"}
	for i := range 2997 {
		repos = append(repos, fmt.Sprintf("hidden/r%04d", i))
	}
	seedRepositories(t, fmt.Sprintf("localhost:%d", regPort), repos...)
	proxyPort := FreePort()
	host := addProxySite(t, proxyPort, regPort)
	c := newRawClient(t, host, "reader")
	var names []string
	worst := int64(0)
	target := "/v2/_catalog?n=2"
	for requests := 0; target != ""; requests++ {
		before := catalogReads.Load()
		resp := c.do(http.MethodGet, target, nil, nil)
		var page struct{ Repositories []string }
		if err := json.Unmarshal(expect(t, resp, http.StatusOK, target), &page); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, catalogReads.Load()-before)
		names = append(names, page.Repositories...)
		target = ""
		if m := regexp.MustCompile(`^<(/v2/_catalog\?[^>]+)>`).FindStringSubmatch(resp.Header.Get("Link")); m != nil {
			target = m[1]
		}
	}
	if !slices.Equal(names, []string{"alice/a", "alice/b", "alice/c"}) {
		t.Fatalf("%v", names)
	}
	if worst > 10 {
		t.Fatalf("one request read %d registry catalog pages, bound 10", worst)
	}
	t.Logf("3,000 repositories: reader's walk read at most %d registry pages per request", worst)
}
