package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// dockerLogin asks for a refresh token exactly as `docker login` does.
func dockerLogin(t *testing.T, realm, user, password string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, realm+"?account="+user+"&client_id=docker&offline_token=true&service="+service, nil)
	req.SetBasicAuth(user, password)
	body := expect(t, do(t, req), http.StatusOK, "docker-style login")
	var r struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.RefreshToken == "" {
		t.Fatalf("no refresh token in %s", body)
	}
	return r.RefreshToken
}

func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// refreshGrant is Docker's POST with a stored identity token.
func refreshGrant(t *testing.T, realm, rt, svc, scope string) *http.Response {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {"docker"}, "service": {svc}, "refresh_token": {rt}, "scope": {scope}}
	resp, err := http.Post(realm, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// withCarol reloads the suite's config with carol's line replaced.
func withCarol(t *testing.T, line string) {
	t.Helper()
	var users []string
	for _, l := range strings.Split(strings.TrimRight(shared.users, "\n"), "\n") {
		if !strings.Contains(l, "user carol ") {
			users = append(users, l)
		}
	}
	if line != "" {
		users = append(users, "\t\t"+line)
	}
	cf := strings.Replace(shared.caddyfile(""), shared.users, strings.Join(users, "\n")+"\n", 1)
	if line == "" {
		// Deleting a user from a Caddyfile deletes the rules that name
		// the user too: a rule naming no user is refused at its line.
		cf = strings.Replace(cf, "\t\tallow user:carol pull,push carol/**\n", "", 1)
	}
	if status, body := loadCaddyfile(t, cf); status != http.StatusOK {
		t.Fatalf("reload: %d %s", status, body)
	}
}

func TestRefreshTokens(t *testing.T) {
	regs := map[string]*registry{
		"v3":   startV3(t, shared, registrySetup{realm: shared.realm}),
		"v2.8": startV28(t, shared, registrySetup{realm: shared.realm}),
	}
	rt := dockerLogin(t, shared.realm, "alice", passwords["alice"])

	for family, reg := range regs {
		t.Run("go-containerregistry with an identity token/"+family, func(t *testing.T) {
			// Given only the identity token, ggcr uses the POST refresh flow.
			auth := remote.WithAuth(authn.FromConfig(authn.AuthConfig{IdentityToken: rt}))
			img := randomImage(t)
			if err := remote.Write(ref(t, reg, "alice/refreshed:v1"), img, auth); err != nil {
				t.Fatal(err)
			}
			got, err := remote.Image(ref(t, reg, "alice/refreshed:v1"), auth)
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := got.Digest(); d != digest(t, img) {
				t.Fatalf("pulled %s", d)
			}
		})
		t.Run("the refresh token is no bearer token for the registry/"+family, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+reg.host+"/v2/alice/refreshed/tags/list", nil)
			req.Header.Set("Authorization", "Bearer "+rt)
			expect(t, do(t, req), http.StatusUnauthorized, "refresh token as a bearer token")
		})
	}
	t.Run("containerd's GET fallback", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, shared.realm+"?service="+service+"&scope=repository:alice/refreshed:pull", nil)
		req.SetBasicAuth("", rt)
		body := expect(t, do(t, req), http.StatusOK, "GET with the refresh token as the password")
		if !strings.Contains(string(body), `"refresh_token"`) {
			t.Fatalf("the refresh token did not come back: %s", body)
		}
	})
	t.Run("unknown service is 400", func(t *testing.T) {
		expect(t, refreshGrant(t, shared.realm, rt, "nope.test", ""), http.StatusBadRequest, "refresh for an unknown service")
	})
	t.Run("the proxy refuses it as a bearer token", func(t *testing.T) {
		proxy := startProxied(t)
		req, _ := http.NewRequest(http.MethodGet, "http://"+proxy.host+"/v2/alice/x/tags/list", nil)
		req.Header.Set("Authorization", "Bearer "+rt)
		resp := do(t, req)
		expect(t, resp, http.StatusUnauthorized, "refresh token at the proxy")
		if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("challenge %q", resp.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("a new password revokes, and so does deleting the user", func(t *testing.T) {
		carolRT := dockerLogin(t, shared.realm, "carol", passwords["carol"])
		expect(t, refreshGrant(t, shared.realm, carolRT, service, "repository:carol/x:pull"), http.StatusOK, "refresh before the change")
		t.Cleanup(func() { loadCaddyfile(t, shared.caddyfile("")) })
		h, _ := bcrypt.GenerateFromPassword([]byte("carol-new-secret"), bcrypt.MinCost)
		withCarol(t, "user carol "+string(h))
		expect(t, refreshGrant(t, shared.realm, carolRT, service, "repository:carol/x:pull"), http.StatusUnauthorized, "refresh after a new password")
		newRT := dockerLogin(t, shared.realm, "carol", "carol-new-secret")
		expect(t, refreshGrant(t, shared.realm, newRT, service, "repository:carol/x:pull"), http.StatusOK, "refresh with the new login")
		withCarol(t, "")
		expect(t, refreshGrant(t, shared.realm, newRT, service, "repository:carol/x:pull"), http.StatusUnauthorized, "refresh after deletion")
	})
}

// TestRefreshRevocationByAdminAPI revokes a user's refresh tokens through
// Caddy's admin endpoint: the old ones stop working, a new login works.
func TestRefreshRevocationByAdminAPI(t *testing.T) {
	old := dockerLogin(t, shared.realm, "reader", passwords["reader"])
	expect(t, refreshGrant(t, shared.realm, old, service, "repository:alice/x:pull"), http.StatusOK, "refresh before the revocation")

	resp, err := http.Post("http://localhost:2999/registry_auth/revocations", "application/json", strings.NewReader(`{"policy":"default","user":"reader"}`))
	if err != nil {
		t.Fatal(err)
	}
	body := expect(t, resp, http.StatusOK, "revocation")
	resp.Body.Close()
	if !strings.Contains(string(body), `"reader"`) {
		t.Fatalf("revocation answer %s", body)
	}
	expect(t, refreshGrant(t, shared.realm, old, service, "repository:alice/x:pull"), http.StatusUnauthorized, "refresh after the revocation")

	resp, err = http.Post("http://localhost:2999/registry_auth/revocations", "application/json", strings.NewReader(`{"policy":"default","usr":"reader"}`))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, resp, http.StatusBadRequest, "a revocation with an unknown field")
	resp.Body.Close()

	// At once: a revocation no longer reaches into its own second.
	fresh := dockerLogin(t, shared.realm, "reader", passwords["reader"])
	expect(t, refreshGrant(t, shared.realm, fresh, service, "repository:alice/x:pull"), http.StatusOK, "refresh with a login after the revocation")
}
