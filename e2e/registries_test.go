package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// registry is a running registry under test.
type registry struct {
	family string // "v3" or "v2.8"
	host   string // host:port, as clients name it
	// proxied: host is a registry_auth_proxy site in front of the registry.
	proxied bool
}

// registryBinary is the Debian docker-registry package's binary (2.8).
const registryBinary = "/usr/bin/docker-registry"

// registrySetup says how to start a registry: on which port (0: any), and
// with token auth pointing at which realm ("" for no auth).
type registrySetup struct {
	port  int
	realm string
	// disk makes v3 store blobs in a temporary directory: its in-memory
	// driver copies on every write and takes minutes over a 200 MiB blob.
	disk bool
}

func (e *env) registryConfig(addr, storage, realm string) RegistryConfig {
	return RegistryConfig{Addr: addr, Storage: storage, Realm: realm, Service: service, Issuer: issuer, Bundle: e.bundle}
}

// startV3 runs distribution v3 in this process with in-memory storage.
func startV3(t *testing.T, e *env, setup registrySetup) *registry {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", setup.port))
	if err != nil {
		t.Fatal(err)
	}
	storage := InMemoryStorage
	if setup.disk {
		storage = FilesystemStorage(t.TempDir())
	}
	stop, err := StartV3(l, e.registryConfig(l.Addr().String(), storage, setup.realm))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	r := &registry{family: "v3", host: fmt.Sprintf("localhost:%d", l.Addr().(*net.TCPAddr).Port)}
	if err := WaitHTTP("http://"+r.host+"/v2/", setup.readyStatus()); err != nil {
		t.Fatal(err)
	}
	return r
}

// startV28 runs the Debian docker-registry 2.8 binary. Its absence fails
// the test: CI installs it, and a skipped family would hide regressions.
func startV28(t *testing.T, e *env, setup registrySetup) *registry {
	t.Helper()
	if _, err := os.Stat(registryBinary); err != nil {
		t.Fatalf("registry 2.8 binary missing (%v): install it with `apt-get install docker-registry`", err)
	}
	dir := t.TempDir()
	port := setup.port
	if port == 0 {
		port = FreePort()
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(e.registryConfig(addr, FilesystemStorage(filepath.Join(dir, "data")), setup.realm).YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	startLogged(t, exec.Command(registryBinary, "serve", cfgPath), filepath.Join(dir, "registry.log"), "registry 2.8")
	r := &registry{family: "v2.8", host: fmt.Sprintf("localhost:%d", port)}
	if err := WaitHTTP("http://"+r.host+"/v2/", setup.readyStatus()); err != nil {
		t.Fatal(err)
	}
	return r
}

// readyStatus is what the version check answers once the registry runs.
func (s registrySetup) readyStatus() int {
	if s.realm == "" {
		return http.StatusOK
	}
	return http.StatusUnauthorized
}

// starters start each registry family.
var starters = map[string]func(*testing.T, *env, registrySetup) *registry{"v3": startV3, "v2.8": startV28}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
