// Command demo runs an authenticated registry on localhost in one process
// and shows it working: Caddy with registry_auth_proxy is the registry's
// only door, and a distribution v3 registry without auth of its own sits
// behind it on a private port. `make demo` starts it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/caddyserver/caddy/v2"
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
		service %[2]s
		user %[4]s %[5]s
		allow authenticated pull,push {user}/**
		allow authenticated pull,push public/**
		allow user:%[4]s * registry:catalog
		allow everyone pull public/**
	}
}

http://:%[6]d {
	bind %[7]s
	registry_auth_proxy {
		upstream 127.0.0.1:%[3]d
	}
}
`

type options struct {
	addr, dataDir, user, password string
	quiet                         bool
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:5000", "address Caddy listens on; 0.0.0.0:5000 lets other machines in (with the published demo password)")
	flag.StringVar(&o.dataDir, "data", "", "directory for the registry's blobs and Caddy's key, kept on exit (default: a new temporary directory, removed on exit)")
	flag.StringVar(&o.user, "user", "demo", "the demo user's name")
	flag.StringVar(&o.password, "password", "demo-password", "the demo user's password")
	flag.BoolVar(&o.quiet, "quiet", false, "do not print the walkthrough (the sample image is pushed anyway)")
	flag.Parse()
	if err := run(o); err != nil {
		// Plainly on stderr: Caddy sends the standard logger to its own log.
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// run starts everything, waits for Ctrl-C and stops everything again;
// the deferred steps also run when starting fails.
func run(o options) error {
	// Ctrl-C from here on stops the demo through the deferred steps.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)

	sock, host, err := listen(o.addr)
	if err != nil {
		return err
	}
	defer sock.Close()
	dir, remove, err := dataDir(o.dataDir)
	if err != nil {
		return err
	}
	defer remove() // last: after Caddy and the registry have stopped

	// The registry: no auth, on a loopback port nobody else is told about.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("registry: %v", err)
	}
	stop, err := e2e.StartV3(l, e2e.RegistryConfig{Addr: l.Addr().String(), Storage: e2e.FilesystemStorage(filepath.Join(dir, "registry"))})
	if err != nil {
		return fmt.Errorf("registry: %v", err)
	}
	defer stop()

	hash, err := bcrypt.GenerateFromPassword([]byte(o.password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	regPort, port := l.Addr().(*net.TCPAddr).Port, sock.port
	// Caddy serves the socket opened above; the file shows the address.
	cf := func(bind string) string {
		return fmt.Sprintf(caddyfile, dir, host, regPort, o.user, hash, port, bind)
	}
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(cf(sock.host)), 0o600); err != nil {
		return err
	}
	if err := e2e.StartCaddy(cf("fd/" + strconv.Itoa(int(sock.file.Fd())))); err != nil {
		return fmt.Errorf("starting Caddy: %v", err)
	}
	defer caddy.Stop() //nolint:errcheck
	if err := e2e.WaitHTTP("http://"+host+"/v2/", http.StatusUnauthorized); err != nil {
		return fmt.Errorf("caddy: %v", err)
	}
	image, err := walkthrough(host, o.user, o.password, !o.quiet)
	if err != nil {
		return fmt.Errorf("walkthrough failed: %v", err)
	}
	printBanner(host, l.Addr().String(), dir, o, image)
	<-sig
	fmt.Println("stopping")
	return nil
}

// socket is the demo's listening socket, held open while Caddy serves it.
type socket struct {
	file *os.File
	host string // the address it is bound to
	port int
}

func (s socket) Close() error { return s.file.Close() }

// listen opens the demo's address itself, without SO_REUSEPORT: Caddy
// sets that option on the sockets it opens, so a second Caddy on a taken
// port would share it silently (requests split between two registries).
// A plain socket cannot be shared: a taken port is refused here, and
// nobody can join this one. host is the address for clients.
func listen(addr string) (s socket, host string, err error) {
	l, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return s, "", fmt.Errorf("%s is already in use (another demo, registry or Caddy?): stop it, or choose another address: -addr 127.0.0.1:5001 (make demo DEMOFLAGS='-addr 127.0.0.1:5001')", addr)
	}
	if err != nil {
		return s, "", fmt.Errorf("cannot listen on %s: %v", addr, err)
	}
	defer l.Close()
	a := l.Addr().(*net.TCPAddr)
	if s.file, err = l.(*net.TCPListener).File(); err != nil {
		return s, "", err
	}
	s.host, s.port = a.IP.String(), a.Port
	host = net.JoinHostPort(s.host, strconv.Itoa(a.Port))
	if a.IP.IsUnspecified() {
		host = net.JoinHostPort("localhost", strconv.Itoa(a.Port))
	}
	return s, host, nil
}

// dataDir is the directory given, kept, or a new temporary one that
// remove deletes.
func dataDir(given string) (dir string, remove func(), err error) {
	if given != "" {
		if dir, err = filepath.Abs(given); err != nil {
			return "", nil, err
		}
		return dir, func() {}, os.MkdirAll(dir, 0o700)
	}
	if dir, err = os.MkdirTemp("", "registry-auth-demo-"); err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
