package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regauth/caddy-registry-auth/token"
)

// A fleet is several Caddy processes (the binary of ./cmd/caddy, each its
// own process as in production) sharing one file_system storage.

// fleetConfig is what every instance of a fleet shares.
type fleetConfig struct {
	storage      string // the shared file_system storage directory
	syncInterval string
	upstream     int // the registry behind each instance's proxy site
}

// instance is one running Caddy of a fleet.
type instance struct {
	name                   string
	admin, site, proxyPort int
	dir                    string // its own directory: config, log, bundle
	cmd                    *exec.Cmd
	exited                 chan struct{}
}

func (in *instance) realm() string     { return fmt.Sprintf("http://localhost:%d/auth/token", in.site) }
func (in *instance) proxyHost() string { return fmt.Sprintf("localhost:%d", in.proxyPort) }
func (in *instance) bundle() string    { return filepath.Join(in.dir, "certs.pem") }
func (in *instance) adminAddr() string { return fmt.Sprintf("localhost:%d", in.admin) }

// caddyfile is the instance's configuration: the suite's users and a
// policy with the shortest token lifetime, its token endpoint, and a proxy
// site in front of the fleet's upstream registry.
func (in *instance) caddyfile(f fleetConfig) string {
	return fmt.Sprintf(`{
	admin localhost:%[1]d
	persist_config off
	auto_https off
	skip_install_trust
	storage file_system %[2]s
	log {
		output file %[3]s/caddy.log
		level DEBUG
	}
	registry_auth {
		service %[4]s
		issuer %[5]s
		token_lifetime 1m
		throttle 1000
		signer {
			bundle_file %[3]s/certs.pem
			jwks_file %[3]s/jwks.json
			sync_interval %[6]s
		}
%[7]s
		allow user:alice pull,push alice/**
		allow user:reader pull alice/**
	}
}

http://localhost:%[8]d {
	handle /auth/* {
		registry_auth_token
	}
	respond 404
}

http://localhost:%[9]d {
	registry_auth_proxy {
		upstream localhost:%[10]d
	}
}
`, in.admin, f.storage, in.dir, service, issuer, f.syncInterval, shared.users, in.site, in.proxyPort, f.upstream)
}

// startFleet starts n instances on one new storage at the same moment,
// so that they race for the first key.
func startFleet(t *testing.T, n int, f fleetConfig) []*instance {
	t.Helper()
	bin := buildCaddy(t)
	if f.storage == "" {
		f.storage = t.TempDir()
	}
	var fleet []*instance
	for i := range n {
		in := &instance{name: string(rune('A' + i)), admin: FreePort(), site: FreePort(), proxyPort: FreePort(), dir: t.TempDir(), exited: make(chan struct{})}
		cfg := filepath.Join(in.dir, "Caddyfile")
		if err := os.WriteFile(cfg, []byte(in.caddyfile(f)), 0o600); err != nil {
			t.Fatal(err)
		}
		in.cmd = exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
		in.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(in.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(in.dir, "config"))
		out, err := os.Create(filepath.Join(in.dir, "stdout.log"))
		if err != nil {
			t.Fatal(err)
		}
		in.cmd.Stdout, in.cmd.Stderr = out, out
		fleet = append(fleet, in)
	}
	for _, in := range fleet {
		if err := in.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = in.cmd.Wait(); close(in.exited) }()
		t.Cleanup(func() { in.stop(t) })
	}
	for _, in := range fleet {
		if err := WaitHTTP(fmt.Sprintf("http://localhost:%d/auth/certs.pem", in.site), http.StatusOK); err != nil {
			in.dumpLog(t)
			t.Fatalf("instance %s: %v", in.name, err)
		}
	}
	return fleet
}

// stop ends the process (as `caddy stop` or a service manager would) and
// shows its log if the test failed.
func (in *instance) stop(t *testing.T) {
	_ = in.cmd.Process.Signal(os.Interrupt)
	select {
	case <-in.exited:
	case <-time.After(10 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.exited
	}
	if t.Failed() {
		in.dumpLog(t)
	}
}

func (in *instance) dumpLog(t *testing.T) {
	for _, name := range []string{"stdout.log", "caddy.log"} {
		if data, err := os.ReadFile(filepath.Join(in.dir, name)); err == nil {
			t.Logf("instance %s %s:\n%s", in.name, name, tail(string(data), 30))
		}
	}
}

// keys runs `caddy registry-auth keys <args>` against the instance, as an
// operator would, and returns its output and error.
func (in *instance) keys(args ...string) (string, error) {
	args = append([]string{"registry-auth", "keys"}, append(args, "--address", in.adminAddr())...)
	// The binary was built when the instance started.
	out, err := exec.Command(caddyBinary.path, args...).CombinedOutput()
	return string(out), err
}

func (in *instance) mustKeys(t *testing.T, args ...string) string {
	t.Helper()
	out, err := in.keys(args...)
	if err != nil {
		t.Fatalf("caddy registry-auth keys %s at %s: %v\n%s", strings.Join(args, " "), in.name, err, out)
	}
	return out
}

// get fetches a URL and returns its status and body.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// certsOf counts the certificates of a PEM bundle.
func certsOf(t *testing.T, pemData []byte) int {
	t.Helper()
	certs, err := token.ParseCertificatesPEM(pemData)
	if err != nil {
		t.Fatalf("bundle: %v\n%s", err, pemData)
	}
	return len(certs)
}

// kidOf is the key id in a JWT's header.
func kidOf(t *testing.T, raw string) string {
	t.Helper()
	head, _, _ := strings.Cut(raw, ".")
	data, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// tokenAt asks a token endpoint (realm) for a token with Basic
// credentials.
func tokenAt(t *testing.T, realm, user, scope string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, realm+"?service="+service+"&scope="+scope, nil)
	req.SetBasicAuth(user, passwords[user])
	body := expect(t, do(t, req), http.StatusOK, "token at "+realm)
	var r struct{ Token string }
	if err := json.Unmarshal(body, &r); err != nil || r.Token == "" {
		t.Fatalf("token response %s", body)
	}
	return r.Token
}

// until polls cond every 50 ms for up to limit and returns how long it
// took to hold.
func until(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// restartable is a registry that can be restarted on the same address and
// storage, as an operator restarts it to load a new bundle.
type restartable struct {
	family string
	host   string
	cfg    RegistryConfig
	stop   func()
}

// startRestartable starts a registry of family on port (0: any) with token
// auth trusting bundle, its blobs on disk.
func startRestartable(t *testing.T, family string, port int, realm, bundle string) *restartable {
	t.Helper()
	if port == 0 {
		port = FreePort()
	}
	dir := t.TempDir()
	r := &restartable{family: family, host: fmt.Sprintf("localhost:%d", port),
		cfg: RegistryConfig{Addr: fmt.Sprintf("127.0.0.1:%d", port), Storage: FilesystemStorage(filepath.Join(dir, "data")),
			Realm: realm, Service: service, Issuer: issuer, Bundle: bundle}}
	r.start(t)
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *restartable) start(t *testing.T) {
	t.Helper()
	switch r.family {
	case "v3":
		l, err := net.Listen("tcp", r.cfg.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.stop, err = StartV3(l, r.cfg); err != nil {
			t.Fatal(err)
		}
	default:
		r.stop = startV28Process(t, r.cfg)
	}
	if err := WaitHTTP("http://"+r.host+"/v2/", http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
}

// restart stops the registry and starts it again, and returns how long
// it was away.
func (r *restartable) restart(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	r.stop()
	r.start(t)
	return time.Since(start)
}

// startV28Process runs the Debian registry 2.8 binary with cfg and returns
// its stop function.
func startV28Process(t *testing.T, cfg RegistryConfig) func() {
	t.Helper()
	if _, err := os.Stat(registryBinary); err != nil {
		t.Fatalf("registry 2.8 binary missing (%v): install it with `apt-get install docker-registry`", err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command(registryBinary, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("registry 2.8 log:\n%s", tail(log.String(), 20))
			}
		})
	}
}
