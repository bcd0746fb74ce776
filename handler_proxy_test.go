package registryauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// fakeUpstream stands for the reverse_proxy: it records what it was given
// and answers 200. It reads mount and from as distribution's
// StartBlobUpload does (r.FormValue: a form body first, then the query).
type fakeUpstream struct {
	calls       int
	internal    int // the proxy's own questions
	method      string
	url         url.URL
	auth        []string
	header      http.Header
	mount, from string
	err         error             // returned, with nothing written, when set
	catalog     []string          // what /v2/_catalog lists, in order, as a registry pages it
	tags        map[string]string // repository:tag -> digest, for the proxy's questions about tags
	failOwn     int               // when set, the status the proxy's own questions get
}

func (u *fakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if subjectOf(r) == internalSubject {
		// The proxy's own question (a catalog page, a tag's digest).
		u.internal++
		if u.failOwn != 0 {
			w.WriteHeader(u.failOwn)
			return nil
		}
		return u.serveInternal(w, r)
	}
	u.calls++
	u.method = r.Method
	u.url = *r.URL
	u.auth = r.Header.Values("Authorization")
	u.header = r.Header.Clone()
	u.mount, u.from = r.FormValue("mount"), r.FormValue("from")
	if u.err != nil {
		return u.err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// subjectOf reads the subject of a request's bearer token, unverified.
func subjectOf(r *http.Request) string {
	parts := strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), ".")
	if len(parts) != 3 {
		return ""
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ Sub string }
	_ = json.Unmarshal(payload, &c)
	return c.Sub
}

func (u *fakeUpstream) serveInternal(w http.ResponseWriter, r *http.Request) error {
	route, err := token.ParseRoute(r.Method, r.URL.Path, "", "")
	switch {
	case r.URL.Path == "/v2/_catalog":
		return u.serveCatalog(w, r)
	case err == nil && route.Manifest != "" && r.Method == http.MethodHead:
		if d, ok := u.tags[route.Scope.Name+":"+route.Manifest]; ok {
			w.Header().Set("Docker-Content-Digest", d)
			w.WriteHeader(http.StatusOK)
			return nil
		}
	case err == nil && strings.HasSuffix(r.URL.Path, "/tags/list"):
		var tags []string
		for k := range u.tags {
			if repo, tag, _ := strings.Cut(k, ":"); repo == route.Scope.Name {
				tags = append(tags, tag)
			}
		}
		sort.Strings(tags)
		return writeJSON(w, http.StatusOK, map[string][]string{"tags": tags})
	}
	w.WriteHeader(http.StatusNotFound)
	return nil
}

// serveCatalog pages the catalog as distribution does: the names after
// last, at most n, and a Link when more follow.
func (u *fakeUpstream) serveCatalog(w http.ResponseWriter, r *http.Request) error {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	last := r.URL.Query().Get("last")
	var page []string
	i := 0
	for i < len(u.catalog) && u.catalog[i] <= last {
		i++
	}
	for ; i < len(u.catalog) && len(page) < n; i++ {
		page = append(page, u.catalog[i])
	}
	if i < len(u.catalog) {
		w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?last=%s&n=%d>; rel="next"`, page[len(page)-1], n))
	}
	return writeJSON(w, http.StatusOK, map[string][]string{"repositories": page})
}

type proxyFixture struct {
	h         *ProxyHandler
	up        *fakeUpstream
	nextCalls int
}

// newTestProxy builds a proxy around newTestHandler's policy, without
// Caddy: the users are alice (pull on lib/**, pull and push on alice/**)
// and admin (everything, and the catalog); anonymous may pull public/**.
func newTestProxy(t *testing.T) *proxyFixture {
	t.Helper()
	th := newTestHandler(t)
	up := &fakeUpstream{}
	return &proxyFixture{
		h: &ProxyHandler{
			TokenHandler:   *th,
			TokenPath:      DefaultTokenPath,
			service:        testService,
			proxy:          up,
			unreachableLog: &rareLog{interval: time.Minute},
			verified:       newVerifiedTokens(100),
			tags:           new(tagLocks),
		},
		up: up,
	}
}

func (f *proxyFixture) serve(t *testing.T, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	*f.up, f.nextCalls = fakeUpstream{err: f.up.err, catalog: f.up.catalog, tags: f.up.tags, failOwn: f.up.failOwn}, 0
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		f.nextCalls++
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	if err := f.h.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("ServeHTTP(%s %s) returned %v", r.Method, r.URL, err)
	}
	return w
}

func (f *proxyFixture) do(t *testing.T, method, target string, auth ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return f.serve(t, r)
}

// forwarded checks that the request reached the upstream once, with one
// Bearer token of ours (never the client's Basic credentials), and returns
// its claims.
func (f *proxyFixture) forwarded(t *testing.T, w *httptest.ResponseRecorder) *token.Claims {
	t.Helper()
	if w.Code != http.StatusOK || f.up.calls != 1 || f.nextCalls != 0 {
		t.Fatalf("status %d, upstream calls %d, next calls %d; body %s", w.Code, f.up.calls, f.nextCalls, w.Body)
	}
	if len(f.up.auth) != 1 || !hasScheme(f.up.auth[0], "Bearer") {
		t.Fatalf("forwarded Authorization %q, want one Bearer token", f.up.auth)
	}
	c, err := f.h.policy.Signer.Verify(f.up.auth[0][len("Bearer "):], "test-issuer", []string{testService}, time.Now())
	if err != nil {
		t.Fatalf("forwarded token does not verify: %v", err)
	}
	return c
}

// refused checks an answer that was not forwarded: status, the registry's
// version header and JSON error body, and on 401 exactly the challenge.
func (f *proxyFixture) refused(t *testing.T, w *httptest.ResponseRecorder, status int, code, challenge string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if f.up.calls != 0 || f.nextCalls != 0 {
		t.Fatalf("refused request was passed on: upstream %d, next %d", f.up.calls, f.nextCalls)
	}
	if v := w.Header().Get("Docker-Distribution-Api-Version"); v != "registry/2.0" {
		t.Fatalf("Docker-Distribution-Api-Version %q", v)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != code {
		t.Fatalf("body %s, want one error with code %s", w.Body, code)
	}
	if got := w.Header().Get("WWW-Authenticate"); got != challenge {
		t.Fatalf("WWW-Authenticate\n got %s\nwant %s", got, challenge)
	}
}

const realm = `Bearer realm="http://example.com/auth/token",service="registry.test"`

func challengeFor(scope, errCode string) string {
	c := realm
	if scope != "" {
		c += `,scope="` + scope + `"`
	}
	if errCode != "" {
		c += `,error="` + errCode + `"`
	}
	return c
}

func accessOf(c *token.Claims) string {
	if c.Access == nil {
		return "<nil>"
	}
	return accessString(c)
}

// sign makes a token with our signer for the proxy's service.
func (f *proxyFixture) sign(t *testing.T, sub string, access ...token.Scope) string {
	t.Helper()
	c := token.NewClaims("test-issuer", sub, testService, 5*time.Minute, time.Now(), token.AccessClaim(access))
	raw, err := f.h.policy.Signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func scope(name string, a token.Actions) token.Scope {
	return token.Scope{Type: token.TypeRepository, Name: name, Actions: a}
}

func TestProxyPassesOn(t *testing.T) {
	for _, target := range []string{"/", "/healthz", "/v2x", "/v20/", "/V2/", "/certs.pem", "/auth/x/certs.pem", "/auth/token/x", "/x/v2/"} {
		f := newTestProxy(t)
		w := f.do(t, http.MethodGet, target, basic("alice", "alice-pw"))
		if w.Code != http.StatusTeapot || f.nextCalls != 1 || f.up.calls != 0 {
			t.Errorf("%s: status %d, next %d, upstream %d; want only next", target, w.Code, f.nextCalls, f.up.calls)
		}
	}
}

func TestProxyServesTokenEndpoint(t *testing.T) {
	f := newTestProxy(t)
	w := f.do(t, http.MethodGet, "/auth/token?service=registry.test&scope=repository:lib/x:pull,push", basic("alice", "alice-pw"))
	if f.nextCalls != 0 || f.up.calls != 0 {
		t.Fatalf("token request passed on: next %d, upstream %d", f.nextCalls, f.up.calls)
	}
	c := grantOf(t, &f.h.TokenHandler, w)
	if got := accessString(c); got != "repository:lib/x:pull" || c.Subject != "alice" {
		t.Fatalf("sub %q access %q", c.Subject, got)
	}
	// A wrong password there is the token endpoint's 401 (Basic challenge).
	f = newTestProxy(t)
	w = f.do(t, http.MethodGet, "/auth/token?service=registry.test", basic("alice", "nope"))
	wantError(t, w, http.StatusUnauthorized, "UNAUTHORIZED")
}

func TestProxyBase(t *testing.T) {
	t.Run("anonymous version check is challenged", func(t *testing.T) {
		for _, target := range []string{"/v2/", "/v2"} {
			f := newTestProxy(t)
			f.refused(t, f.do(t, http.MethodGet, target), http.StatusUnauthorized, "UNAUTHORIZED", realm)
		}
	})
	t.Run("anonymous HEAD is challenged too", func(t *testing.T) {
		f := newTestProxy(t)
		f.refused(t, f.do(t, http.MethodHead, "/v2/"), http.StatusUnauthorized, "UNAUTHORIZED", realm)
	})
	t.Run("Basic is forwarded with a token granting nothing", func(t *testing.T) {
		f := newTestProxy(t)
		c := f.forwarded(t, f.do(t, http.MethodGet, "/v2/", basic("alice", "alice-pw")))
		if c.Subject != "alice" || c.Audience != testService || c.Issuer != "test-issuer" || len(c.Access) != 0 || c.Access == nil {
			t.Fatalf("claims %+v", c)
		}
		if f.up.url.Path != "/v2/" || f.up.method != http.MethodGet {
			t.Fatalf("forwarded %s %s", f.up.method, f.up.url.String())
		}
	})
	t.Run("a valid token with empty access is forwarded unchanged", func(t *testing.T) {
		f := newTestProxy(t)
		tok := f.sign(t, "alice")
		f.forwarded(t, f.do(t, http.MethodGet, "/v2/", "Bearer "+tok))
		if f.up.auth[0] != "Bearer "+tok {
			t.Fatalf("token was replaced")
		}
	})
	t.Run("wrong password is 401", func(t *testing.T) {
		f := newTestProxy(t)
		f.refused(t, f.do(t, http.MethodGet, "/v2/", basic("alice", "wrong")), http.StatusUnauthorized, "UNAUTHORIZED", realm)
	})
}

func TestProxyBasicAndAnonymous(t *testing.T) {
	t.Run("anonymous pull of a public repository", func(t *testing.T) {
		f := newTestProxy(t)
		c := f.forwarded(t, f.do(t, http.MethodGet, "/v2/public/x/manifests/latest"))
		if c.Subject != "" || accessOf(c) != "repository:public/x:pull" {
			t.Fatalf("sub %q access %q", c.Subject, accessOf(c))
		}
		if f.up.url.Path != "/v2/public/x/manifests/latest" {
			t.Fatalf("forwarded path %q", f.up.url.Path)
		}
	})
	t.Run("anonymous pull of a private repository is challenged", func(t *testing.T) {
		f := newTestProxy(t)
		f.refused(t, f.do(t, http.MethodGet, "/v2/lib/x/manifests/latest"), http.StatusUnauthorized, "UNAUTHORIZED",
			challengeFor("repository:lib/x:pull", ""))
	})
	t.Run("anonymous HEAD of a private blob is challenged", func(t *testing.T) {
		f := newTestProxy(t)
		w := f.do(t, http.MethodHead, "/v2/lib/x/blobs/"+testDigest)
		f.refused(t, w, http.StatusUnauthorized, "UNAUTHORIZED", challengeFor("repository:lib/x:pull", ""))
	})
	t.Run("anonymous push to a public repository is challenged for pull and push", func(t *testing.T) {
		f := newTestProxy(t)
		f.refused(t, f.do(t, http.MethodPut, "/v2/public/x/manifests/v1"), http.StatusUnauthorized, "UNAUTHORIZED",
			challengeFor("repository:public/x:pull,push", ""))
	})
	t.Run("Basic pull", func(t *testing.T) {
		f := newTestProxy(t)
		c := f.forwarded(t, f.do(t, http.MethodGet, "/v2/lib/x/blobs/"+testDigest, basic("alice", "alice-pw")))
		if c.Subject != "alice" || accessOf(c) != "repository:lib/x:pull" {
			t.Fatalf("sub %q access %q", c.Subject, accessOf(c))
		}
	})
	t.Run("Basic push where allowed", func(t *testing.T) {
		f := newTestProxy(t)
		c := f.forwarded(t, f.do(t, http.MethodPatch, "/v2/alice/x/blobs/uploads/abc-123", basic("alice", "alice-pw")))
		if accessOf(c) != "repository:alice/x:pull,push" {
			t.Fatalf("access %q", accessOf(c))
		}
	})
	t.Run("pull-only user pushing is denied", func(t *testing.T) {
		for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete} {
			f := newTestProxy(t)
			target := "/v2/lib/x/manifests/v1"
			if m == http.MethodPost {
				target = "/v2/lib/x/blobs/uploads/"
			}
			f.refused(t, f.do(t, m, target, basic("alice", "alice-pw")), http.StatusForbidden, "DENIED", "")
		}
	})
	t.Run("wrong password and unknown user are 401, never anonymous", func(t *testing.T) {
		for _, a := range []string{basic("alice", "wrong"), basic("mallory", "x"), basic("", "alice-pw")} {
			f := newTestProxy(t)
			// public/x is readable anonymously: bad credentials must not
			// fall back to that.
			f.refused(t, f.do(t, http.MethodGet, "/v2/public/x/manifests/latest", a), http.StatusUnauthorized, "UNAUTHORIZED",
				challengeFor("repository:public/x:pull", ""))
		}
	})
	t.Run("the stored hash is not a password", func(t *testing.T) {
		f := newTestProxy(t)
		f.refused(t, f.do(t, http.MethodGet, "/v2/lib/x/manifests/latest", basic("alice", storedHashes["alice-pw"])),
			http.StatusUnauthorized, "UNAUTHORIZED", challengeFor("repository:lib/x:pull", ""))
	})
	t.Run("malformed Basic is 400", func(t *testing.T) {
		for _, a := range []string{"Basic !!!", "Basic " + base64.StdEncoding.EncodeToString([]byte("no-colon")), "Basic"} {
			f := newTestProxy(t)
			f.refused(t, f.do(t, http.MethodGet, "/v2/public/x/manifests/latest", a), http.StatusBadRequest, "UNAUTHORIZED", "")
		}
	})
	t.Run("another scheme is 401", func(t *testing.T) {
		f := newTestProxy(t)
		f.refused(t, f.do(t, http.MethodGet, "/v2/public/x/manifests/latest", "Digest username=alice"), http.StatusUnauthorized, "UNAUTHORIZED",
			challengeFor("repository:public/x:pull", ""))
	})
	t.Run("Basic credentials never reach the upstream", func(t *testing.T) {
		for _, c := range []struct{ method, target, auth string }{
			{http.MethodGet, "/v2/", basic("alice", "alice-pw")},
			{http.MethodGet, "/v2/lib/x/tags/list", basic("alice", "alice-pw")},
			{http.MethodPut, "/v2/alice/x/manifests/v1", basic("alice", "alice-pw")},
			{http.MethodGet, "/v2/_catalog", basic("admin", "admin-pw")},
			{http.MethodDelete, "/v2/lib/x/manifests/" + testDigest, basic("admin", "admin-pw")},
			{http.MethodGet, "/v2/lib/x/manifests/latest", "basic " + base64.StdEncoding.EncodeToString([]byte("alice:alice-pw"))},
		} {
			f := newTestProxy(t)
			f.forwarded(t, f.do(t, c.method, c.target, c.auth))
			if strings.Contains(strings.ToLower(f.up.auth[0]), "basic") || strings.Contains(f.up.auth[0], "alice-pw") {
				t.Fatalf("%s %s: forwarded %q", c.method, c.target, f.up.auth)
			}
		}
	})
	t.Run("the user is recorded for the access log", func(t *testing.T) {
		f := newTestProxy(t)
		r := httptest.NewRequest(http.MethodGet, "/v2/lib/x/manifests/latest", nil)
		r.Header.Set("Authorization", basic("alice", "alice-pw"))
		repl := caddy.NewReplacer()
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		f.forwarded(t, f.serve(t, r))
		if v, _ := repl.Get("http.auth.user.id"); v != "alice" {
			t.Fatalf("http.auth.user.id = %v", v)
		}
	})
}

func TestProxyBearer(t *testing.T) {
	t.Run("a token covering the scope is forwarded unchanged", func(t *testing.T) {
		f := newTestProxy(t)
		tok := f.sign(t, "alice", scope("lib/x", token.Pull))
		c := f.forwarded(t, f.do(t, http.MethodGet, "/v2/lib/x/manifests/latest", "Bearer "+tok))
		if f.up.auth[0] != "Bearer "+tok || c.Subject != "alice" {
			t.Fatalf("forwarded %q", f.up.auth)
		}
	})
	t.Run("a token from the token endpoint works, any case of the scheme", func(t *testing.T) {
		f := newTestProxy(t)
		w := f.do(t, http.MethodGet, "/auth/token?service=registry.test&scope=repository:alice/x:pull,push", basic("alice", "alice-pw"))
		var resp struct{ Token string }
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Token == "" {
			t.Fatalf("token response %s", w.Body)
		}
		f.forwarded(t, f.do(t, http.MethodPut, "/v2/alice/x/manifests/v1", "bearer "+resp.Token))
	})
	t.Run("a star covers every action", func(t *testing.T) {
		f := newTestProxy(t)
		tok := f.sign(t, "admin", token.Scope{Type: token.TypeRepository, Name: "lib/x", Actions: token.Every})
		f.forwarded(t, f.do(t, http.MethodDelete, "/v2/lib/x/blobs/"+testDigest, "Bearer "+tok))
	})
	t.Run("a token lacking the scope gets insufficient_scope", func(t *testing.T) {
		for _, c := range []struct {
			method, target string
			access         []token.Scope
			need           string
		}{
			{http.MethodPut, "/v2/lib/x/manifests/v1", []token.Scope{scope("lib/x", token.Pull)}, "repository:lib/x:pull,push"},
			{http.MethodGet, "/v2/lib/y/manifests/v1", []token.Scope{scope("lib/x", token.Pull)}, "repository:lib/y:pull"},
			{http.MethodDelete, "/v2/lib/x/manifests/" + testDigest, []token.Scope{scope("lib/x", token.Pull|token.Push)}, "repository:lib/x:delete"},
			{http.MethodGet, "/v2/lib/x/other", []token.Scope{scope("lib/x", token.Pull)}, "repository:lib/x:pull,push"},
		} {
			f := newTestProxy(t)
			tok := f.sign(t, "alice", c.access...)
			f.refused(t, f.do(t, c.method, c.target, "Bearer "+tok), http.StatusUnauthorized, "UNAUTHORIZED",
				challengeFor(c.need, "insufficient_scope"))
		}
	})
	t.Run("invalid tokens get invalid_token", func(t *testing.T) {
		f := newTestProxy(t)
		now := time.Now()
		access := token.AccessClaim([]token.Scope{scope("public/x", token.Pull)})
		mk := func(mut func(c *token.Claims)) *token.Claims {
			c := token.NewClaims("test-issuer", "alice", testService, 5*time.Minute, now, access)
			mut(c)
			return c
		}
		signOurs := func(c *token.Claims) string {
			raw, err := f.h.policy.Signer.Sign(c)
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}
		payload, _ := json.Marshal(mk(func(*token.Claims) {}))
		b64 := base64.RawURLEncoding.EncodeToString
		pubDER, err := x509.MarshalPKIXPublicKey(f.h.policy.Signer.Certificates()[0].PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		hsSigning := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64(payload)
		hsSig, err := jwt.SigningMethodHS256.Sign(hsSigning, pubDER)
		if err != nil {
			t.Fatal(err)
		}
		otherKey, otherCert, err := token.GenerateKey("ES256", "other", now)
		if err != nil {
			t.Fatal(err)
		}
		other, err := token.NewSigner(otherKey, []*x509.Certificate{otherCert}, token.SignerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := other.Sign(mk(func(*token.Claims) {}))
		if err != nil {
			t.Fatal(err)
		}
		valid := signOurs(mk(func(*token.Claims) {}))
		parts := strings.Split(valid, ".")
		tokens := map[string]string{
			"alg none":                            b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(payload) + ".",
			"alg none, our sig":                   b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2],
			"HS256 with the public key as secret": hsSigning + "." + b64(hsSig),
			"foreign key":                         foreign,
			"expired": signOurs(mk(func(c *token.Claims) {
				c.IssuedAt, c.NotBefore, c.Expiry = now.Unix()-600, now.Unix()-600, now.Unix()-300
			})),
			"no expiry":            signOurs(mk(func(c *token.Claims) { c.Expiry = 0 })),
			"not yet valid":        signOurs(mk(func(c *token.Claims) { c.NotBefore = now.Unix() + 600 })),
			"other configured aud": signOurs(mk(func(c *token.Claims) { c.Audience = "other.test" })),
			"foreign audience":     signOurs(mk(func(c *token.Claims) { c.Audience = "evil.test" })),
			"empty audience":       signOurs(mk(func(c *token.Claims) { c.Audience = "" })),
			"wrong issuer":         signOurs(mk(func(c *token.Claims) { c.Issuer = "evil-issuer" })),
			"empty issuer":         signOurs(mk(func(c *token.Claims) { c.Issuer = "" })),
			"tampered payload":     parts[0] + "." + b64([]byte(strings.Replace(string(payload), "public/x", "public/y", 1))) + "." + parts[2],
			"garbage":              "abc",
			"empty":                "",
			"Basic credentials":    base64.StdEncoding.EncodeToString([]byte("alice:alice-pw")),
		}
		for name, tok := range tokens {
			for _, target := range []string{"/v2/public/x/manifests/latest", "/v2/"} {
				chal := challengeFor("", "invalid_token")
				if target != "/v2/" {
					chal = challengeFor("repository:public/x:pull", "invalid_token")
				}
				w := f.do(t, http.MethodGet, target, "Bearer "+tok)
				if w.Code != http.StatusUnauthorized {
					t.Errorf("%s, %s: status %d, forwarded %d", name, target, w.Code, f.up.calls)
					continue
				}
				f.refused(t, w, http.StatusUnauthorized, "UNAUTHORIZED", chal)
			}
		}
		// The control: the valid token passes.
		f.forwarded(t, f.do(t, http.MethodGet, "/v2/public/x/manifests/latest", "Bearer "+valid))
	})
}

func TestProxyRefusesAmbiguousRequests(t *testing.T) {
	f := newTestProxy(t)
	t.Run("several Authorization headers are 400", func(t *testing.T) {
		tok := f.sign(t, "alice", scope("public/x", token.Pull))
		for _, auth := range [][]string{
			{basic("alice", "alice-pw"), basic("admin", "admin-pw")},
			{"Bearer " + tok, basic("admin", "admin-pw")},
			{basic("admin", "admin-pw"), "Bearer " + tok},
			{"Bearer " + tok, "Bearer " + tok},
		} {
			f.refused(t, f.do(t, http.MethodGet, "/v2/public/x/manifests/latest", auth...), http.StatusBadRequest, "UNAUTHORIZED", "")
		}
	})
	t.Run("percent-encoded paths are 400 NAME_INVALID", func(t *testing.T) {
		for _, target := range []string{
			"/v2/public%2Fx/manifests/v1",
			"/v2/public%2fx/manifests/v1",
			"/v2/%70ublic/x/manifests/v1",
			"/v2/public/x/manifests%2Fv1",
			"/v2/public/%2E%2E/lib/x/manifests/v1",
			"/v2%2F", // decoded, that is "/v2/": refused all the same
		} {
			r := httptest.NewRequest(http.MethodGet, target, nil)
			if r.URL.RawPath == "" {
				t.Fatalf("%s: test request has no RawPath", target)
			}
			r.Header.Set("Authorization", basic("admin", "admin-pw"))
			f.refused(t, f.serve(t, r), http.StatusBadRequest, "NAME_INVALID", "")
		}
	})
	t.Run("invalid names are 400 NAME_INVALID", func(t *testing.T) {
		for _, target := range []string{
			"/v2/public/X/manifests/latest",
			"/v2/Public/manifests/latest",
			"/v2/public/../lib/x/manifests/latest",
			"/v2/public//x/manifests/latest",
			"/v2/public/./x/manifests/latest",
			"/v2/_catalog/x",
			"/v2/foo",
			"/v2//",
			"/v2/-x/tags/list",
			"/v2/" + strings.Repeat("a", 256) + "/tags/list",
		} {
			t.Run(target, func(t *testing.T) {
				f.refused(t, f.do(t, http.MethodGet, target, basic("admin", "admin-pw")), http.StatusBadRequest, "NAME_INVALID", "")
				f.refused(t, f.do(t, http.MethodGet, target), http.StatusBadRequest, "NAME_INVALID", "")
			})
		}
	})
}

func TestProxyMount(t *testing.T) {
	f := newTestProxy(t)
	mountTarget := func(from string) string {
		return "/v2/alice/x/blobs/uploads/?" + url.Values{"mount": {testDigest}, "from": {from}}.Encode()
	}
	t.Run("pull on the source keeps the mount (Basic)", func(t *testing.T) {
		c := f.forwarded(t, f.do(t, http.MethodPost, mountTarget("lib/y"), basic("alice", "alice-pw")))
		if got := accessOf(c); got != "repository:alice/x:pull,push repository:lib/y:pull" {
			t.Fatalf("access %q", got)
		}
		q := f.up.url.Query()
		if q.Get("mount") != testDigest || q.Get("from") != "lib/y" || f.up.mount != testDigest || f.up.from != "lib/y" {
			t.Fatalf("forwarded query %q", f.up.url.RawQuery)
		}
	})
	t.Run("no pull on the source drops the mount (Basic)", func(t *testing.T) {
		for _, from := range []string{"secret/y", "public2/y"} {
			target := mountTarget(from) + "&digest=" + testDigest
			c := f.forwarded(t, f.do(t, http.MethodPost, target, basic("alice", "alice-pw")))
			if got := accessOf(c); got != "repository:alice/x:pull,push" {
				t.Fatalf("access %q", got)
			}
			q := f.up.url.Query()
			if q.Has("mount") || q.Has("from") || f.up.mount != "" || f.up.from != "" {
				t.Fatalf("forwarded query %q still mounts", f.up.url.RawQuery)
			}
			if q.Get("digest") != testDigest || f.up.url.Path != "/v2/alice/x/blobs/uploads/" {
				t.Fatalf("forwarded %s?%s lost the rest of the request", f.up.url.Path, f.up.url.RawQuery)
			}
		}
	})
	t.Run("no push on the target is denied whatever the source", func(t *testing.T) {
		f.refused(t, f.do(t, http.MethodPost, "/v2/lib/x/blobs/uploads/?mount="+testDigest+"&from=alice/y", basic("alice", "alice-pw")),
			http.StatusForbidden, "DENIED", "")
	})
	t.Run("Bearer with pull on the source keeps the mount", func(t *testing.T) {
		tok := f.sign(t, "alice", scope("alice/x", token.Pull|token.Push), scope("lib/y", token.Pull))
		f.forwarded(t, f.do(t, http.MethodPost, mountTarget("lib/y"), "Bearer "+tok))
		if f.up.mount != testDigest || f.up.from != "lib/y" || f.up.auth[0] != "Bearer "+tok {
			t.Fatalf("forwarded %q with %q", f.up.url.RawQuery, f.up.auth)
		}
	})
	t.Run("Bearer without pull on the source drops the mount", func(t *testing.T) {
		tok := f.sign(t, "alice", scope("alice/x", token.Pull|token.Push), scope("lib/y", token.Push))
		f.forwarded(t, f.do(t, http.MethodPost, mountTarget("lib/y"), "Bearer "+tok))
		if q := f.up.url.Query(); q.Has("mount") || q.Has("from") {
			t.Fatalf("forwarded query %q still mounts", f.up.url.RawQuery)
		}
	})
}

// TestProxyMountSourceIsAlwaysAuthorized checks the mount the registry
// would actually perform. distribution's StartBlobUpload reads mount and
// from with r.FormValue, which for a POST with a form content type reads
// the body before the query, and mounts whenever both are non-empty and
// from parses as a reference (github.com/distribution/reference, which
// accepts an IPv6 domain). A registry behind the proxy may run without
// auth, so whatever reaches it must carry pull on that source.
func TestProxyMountSourceIsAlwaysAuthorized(t *testing.T) {
	f := newTestProxy(t)
	const form = "application/x-www-form-urlencoded"
	multipart := "--XyZ\r\nContent-Disposition: form-data; name=\"mount\"\r\n\r\n" + testDigest +
		"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\nsecret/y\r\n--XyZ--\r\n"
	for _, c := range []struct {
		name, query, contentType, body string
	}{
		{"mount and from in a form body", "", form, "mount=" + testDigest + "&from=secret/y"},
		{"from in a form body overrides an allowed one in the query", "mount=" + testDigest + "&from=lib/y", form, "from=secret/y"},
		{"mount in a form body, from in the query", "from=secret/y", form, "mount=" + testDigest},
		{"form content type in another case, with parameters", "", "Application/X-WWW-Form-URLencoded; charset=utf-8", "mount=" + testDigest + "&from=secret/y"},
		{"multipart form body", "", "multipart/form-data; boundary=XyZ", multipart},
		{"a source name the registry parses but the proxy does not", "mount=" + testDigest + "&from=" + url.QueryEscape("[::1]:5000/secret/y"), "", ""},
		{"from given twice", "mount=" + testDigest + "&from=lib/y&from=secret/y", "", ""},
		{"mount given twice", "mount=" + testDigest + "&mount=" + testDigest + "&from=secret/y", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v2/alice/x/blobs/uploads/?"+c.query, strings.NewReader(c.body))
			if c.contentType != "" {
				r.Header.Set("Content-Type", c.contentType)
			}
			r.Header.Set("Authorization", basic("alice", "alice-pw"))
			w := f.serve(t, r)
			if f.up.calls == 0 {
				return // refused: fine
			}
			claims := f.forwarded(t, w)
			if f.up.mount != "" && f.up.from != "" && !covers(claims.Access, scope(f.up.from, token.Pull)) {
				t.Errorf("the registry would mount %s from %q; the forwarded token grants only %q",
					f.up.mount, f.up.from, accessOf(claims))
			}
		})
	}
	// A mount by the ordinary means still works.
	r := httptest.NewRequest(http.MethodPost, "/v2/alice/x/blobs/uploads/?mount="+testDigest+"&from=lib/y", nil)
	r.Header.Set("Authorization", basic("alice", "alice-pw"))
	f.forwarded(t, f.serve(t, r))
	if f.up.mount != testDigest || f.up.from != "lib/y" {
		t.Fatalf("allowed mount lost: %q", f.up.url.RawQuery)
	}
}

func TestProxyCatalog(t *testing.T) {
	f := newTestProxy(t)
	t.Run("admin", func(t *testing.T) {
		c := f.forwarded(t, f.do(t, http.MethodGet, "/v2/_catalog?n=10", basic("admin", "admin-pw")))
		if got := accessOf(c); got != "registry:catalog:*" {
			t.Fatalf("access %q", got)
		}
		if f.up.url.RawQuery != "n=10" {
			t.Fatalf("query %q", f.up.url.RawQuery)
		}
	})
	t.Run("a user who may pull nothing is denied", func(t *testing.T) {
		f.up.catalog = []string{"admin/a", "other/b"}
		defer func() { f.up.catalog = nil }()
		f.refused(t, f.do(t, http.MethodGet, "/v2/_catalog", basic("alice", "alice-pw")), http.StatusForbidden, "DENIED", "")
	})
	t.Run("anonymous is challenged", func(t *testing.T) {
		f.refused(t, f.do(t, http.MethodGet, "/v2/_catalog"), http.StatusUnauthorized, "UNAUTHORIZED", challengeFor("registry:catalog:*", ""))
	})
	t.Run("a catalog token", func(t *testing.T) {
		tok := f.sign(t, "admin", token.Scope{Type: token.TypeRegistry, Name: token.CatalogName, Actions: token.All})
		f.forwarded(t, f.do(t, http.MethodGet, "/v2/_catalog", "Bearer "+tok))
	})
}

func TestProxyUnknownRoute(t *testing.T) {
	f := newTestProxy(t)
	c := f.forwarded(t, f.do(t, http.MethodGet, "/v2/alice/x/whatever", basic("alice", "alice-pw")))
	if got := accessOf(c); got != "repository:alice/x:pull,push" {
		t.Fatalf("access %q", got)
	}
	f.refused(t, f.do(t, http.MethodGet, "/v2/lib/x/whatever", basic("alice", "alice-pw")), http.StatusForbidden, "DENIED", "")
	f.refused(t, f.do(t, http.MethodGet, "/v2/public/x/manifests/"), http.StatusUnauthorized, "UNAUTHORIZED",
		challengeFor("repository:public/x/manifests:pull,push", ""))
}

func TestProxyRealm(t *testing.T) {
	f := newTestProxy(t)
	t.Run("the request's host and scheme", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "https://registry.example.org:8443/v2/", nil)
		w := f.serve(t, r)
		f.refused(t, w, http.StatusUnauthorized, "UNAUTHORIZED",
			`Bearer realm="https://registry.example.org:8443/auth/token",service="registry.test"`)
	})
	t.Run("a custom token path", func(t *testing.T) {
		f.h.TokenPath = "/token"
		defer func() { f.h.TokenPath = DefaultTokenPath }()
		f.refused(t, f.do(t, http.MethodGet, "/v2/"), http.StatusUnauthorized, "UNAUTHORIZED",
			`Bearer realm="http://example.com/token",service="registry.test"`)
		grantOf(t, &f.h.TokenHandler, f.do(t, http.MethodGet, "/token?service=registry.test"))
	})
	t.Run("an override", func(t *testing.T) {
		f.h.Realm = "https://auth.example.net/token"
		defer func() { f.h.Realm = "" }()
		f.refused(t, f.do(t, http.MethodHead, "/v2/lib/x/manifests/latest"), http.StatusUnauthorized, "UNAUTHORIZED",
			`Bearer realm="https://auth.example.net/token",service="registry.test",scope="repository:lib/x:pull"`)
	})
}

func TestProxyValidate(t *testing.T) {
	for _, c := range []struct {
		tokenPath, realm string
		ok               bool
	}{
		{"/auth/token", "", true},
		{"/token", "https://auth.example.com/token", true},
		{"/auth/token", "http://localhost:8080/auth/token", true},
		{"/v2/token", "", false},
		{"/v2/", "", false},
		{"/v2", "", false},
		{"auth/token", "", false},
		{"", "", false},
		{"/auth/token", "auth.example.com/token", false},
		{"/auth/token", "/auth/token", false},
		{"/auth/token", "//auth.example.com/token", false},
		{"/auth/token", "ftp://auth.example.com/token", false},
	} {
		h := &ProxyHandler{TokenPath: c.tokenPath, Realm: c.realm}
		if err := h.Validate(); (err == nil) != c.ok {
			t.Errorf("token_path %q realm %q: Validate() = %v, want ok=%v", c.tokenPath, c.realm, err, c.ok)
		}
	}
}

// The proxy signs once per subject and grant, then reuses the token for
// the first half of its life; a different grant gets its own token.
func TestProxyReusesMintedTokens(t *testing.T) {
	f := newTestProxy(t)
	forwardedToken := func(path string) string {
		t.Helper()
		w := f.do(t, http.MethodGet, path, basic("alice", "alice-pw"))
		if f.up.calls != 1 || len(f.up.auth) != 1 {
			t.Fatalf("not forwarded: %d %s", w.Code, w.Body)
		}
		return f.up.auth[0]
	}
	first := forwardedToken("/v2/alice/x/manifests/v1")
	if again := forwardedToken("/v2/alice/x/blobs/" + testDigest); again != first {
		t.Fatal("the same grant was signed twice")
	}
	if other := forwardedToken("/v2/alice/y/manifests/v1"); other == first {
		t.Fatal("a different grant reused another grant's token")
	}

	p := f.h.policy
	p.minted = newMintCache(2)
	now := time.Now()
	half := p.Lifetime / 2
	mint := func(subject string, at time.Time) string {
		t.Helper()
		m, err := p.mint(p.Current(), Identity{Name: subject}, testService, nil, at)
		if err != nil {
			t.Fatal(err)
		}
		return m.raw
	}
	tok := mint("k", now)
	if mint("k", now.Add(half-time.Second)) != tok {
		t.Fatal("not reused within the first half of its life")
	}
	if mint("k", now.Add(half)) == tok {
		t.Fatal("reused past half of its life")
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		mint(k, now)
	}
	if p.minted.Len() > 2 {
		t.Fatalf("%d entries, bound 2", p.minted.Len())
	}
}

// Defect 4: forwarding headers a client made up never reach the registry,
// which would build upload URLs from them.
func TestProxyStripsClientForwardingHeaders(t *testing.T) {
	f := newTestProxy(t)
	r := httptest.NewRequest(http.MethodPost, "/v2/alice/x/blobs/uploads/", nil)
	r.Header.Set("Authorization", basic("alice", "alice-pw"))
	for _, name := range clientForwardingHeaders {
		r.Header.Set(name, "host=evil.example;proto=http")
	}
	r.Header.Set("User-Agent", "docker/29")
	f.forwarded(t, f.serve(t, r))
	for _, name := range clientForwardingHeaders {
		if v := f.up.header.Get(name); v != "" {
			t.Errorf("%s reached the registry: %q", name, v)
		}
	}
	if f.up.header.Get("User-Agent") != "docker/29" {
		t.Fatal("other headers must pass")
	}
}

// Defect 5: a control character in any query value is refused with 400
// before the registry sees it, on every route family.
func TestProxyRefusesControlCharactersInQueries(t *testing.T) {
	f := newTestProxy(t)
	for _, target := range []string{
		"/v2/?x=%00",
		"/v2/_catalog?last=%00",
		"/v2/_catalog?n=1%0a",
		"/v2/alice/x/tags/list?last=%00",
		"/v2/alice/x/tags/list?n=%7f",
		"/v2/alice/x/manifests/v1?x=%01",
		"/v2/alice/x/blobs/" + testDigest + "?x=%1b",
		"/v2/alice/x/blobs/uploads/?mount=" + testDigest + "&from=lib%0ay",
		"/v2/alice/x/referrers/" + testDigest + "?artifactType=%0d",
		"/v2/alice/x/tags/list?%00=1",
		"/v2/alice/x/tags/list?last=%zz",
	} {
		f.refused(t, f.do(t, http.MethodGet, target, basic("admin", "admin-pw")), http.StatusBadRequest, "UNSUPPORTED", "")
	}
	f.forwarded(t, f.do(t, http.MethodGet, "/v2/alice/x/tags/list?n=10&last=v1.2", basic("admin", "admin-pw")))
}

// Defect 6: a registry that cannot be reached is answered in the
// registry's error format with Retry-After, counted as unavailable, and
// logged once per interval.
func TestProxyUnreachableRegistry(t *testing.T) {
	f := newTestProxy(t)
	core, logs := observer.New(zap.InfoLevel)
	f.h.logger = zap.New(core)
	f.up.err = caddyhttp.Error(http.StatusServiceUnavailable, errors.New("no upstreams available")) // a DialError cannot be made outside reverseproxy: e2e stops a real registry
	decisions := proxyDecisionCounts("forwarded", "unavailable")
	for range 5 {
		w := f.do(t, http.MethodGet, "/v2/alice/x/manifests/v1", basic("alice", "alice-pw"))
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"UNAVAILABLE"`) {
			t.Fatalf("status %d, Retry-After %q, body %s", w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
	if n := logs.FilterMessageSnippet("not reachable").Len(); n != 1 {
		t.Fatalf("%d log lines for 5 failures in a row, want 1", n)
	}
	// Counted once each, as unavailable: the upstream alert divides these
	// by all proxied requests, so a registry that is down reads as 100%.
	if got := decisions(); got["forwarded"] != 0 || got["unavailable"] != 5 {
		t.Fatalf("counted %v for 5 requests the registry did not answer", got)
	}
	// After headers went out, an error is reverse_proxy's to report.
	f.up.err = caddyhttp.Error(http.StatusBadGateway, errors.New("reading body: unexpected EOF"))
	if err := f.h.ServeHTTP(httptest.NewRecorder(), authed(http.MethodGet, "/v2/alice/x/manifests/v1", basic("alice", "alice-pw")), nil); err == nil {
		t.Fatal("a failure after the response started was swallowed")
	}
}

// proxyDecisionCounts returns a func that tells how much each of the
// proxy's decisions was counted since this call.
func proxyDecisionCounts(decisions ...string) func() map[string]float64 {
	createMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.proxyRequests)
	read := func() map[string]float64 {
		m := map[string]float64{}
		families, _ := reg.Gather()
		for _, f := range families {
			for _, c := range f.GetMetric() {
				for _, d := range decisions {
					if c.GetLabel()[0].GetValue() == d {
						m[d] = c.GetCounter().GetValue()
					}
				}
			}
		}
		return m
	}
	before := read()
	return func() map[string]float64 {
		now := read()
		for d := range now {
			now[d] -= before[d]
		}
		return now
	}
}

func authed(method, target, auth string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.Header.Set("Authorization", auth)
	return r
}

// The proxy remembers the bearer tokens it verified until they expire,
// and only for the signer that verified them.
func TestProxyRemembersVerifiedTokens(t *testing.T) {
	f := newTestProxy(t)
	now := time.Now()
	raw := f.sign(t, "alice", scope("alice/x", token.Pull))
	if _, err := f.h.verify(raw, now); err != nil {
		t.Fatal(err)
	}
	if f.h.verified.Len() != 1 {
		t.Fatalf("%d tokens remembered, want 1", f.h.verified.Len())
	}
	if _, err := f.h.verify(raw, now.Add(5*time.Minute+token.VerifyLeeway+time.Second)); err == nil {
		t.Fatal("a remembered token was accepted past its expiry")
	}
	if _, err := f.h.verify("not.a.token", now); err == nil || f.h.verified.Len() != 1 {
		t.Fatalf("a bad token: %v, %d remembered", err, f.h.verified.Len())
	}
	// An emergency: the key set changes and the token's key is gone.
	fresh := newTestHandler(t).policy.Signer.Keys()
	if err := f.h.policy.Signer.Use(token.KeySet{Signing: fresh.Signing, Secret: fresh.Secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.verify(raw, now); err == nil {
		t.Fatal("a token remembered before its key was withdrawn was accepted")
	}
	other := newTestHandler(t).policy.Signer
	f.h.policy.Signer = other
	if _, err := f.h.verify(raw, now); err == nil {
		t.Fatal("a token remembered for the old signer was accepted after the signer changed")
	}
}

// compileWith is newTestHandler's policy with more rules (JSON objects).
func compileWith(t *testing.T, rules ...string) *policy.Compiled {
	t.Helper()
	var extra []policy.Rule
	for _, r := range rules {
		var rule policy.Rule
		if err := json.Unmarshal([]byte(r), &rule); err != nil {
			t.Fatal(err)
		}
		extra = append(extra, rule)
	}
	c, _, err := policy.Compile(policy.Config{
		Users: []policy.User{{Name: "alice", Password: storedHashes["alice-pw"]}, {Name: "admin", Password: storedHashes["admin-pw"]}},
		Rules: append([]policy.Rule{
			{Effect: "allow", Subjects: []string{"user:alice"}, Actions: []string{"pull"}, Resources: []string{"lib/**"}},
			{Effect: "allow", Subjects: []string{"user:admin"}, Actions: []string{"*"}, Resources: []string{"**", "registry:catalog"}},
		}, extra...),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func nowTime() time.Time { return time.Now() }
