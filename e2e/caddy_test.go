package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/crypto/bcrypt"
)

// The test users. Their hashes are made at the lowest bcrypt cost to keep
// the suite fast; the cost does not change any behaviour under test.
var passwords = map[string]string{
	"admin":  "admin-secret",
	"alice":  "alice-secret",
	"reader": "reader-secret",
	"carol":  "carol-secret", // the refresh-token tests change and delete her
}

const (
	service = "registry.test"
	issuer  = "caddy-registry-auth-e2e"
)

// env is what every end-to-end test shares: one Caddy with the plugin,
// serving the token endpoint on caddyPort and one proxy site per slot.
type env struct {
	dir       string // temporary directory for this run
	caddyPort int
	bundle    string // path of the certificate bundle Caddy exported
	realm     string // absolute URL of the token endpoint
	slots     []*proxySlot
	users     string // the Caddyfile lines of the test users, hashed once
}

// proxySlot is a registry behind a registry_auth_proxy site. The ports are
// fixed before Caddy starts; the registry starts in its test.
type proxySlot struct {
	family       string // "v3" or "v2.8"
	registryAuth bool   // the registry itself checks our tokens
	registryPort int
	proxyPort    int
}

func (s *proxySlot) name() string {
	if s.registryAuth {
		return s.family + "/registry-token-auth"
	}
	return s.family + "/registry-no-auth"
}

var shared *env

func TestMain(m *testing.M) {
	if os.Getenv(OIDCIssuerEnv) != "" {
		// This binary started as the tests' OIDC issuer (oidc_issuer.go).
		os.Exit(RunOIDCIssuer())
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "regauth-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if os.Getenv("E2E_KEEP") == "" {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "keeping", dir)
	}
	// Caddy must not touch the user's real config or data directories.
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))

	e := &env{dir: dir, caddyPort: FreePort()}
	for _, family := range []string{"v3", "v2.8"} {
		for _, auth := range []bool{true, false} {
			e.slots = append(e.slots, &proxySlot{family: family, registryAuth: auth, registryPort: FreePort(), proxyPort: FreePort()})
		}
	}
	e.bundle = filepath.Join(dir, "token-certs.pem")
	e.realm = fmt.Sprintf("http://localhost:%d/auth/token", e.caddyPort)
	if err := e.startCaddy(); err != nil {
		fmt.Fprintln(os.Stderr, "starting caddy:", err)
		e.dumpLog()
		return 1
	}
	defer caddy.Stop() //nolint:errcheck
	shared = e
	code := m.Run()
	removeBaseImage()
	if code != 0 || os.Getenv("E2E_SHOW_LOG") != "" {
		e.dumpLog()
	}
	return code
}

// caddyfile is the suite's configuration, with extra appended (sites of
// tests that reload Caddy).
func (e *env) caddyfile(extra string) string {
	var proxies strings.Builder
	for _, s := range e.slots {
		fmt.Fprintf(&proxies, `
http://localhost:%d {
	log
	registry_auth_proxy {
		upstream localhost:%d
	}
}
`, s.proxyPort, s.registryPort)
	}
	return fmt.Sprintf(`{
	admin localhost:2999
	persist_config off
	http_port %[1]d
	auto_https off
	skip_install_trust
	storage file_system %[2]s/storage
	log {
		output file %[2]s/caddy.log
		level DEBUG
	}
	registry_auth {
		service %[3]s
		issuer %[4]s
		signer {
			bundle_file %[5]s
		}
		# every wrong-password cell of the suite comes from 127.0.0.1
		throttle 1000
%[6]s
		allow user:admin * ** registry:catalog
		allow user:alice pull,push alice/** public/**
		allow user:reader pull alice/**
		allow user:carol pull,push carol/**
		allow everyone pull public/**
	}
}

http://localhost:%[1]d {
	log
	handle /auth/* {
		registry_auth_token
	}
	respond 404
}
%[7]s%[8]s`, e.caddyPort, e.dir, service, issuer, e.bundle, e.users, proxies.String(), extra)
}

func (e *env) startCaddy() error {
	var users strings.Builder
	for name, pw := range passwords {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			return err
		}
		fmt.Fprintf(&users, "\t\tuser %s %s\n", name, h)
	}
	e.users = users.String()
	if err := StartCaddy(e.caddyfile("")); err != nil {
		return err
	}
	return WaitHTTP(fmt.Sprintf("http://localhost:%d/auth/certs.pem", e.caddyPort), http.StatusOK)
}

func (e *env) dumpLog() {
	data, err := os.ReadFile(filepath.Join(e.dir, "caddy.log"))
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	fmt.Fprintln(os.Stderr, "--- last lines of the Caddy log ---")
	fmt.Fprintln(os.Stderr, strings.Join(lines, "\n"))
}
