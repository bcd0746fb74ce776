package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regauth/caddy-registry-auth/token"
)

// The backend tests add a policy named "backends" to the suite's config,
// next to the default one, with its own key and certificate bundle, and a
// token site that uses it. Its users come from a private slapd or an HTTP
// service started by the test; its rules give by group.
const backendsPolicy = "backends"

// backendsRules are the rules every backends policy has.
const backendsRules = `
		allow group:devs pull,push devs/** shared/**
		allow group:readers pull devs/**`

// The directory's users: one per group, one in no group.
var ldapUsers = []LDAPUser{
	{"ldev", "ldev-Secret-1"},
	{"lread", "lread-Secret-2"},
	{"lnone", "lnone-Secret-3"},
}

var ldapGroups = []LDAPGroup{
	{CN: "devs", Members: []string{"ldev"}},
	{CN: "readers", Members: []string{"lread"}},
}

// startSlapd starts the tests' directory, which is killed when t ends.
// Without slapd the test fails: CI installs it, and a skipped test would
// hide regressions.
func startSlapd(t *testing.T) *Slapd {
	t.Helper()
	s, err := StartSlapd(t.TempDir(), ldapUsers, ldapGroups)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("slapd log:\n%s", s.Log())
		}
		s.Close()
	})
	return s
}

// backendUsers names a source's users for the matrix: one in devs, one in
// readers, one in no group.
type backendUsers struct {
	dev, reader, none string
	pw                map[string]string
}

func (u backendUsers) auth(user string) authn.Authenticator {
	return &authn.Basic{Username: user, Password: u.pw[user]}
}

var ldapNames = backendUsers{dev: "ldev", reader: "lread", none: "lnone", pw: map[string]string{}}

func init() {
	for _, u := range ldapUsers {
		ldapNames.pw[u.UID] = u.Password
	}
}

// backendsSite is the token endpoint of the backends policy on a port of
// its own, kept across the reloads of one test.
type backendsSite struct {
	port  int
	realm string
	loads int
}

func backendsBundle() string { return filepath.Join(shared.dir, "backends-certs.pem") }

// newBackendsSite picks the site's port; the suite's config comes back
// when t ends.
func newBackendsSite(t *testing.T) *backendsSite {
	t.Helper()
	s := &backendsSite{port: FreePort()}
	s.realm = fmt.Sprintf("http://localhost:%d/auth/token", s.port)
	t.Cleanup(func() {
		if status, body := loadCaddyfile(t, shared.caddyfile("")); status != http.StatusOK {
			t.Errorf("restoring the suite's config: %d %s", status, body)
		}
	})
	return s
}

// loadWithoutDirectory loads the backends policy before any directory is
// named, to write the bundle the registries trust. Its rules name the
// directory's groups, which a Caddyfile refuses when nothing could give
// them: an HTTP authenticator nobody is asked through stands in for the
// directory.
func (s *backendsSite) loadWithoutDirectory(t *testing.T) {
	t.Helper()
	s.load(t, "\t\tauthenticator http {\n\t\t\turl http://127.0.0.1:9/never-asked\n\t\t}", "")
}

// load replaces Caddy's config with the suite's plus the backends policy,
// whose lines (authenticators, authorizers, more rules) are body, its
// token site, and extra sites.
func (s *backendsSite) load(t *testing.T, body, extra string) {
	t.Helper()
	policy := fmt.Sprintf(`	registry_auth %s {
		service %s
		issuer %s
		throttle 1000
		signer {
			bundle_file %s
		}%s
%s
	}
`, backendsPolicy, service, issuer, backendsBundle(), backendsRules, body)
	s.loads++
	marker := fmt.Sprintf("/loaded-%d-%d", time.Now().UnixNano(), s.loads)
	site := fmt.Sprintf(`
http://localhost:%d {
	log
	handle /auth/* {
		registry_auth_token {
			policy %s
		}
	}
	respond %s 204
	respond 404
}
`, s.port, backendsPolicy, marker)
	cf := shared.caddyfile(site + extra)
	if !strings.Contains(cf, "\tregistry_auth {\n") {
		t.Fatal("the suite's config has no default registry_auth block to put the backends policy before")
	}
	cf = strings.Replace(cf, "\tregistry_auth {\n", policy+"\tregistry_auth {\n", 1)
	if status, resp := loadCaddyfile(t, cf); status != http.StatusOK {
		t.Fatalf("loading the backends policy: %d %s\n%s", status, resp, policy)
	}
	// Caddy returns from a load once the old servers have begun to shut
	// down: for a moment the old server may still accept a connection on
	// the shared port and serve it with the old policy. Wait until new
	// connections reach the new config (the marker route is only in it).
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(10 * time.Second)
	for ok := 0; ok < 3; {
		if time.Now().After(deadline) {
			t.Fatal("the new config does not serve its marker route")
		}
		resp, err := fresh.Get(fmt.Sprintf("http://localhost:%d%s", s.port, marker))
		if err == nil {
			resp.Body.Close()
		}
		if err == nil && resp.StatusCode == http.StatusNoContent {
			ok++
		} else {
			ok = 0
			time.Sleep(20 * time.Millisecond)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// startBackendsRegistry starts a registry of the family that trusts the
// backends policy's tokens.
func startBackendsRegistry(t *testing.T, family, realm string) *registry {
	t.Helper()
	e := *shared
	e.bundle = backendsBundle()
	return starters[family](t, &e, registrySetup{realm: realm})
}

func pushAs(t *testing.T, reg *registry, repoTag string, auth authn.Authenticator, img v1.Image) error {
	t.Helper()
	return remote.Write(ref(t, reg, repoTag), img, remote.WithAuth(auth))
}

// pullAs fetches an image and its layers, returning its digest.
func pullAs(t *testing.T, reg *registry, repoTag string, auth authn.Authenticator) (v1.Hash, error) {
	t.Helper()
	img, err := remote.Image(ref(t, reg, repoTag), remote.WithAuth(auth))
	if err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return v1.Hash{}, err
		}
		rc.Close()
	}
	return img.Digest()
}

// tokenAnswer is what a token endpoint said to one request.
type tokenAnswer struct {
	status     int
	retryAfter string
	code       string // the registry error code of a refusal
	access     []token.Access
	body       string
	elapsed    time.Duration
}

// askToken asks a token endpoint for the scopes with Basic credentials
// (none if user is ""), as Docker's GET does, and decodes the answer.
func askToken(t *testing.T, realm, user, password string, scopes ...string) tokenAnswer {
	t.Helper()
	q := url.Values{"service": {service}, "scope": scopes}
	req, _ := http.NewRequest(http.MethodGet, realm+"?"+q.Encode(), nil)
	if user != "" || password != "" {
		req.SetBasicAuth(user, password)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := tokenAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(body), elapsed: time.Since(start)}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Errors []struct{ Code string } }
		if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
			a.code = e.Errors[0].Code
		}
		return a
	}
	var r struct{ Token string }
	if err := json.Unmarshal(body, &r); err != nil || r.Token == "" {
		t.Fatalf("token answer %s", body)
	}
	a.access = accessOf(t, r.Token)
	return a
}

// backendTokenStatus asks for a token and returns only the status, for
// goroutines (which may not call t.Fatal).
func backendTokenStatus(realm, user, password, scope string) (int, error) {
	q := url.Values{"service": {service}, "scope": {scope}}
	req, _ := http.NewRequest(http.MethodGet, realm+"?"+q.Encode(), nil)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// accessOf decodes a token's access claim (the signature is the
// registry's business; these tests look at what was granted).
func accessOf(t *testing.T, raw string) []token.Access {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWS", raw)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c token.Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Access
}

// actionsOn returns the actions a token's access grants on a repository.
func actionsOn(access []token.Access, repo string) []string {
	var out []string
	for _, a := range access {
		if a.Type == "repository" && a.Name == repo {
			out = append(out, a.Actions...)
		}
	}
	slices.Sort(out)
	return out
}

// want checks a token answer's status.
func (a tokenAnswer) want(t *testing.T, status int, what string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, a.status, status, a.body)
	}
}

// wantUnavailable checks a refusal because a source could not answer: 503
// UNAVAILABLE with Retry-After 5, within bound.
func (a tokenAnswer) wantUnavailable(t *testing.T, bound time.Duration, what string) {
	t.Helper()
	a.want(t, http.StatusServiceUnavailable, what)
	if a.code != "UNAVAILABLE" || a.retryAfter != "5" {
		t.Fatalf("%s: code %q, Retry-After %q; want UNAVAILABLE and 5 (body %s)", what, a.code, a.retryAfter, a.body)
	}
	if a.elapsed > bound {
		t.Fatalf("%s: the refusal took %s, more than %s", what, a.elapsed.Round(time.Millisecond), bound)
	}
}

// caddyLog lets a test read what Caddy logged after a point.
type caddyLog struct{ from int }

func markCaddyLog(t *testing.T) caddyLog {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(shared.dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	return caddyLog{len(data)}
}

// lines returns the log lines since the mark that contain every one of subs.
func (l caddyLog) lines(t *testing.T, subs ...string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(shared.dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data[min(l.from, len(data)):]), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// backendMatrix is what a source of users must give through a registry:
// the devs member pushes and pulls back, the readers member pulls and
// cannot push, a member of no group gets nothing, and wrong passwords and
// unknown names are refused (401, never 503: the source did answer).
func backendMatrix(t *testing.T, reg *registry, realm string, u backendUsers, repo string) {
	img := randomImage(t)
	t.Run("devs member pushes and pulls back", func(t *testing.T) {
		if err := pushAs(t, reg, repo+":v1", u.auth(u.dev), img); err != nil {
			t.Fatal(err)
		}
		got, err := pullAs(t, reg, repo+":v1", u.auth(u.dev))
		if err != nil {
			t.Fatal(err)
		}
		if want := digest(t, img); got != want {
			t.Fatalf("pulled %s, pushed %s", got, want)
		}
	})
	t.Run("readers member pulls but cannot push", func(t *testing.T) {
		got, err := pullAs(t, reg, repo+":v1", u.auth(u.reader))
		if err != nil {
			t.Fatal(err)
		}
		if want := digest(t, img); got != want {
			t.Fatalf("pulled %s, pushed %s", got, want)
		}
		wantRefused(t, pushAs(t, reg, repo+":v2", u.auth(u.reader), randomImage(t)), "push by "+u.reader)
		a := askToken(t, realm, u.reader, u.pw[u.reader], "repository:"+repo+":pull,push")
		a.want(t, http.StatusOK, "token for "+u.reader)
		if got := actionsOn(a.access, repo); !slices.Equal(got, []string{"pull"}) {
			t.Fatalf("%s was granted %v on %s, want [pull]", u.reader, got, repo)
		}
	})
	t.Run("member of no group gets nothing", func(t *testing.T) {
		_, err := pullAs(t, reg, repo+":v1", u.auth(u.none))
		wantRefused(t, err, "pull by "+u.none)
		a := askToken(t, realm, u.none, u.pw[u.none], "repository:"+repo+":pull")
		a.want(t, http.StatusOK, "token for "+u.none+" (a known user, with no grant)")
		if len(a.access) != 0 {
			t.Fatalf("%s was granted %v", u.none, a.access)
		}
	})
	t.Run("wrong password is refused", func(t *testing.T) {
		_, err := pullAs(t, reg, repo+":v1", &authn.Basic{Username: u.dev, Password: "not-" + u.pw[u.dev]})
		wantRefused(t, err, "pull with a wrong password")
		askToken(t, realm, u.dev, "not-"+u.pw[u.dev], "repository:"+repo+":pull").want(t, http.StatusUnauthorized, "wrong password")
		// Another user's password is just as wrong.
		askToken(t, realm, u.dev, u.pw[u.reader], "repository:"+repo+":pull").want(t, http.StatusUnauthorized, "another user's password")
		// An empty password would be an LDAP "unauthenticated bind",
		// which directories answer with success.
		askToken(t, realm, u.dev, "", "repository:"+repo+":pull").want(t, http.StatusUnauthorized, "empty password")
	})
	t.Run("unknown name is refused", func(t *testing.T) {
		_, err := pullAs(t, reg, repo+":v1", &authn.Basic{Username: "nosuchuser", Password: u.pw[u.dev]})
		wantRefused(t, err, "pull as an unknown user")
		askToken(t, realm, "nosuchuser", u.pw[u.dev], "repository:"+repo+":pull").want(t, http.StatusUnauthorized, "unknown name")
	})
}

// TestLDAPUsers: users of a real OpenLDAP directory log in through the
// token endpoint and use both registry families, with groups found by a
// group search, by memberOf, or both, after a search-then-bind or a
// direct bind.
func TestLDAPUsers(t *testing.T) {
	dir := startSlapd(t)
	if !dir.MemberOf {
		t.Fatal("the memberof overlay did not fill in memberOf: the memberOf cells cannot run")
	}
	search := fmt.Sprintf(`
			bind_dn %s
			bind_password %s
			base_dn %s
			user_filter "(uid={user})"`, LDAPAdminDN, LDAPAdminPassword, LDAPPeopleDN)
	groupSearch := fmt.Sprintf(`
			group_base_dn %s
			group_filter "(member={dn})"
			group_name_attribute cn`, LDAPGroupsDN)
	variants := []struct {
		name, lines string
		families    []string
	}{
		{"search-bind/group-search", search + groupSearch, []string{"v3", "v2.8"}},
		{"direct-bind/memberOf", fmt.Sprintf(`
			user_dn "uid={user},%s"
			group_attribute memberOf`, LDAPPeopleDN), []string{"v3"}},
		{"direct-bind/group-search", fmt.Sprintf(`
			user_dn "uid={user},%s"`, LDAPPeopleDN) + groupSearch, []string{"v3"}},
		{"search-bind/memberOf+group-search", search + `
			group_attribute memberOf` + groupSearch, []string{"v3"}},
	}
	site := newBackendsSite(t)
	site.loadWithoutDirectory(t) // writes the bundle the registries trust
	regs := map[string]*registry{}
	for _, family := range []string{"v3", "v2.8"} {
		regs[family] = startBackendsRegistry(t, family, site.realm)
	}
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			// The credential cache is off: every login asks the directory.
			site.load(t, fmt.Sprintf(`
		credential_cache off
		authenticator ldap {
			url %s
			timeout 2s
			pool_size 4%s
		}`, dir.URL, v.lines), "")
			for _, family := range v.families {
				t.Run(family, func(t *testing.T) {
					backendMatrix(t, regs[family], site.realm, ldapNames, fmt.Sprintf("devs/ldap%d", i))
				})
			}
			t.Run("filter and DN metacharacters in the name", func(t *testing.T) {
				pw := ldapNames.pw["ldev"]
				for _, name := range []string{"*", "ldev*", "*)(uid=*", "ldev)(|(uid=*", `ldev\`, "ldev,ou=people,dc=example,dc=org", "uid=ldev"} {
					askToken(t, site.realm, name, pw, "repository:devs/x:pull").want(t, http.StatusUnauthorized, fmt.Sprintf("name %q with ldev's password", name))
				}
			})
		})
	}
}

// TestLDAPProxyMode: an LDAP user through registry_auth_proxy, with go-
// containerregistry (token dance on the proxy's own token path) and with
// Basic credentials on every request.
func TestLDAPProxyMode(t *testing.T) {
	dir := startSlapd(t)
	regPort, proxyPort := FreePort(), FreePort()
	startV3(t, shared, registrySetup{port: regPort})
	site := newBackendsSite(t)
	site.load(t, ldapSearchBind(dir), fmt.Sprintf(`
http://localhost:%d {
	log
	registry_auth_proxy {
		policy %s
		upstream localhost:%d
	}
}
`, proxyPort, backendsPolicy, regPort))
	proxy := &registry{family: "v3", host: fmt.Sprintf("localhost:%d", proxyPort)}
	if err := WaitHTTP("http://"+proxy.host+"/v2/", http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	t.Run("ggcr", func(t *testing.T) {
		backendMatrix(t, proxy, "http://"+proxy.host+"/auth/token", ldapNames, "devs/proxied")
	})
	t.Run("basic", func(t *testing.T) {
		dev := &rawClient{t: t, base: "http://" + proxy.host, user: "ldev", pw: ldapNames.pw["ldev"]}
		reader := &rawClient{t: t, base: "http://" + proxy.host, user: "lread", pw: ldapNames.pw["lread"]}
		manifest, _ := dev.pushImage("devs/raw", "v1", []byte("a layer for "+t.Name()), 0)
		body := expect(t, reader.getManifest("devs/raw", "v1"), http.StatusOK, "manifest by lread")
		if sha(body) != manifest {
			t.Fatalf("manifest %s, pushed %s", sha(body), manifest)
		}
		resp, _ := reader.startUpload("devs/raw", "")
		wantRegistryError(t, resp, expect(t, resp, http.StatusForbidden, "upload by lread"), "DENIED")
		bad := &rawClient{t: t, base: "http://" + proxy.host, user: "ldev", pw: "wrong"}
		resp = bad.getManifest("devs/raw", "v1")
		wantRegistryError(t, resp, expect(t, resp, http.StatusUnauthorized, "wrong password"), "UNAUTHORIZED")
	})
	t.Run("directory down", func(t *testing.T) {
		dir.Stop()
		c := &rawClient{t: t, base: "http://" + proxy.host, user: "lread", pw: "a password never tried"}
		start := time.Now()
		resp := c.getManifest("devs/raw", "v1")
		wantRegistryError(t, resp, expect(t, resp, http.StatusServiceUnavailable, "pull while the directory is down"), "UNAVAILABLE")
		if resp.Header.Get("Retry-After") != "5" || time.Since(start) > 6*time.Second {
			t.Fatalf("Retry-After %q after %s", resp.Header.Get("Retry-After"), time.Since(start))
		}
	})
}

// TestLDAPDirectoryDown: a directory that cannot answer refuses logins
// (503, logged, within the timeout), never hangs them and never lets
// anyone in; when it is back, logins work again on new connections.
func TestLDAPDirectoryDown(t *testing.T) {
	dir := startSlapd(t)
	site := newBackendsSite(t)
	const timeout = 2 * time.Second
	const bound = timeout + 4*time.Second // proves no hang; not a speed claim
	site.load(t, fmt.Sprintf(`
		credential_cache off
		authenticator ldap {
			url %s
			timeout %s
			pool_size 2
			bind_dn %s
			bind_password %s
			base_dn %s
			group_base_dn %s
		}`, dir.URL, timeout, LDAPAdminDN, LDAPAdminPassword, LDAPPeopleDN, LDAPGroupsDN), "")
	pw := ldapNames.pw["ldev"]
	scope := "repository:devs/app:pull,push"
	loginWorks := func(t *testing.T, what string) {
		t.Helper()
		a := askToken(t, site.realm, "ldev", pw, scope)
		a.want(t, http.StatusOK, what)
		if got := actionsOn(a.access, "devs/app"); !slices.Equal(got, []string{"pull", "push"}) {
			t.Fatalf("%s: granted %v, want pull and push", what, got)
		}
		askToken(t, site.realm, "ldev", "wrong", scope).want(t, http.StatusUnauthorized, what+": wrong password")
	}
	wantRefusedAndLogged := func(t *testing.T, what string) {
		t.Helper()
		mark := markCaddyLog(t)
		right := askToken(t, site.realm, "ldev", pw, scope)
		right.wantUnavailable(t, bound, what)
		// A wrong password cannot be told from a right one: also 503.
		// (A password found wrong within the last minute is answered 401
		// at once by the throttle, without asking anyone: that tells the
		// client nothing it did not know. This one is new.)
		wrong := askToken(t, site.realm, "ldev", "wrong-"+what, scope)
		wrong.wantUnavailable(t, bound, what+", wrong password")
		t.Logf("%s: refused after %s and %s (timeout %s)", what, right.elapsed.Round(time.Millisecond), wrong.elapsed.Round(time.Millisecond), timeout)
		lines := mark.lines(t, "authenticator failed; login refused", `"authenticator":"ldap"`, `"policy":"backends"`)
		if len(lines) < 2 {
			t.Fatalf("%s: %d log lines name the failed ldap authenticator, want 2", what, len(lines))
		}
		t.Logf("%s: %s", what, lines[0])
		if l := mark.lines(t, `"msg":"token request"`, `"user":"ldev"`); len(l) < 2 || !strings.Contains(l[0], `"outcome":"busy"`) {
			t.Fatalf("%s: decision lines %v, want outcome busy", what, l)
		}
	}

	t.Run("before", func(t *testing.T) { loginWorks(t, "directory up") })
	t.Run("concurrent logins share the pool", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := 0; i < 40; i++ {
			user, password, want := "ldev", pw, http.StatusOK
			if i%2 == 1 {
				user, password, want = "lread", "wrong", http.StatusUnauthorized
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if status, err := backendTokenStatus(site.realm, user, password, scope); err != nil || status != want {
					errs <- fmt.Errorf("%s: status %d (%v), want %d", user, status, err, want)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("restarted between logins", func(t *testing.T) {
		// The pooled connections die with the directory; the next login
		// must not fail because of them.
		if err := dir.Restart(); err != nil {
			t.Fatal(err)
		}
		loginWorks(t, "first login after a restart")
	})
	t.Run("stopped", func(t *testing.T) {
		dir.Stop()
		wantRefusedAndLogged(t, "directory stopped")
	})
	t.Run("restarted", func(t *testing.T) {
		if err := dir.Restart(); err != nil {
			t.Fatal(err)
		}
		loginWorks(t, "directory restarted")
	})
	t.Run("hung", func(t *testing.T) {
		// Frozen: connections are accepted by the kernel, nothing answers.
		// The pooled connections and a new one each wait for the timeout.
		if err := dir.Pause(); err != nil {
			t.Fatal(err)
		}
		resumed := false
		t.Cleanup(func() {
			if !resumed {
				_ = dir.Resume()
			}
		})
		wantRefusedAndLogged(t, "directory hung")
		resumed = true
		if err := dir.Resume(); err != nil {
			t.Fatal(err)
		}
		loginWorks(t, "directory resumed")
	})
}

// httpAuthService is an HTTP authentication service for the tests: a
// user's right password answers 200 with the user's groups, anything else
// 401. It records what it was sent.
type httpAuthService struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string // "METHOD content-type user"
}

func newHTTPAuthService(t *testing.T, users map[string]string, groups map[string][]string) *httpAuthService {
	t.Helper()
	s := &httpAuthService{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		s.mu.Lock()
		s.calls = append(s.calls, r.Method+" "+r.Header.Get("Content-Type")+" "+user)
		s.mu.Unlock()
		if !ok || r.Method != http.MethodPost || users[user] == "" || users[user] != pw {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"groups": groups[user]})
	}))
	t.Cleanup(s.Close)
	return s
}

var httpNames = backendUsers{dev: "hdev", reader: "hread", none: "hnone", pw: map[string]string{
	"hdev": "hdev-Secret-1", "hread": "hread-Secret-2", "hnone": "hnone-Secret-3",
}}

var httpGroups = map[string][]string{"hdev": {"devs", "other"}, "hread": {"readers"}}

// TestHTTPAuthenticatorUsers: users of an HTTP authentication service,
// with the groups it returns, through the token endpoint and v3.
func TestHTTPAuthenticatorUsers(t *testing.T) {
	svc := newHTTPAuthService(t, httpNames.pw, httpGroups)
	site := newBackendsSite(t)
	site.load(t, fmt.Sprintf(`
		credential_cache off
		authenticator http {
			url %s/auth
			timeout 2s
		}`, svc.URL), "")
	for _, family := range []string{"v3", "v2.8"} {
		t.Run(family, func(t *testing.T) {
			backendMatrix(t, startBackendsRegistry(t, family, site.realm), site.realm, httpNames, "devs/http-"+strings.ReplaceAll(family, ".", ""))
		})
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if len(svc.calls) == 0 || svc.calls[0] != "POST application/json hdev" {
		t.Fatalf("the service was sent %v, want POSTs of JSON with Basic credentials", svc.calls)
	}
}

// TestHTTPAuthenticatorFailures: the service's answers other than 2xx.
// 401 and 403 refuse the login (401) whatever their body says; a slow
// answer, a server error, a redirect or a body that is not the expected
// JSON make it a source that cannot answer (503), within the timeout.
func TestHTTPAuthenticatorFailures(t *testing.T) {
	const timeout = 2 * time.Second
	const bound = timeout + 4*time.Second
	jsonAnswer := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}
	}
	cases := []struct {
		name    string
		handler http.HandlerFunc
		status  int
	}{
		{"401 with groups in the body", jsonAnswer(http.StatusUnauthorized, `{"groups":["devs"]}`), http.StatusUnauthorized},
		{"403 with groups in the body", jsonAnswer(http.StatusForbidden, `{"groups":["devs"]}`), http.StatusUnauthorized},
		{"200 after the timeout", func(w http.ResponseWriter, r *http.Request) {
			// Read the body, so the server notices when the client gives up.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-time.After(3 * timeout):
			case <-r.Context().Done():
				return
			}
			jsonAnswer(http.StatusOK, `{"groups":["devs"]}`)(w, r)
		}, http.StatusServiceUnavailable},
		{"500", jsonAnswer(http.StatusInternalServerError, `{"groups":["devs"]}`), http.StatusServiceUnavailable},
		{"404", jsonAnswer(http.StatusNotFound, ``), http.StatusServiceUnavailable},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, http.StatusServiceUnavailable},
		{"200 with a body that is not JSON", jsonAnswer(http.StatusOK, `<html>welcome</html>`), http.StatusServiceUnavailable},
		{"200 with groups that are not strings", jsonAnswer(http.StatusOK, `{"groups":"devs"}`), http.StatusServiceUnavailable},
	}
	site := newBackendsSite(t)
	site.loadWithoutDirectory(t)
	reg := startBackendsRegistry(t, "v3", site.realm)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc := httptest.NewServer(c.handler)
			defer svc.Close()
			site.load(t, fmt.Sprintf(`
		authenticator http {
			url %s/auth
			timeout %s
		}`, svc.URL, timeout), "")
			mark := markCaddyLog(t)
			a := askToken(t, site.realm, "hdev", "any-password", "repository:devs/http:pull,push")
			if c.status == http.StatusServiceUnavailable {
				a.wantUnavailable(t, bound, c.name)
				lines := mark.lines(t, "authenticator failed; login refused", `"authenticator":"http"`)
				if len(lines) != 1 {
					t.Fatalf("%d log lines name the failed http authenticator, want 1", len(lines))
				}
				t.Logf("%s", lines[0])
			} else {
				a.want(t, c.status, c.name)
				if a.code != "UNAUTHORIZED" {
					t.Fatalf("code %q, want UNAUTHORIZED", a.code)
				}
				wantRefused(t, pushAs(t, reg, "devs/http:v1", &authn.Basic{Username: "hdev", Password: "any-password"}, randomImage(t)), "push after a "+c.name)
			}
		})
	}
}

// authzQuestion is what the HTTP authorizer sends.
type authzQuestion struct {
	User     string   `json:"user"`
	Groups   []string `json:"groups"`
	Service  string   `json:"service"`
	ClientIP string   `json:"client_ip"`
	Scopes   []struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	} `json:"scopes"`
}

// TestHTTPAuthorizer: an HTTP authorizer's grants join the rules', never
// beyond what was asked; when it cannot answer it grants nothing and the
// rules still work.
func TestHTTPAuthorizer(t *testing.T) {
	users := newHTTPAuthService(t, httpNames.pw, httpGroups)
	var mu sync.Mutex
	var questions []authzQuestion
	down := false
	authz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q authzQuestion
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		questions = append(questions, q)
		isDown := down
		mu.Unlock()
		if isDown {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		// hnone, in no group, may pull shared/app; and the service
		// offers more than anyone asks, which must be ignored.
		var grants []map[string]any
		if q.User == "hnone" {
			grants = append(grants,
				map[string]any{"type": "repository", "name": "shared/app", "actions": []string{"pull", "delete"}},
				map[string]any{"type": "repository", "name": "devs/secret", "actions": []string{"pull", "push"}},
				map[string]any{"type": "registry", "name": "catalog", "actions": []string{"*"}})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"scopes": grants})
	}))
	defer authz.Close()
	setDown := func(v bool) { mu.Lock(); down = v; mu.Unlock() }
	asked := func() []authzQuestion { mu.Lock(); defer mu.Unlock(); return slices.Clone(questions) }
	// askedSince is what the authorizer was asked about user since the
	// count before: a client whose push was refused may still have token
	// requests of its own under way, for another user.
	askedSince := func(before int, user string) []authzQuestion {
		var q []authzQuestion
		for _, x := range asked()[before:] {
			if x.User == user {
				q = append(q, x)
			}
		}
		return q
	}

	site := newBackendsSite(t)
	body := func(cacheTTL string) string {
		return fmt.Sprintf(`
		authenticator http {
			url %s/auth
			timeout 2s
		}
		authorizer http {
			url %s/authz
			timeout 2s
			cache_ttl %s
		}`, users.URL, authz.URL, cacheTTL)
	}
	site.load(t, body("off"), "")
	reg := startBackendsRegistry(t, "v3", site.realm)
	img := randomImage(t)
	if err := pushAs(t, reg, "shared/app:v1", httpNames.auth("hdev"), img); err != nil {
		t.Fatal(err)
	}

	t.Run("the authorizer adds pull, not push", func(t *testing.T) {
		before := len(asked())
		a := askToken(t, site.realm, "hnone", httpNames.pw["hnone"], "repository:shared/app:pull,push")
		a.want(t, http.StatusOK, "token for hnone")
		if len(a.access) != 1 || !slices.Equal(actionsOn(a.access, "shared/app"), []string{"pull"}) {
			t.Fatalf("hnone was granted %+v, want only pull on shared/app", a.access)
		}
		q := askedSince(before, "hnone")
		if len(q) != 1 {
			t.Fatalf("the authorizer was asked %d times, want 1", len(q))
		}
		got := q[0]
		if got.User != "hnone" || len(got.Groups) != 0 || got.Service != service || got.ClientIP != "127.0.0.1" ||
			len(got.Scopes) != 1 || got.Scopes[0].Type != "repository" || got.Scopes[0].Name != "shared/app" || !slices.Equal(got.Scopes[0].Actions, []string{"pull", "push"}) {
			t.Fatalf("the authorizer was asked %+v", got)
		}
		d, err := pullAs(t, reg, "shared/app:v1", httpNames.auth("hnone"))
		if err != nil {
			t.Fatal(err)
		}
		if d != digest(t, img) {
			t.Fatalf("pulled %s, pushed %s", d, digest(t, img))
		}
		wantRefused(t, pushAs(t, reg, "shared/app:v2", httpNames.auth("hnone"), randomImage(t)), "push by hnone")
	})
	t.Run("the authorizer is told the groups and cannot take away", func(t *testing.T) {
		before := len(asked())
		a := askToken(t, site.realm, "hdev", httpNames.pw["hdev"], "repository:shared/app:pull,push")
		if !slices.Equal(actionsOn(a.access, "shared/app"), []string{"pull", "push"}) {
			t.Fatalf("hdev was granted %+v, want pull and push from the rules", a.access)
		}
		q := askedSince(before, "hdev")
		if len(q) != 1 || q[0].User != "hdev" || !slices.Equal(q[0].Groups, []string{"devs", "other"}) {
			t.Fatalf("the authorizer was asked %+v, want hdev with groups devs and other", q)
		}
	})
	t.Run("the authorizer's grants outside the request are ignored", func(t *testing.T) {
		a := askToken(t, site.realm, "hnone", httpNames.pw["hnone"], "repository:shared/app:pull", "repository:devs/other:pull")
		if len(a.access) != 1 || !slices.Equal(actionsOn(a.access, "shared/app"), []string{"pull"}) {
			t.Fatalf("hnone was granted %+v, want only pull on shared/app", a.access)
		}
	})
	t.Run("a wildcard request is asked expanded", func(t *testing.T) {
		before := len(asked())
		a := askToken(t, site.realm, "hnone", httpNames.pw["hnone"], "repository:shared/app:*")
		if got := actionsOn(a.access, "shared/app"); !slices.Equal(got, []string{"delete", "pull"}) {
			t.Fatalf("hnone asking for * was granted %v, want what the service offered: delete and pull", got)
		}
		q := askedSince(before, "hnone")
		if len(q) != 1 || len(q[0].Scopes) != 1 {
			t.Fatalf("the authorizer was asked %+v", q)
		}
		// The named actions, and "*" too (as in tokens: zot does not
		// understand "*", distribution ignores the duplicates).
		acts := slices.Sorted(slices.Values(q[0].Scopes[0].Actions))
		if !slices.Equal(acts, []string{"*", "delete", "pull", "push"}) {
			t.Fatalf("the authorizer was asked for %v, want * expanded to delete, pull, push (and * kept)", q[0].Scopes[0].Actions)
		}
	})
	t.Run("down, it grants nothing; the rules still work", func(t *testing.T) {
		setDown(true)
		defer setDown(false)
		mark := markCaddyLog(t)
		a := askToken(t, site.realm, "hnone", httpNames.pw["hnone"], "repository:shared/app:pull")
		a.want(t, http.StatusOK, "token for hnone while the authorizer is down")
		if len(a.access) != 0 {
			t.Fatalf("hnone was granted %+v while the authorizer was down", a.access)
		}
		_, err := pullAs(t, reg, "shared/app:v1", httpNames.auth("hnone"))
		wantRefused(t, err, "pull by hnone while the authorizer is down")
		if l := mark.lines(t, "authorizer failed; it grants nothing", `"authorizer":"http"`, `"policy":"backends"`); len(l) == 0 {
			t.Fatal("no log line names the failed http authorizer")
		}
		if err := pushAs(t, reg, "shared/app:v3", httpNames.auth("hdev"), randomImage(t)); err != nil {
			t.Fatalf("push by hdev (a rule) while the authorizer is down: %v", err)
		}
		// Unreachable, not just failing: the same.
		authzURL := authz.URL
		site.load(t, strings.Replace(body("off"), authzURL, fmt.Sprintf("http://127.0.0.1:%d", FreePort()), 1), "")
		a = askToken(t, site.realm, "hnone", httpNames.pw["hnone"], "repository:shared/app:pull")
		a.want(t, http.StatusOK, "token for hnone while the authorizer is unreachable")
		if len(a.access) != 0 {
			t.Fatalf("hnone was granted %+v while the authorizer was unreachable", a.access)
		}
		if err := pushAs(t, reg, "shared/app:v4", httpNames.auth("hdev"), randomImage(t)); err != nil {
			t.Fatalf("push by hdev (a rule) while the authorizer is unreachable: %v", err)
		}
	})
	t.Run("answers are reused for cache_ttl", func(t *testing.T) {
		site.load(t, body("1m"), "")
		before := len(asked())
		for i := 0; i < 3; i++ {
			a := askToken(t, site.realm, "hnone", httpNames.pw["hnone"], "repository:shared/app:pull")
			if !slices.Equal(actionsOn(a.access, "shared/app"), []string{"pull"}) {
				t.Fatalf("hnone was granted %+v", a.access)
			}
		}
		if n := len(asked()) - before; n != 1 {
			t.Fatalf("the authorizer was asked %d times for one question within cache_ttl, want 1", n)
		}
	})
}

// ldapSearchBind is an ldap authenticator block with search, then bind,
// and a group search.
func ldapSearchBind(dir *Slapd) string {
	return fmt.Sprintf(`
		authenticator ldap {
			url %s
			timeout 2s
			bind_dn %s
			bind_password %s
			base_dn %s
			group_base_dn %s
		}`, dir.URL, LDAPAdminDN, LDAPAdminPassword, LDAPPeopleDN, LDAPGroupsDN)
}

// TestLDAPNameVariants: the directory matches uid (and DNs) ignoring case
// and surrounding spaces, so it lets "LDEV" or "ldev " in with ldev's
// password. Whatever name it accepts, rules about ldev must hold for
// every spelling: either the spelling is refused or the user is ldev.
func TestLDAPNameVariants(t *testing.T) {
	dir := startSlapd(t)
	site := newBackendsSite(t)
	const scope = "repository:devs/locked/app:pull,push"
	deny := `
		deny user:ldev push devs/locked/**`
	for _, mode := range []struct{ name, block string }{
		{"search-bind", ldapSearchBind(dir)},
		{"direct-bind", fmt.Sprintf(`
		authenticator ldap {
			url %s
			user_dn "uid={user},%s"
			group_attribute memberOf
		}`, dir.URL, LDAPPeopleDN)},
	} {
		t.Run(mode.name, func(t *testing.T) {
			site.load(t, mode.block+deny, "")
			a := askToken(t, site.realm, "ldev", ldapNames.pw["ldev"], scope)
			a.want(t, http.StatusOK, "ldev")
			if got := actionsOn(a.access, "devs/locked/app"); !slices.Equal(got, []string{"pull"}) {
				t.Fatalf("ldev was granted %v on devs/locked/app, want [pull] (push is denied)", got)
			}
			for _, name := range []string{"LDEV", "lDev", "ldev ", " ldev"} {
				a := askToken(t, site.realm, name, ldapNames.pw["ldev"], scope)
				if a.status == http.StatusOK && slices.Contains(actionsOn(a.access, "devs/locked/app"), "push") {
					t.Errorf("%q logs in with ldev's password as another user and gets %v on devs/locked/app: `deny user:ldev push` is bypassed", name, actionsOn(a.access, "devs/locked/app"))
				} else if a.status != http.StatusOK && a.status != http.StatusUnauthorized {
					t.Errorf("%q: status %d, want 401 or a token without push", name, a.status)
				}
			}
		})
	}
}

// TestLDAPDockerLogin: `docker login` asks for a refresh token
// (offline_token=true on GET, access_type=offline on POST). An LDAP user
// has no password hash in the policy to bind one to, but the login itself
// must still succeed: Docker then keeps the password instead.
func TestLDAPDockerLogin(t *testing.T) {
	dir := startSlapd(t)
	site := newBackendsSite(t)
	site.load(t, ldapSearchBind(dir), "")
	pw := ldapNames.pw["ldev"]

	req, _ := http.NewRequest(http.MethodGet, site.realm+"?account=ldev&client_id=docker&offline_token=true&service="+service, nil)
	req.SetBasicAuth("ldev", pw)
	body := expect(t, do(t, req), http.StatusOK, "docker login (GET, offline_token=true) by an LDAP user")
	checkLoginAnswer(t, site.realm, body)

	form := url.Values{"grant_type": {"password"}, "client_id": {"docker"}, "access_type": {"offline"}, "service": {service}, "username": {"ldev"}, "password": {pw}, "scope": {"repository:devs/app:pull"}}
	resp, err := http.Post(site.realm, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	checkLoginAnswer(t, site.realm, expect(t, resp, http.StatusOK, "password grant with access_type=offline by an LDAP user"))
}

// checkLoginAnswer: a token, and a refresh token only if it works.
func checkLoginAnswer(t *testing.T, realm string, body []byte) {
	t.Helper()
	var r struct {
		Token        string `json:"token"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &r); err != nil || (r.Token == "" && r.AccessToken == "") {
		t.Fatalf("login answer %s", body)
	}
	if r.RefreshToken != "" {
		expect(t, refreshGrant(t, realm, r.RefreshToken, service, "repository:devs/app:pull"), http.StatusOK, "the refresh token of an LDAP user")
	}
}

// TestAuthenticatorOrder: the policy's own users are asked first, then
// each authenticator in order; the first source that knows a name
// decides, and one that cannot answer refuses the login rather than
// passing it on.
func TestAuthenticatorOrder(t *testing.T) {
	dir := startSlapd(t)
	svc := newHTTPAuthService(t, map[string]string{"hdev": httpNames.pw["hdev"], "lread": "lread-http-password"}, httpGroups)
	site := newBackendsSite(t)
	site.load(t, `
		credential_cache off
		user ldev plaintext ldev-own-password`+ldapSearchBind(dir)+fmt.Sprintf(`
		authenticator http {
			url %s/auth
			timeout 2s
		}`, svc.URL), "")
	httpAsked := func(user string) int {
		svc.mu.Lock()
		defer svc.mu.Unlock()
		n := 0
		for _, c := range svc.calls {
			if strings.HasSuffix(c, " "+user) {
				n++
			}
		}
		return n
	}
	const scope = "repository:devs/app:pull"
	t.Run("own user first", func(t *testing.T) {
		askToken(t, site.realm, "ldev", "ldev-own-password", scope).want(t, http.StatusOK, "ldev with the policy's password")
		askToken(t, site.realm, "ldev", ldapNames.pw["ldev"], scope).want(t, http.StatusUnauthorized, "ldev with the directory's password")
	})
	t.Run("the directory decides for its users", func(t *testing.T) {
		a := askToken(t, site.realm, "lread", ldapNames.pw["lread"], scope)
		a.want(t, http.StatusOK, "lread with the directory's password")
		if !slices.Equal(actionsOn(a.access, "devs/app"), []string{"pull"}) {
			t.Fatalf("lread was granted %v", a.access)
		}
		askToken(t, site.realm, "lread", "lread-http-password", scope).want(t, http.StatusUnauthorized, "lread with the HTTP service's password")
		if n := httpAsked("lread"); n != 0 {
			t.Fatalf("the HTTP service was asked about lread %d times, a directory user", n)
		}
	})
	t.Run("names the directory lacks go to the next", func(t *testing.T) {
		a := askToken(t, site.realm, "hdev", httpNames.pw["hdev"], "repository:devs/app:pull,push")
		a.want(t, http.StatusOK, "hdev from the HTTP service")
		if !slices.Equal(actionsOn(a.access, "devs/app"), []string{"pull", "push"}) {
			t.Fatalf("hdev was granted %v", a.access)
		}
	})
	t.Run("a source that cannot answer stops the search", func(t *testing.T) {
		dir.Stop()
		before := httpAsked("hdev")
		askToken(t, site.realm, "hdev", httpNames.pw["hdev"], scope).wantUnavailable(t, 6*time.Second, "hdev while the directory is down")
		if httpAsked("hdev") != before {
			t.Fatal("the HTTP service was asked about hdev while the directory before it could not answer")
		}
		askToken(t, site.realm, "ldev", "ldev-own-password", scope).want(t, http.StatusOK, "the policy's own user while the directory is down")
	})
}

// TestLDAPTLS: ldaps:// and StartTLS to slapd with its certificate
// verified against ca_file; a certificate that does not verify (no
// ca_file, so the system's roots, or another CA) refuses the login.
func TestLDAPTLS(t *testing.T) {
	dir := startSlapd(t)
	site := newBackendsSite(t)
	otherCA, err := writeTestPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	startTLSURL := fmt.Sprintf("ldap://localhost:%d", dir.Port)
	block := func(url, extra string) string {
		return fmt.Sprintf(`
		authenticator ldap {
			url %s%s
			timeout 2s
			bind_dn %s
			bind_password %s
			base_dn %s
			group_base_dn %s
		}`, url, extra, LDAPAdminDN, LDAPAdminPassword, LDAPPeopleDN, LDAPGroupsDN)
	}
	const scope = "repository:devs/app:pull,push"
	for _, tc := range []struct {
		name, block string
		ok          bool
		logged      string
	}{
		{"ldaps", block(dir.LDAPSURL, "\n\t\t\tca_file "+dir.CAFile), true, ""},
		{"starttls", block(startTLSURL, "\n\t\t\tstarttls\n\t\t\tca_file "+dir.CAFile), true, ""},
		{"ldaps, system roots", block(dir.LDAPSURL, ""), false, "certificate signed by unknown authority"},
		{"starttls, another CA", block(startTLSURL, "\n\t\t\tstarttls\n\t\t\tca_file "+otherCA), false, "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site.load(t, tc.block+"\n\t\tcredential_cache off", "")
			mark := markCaddyLog(t)
			a := askToken(t, site.realm, "ldev", ldapNames.pw["ldev"], scope)
			if tc.ok {
				a.want(t, http.StatusOK, "ldev over TLS")
				if got := actionsOn(a.access, "devs/app"); !slices.Equal(got, []string{"pull", "push"}) {
					t.Fatalf("ldev got %v on devs/app, want pull and push (group devs from the directory)", got)
				}
				askToken(t, site.realm, "ldev", "wrong", scope).want(t, http.StatusUnauthorized, "a wrong password over TLS")
				return
			}
			a.wantUnavailable(t, 6*time.Second, "a certificate that does not verify")
			if lines := mark.lines(t, "authenticator failed", tc.logged); len(lines) == 0 {
				t.Fatalf("no log line says %q", tc.logged)
			}
		})
	}
}
