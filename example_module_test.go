package registryauth_test

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	registryauth "github.com/regauth/caddy-registry-auth"
)

// Tokens is the third-party authenticator of the README: CI robots log in
// with a token each. It lives outside the plugin's package, as anyone's
// module would, and is used through a running Caddy below.
type Tokens struct {
	Robots map[string]string `json:"robots"`
}

func init() { caddy.RegisterModule(Tokens{}) }

func (Tokens) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "registry_auth.authenticators.team_tokens", New: func() caddy.Module { return new(Tokens) }}
}

func (t *Tokens) Authenticate(_ context.Context, name, password string) (registryauth.Identity, error) {
	want, ok := t.Robots[name]
	if !ok {
		return registryauth.Identity{}, registryauth.ErrUnknownUser
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(password)) != 1 {
		return registryauth.Identity{}, registryauth.ErrBadCredentials
	}
	return registryauth.Identity{Name: name, Groups: []string{"robots"}}, nil
}

// UnmarshalCaddyfile reads `authenticator team_tokens { robot <name> <token> ... }`.
func (t *Tokens) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	t.Robots = map[string]string{}
	for d.NextBlock(0) {
		var name, token string
		if d.Val() != "robot" || !d.Args(&name, &token) {
			return d.Errf("want: robot <name> <token>")
		}
		t.Robots[name] = token
	}
	return nil
}

var (
	_ registryauth.Authenticator = (*Tokens)(nil)
	_ caddyfile.Unmarshaler      = (*Tokens)(nil)
)

func TestThirdPartyAuthenticatorModule(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	src := fmt.Sprintf(`{
	admin off
	storage file_system %s
	registry_auth {
		service registry.test
		authenticator team_tokens {
			robot ci-bot s3cret
		}
		authenticator static {
			user breakglass plaintext glass-pw
		}
		authorizer rules {
			allow user:breakglass pull,push ci/**
		}
		allow group:robots pull,push ci/**
	}
}
http://%s {
	registry_auth_token
}
`, t.TempDir(), addr)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = caddy.Stop() }()

	get := func(user, password string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/?service=registry.test&scope=repository:ci/app:pull,push", nil)
		req.SetBasicAuth(user, password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Token string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		var claims map[string]any
		if parts := strings.Split(body.Token, "."); len(parts) == 3 {
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			_ = json.Unmarshal(payload, &claims)
		}
		return resp.StatusCode, claims
	}
	status, claims := get("ci-bot", "s3cret")
	if status != http.StatusOK {
		t.Fatalf("the robot's token: %d", status)
	}
	if access := fmt.Sprint(claims["access"]); !strings.Contains(access, "ci/app") || !strings.Contains(access, "push") {
		t.Fatalf("the robots group's rule must grant push on ci/app: access %s", access)
	}
	if status, _ := get("ci-bot", "wrong"); status != http.StatusUnauthorized {
		t.Fatalf("a wrong token: %d", status)
	}
	if status, _ := get("other-bot", "s3cret"); status != http.StatusUnauthorized {
		t.Fatalf("an unknown robot: %d", status)
	}
	// The built-in static and rules modules, after the third party's.
	status, claims = get("breakglass", "glass-pw")
	if access := fmt.Sprint(claims["access"]); status != http.StatusOK || !strings.Contains(access, "push") {
		t.Fatalf("breakglass: %d, access %s", status, access)
	}
}
