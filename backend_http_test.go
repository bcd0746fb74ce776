package registryauth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/regauth/caddy-registry-auth/token"
)

func TestHTTPAuthenticator(t *testing.T) {
	var status atomic.Int32
	var body atomic.Value
	var delay atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		if r.Method != http.MethodPost || !ok || user != "bob" || pw != "bob-pw" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"groups":["admins"]}`) // a body must not make a refusal a yes
			return
		}
		time.Sleep(time.Duration(delay.Load()))
		if s := status.Load(); s != 0 {
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(int(s))
		}
		_, _ = io.WriteString(w, body.Load().(string))
	}))
	defer srv.Close()

	a := &HTTPAuthenticator{HTTPService{URL: srv.URL, Timeout: caddy.Duration(300 * time.Millisecond)}}
	if err := a.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(name, user, pw string, wantGroups []string, wantErr error) {
		t.Helper()
		id, err := a.Authenticate(ctx, user, pw)
		switch {
		case wantErr == nil && err != nil:
			t.Errorf("%s: %v", name, err)
		case wantErr == errAny && err == nil:
			t.Errorf("%s: got %+v, want an error", name, id)
		case wantErr != nil && wantErr != errAny && !errors.Is(err, wantErr):
			t.Errorf("%s: got %v, want %v", name, err, wantErr)
		case err == nil && strings.Join(id.Groups, ",") != strings.Join(wantGroups, ","):
			t.Errorf("%s: groups %v, want %v", name, id.Groups, wantGroups)
		}
		if wantErr == errAny && (errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrUnknownUser)) {
			t.Errorf("%s: %v must be an error that refuses, not an answer", name, err)
		}
	}
	body.Store(`{"groups":["devs","ops"]}`)
	check("200 with groups", "bob", "bob-pw", []string{"devs", "ops"}, nil)
	body.Store("")
	check("200 without a body", "bob", "bob-pw", nil, nil)
	check("401 with a JSON body", "bob", "wrong", nil, ErrBadCredentials)
	check("empty password, never sent", "bob", "", nil, ErrBadCredentials)
	body.Store(`{"groups": "devs"}`)
	check("200 with a malformed body", "bob", "bob-pw", nil, errAny)
	body.Store(strings.Repeat(" ", maxBackendAnswer+1))
	check("200 with a huge body", "bob", "bob-pw", nil, errAny)
	body.Store("")
	for _, s := range []int{http.StatusForbidden} {
		status.Store(int32(s))
		check("403", "bob", "bob-pw", nil, ErrBadCredentials)
	}
	for _, s := range []int{http.StatusInternalServerError, http.StatusNotFound, http.StatusFound, http.StatusMovedPermanently, http.StatusBadGateway} {
		status.Store(int32(s))
		check(http.StatusText(s), "bob", "bob-pw", nil, errAny)
	}
	status.Store(0)
	delay.Store(int64(time.Second))
	start := time.Now()
	check("slower than the timeout", "bob", "bob-pw", nil, errAny)
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Errorf("a slow service held the login %s, past the 300ms timeout", took)
	}
}

// errAny stands for any error that is neither ErrBadCredentials nor ErrUnknownUser.
var errAny = errors.New("any error")

func TestHTTPServiceURL(t *testing.T) {
	for url, want := range map[string]string{
		"https://auth.example.com/check": "",
		"http://127.0.0.1:9000/check":    "",
		"http://[::1]:9000/check":        "",
		"http://localhost/check":         "",
		"http://auth.example.com/check":  "loopback address only",
		"ftp://auth.example.com":         "not http or https",
		"/relative":                      "absolute",
	} {
		s := HTTPService{URL: url}
		err := s.provision()
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: got %v, want %q", url, err, want)
		}
	}
}

func TestHTTPAuthorizer(t *testing.T) {
	var calls atomic.Int32
	var failing atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var q struct {
			User     string   `json:"user"`
			Groups   []string `json:"groups"`
			Service  string   `json:"service"`
			ClientIP string   `json:"client_ip"`
			Scopes   []struct {
				Type, Name string
				Actions    []string
			} `json:"scopes"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&q); err != nil || q.Service != testService || q.ClientIP != "192.0.2.1" || q.Groups == nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		// bob may pull whatever he asks for, and "push" on one repository
		// he did not ask for.
		type scope struct {
			Type    string   `json:"type"`
			Name    string   `json:"name"`
			Actions []string `json:"actions"`
		}
		var out []scope
		if q.User == "bob" {
			for _, s := range q.Scopes {
				out = append(out, scope{s.Type, s.Name, []string{"pull"}})
			}
			out = append(out, scope{"repository", "elsewhere", []string{"push"}})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"scopes": out})
	}))
	defer srv.Close()

	a := &HTTPAuthorizer{HTTPService: HTTPService{URL: srv.URL}, CacheTTL: caddy.Duration(time.Minute)}
	if err := a.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	p, _ := chainPolicy(t)
	p.authorizers = []namedAuthorizer{{a, "http"}}
	ctx := context.Background()
	req := []token.Scope{{Type: "repository", Name: "team/app", Actions: token.Pull | token.Push}}
	got := p.authorize(ctx, p.Current(), Identity{Name: "bob"}, testService, "192.0.2.1", req)
	if len(got) != 1 || got[0].Actions != token.Pull {
		t.Fatalf("got %v, want pull on team/app only", got)
	}
	if got := p.authorize(ctx, p.Current(), Identity{}, testService, "192.0.2.1", req); len(got) != 0 {
		t.Fatalf("anonymous: got %v", got)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d calls, want 2", calls.Load())
	}
	failing.Store(true)
	if got := p.authorize(ctx, p.Current(), Identity{Name: "bob"}, testService, "192.0.2.1", req); len(got) != 1 || calls.Load() != 2 {
		t.Fatalf("the same question within cache_ttl: got %v after %d calls", got, calls.Load())
	}
	if got := p.authorize(ctx, p.Current(), Identity{Name: "carol"}, testService, "192.0.2.1", req); len(got) != 0 {
		t.Fatalf("a failing service grants nothing: got %v", got)
	}
}
