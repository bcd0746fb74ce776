package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/regauth/caddy-registry-auth/internal/oidctest"
)

// Workload identity tokens as passwords: a real issuer process (discovery
// and keys over HTTPS with a CA of the test) signs tokens shaped like a
// GitHub Actions job's, a GitLab CI job's and a Kubernetes service
// account's, and Caddy's oidc authenticators check them in the backends
// policy, in token mode and in proxy mode, against both registry families.

// githubJob is a GitHub Actions job's token for the repository acme/<repo>,
// with the claims GitHub documents (its nbf is 10 minutes before iat, its
// exp 5 minutes after).
func githubJob(iss, repo string, now time.Time) map[string]any {
	return map[string]any{
		"jti": "example-id", "sub": "repo:acme/" + repo + ":ref:refs/heads/main", "aud": service,
		"ref": "refs/heads/main", "sha": "example-sha", "repository": "acme/" + repo, "repository_owner": "acme",
		"actor_id": "12", "repository_visibility": "private", "repository_id": "74", "repository_owner_id": "65",
		"run_id": "example-run-id", "run_number": "10", "run_attempt": "2", "runner_environment": "github-hosted",
		"actor": "octocat", "workflow": "example-workflow", "head_ref": "", "base_ref": "", "event_name": "workflow_dispatch",
		"ref_type": "branch", "job_workflow_ref": "acme/automation/.github/workflows/oidc.yml@refs/heads/main",
		"iss": iss, "nbf": now.Add(-10 * time.Minute).Unix(), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
}

// gitlabJob is a GitLab CI job's id_token for the project acme/web, with
// the claims GitLab documents (ids and flags are strings there).
func gitlabJob(iss string, now time.Time) map[string]any {
	return map[string]any{
		"namespace_id": "72", "namespace_path": "acme", "project_id": "20", "project_path": "acme/web",
		"user_id": "1", "user_login": "sample-user", "user_email": "sample-user@example.com",
		"pipeline_id": "574", "pipeline_source": "push", "job_id": "302", "ref": "main", "ref_type": "branch",
		"ref_path": "refs/heads/main", "ref_protected": "true", "environment": "production",
		"environment_protected": "true", "deployment_tier": "production", "runner_id": 1, "runner_environment": "self-hosted",
		"sha": "714a629c0b401fdce83e847fc9589983fc6f46bc", "project_visibility": "private", "jti": "235b3a54-b797-45c7-ae9a-f72d7bc6ef5b",
		"ci_config_ref_uri": "gitlab.example.com/acme/web//.gitlab-ci.yml@refs/heads/main", "iss": iss, "aud": service,
		"sub": "project_path:acme/web:ref_type:branch:ref:main", "iat": now.Unix(), "nbf": now.Add(-5 * time.Second).Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// k8sIssuer is the issuer a cluster's service-account tokens name: the
// test's k8s keys are given to Caddy as a jwks_file, so it need not be
// reachable.
const k8sIssuer = "https://kubernetes.default.svc.cluster.local"

// k8sServiceAccount is a projected service-account token of ci/builder
// for the registry's audience, nested kubernetes.io claims and all.
func k8sServiceAccount(now time.Time) map[string]any {
	return map[string]any{
		"aud": []string{service}, "iss": k8sIssuer, "sub": "system:serviceaccount:ci:builder",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": "4e7b-a1",
		"kubernetes.io": map[string]any{
			"namespace":      "ci",
			"node":           map[string]any{"name": "node-1", "uid": "646e7c5e-32d6-4d42-9dbd-e504e6cbe6b1"},
			"pod":            map[string]any{"name": "builder-7d9f", "uid": "5e0bd49b-f040-43b0-99b7-22765a53f7f3"},
			"serviceaccount": map[string]any{"name": "builder", "uid": "14ee3fa4-a7e2-420f-9f9a-dbc4507c3798"},
		},
	}
}

// startOIDCIssuer runs the issuer process until t ends.
func startOIDCIssuer(t *testing.T) *OIDCIssuer {
	t.Helper()
	o, err := NewOIDCIssuer(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.Stop()
		if t.Failed() {
			t.Logf("issuer log:\n%s", tail(o.Log(), 20))
		}
	})
	return o
}

// mint asks issuer name of o to sign claims.
func mint(t *testing.T, o *OIDCIssuer, name string, claims map[string]any) string {
	t.Helper()
	raw, err := o.Mint(name, claims)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// oidcPolicy is the body of the backends policy with three oidc
// authenticators (GitHub and GitLab by discovery, Kubernetes by a JWKS
// file), a policy user named ci with a password of her own, a static
// authenticator after the oidc ones (whose users they must not refuse),
// and rules for the names the tokens map to.
func oidcPolicy(t *testing.T, o *OIDCIssuer) string {
	t.Helper()
	data, err := o.JWKS("k8s")
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(t.TempDir(), "k8s-jwks.json")
	if err := os.WriteFile(jwksFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
		user ci plaintext ci-own-password
		authenticator oidc {
			issuer   %[1]s
			audience %[4]s
			username gh/{claims.repository}
			groups   {claims.repository_owner} {claims.environment}
			require  repository_owner acme
			require  repository_owner_id 65
			ca_file  %[3]s
			user_name ci
			jwks_refetch_interval 1s
		}
		authenticator oidc {
			issuer   %[2]s
			audience %[4]s
			username gl/{claims.project_path}
			groups   gl/{claims.namespace_path}
			require  ref_protected true
			ca_file  %[3]s
		}
		authenticator oidc {
			issuer    %[5]s
			audience  %[4]s
			username  k8s/{claims.kubernetes\.io.namespace}/{claims.kubernetes\.io.serviceaccount.name}
			groups    k8s/{claims.kubernetes\.io.namespace}
			jwks_file %[6]s
		}
		authenticator static {
			user robot plaintext robot-password
		}
		allow user:gh/acme/app pull,push acme/app acme/app/**
		allow group:acme pull acme/**
		allow user:gl/acme/web pull,push acme/web acme/web/**
		allow user:k8s/ci/builder pull,push ci/**
		allow user:ci,user:robot pull,push own/**`,
		o.URL("github"), o.URL("gitlab"), o.CAFile, service, k8sIssuer, jwksFile)
}

// jobs mints the tests' tokens.
type jobs struct {
	t *testing.T
	o *OIDCIssuer
}

func (j jobs) github(repo string) string {
	return mint(j.t, j.o, "github", githubJob(j.o.URL("github"), repo, time.Now()))
}

func (j jobs) githubWith(change func(map[string]any)) string {
	c := githubJob(j.o.URL("github"), "app", time.Now())
	change(c)
	return mint(j.t, j.o, "github", c)
}

func (j jobs) gitlab() string {
	return mint(j.t, j.o, "gitlab", gitlabJob(j.o.URL("gitlab"), time.Now()))
}

func (j jobs) k8s() string { return mint(j.t, j.o, "k8s", k8sServiceAccount(time.Now())) }

// foreign is a token like acme/app's from an issuer Caddy does not know.
func (j jobs) foreign() string {
	return mint(j.t, j.o, "foreign", githubJob(j.o.URL("foreign"), "app", time.Now()))
}

func ci(token string) authn.Authenticator { return &authn.Basic{Username: "ci", Password: token} }

// oidcPushMatrix: each kind of job pushes to its own repository and pulls
// it back, is refused elsewhere, and foreign, expired and forged tokens
// get nothing.
func oidcPushMatrix(t *testing.T, reg *registry, j jobs) {
	img := randomImage(t)
	for _, c := range []struct{ who, token, repo string }{
		{"github job", j.github("app"), "acme/app/web"},
		{"gitlab job", j.gitlab(), "acme/web/api"},
		{"kubernetes service account", j.k8s(), "ci/tool"},
	} {
		t.Run(c.who+" pushes its own repository", func(t *testing.T) {
			if err := pushAs(t, reg, c.repo+":v1", ci(c.token), img); err != nil {
				t.Fatal(err)
			}
			got, err := pullAs(t, reg, c.repo+":v1", ci(c.token))
			if err != nil || got != digest(t, img) {
				t.Fatalf("pull back: %s, %v", got, err)
			}
		})
	}
	t.Run("a job is denied another repository", func(t *testing.T) {
		wantRefused(t, pushAs(t, reg, "acme/web/api:v2", ci(j.github("app")), randomImage(t)), "push by acme/app's job to acme/web")
		wantRefused(t, pushAs(t, reg, "ci/tool:v2", ci(j.gitlab()), randomImage(t)), "push by acme/web's job to ci/")
		// Its group (acme) may pull.
		if _, err := pullAs(t, reg, "acme/web/api:v1", ci(j.github("app"))); err != nil {
			t.Fatalf("pull by the group acme: %v", err)
		}
	})
	for _, c := range []struct{ what, token string }{
		{"a foreign issuer's token", j.foreign()},
		{"a token for another audience", j.githubWith(func(c map[string]any) { c["aud"] = "https://github.com/acme" })},
		{"an expired token", j.githubWith(func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() })},
	} {
		t.Run(c.what+" is refused", func(t *testing.T) {
			wantRefused(t, pushAs(t, reg, "acme/app/web:v3", ci(c.token), randomImage(t)), c.what)
			_, err := pullAs(t, reg, "acme/app/web:v1", ci(c.token))
			wantRefused(t, err, c.what)
		})
	}
}

func TestOIDCTokenMode(t *testing.T) {
	o := startOIDCIssuer(t)
	j := jobs{t, o}
	site := newBackendsSite(t)
	site.load(t, oidcPolicy(t, o), "")
	for _, family := range []string{"v3", "v2.8"} {
		t.Run(family, func(t *testing.T) {
			oidcPushMatrix(t, startBackendsRegistry(t, family, site.realm), j)
		})
	}
	t.Run("the token endpoint", func(t *testing.T) { oidcTokenEndpoint(t, site.realm, j) })
	t.Run("audit: the subject and the issuer, never the token", func(t *testing.T) {
		mark := markCaddyLog(t)
		job := j.github("app")
		askToken(t, site.realm, "ci", job, oidcScope("acme/app/web")).want(t, http.StatusOK, "job token")
		lines := mark.lines(t, `"msg":"token request"`, `"user":"ci"`, `"subject":"gh/acme/app"`, `"origin":"`+o.URL("github")+`"`)
		if len(lines) != 1 {
			t.Fatalf("%d audit lines name the subject and origin", len(lines))
		}
		t.Logf("audit: %s", lines[0])
		data, _ := os.ReadFile(filepath.Join(shared.dir, "caddy.log"))
		if bytes.Contains(data, []byte(job)) || bytes.Contains(data, []byte(strings.Split(job, ".")[2])) {
			t.Fatal("Caddy's log holds a job token")
		}
	})
	t.Run("the issuer rotates its key", func(t *testing.T) { oidcKeyRotation(t, site.realm, j) })
	t.Run("docker login's refresh token: refresh grant and revocation by user name", func(t *testing.T) {
		rt := dockerLogin(t, site.realm, "ci", j.github("revoked"))
		body := expect(t, refreshGrant(t, site.realm, rt, service, oidcScope("acme/revoked")), http.StatusOK, "refresh grant")
		var r struct{ Token string }
		_ = json.Unmarshal(body, &r)
		if got := actionsOn(accessOf(t, r.Token), "acme/revoked"); !slices.Equal(got, []string{"pull"}) {
			t.Fatalf("refresh grant gave %v on acme/revoked, want pull (group acme)", got)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://localhost:2999/registry_auth/revocations", strings.NewReader(`{"policy":"`+backendsPolicy+`","user":"gh/acme/revoked"}`))
		req.Header.Set("Content-Type", "application/json")
		expect(t, do(t, req), http.StatusOK, "revocation")
		expect(t, refreshGrant(t, site.realm, rt, service, oidcScope("acme/revoked")), http.StatusUnauthorized, "refresh grant after the revocation")
	})
	t.Run("logins_total counts the oidc source", func(t *testing.T) {
		m := scrape(t)
		if n := m[`caddy_registry_auth_logins_total{result="ok",source="oidc"}`] + m[`caddy_registry_auth_logins_total{result="cached",source="oidc"}`]; n == 0 {
			t.Fatal("no oidc login counted")
		}
		if m[`caddy_registry_auth_logins_total{result="failed",source="oidc"}`] == 0 {
			t.Fatal("no refused oidc login counted")
		}
	})
}

func oidcScope(repo string) string { return "repository:" + repo + ":pull,push" }

// oidcTokenEndpoint: what a job token is granted, and which tokens get a
// 401; the policy's own user named like the Basic user name is unharmed.
func oidcTokenEndpoint(t *testing.T, realm string, j jobs) {
	grants := func(t *testing.T, password string, repo string, want ...string) {
		t.Helper()
		a := askToken(t, realm, "ci", password, oidcScope(repo))
		a.want(t, http.StatusOK, "token for "+repo)
		if got := actionsOn(a.access, repo); !slices.Equal(got, want) {
			t.Fatalf("granted %v on %s, want %v", got, repo, want)
		}
	}
	job := j.github("app")
	grants(t, job, "acme/app/web", "pull", "push")
	grants(t, job, "acme/web", "pull")
	grants(t, job, "own/x")
	for _, c := range []struct{ what, user, token string }{
		{"a foreign issuer's token", "ci", j.foreign()},
		{"a token for another audience", "ci", j.githubWith(func(c map[string]any) { c["aud"] = "https://github.com/acme" })},
		{"an expired token", "ci", j.githubWith(func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() })},
		{"a token older than max_token_age", "ci", j.githubWith(func(c map[string]any) { c["iat"] = time.Now().Add(-25 * time.Hour).Unix() })},
		{"a token signed by a key the issuer does not publish", "ci", must(j.o.Forge("github", githubJob(j.o.URL("github"), "app", time.Now())))},
		{"a token of another organisation", "ci", j.githubWith(func(c map[string]any) { c["repository_owner"], c["repository"] = "evil", "evil/app" })},
		{"a job token with another user name than user_name", "someone", job},
	} {
		askToken(t, realm, c.user, c.token, oidcScope("acme/app/web")).want(t, http.StatusUnauthorized, c.what)
	}
	// The policy's own ci keeps her password: job tokens never reach her,
	// and her password never reaches the issuers.
	grants(t, "ci-own-password", "own/x", "pull", "push")
	// A source after the oidc authenticators answers for its users.
	a := askToken(t, realm, "robot", "robot-password", oidcScope("own/x"))
	a.want(t, http.StatusOK, "robot, from the static authenticator after the oidc ones")
	if got := actionsOn(a.access, "own/x"); !slices.Equal(got, []string{"pull", "push"}) {
		t.Fatalf("robot was granted %v", got)
	}
}

// oidcKeyRotation: a token of a key the issuer just rotated in is
// accepted without a reload, within the refetch interval (1s).
func oidcKeyRotation(t *testing.T, realm string, j jobs) {
	kid, err := j.o.Rotate("github")
	if err != nil {
		t.Fatal(err)
	}
	job := j.github("app")
	if headerKID(t, job) != kid {
		t.Fatalf("the new token does not name the new key %s", kid)
	}
	start := time.Now()
	for {
		a := askToken(t, realm, "ci", job, oidcScope("acme/app/web"))
		if a.status == http.StatusOK {
			t.Logf("a token of the new key %s accepted %s after the rotation", kid, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("a token of the rotated key is still refused: %d %s", a.status, a.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// must is v, or a panic: for test values that cannot fail.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// headerKID is the kid in a token's header.
func headerKID(t *testing.T, raw string) string {
	t.Helper()
	var h struct{ Kid string }
	part, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if err := json.Unmarshal(part, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// backendsProxySite is a registry_auth_proxy site of the backends policy.
func backendsProxySite(proxyPort, registryPort int) string {
	return fmt.Sprintf("\nhttp://localhost:%d {\n\tlog\n\tregistry_auth_proxy {\n\t\tpolicy %s\n\t\tupstream localhost:%d\n\t}\n}\n", proxyPort, backendsPolicy, registryPort)
}

// TestOIDCProxyMode: job tokens through registry_auth_proxy, as Basic
// credentials on every request and with go-containerregistry's token
// dance on the proxy's own token path, in front of both registry families
// without auth of their own.
func TestOIDCProxyMode(t *testing.T) {
	o := startOIDCIssuer(t)
	j := jobs{t, o}
	site := newBackendsSite(t)
	var sites strings.Builder
	var proxies []*registry
	for _, family := range []string{"v3", "v2.8"} {
		regPort, proxyPort := FreePort(), FreePort()
		starters[family](t, shared, registrySetup{port: regPort})
		sites.WriteString(backendsProxySite(proxyPort, regPort))
		proxies = append(proxies, &registry{family: family, host: fmt.Sprintf("localhost:%d", proxyPort)})
	}
	site.load(t, oidcPolicy(t, o), sites.String())
	for _, proxy := range proxies {
		t.Run(proxy.family, func(t *testing.T) {
			if err := WaitHTTP("http://"+proxy.host+"/v2/", http.StatusUnauthorized); err != nil {
				t.Fatal(err)
			}
			t.Run("ggcr", func(t *testing.T) { oidcPushMatrix(t, proxy, j) })
			t.Run("basic on every request", func(t *testing.T) {
				as := func(token string) *rawClient {
					return &rawClient{t: t, base: "http://" + proxy.host, user: "ci", pw: token}
				}
				job := as(j.github("app"))
				manifest, _ := job.pushImage("acme/app/raw", "v1", []byte("a layer for "+t.Name()), 0)
				if body := expect(t, job.getManifest("acme/app/raw", "v1"), http.StatusOK, "manifest by its job"); sha(body) != manifest {
					t.Fatalf("manifest %s, pushed %s", sha(body), manifest)
				}
				resp := as(j.gitlab()).getManifest("acme/app/raw", "v1")
				wantRegistryError(t, resp, expect(t, resp, http.StatusForbidden, "manifest by another project's job"), "DENIED")
				resp = as(j.foreign()).getManifest("acme/app/raw", "v1")
				wantRegistryError(t, resp, expect(t, resp, http.StatusUnauthorized, "manifest with a foreign token"), "UNAUTHORIZED")
			})
		})
	}
}

// TestOIDCIssuerDownAtStart: an issuer that cannot be reached when Caddy
// loads its config does not fail the load; its tokens are answered 503
// (and the failure logged) until it is up, and then work without a
// reload.
func TestOIDCIssuerDownAtStart(t *testing.T) {
	o, err := NewOIDCIssuer(t.TempDir(), FreePort())
	if err != nil {
		t.Fatal(err)
	}
	site := newBackendsSite(t)
	mark := markCaddyLog(t)
	site.load(t, fmt.Sprintf(`
		authenticator oidc {
			issuer   %s
			audience %s
			username gh/{claims.repository}
			ca_file  %s
			jwks_refetch_interval 1s
		}
		allow user:gh/acme/app pull,push acme/app acme/app/**`, o.URL("github"), service, o.CAFile), "")
	// Any token of that issuer: no key of it can be known yet.
	key, err := oidctest.RSAKey("rsa-1")
	if err != nil {
		t.Fatal(err)
	}
	early := must(key.Sign(githubJob(o.URL("github"), "app", time.Now())))
	askToken(t, site.realm, "ci", early, "repository:acme/app:pull").wantUnavailable(t, 6*time.Second, "issuer down")
	deadline := time.Now().Add(10 * time.Second)
	for len(mark.lines(t, "cannot fetch the issuer's keys", o.URL("github"))) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no log line says the issuer's keys cannot be fetched")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("logged: %s", mark.lines(t, "cannot fetch the issuer's keys")[0])

	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Stop)
	job := mint(t, o, "github", githubJob(o.URL("github"), "app", time.Now()))
	deadline = time.Now().Add(10 * time.Second)
	for {
		a := askToken(t, site.realm, "ci", job, "repository:acme/app:pull,push")
		if a.status == http.StatusOK {
			if got := actionsOn(a.access, "acme/app"); !slices.Equal(got, []string{"pull", "push"}) {
				t.Fatalf("granted %v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the issuer is up, and its token is still refused: %d %s", a.status, a.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
