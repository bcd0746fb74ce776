package registryauth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

const testService = "registry.test"

// newTestHandler builds a token handler around a real policy and signer,
// without Caddy: the handler's logic is what is under test here.
func newTestHandler(t *testing.T) *TokenHandler {
	t.Helper()
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		storedHashes[pw] = string(h)
		return string(h)
	}
	rules, _, err := policy.Compile(policy.Config{
		Users: []policy.User{
			{Name: "alice", Password: hash("alice-pw")},
			{Name: "admin", Password: hash("admin-pw")},
		},
		Rules: []policy.Rule{
			{Effect: "allow", Subjects: []string{"user:alice"}, Actions: []string{"pull"}, Resources: []string{"lib/**"}},
			{Effect: "allow", Subjects: []string{"user:alice"}, Actions: []string{"pull", "push"}, Resources: []string{"alice/**"}},
			{Effect: "allow", Subjects: []string{"user:admin"}, Actions: []string{"*"}, Resources: []string{"**", "registry:catalog"}},
			{Effect: "allow", Subjects: []string{"anonymous"}, Actions: []string{"pull"}, Resources: []string{"public/**"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	key, cert, err := token.GenerateKey("ES256", "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(key, []*x509.Certificate{cert}, token.SignerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Policy{Name: "default", Issuer: "test-issuer", Services: []string{testService, "other.test"}, Lifetime: 5 * time.Minute, Signer: signer, logger: zap.NewNop(),
		cache: policy.NewCredentialCache(time.Minute, 100), minted: newMintCache(100)}
	p.current.Store(rules)
	return &TokenHandler{policy: p, logger: zap.NewNop()}
}

// storedHashes maps each test password to the hash the policy stores.
var storedHashes = map[string]string{}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func serve(t *testing.T, h *TokenHandler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nil); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	return w
}

func get(t *testing.T, h *TokenHandler, query string, auth ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/auth/token?"+query, nil)
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return serve(t, h, r)
}

func post(t *testing.T, h *TokenHandler, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/auth/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	return serve(t, h, r)
}

// grantOf checks a 200 token response per SPEC-NOTES §5 and returns the
// token's claims.
func grantOf(t *testing.T, h *TokenHandler, w *httptest.ResponseRecorder) *token.Claims {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var resp map[string]any
	dec := json.NewDecoder(w.Body)
	dec.UseNumber()
	if err := dec.Decode(&resp); err != nil {
		t.Fatal(err)
	}
	tok, _ := resp["token"].(string)
	if tok == "" || resp["access_token"] != tok {
		t.Fatalf("token and access_token must be the same non-empty string: %v", resp)
	}
	exp, ok := resp["expires_in"].(json.Number)
	if !ok || strings.Contains(string(exp), ".") || string(exp) != "300" {
		t.Fatalf("expires_in = %v, want the integer 300", resp["expires_in"])
	}
	issued, _ := resp["issued_at"].(string)
	if _, err := time.Parse(time.RFC3339, issued); err != nil {
		t.Fatalf("issued_at %q is not RFC 3339", issued)
	}
	claims, err := h.policy.Signer.Verify(tok, "test-issuer", []string{testService, "other.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return claims
}

func accessString(c *token.Claims) string {
	var parts []string
	for _, a := range c.Access {
		parts = append(parts, a.Type+":"+a.Name+":"+strings.Join(a.Actions, ","))
	}
	return strings.Join(parts, " ")
}

// wantError checks a refused request: status, JSON errors body, and the
// Basic challenge on 401.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != code {
		t.Fatalf("body %s, want one error with code %s", w.Body, code)
	}
	if strings.Contains(w.Body.String(), "token\":") {
		t.Fatalf("an error answer carries a token: %s", w.Body)
	}
	challenge := w.Header().Get("WWW-Authenticate")
	if status == http.StatusUnauthorized && !strings.HasPrefix(challenge, `Basic realm="`) {
		t.Fatalf("401 without a Basic challenge: %q", challenge)
	}
}

func TestTokenGet(t *testing.T) {
	h := newTestHandler(t)
	svc := "service=" + testService

	t.Run("login without scope gets an empty grant", func(t *testing.T) {
		c := grantOf(t, h, get(t, h, svc+"&offline_token=true&client_id=docker&account=alice", basic("alice", "alice-pw")))
		if c.Subject != "alice" || len(c.Access) != 0 || c.Audience != testService {
			t.Fatalf("claims %+v", c)
		}
	})
	t.Run("grant is the intersection (no over-grant)", func(t *testing.T) {
		c := grantOf(t, h, get(t, h, svc+"&scope=repository:lib/x:pull,push", basic("alice", "alice-pw")))
		if got := accessString(c); got != "repository:lib/x:pull" {
			t.Fatalf("access %q", got)
		}
	})
	t.Run("every scope is honoured, repeated and space-separated", func(t *testing.T) {
		q := svc + "&scope=" + url.QueryEscape("repository:lib/a:pull repository:alice/b:push") + "&scope=repository:alice/c:pull&scope=repository:secret/d:pull"
		c := grantOf(t, h, get(t, h, q, basic("alice", "alice-pw")))
		if got := accessString(c); got != "repository:lib/a:pull repository:alice/b:push repository:alice/c:pull" {
			t.Fatalf("access %q", got)
		}
	})
	t.Run("catalog is granted with a literal star", func(t *testing.T) {
		c := grantOf(t, h, get(t, h, svc+"&scope=registry:catalog:*", basic("admin", "admin-pw")))
		if got := accessString(c); got != "registry:catalog:*" {
			t.Fatalf("access %q", got)
		}
	})
	t.Run("anonymous gets what anonymous may do, sub empty", func(t *testing.T) {
		c := grantOf(t, h, get(t, h, svc+"&scope=repository:public/x:pull,push&scope=repository:lib/x:pull"))
		if got := accessString(c); c.Subject != "" || got != "repository:public/x:pull" {
			t.Fatalf("sub %q access %q", c.Subject, got)
		}
	})
	t.Run("no service means the first configured one", func(t *testing.T) {
		c := grantOf(t, h, get(t, h, "service=", basic("alice", "alice-pw")))
		if c.Audience != testService {
			t.Fatalf("aud %q", c.Audience)
		}
	})
	t.Run("a second configured service is its own audience", func(t *testing.T) {
		if c := grantOf(t, h, get(t, h, "service=other.test", basic("alice", "alice-pw"))); c.Audience != "other.test" {
			t.Fatalf("aud %q", c.Audience)
		}
	})
	t.Run("wrong password is 401", func(t *testing.T) {
		wantError(t, get(t, h, svc, basic("alice", "wrong")), http.StatusUnauthorized, "UNAUTHORIZED")
	})
	t.Run("unknown user gets the same 401 body as a wrong password", func(t *testing.T) {
		a, b := get(t, h, svc, basic("alice", "wrong")), get(t, h, svc, basic("mallory", "wrong"))
		wantError(t, b, http.StatusUnauthorized, "UNAUTHORIZED")
		if a.Body.String() != b.Body.String() {
			t.Fatalf("bodies differ: %s vs %s", a.Body, b.Body)
		}
	})
	t.Run("the stored hash is not a password", func(t *testing.T) {
		hash := storedHashes["alice-pw"]
		wantError(t, get(t, h, svc, basic("alice", hash)), http.StatusUnauthorized, "UNAUTHORIZED")
	})
	t.Run("malformed Authorization is 400, never anonymous", func(t *testing.T) {
		for _, a := range []string{"Basic !!!", "Basic " + base64.StdEncoding.EncodeToString([]byte("no-colon")), "Basic", ""} {
			wantError(t, get(t, h, svc+"&scope=repository:public/x:pull", a), http.StatusBadRequest, "BAD_REQUEST")
		}
	})
	t.Run("several Authorization headers are 400", func(t *testing.T) {
		wantError(t, get(t, h, svc, basic("alice", "alice-pw"), basic("admin", "admin-pw")), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("a Bearer header is told to use Basic", func(t *testing.T) {
		wantError(t, get(t, h, svc, "Bearer abc"), http.StatusUnauthorized, "UNAUTHORIZED")
	})
	t.Run("unknown service is 400", func(t *testing.T) {
		wantError(t, get(t, h, "service=evil.test", basic("alice", "alice-pw")), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("service twice is 400", func(t *testing.T) {
		wantError(t, get(t, h, svc+"&"+svc), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("account differing from the user is 400", func(t *testing.T) {
		wantError(t, get(t, h, svc+"&account=admin&scope=registry:catalog:*", basic("alice", "alice-pw")), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("malformed scope is 400", func(t *testing.T) {
		wantError(t, get(t, h, svc+"&scope=nonsense", basic("alice", "alice-pw")), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("too many scopes is 400", func(t *testing.T) {
		q := svc + strings.Repeat("&scope=repository:lib/x:pull", token.MaxScopes+1)
		wantError(t, get(t, h, q, basic("alice", "alice-pw")), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("malformed query is 400", func(t *testing.T) {
		wantError(t, get(t, h, svc+"&scope=%zz"), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("invalid names get nothing", func(t *testing.T) {
		q := svc + "&scope=repository:Public/x:pull&scope=repository:public/../lib:pull&scope=repository:public%252Fx:pull&scope=repository:public//x:pull"
		if c := grantOf(t, h, get(t, h, q)); len(c.Access) != 0 {
			t.Fatalf("granted %q", accessString(c))
		}
	})
}

func TestTokenPost(t *testing.T) {
	h := newTestHandler(t)
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	t.Run("password grant", func(t *testing.T) {
		w := post(t, h, form("grant_type", "password", "service", testService, "client_id", "containerd-client",
			"username", "alice", "password", "alice-pw", "scope", "repository:alice/x:pull,push", "scope", "repository:lib/y:pull"))
		body := w.Body.String()
		c := grantOf(t, h, w)
		if got := accessString(c); got != "repository:alice/x:pull,push repository:lib/y:pull" {
			t.Fatalf("access %q", got)
		}
		if !strings.Contains(body, `"scope":"repository:alice/x:pull,push repository:lib/y:pull"`) {
			t.Fatalf("no scope field: %s", body)
		}
	})
	t.Run("wrong password is 401 with the OAuth2 error", func(t *testing.T) {
		w := post(t, h, form("grant_type", "password", "service", testService, "username", "alice", "password", "x"))
		wantError(t, w, http.StatusUnauthorized, "UNAUTHORIZED")
		if !strings.Contains(w.Body.String(), `"error":"invalid_grant"`) {
			t.Fatalf("body %s", w.Body)
		}
	})
	t.Run("refresh_token grant with refresh tokens off is unsupported (containerd falls back to GET)", func(t *testing.T) {
		w := post(t, h, form("grant_type", "refresh_token", "service", testService, "refresh_token", "x"))
		wantError(t, w, http.StatusBadRequest, "BAD_REQUEST")
		if !strings.Contains(w.Body.String(), `"error":"unsupported_grant_type"`) {
			t.Fatalf("body %s", w.Body)
		}
	})
	t.Run("missing grant_type or username is 400", func(t *testing.T) {
		wantError(t, post(t, h, form("service", testService)), http.StatusBadRequest, "BAD_REQUEST")
		wantError(t, post(t, h, form("grant_type", "password", "password", "x")), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("wrong content type is 400", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodPost, "/auth/token", strings.NewReader(`{"grant_type":"password"}`))
		r.Header.Set("Content-Type", "application/json")
		wantError(t, serve(t, h, r), http.StatusBadRequest, "BAD_REQUEST")
	})
	t.Run("oversized body is 413", func(t *testing.T) {
		v := form("grant_type", "password", "username", "alice", "password", strings.Repeat("x", maxFormBytes))
		wantError(t, post(t, h, v), http.StatusRequestEntityTooLarge, "SIZE_INVALID")
	})
}

func TestTokenOtherMethodsAndDocuments(t *testing.T) {
	h := newTestHandler(t)
	w := serve(t, h, httptest.NewRequest(http.MethodPut, "/auth/token", nil))
	wantError(t, w, http.StatusMethodNotAllowed, "UNSUPPORTED")
	if w.Header().Get("Allow") != "GET, POST" {
		t.Fatalf("Allow %q", w.Header().Get("Allow"))
	}

	w = serve(t, h, httptest.NewRequest(http.MethodGet, "/auth/certs.pem", nil))
	chain, err := token.ParseCertificatesPEM(w.Body.Bytes())
	if err != nil || w.Code != http.StatusOK || !chain[0].Equal(h.policy.Signer.Certificates()[0]) {
		t.Fatalf("certs.pem: %d %v", w.Code, err)
	}
	w = serve(t, h, httptest.NewRequest(http.MethodGet, "/auth/jwks.json", nil))
	var jwks struct {
		Keys []struct{ Kid string } `json:"keys"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &jwks); err != nil || len(jwks.Keys) != 1 || jwks.Keys[0].Kid != h.policy.Signer.KeyID() {
		t.Fatalf("jwks.json: %s %v", w.Body, err)
	}
}
