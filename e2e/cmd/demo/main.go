// Command demo runs an authenticated registry on localhost in one process:
// Caddy with the registry_auth_token handler as the token server, and a
// distribution v3 registry that trusts it. `make demo` starts it.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/regauth/caddy-registry-auth/e2e"
)

const caddyfile = `{
	admin off
	persist_config off
	auto_https off
	storage file_system %[1]s/caddy
	registry_auth {
		service localhost:%[3]d
		issuer caddy-registry-auth-demo
		signer {
			bundle_file %[1]s/token-certs.pem
		}
		user %[4]s %[5]s
		allow authenticated pull,push {user}/**
		allow authenticated pull,push public/**
		allow user:%[4]s * registry:catalog
		allow everyone pull public/**
	}
}

http://localhost:%[2]d {
	registry_auth_token
}
`

func main() {
	registryPort := flag.Int("registry-port", 5000, "port of the registry")
	authPort := flag.Int("auth-port", 5001, "port of the Caddy token server")
	dataDir := flag.String("data", "", "directory for the registry's blobs and Caddy's key (default: a new temporary directory)")
	user := flag.String("user", "demo", "the demo user's name")
	password := flag.String("password", "demo-password", "the demo user's password")
	flag.Parse()

	dir := *dataDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "registry-auth-demo-"); err != nil {
			log.Fatal(err)
		}
	}
	dir, _ = filepath.Abs(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(*password), bcrypt.DefaultCost)
	if err != nil {
		log.Fatal(err)
	}
	cf := fmt.Sprintf(caddyfile, dir, *authPort, *registryPort, *user, hash)
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(cf), 0o600); err != nil {
		log.Fatal(err)
	}
	if err := e2e.StartCaddy(cf); err != nil {
		log.Fatalf("starting Caddy: %v", err)
	}
	defer caddy.Stop() //nolint:errcheck

	l, err := net.Listen("tcp", fmt.Sprintf("localhost:%d", *registryPort))
	if err != nil {
		log.Fatalf("registry: %v", err)
	}
	stop, err := e2e.StartV3(l, e2e.RegistryConfig{
		Addr:    l.Addr().String(),
		Storage: e2e.FilesystemStorage(filepath.Join(dir, "registry")),
		Realm:   fmt.Sprintf("http://localhost:%d/auth/token", *authPort),
		Service: fmt.Sprintf("localhost:%d", *registryPort),
		Issuer:  "caddy-registry-auth-demo",
		Bundle:  filepath.Join(dir, "token-certs.pem"),
	})
	if err != nil {
		log.Fatalf("registry: %v", err)
	}
	defer stop()
	if err := e2e.WaitHTTP(fmt.Sprintf("http://localhost:%d/v2/", *registryPort), http.StatusUnauthorized); err != nil {
		log.Fatalf("registry: %v", err)
	}

	fmt.Printf(`
An authenticated registry is running.
  registry:      http://localhost:%[1]d  (distribution v3, token auth)
  token server:  http://localhost:%[2]d/auth/token  (Caddy + registry_auth_token)
  certificates:  http://localhost:%[2]d/certs.pem
  Caddyfile:     %[3]s/Caddyfile
User %[4]q (password %[5]q) may push and pull %[4]s/** and public/**;
anyone may pull public/**.

Try:
  curl -u %[4]s:%[5]s 'http://localhost:%[2]d/auth/token?service=localhost:%[1]d&scope=repository:%[4]s/app:pull,push'
  docker login localhost:%[1]d -u %[4]s      # then: docker push localhost:%[1]d/%[4]s/app
  crane push image.tar localhost:%[1]d/%[4]s/app

Ctrl-C stops it.
`, *registryPort, *authPort, dir, *user, *password)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
