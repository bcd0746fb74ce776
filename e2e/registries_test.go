package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/sirupsen/logrus"
)

// registry is a running registry under test.
type registry struct {
	family string // "v3" or "v2.8"
	host   string // host:port, as clients name it
}

// registryBinary is the Debian docker-registry package's binary (2.8).
const registryBinary = "/usr/bin/docker-registry"

// registryConfig is one config.yml both families read: token auth that
// trusts the certificate bundle Caddy exported.
func registryConfig(e *env, addr, storage string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
%s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: e2e-secret
auth:
  token:
    realm: %s
    service: %s
    issuer: %s
    rootcertbundle: %s
`, storage, addr, e.realm, service, issuer, e.bundle)
}

// startV3 runs distribution v3 in this process with in-memory storage.
func startV3(t *testing.T, e *env) *registry {
	t.Helper()
	logrus.SetLevel(logrus.WarnLevel)
	logrus.SetOutput(io.Discard)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	cfg, err := configuration.Parse(strings.NewReader(registryConfig(e, l.Addr().String(), "  inmemory: {}")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app := handlers.NewApp(ctx, cfg)
	srv := &http.Server{Handler: app}
	go srv.Serve(l) //nolint:errcheck
	t.Cleanup(func() { srv.Close(); cancel() })
	r := &registry{family: "v3", host: fmt.Sprintf("localhost:%d", port)}
	if err := waitHTTP("http://"+r.host+"/v2/", http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	return r
}

// startV28 runs the Debian docker-registry 2.8 binary. Its absence fails
// the test: CI installs it, and a skipped family would hide regressions.
func startV28(t *testing.T, e *env) *registry {
	t.Helper()
	if _, err := os.Stat(registryBinary); err != nil {
		t.Fatalf("registry 2.8 binary missing (%v): install it with `apt-get install docker-registry`", err)
	}
	dir := t.TempDir()
	port := freePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	storage := fmt.Sprintf("  filesystem:\n    rootdirectory: %s", filepath.Join(dir, "data"))
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(registryConfig(e, addr, storage)), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(registryBinary, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			if data, err := os.ReadFile(logPath); err == nil {
				t.Logf("registry 2.8 log:\n%s", tail(string(data), 40))
			}
		}
	})
	r := &registry{family: "v2.8", host: fmt.Sprintf("localhost:%d", port)}
	if err := waitHTTP("http://"+r.host+"/v2/", http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	return r
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
