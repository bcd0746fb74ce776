package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestOIDCDockerAndCtr: the real docker CLI logs in with a CI job's
// token (as `docker login -u ci --password-stdin` in a workflow does) and
// pushes, and ctr pulls with one, in token mode and in proxy mode against
// both registry families; a foreign issuer's token is refused to both.
// Images and the containerd namespace carry "oidc" in their names and are
// removed at the end.
func TestOIDCDockerAndCtr(t *testing.T) {
	requireDocker(t)
	address := ctrAddress(t)
	base := buildBaseImage(t)
	o := startOIDCIssuer(t)
	j := jobs{t, o}
	targets := oidcClientTargets(t, o)
	ctr, _ := ctrNamespace(t, address, "regauth-e2e-oidc-"+filepath.Base(shared.dir))

	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			d := newDockerCLI(t)
			image := tg.host + "/acme/app/oidc-docker:v1"
			t.Run("docker login with a job token", func(t *testing.T) {
				job := j.github("app")
				out := d.must(job, "login", tg.host, "-u", "ci", "--password-stdin")
				if !strings.Contains(out, "Login Succeeded") {
					t.Fatalf("docker login: %s", out)
				}
				t.Logf("$ echo \"$JOB_TOKEN\" | docker login %s -u ci --password-stdin\n%s", tg.host, out)
				// Docker keeps the refresh token, not the job token.
				var stored struct {
					Auth          string `json:"auth"`
					IdentityToken string `json:"identitytoken"`
				}
				if err := json.Unmarshal(d.auths()[tg.host], &stored); err != nil {
					t.Fatal(err)
				}
				raw, _ := base64.StdEncoding.DecodeString(stored.Auth)
				if stored.IdentityToken == "" || strings.Contains(string(raw), job) {
					t.Fatalf("config.json: want an identitytoken and not the job token, got %+v", stored)
				}
			})
			t.Run("docker push to its own repository", func(t *testing.T) {
				d.tag(base, image)
				out := d.must("", "push", image)
				t.Logf("$ docker push %s\n%s", image, out)
			})
			t.Run("docker push to another repository is denied", func(t *testing.T) {
				other := tg.host + "/acme/other/oidc-docker:v1"
				d.tag(base, other)
				out, err := d.run("", "push", other)
				if err == nil || !strings.Contains(out, "denied") {
					t.Fatalf("push to acme/other: %v\n%s", err, out)
				}
				t.Logf("$ docker push %s\n%s", other, out)
			})
			t.Run("docker login with a foreign token is refused", func(t *testing.T) {
				out, err := newDockerCLI(t).run(j.foreign(), "login", tg.host, "-u", "ci", "--password-stdin")
				if err == nil || !strings.Contains(strings.ToLower(out), "unauthorized") {
					t.Fatalf("docker login with a foreign issuer's token: %v\n%s", err, out)
				}
				t.Logf("$ echo \"$FOREIGN_TOKEN\" | docker login %s -u ci --password-stdin\n%s", tg.host, out)
			})
			t.Run("ctr pulls with a job token", func(t *testing.T) {
				out, err := ctr("images", "pull", "--plain-http", "--user", "ci:"+j.github("app"), image)
				if err != nil {
					t.Fatalf("ctr pull: %v\n%s", err, out)
				}
				t.Logf("$ ctr images pull --plain-http --user \"ci:$JOB_TOKEN\" %s\n%s", image, tail(out, 3))
			})
			t.Run("ctr with a foreign token is refused", func(t *testing.T) {
				out, err := ctr("images", "pull", "--plain-http", "--user", "ci:"+j.foreign(), image)
				if err == nil || !strings.Contains(strings.ToLower(out), "unauthorized") {
					t.Fatalf("ctr pull with a foreign issuer's token: %v\n%s", err, out)
				}
				t.Logf("$ ctr images pull --plain-http --user \"ci:$FOREIGN_TOKEN\" %s\n%s", image, tail(out, 3))
			})
		})
	}
}

// oidcClientTargets loads the backends policy with the oidc authenticators
// and starts, for each registry family, one behind a registry_auth_proxy
// site of that policy and one with token auth trusting it.
func oidcClientTargets(t *testing.T, o *OIDCIssuer) []target {
	t.Helper()
	site := newBackendsSite(t)
	var targets []target
	var sites strings.Builder
	proxied := map[string]int{}
	for _, family := range []string{"v3", "v2.8"} {
		regPort, proxyPort := FreePort(), FreePort()
		proxied[family] = regPort
		sites.WriteString(backendsProxySite(proxyPort, regPort))
		targets = append(targets, target{"proxy/" + family, fmt.Sprintf("localhost:%d", proxyPort)})
	}
	site.load(t, oidcPolicy(t, o), sites.String())
	for _, family := range []string{"v3", "v2.8"} {
		starters[family](t, shared, registrySetup{port: proxied[family], disk: true})
		e := *shared
		e.bundle = backendsBundle()
		reg := starters[family](t, &e, registrySetup{realm: site.realm, disk: true})
		targets = append(targets, target{"token/" + family, reg.host})
	}
	return targets
}
