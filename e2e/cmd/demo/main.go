// Command demo runs an authenticated registry on localhost in one process
// and shows it working: Caddy with registry_auth_proxy is the registry's
// only door, and a distribution v3 registry without auth of its own sits
// behind it on a private port. `make demo` starts it.
package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/regauth/caddy-registry-auth/e2e"
)

// caddyfile is the demo configuration; it is also written next to the
// data so it can be read and reused with `go run ./cmd/caddy run`.
const caddyfile = `{
	admin off
	persist_config off
	auto_https off
	storage file_system %[1]s/caddy
	registry_auth {
		service localhost:%[2]d
		user %[4]s %[5]s
		allow authenticated pull,push {user}/**
		allow authenticated pull,push public/**
		allow user:%[4]s * registry:catalog
		allow everyone pull public/**
	}
}

http://localhost:%[2]d {
	registry_auth_proxy {
		upstream 127.0.0.1:%[3]d
	}
}
`

func main() {
	port := flag.Int("port", 5000, "port of the registry as clients see it (Caddy)")
	dataDir := flag.String("data", "", "directory for the registry's blobs and Caddy's key (default: a new temporary directory)")
	user := flag.String("user", "demo", "the demo user's name")
	password := flag.String("password", "demo-password", "the demo user's password")
	noWalkthrough := flag.Bool("quiet", false, "skip the walkthrough push and pull")
	flag.Parse()
	log.SetFlags(0)

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

	// The registry: no auth, on a loopback port nobody else is told about.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatalf("registry: %v", err)
	}
	stop, err := e2e.StartV3(l, e2e.RegistryConfig{Addr: l.Addr().String(), Storage: e2e.FilesystemStorage(filepath.Join(dir, "registry"))})
	if err != nil {
		log.Fatalf("registry: %v", err)
	}
	defer stop()

	hash, err := bcrypt.GenerateFromPassword([]byte(*password), bcrypt.DefaultCost)
	if err != nil {
		log.Fatal(err)
	}
	cf := fmt.Sprintf(caddyfile, dir, *port, l.Addr().(*net.TCPAddr).Port, *user, hash)
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(cf), 0o600); err != nil {
		log.Fatal(err)
	}
	if err := e2e.StartCaddy(cf); err != nil {
		log.Fatalf("starting Caddy: %v", err)
	}
	defer caddy.Stop() //nolint:errcheck
	host := fmt.Sprintf("localhost:%d", *port)
	if err := e2e.WaitHTTP("http://"+host+"/v2/", http.StatusUnauthorized); err != nil {
		log.Fatalf("Caddy: %v", err)
	}

	if !*noWalkthrough {
		if err := walkthrough(host, *user, *password); err != nil {
			log.Fatalf("walkthrough failed: %v", err)
		}
	}

	fmt.Printf(`
An authenticated registry is running at http://%[1]s
  Caddy (registry_auth_proxy) on %[1]s, the only door;
  distribution v3 behind it on %[2]s, without auth of its own.
  Caddyfile: %[3]s/Caddyfile

User %[4]q, password %[5]q, may push and pull %[4]s/** and public/**;
anyone may pull public/**.

Try:
  docker login %[1]s -u %[4]s --password-stdin <<< %[5]s
  docker tag busybox %[1]s/%[4]s/busybox && docker push %[1]s/%[4]s/busybox
  curl -u %[4]s:%[5]s http://%[1]s/v2/_catalog
  curl -i http://%[1]s/v2/%[4]s/hello/tags/list     # 401 and a Bearer challenge

Ctrl-C stops it.
`, host, l.Addr(), dir, *user, *password)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Println("stopping")
}

// walkthrough shows the protocol with real requests and a real client.
func walkthrough(host, user, password string) error {
	step := func(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

	resp, err := http.Get("http://" + host + "/v2/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	step("GET /v2/ without credentials: %s\n    WWW-Authenticate: %s", resp.Status, resp.Header.Get("WWW-Authenticate"))

	scope := "repository:" + user + "/hello:pull,push"
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/auth/token?service="+host+"&scope="+scope, nil)
	req.SetBasicAuth(user, password)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tok struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("token request: %s %s", resp.Status, body)
	}
	parts := strings.Split(tok.Token, ".")
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	step("GET /auth/token as %s for %s: %s, a token for %d s with claims\n    %s", user, scope, resp.Status, tok.ExpiresIn, claims)

	img, err := random.Image(1024, 1)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(host + "/" + user + "/hello:latest")
	if err != nil {
		return err
	}
	auth := remote.WithAuth(&authn.Basic{Username: user, Password: password})
	if err := remote.Write(ref, img, auth); err != nil {
		return err
	}
	d, _ := img.Digest()
	step("push %s with go-containerregistry: %s", ref, d)

	got, err := remote.Image(ref, auth)
	if err != nil {
		return err
	}
	gd, _ := got.Digest()
	step("pull %s as %s: %s", ref, user, gd)

	_, err = remote.Image(ref)
	step("pull %s anonymously: refused (%v)", ref, firstLine(err))
	return nil
}

func firstLine(err error) string {
	if err == nil {
		return "no error: UNEXPECTED"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
