package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestDockerCLIWithLDAP: the real docker CLI against users of a real
// slapd, in token mode (registry v3 and 2.8) and proxy mode. A directory
// user gets no refresh token (a password changed in the directory could
// not revoke it), so docker stores the password as it does for any
// registry without refresh tokens, and keeps working with it.
func TestDockerCLIWithLDAP(t *testing.T) {
	requireDocker(t)
	base := buildBaseImage(t)
	dir := startSlapd(t)
	site := newBackendsSite(t)
	site.loadWithoutDirectory(t) // writes the bundle the registries trust
	regPort, proxyPort := FreePort(), FreePort()
	startV3(t, shared, registrySetup{port: regPort, disk: true})
	targets := []target{{"proxy/v3", fmt.Sprintf("localhost:%d", proxyPort)}}
	for _, family := range []string{"v3", "v2.8"} {
		targets = append(targets, target{"token/" + family, startBackendsRegistry(t, family, site.realm).host})
	}
	site.load(t, ldapSearchBind(dir), fmt.Sprintf(`
http://localhost:%d {
	registry_auth_proxy {
		policy %s
		upstream localhost:%d
	}
}
`, proxyPort, backendsPolicy, regPort))
	if err := WaitHTTP(fmt.Sprintf("http://localhost:%d/v2/", proxyPort), http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			d := newDockerCLI(t)
			login := func(user string) {
				t.Helper()
				if out := d.must(ldapNames.pw[user], "login", tg.host, "-u", user, "--password-stdin"); !strings.Contains(out, "Login Succeeded") {
					t.Fatalf("docker login as %s: %s", user, out)
				}
			}
			app := tg.host + "/devs/docker-ldap:v1"
			t.Run("wrong password", func(t *testing.T) {
				out, err := d.run("wrong", "login", tg.host, "-u", "ldev", "--password-stdin")
				if err == nil || !strings.Contains(strings.ToLower(out), "unauthorized") {
					t.Fatalf("login with a wrong password: %v\n%s", err, out)
				}
			})
			t.Run("login and push as a member of devs", func(t *testing.T) {
				login("ldev")
				var stored struct {
					IdentityToken string `json:"identitytoken"`
				}
				_ = json.Unmarshal(d.auths()[tg.host], &stored)
				if stored.IdentityToken != "" {
					t.Fatal("a directory user got a refresh token")
				}
				d.tag(base, app)
				d.must("", "push", app)
			})
			t.Run("a member of readers pulls and cannot push", func(t *testing.T) {
				login("lread")
				d.must("", "rmi", app)
				d.must("", "pull", app)
				denied := tg.host + "/devs/docker-ldap:denied"
				d.tag(base, denied)
				d.mustFail("denied", "push", denied)
			})
		})
	}
}
