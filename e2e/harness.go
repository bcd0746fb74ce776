package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile" // the Caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"

	_ "github.com/distribution/distribution/v3/registry/auth/token"                // token auth
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage drivers
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	_ "github.com/regauth/caddy-registry-auth" // the plugin under test
)

// StartCaddy adapts a Caddyfile and runs it in this process, as `caddy run`
// would. Warnings of the adapter are returned as errors: a test config
// should have none.
func StartCaddy(caddyfile string) error {
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		return err
	}
	if len(warnings) > 0 {
		return fmt.Errorf("caddyfile warning: %s", warnings[0].String())
	}
	return caddy.Load(cfg, true)
}

// RegistryConfig is what a test registry is told.
type RegistryConfig struct {
	Addr    string // listen address
	Storage string // YAML lines under storage:, indented two spaces
	Realm   string // token endpoint URL
	Service string
	Issuer  string
	Bundle  string // rootcertbundle path
}

// YAML is a config.yml that both registry families read: token auth that
// trusts the certificate bundle the plugin exported, or no auth at all when
// Realm is empty.
func (c RegistryConfig) YAML() string {
	auth := ""
	if c.Realm != "" {
		auth = fmt.Sprintf(`auth:
  token:
    realm: %s
    service: %s
    issuer: %s
    rootcertbundle: %s
`, c.Realm, c.Service, c.Issuer, c.Bundle)
	}
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
%s`, c.Storage, c.Addr, auth)
}

// InMemoryStorage and FilesystemStorage are values for RegistryConfig.Storage.
const InMemoryStorage = "  inmemory: {}"

// FilesystemStorage keeps blobs under dir.
func FilesystemStorage(dir string) string {
	return "  filesystem:\n    rootdirectory: " + dir
}

// StartV3 runs distribution v3 in this process on l until stop is called.
func StartV3(l net.Listener, c RegistryConfig) (stop func(), err error) {
	return StartV3With(l, c, nil)
}

// StartV3With is StartV3 with the registry's handler wrapped, for tests
// that watch what reaches the registry.
func StartV3With(l net.Listener, c RegistryConfig, wrap func(http.Handler) http.Handler) (stop func(), err error) {
	return serveV3(l, c.YAML(), wrap)
}

// StartV3YAML runs distribution v3 in this process on l with a
// configuration file's text (its http.addr is not used: l is).
func StartV3YAML(l net.Listener, config string) (stop func(), err error) {
	return serveV3(l, config, nil)
}

func serveV3(l net.Listener, config string, wrap func(http.Handler) http.Handler) (stop func(), err error) {
	logrus.SetLevel(logrus.WarnLevel)
	logrus.SetOutput(io.Discard)
	cfg, err := configuration.Parse(strings.NewReader(config))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var handler http.Handler = handlers.NewApp(ctx, cfg)
	if wrap != nil {
		handler = wrap(handler)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l) //nolint:errcheck // ends with Close
	return func() { srv.Close(); cancel() }, nil
}

// FreePort asks the kernel for a free loopback port.
func FreePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitHTTP polls url until it answers with the status, for up to 30 s.
func WaitHTTP(url string, status int) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return nil
			}
			last = fmt.Errorf("%s answered %d, want %d", url, resp.StatusCode, status)
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}
