package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/regauth/caddy-registry-auth/internal/oidctest"
)

// The OIDC issuer of the end-to-end tests runs as a process of its own:
// the test binary again, with OIDCIssuerEnv set (TestMain then runs
// RunOIDCIssuer instead of the tests). Over HTTPS on 127.0.0.1, with a
// certificate of a CA the test made, it serves one issuer per name at
// https://127.0.0.1:<port>/<name>: a discovery document and a key set, and
// for the test only, POST <issuer>/mint (the body is a token's claims; the
// answer the signed token), POST <issuer>/forge (the same, signed by a key
// it does not publish) and POST <issuer>/rotate (a new key, published next
// to the old one, signs from then on).
const OIDCIssuerEnv = "REGAUTH_E2E_OIDC_ISSUER"

// OIDCIssuerNames are the issuers the process serves.
var OIDCIssuerNames = []string{"github", "gitlab", "k8s", "foreign"}

// issuerConfig is what the process is told, as JSON in OIDCIssuerEnv.
type issuerConfig struct {
	Addr     string `json:"addr"`
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// RunOIDCIssuer is the issuer process's main; it returns its exit code.
func RunOIDCIssuer() int {
	var cfg issuerConfig
	if err := json.Unmarshal([]byte(os.Getenv(OIDCIssuerEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "oidc issuer: config:", err)
		return 2
	}
	mux := http.NewServeMux()
	for _, name := range OIDCIssuerNames {
		if err := serveIssuer(mux, "https://"+cfg.Addr+"/"+name); err != nil {
			fmt.Fprintln(os.Stderr, "oidc issuer:", err)
			return 1
		}
	}
	srv := &http.Server{Addr: cfg.Addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintln(os.Stderr, "oidc issuer: serving on", cfg.Addr)
	err := srv.ListenAndServeTLS(cfg.CertFile, cfg.KeyFile)
	fmt.Fprintln(os.Stderr, "oidc issuer:", err)
	return 1
}

// serveIssuer adds the issuer at issuerURL and its test endpoints to mux.
func serveIssuer(mux *http.ServeMux, issuerURL string) error {
	key, err := oidctest.RSAKey("rsa-1")
	if err != nil {
		return err
	}
	hidden, err := oidctest.RSAKey("rsa-1") // the published key's id, another key
	if err != nil {
		return err
	}
	iss, err := oidctest.NewIssuer(issuerURL, key)
	if err != nil {
		return err
	}
	u, err := url.Parse(issuerURL)
	if err != nil {
		return err
	}
	path := u.Path
	mux.Handle(path+"/", iss)
	var mu sync.Mutex
	published := []oidctest.Key{key}
	sign := func(signer func(claims map[string]any) (string, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var claims map[string]any
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&claims); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			raw, err := signer(claims)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			_, _ = io.WriteString(w, raw)
		}
	}
	mux.Handle("POST "+path+"/mint", sign(func(c map[string]any) (string, error) { return iss.Sign(c) }))
	mux.Handle("POST "+path+"/forge", sign(func(c map[string]any) (string, error) { return hidden.Sign(c) }))
	mux.HandleFunc("POST "+path+"/rotate", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		next, err := oidctest.ECKey(fmt.Sprintf("ec-%d", len(published)+1))
		if err == nil {
			published = append(published, next)
			err = iss.Rotate(next, published...)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, next.ID)
	})
	return nil
}

// OIDCIssuer is a running issuer process.
type OIDCIssuer struct {
	Addr   string // 127.0.0.1:<port>
	CAFile string // the CA its certificate chains to
	client *http.Client
	cmd    *exec.Cmd
	log    *os.File
	done   chan struct{}
}

// NewOIDCIssuer makes a CA and a certificate for 127.0.0.1 in dir for an
// issuer on port (0: a free one); Start runs it.
func NewOIDCIssuer(dir string, port int) (*OIDCIssuer, error) {
	caFile, err := writeTestPKI(dir)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = FreePort()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	return &OIDCIssuer{Addr: fmt.Sprintf("127.0.0.1:%d", port), CAFile: caFile, client: &http.Client{Transport: transport, Timeout: 10 * time.Second}}, nil
}

// Start runs the issuer process and waits until it serves.
func (o *OIDCIssuer) Start() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir := filepath.Dir(o.CAFile)
	cfg, _ := json.Marshal(issuerConfig{Addr: o.Addr, CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key")})
	if o.log, err = os.Create(filepath.Join(dir, "issuer.log")); err != nil {
		return err
	}
	o.cmd = exec.Command(self)
	o.cmd.Env = append(os.Environ(), OIDCIssuerEnv+"="+string(cfg))
	o.cmd.Stdout, o.cmd.Stderr = o.log, o.log
	if err := o.cmd.Start(); err != nil {
		return err
	}
	o.done = make(chan struct{})
	go func() { _ = o.cmd.Wait(); close(o.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := o.client.Get(o.URL("github") + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-o.done:
			return fmt.Errorf("the issuer process exited: %s", o.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			o.Stop()
			return fmt.Errorf("the issuer does not serve: %v", err)
		}
	}
}

// Stop ends the process.
func (o *OIDCIssuer) Stop() {
	if o.cmd != nil && o.cmd.Process != nil {
		_ = o.cmd.Process.Kill()
		<-o.done
		o.log.Close()
		o.cmd = nil
	}
}

// Log is what the process wrote.
func (o *OIDCIssuer) Log() string {
	data, _ := os.ReadFile(filepath.Join(filepath.Dir(o.CAFile), "issuer.log"))
	return string(data)
}

// URL is the issuer called name.
func (o *OIDCIssuer) URL(name string) string { return "https://" + o.Addr + "/" + name }

// Mint asks issuer name to sign claims.
func (o *OIDCIssuer) Mint(name string, claims map[string]any) (string, error) {
	return o.post(name, "mint", claims)
}

// Forge asks issuer name to sign claims with a key it does not publish.
func (o *OIDCIssuer) Forge(name string, claims map[string]any) (string, error) {
	return o.post(name, "forge", claims)
}

// Rotate makes issuer name sign with a new key from now on, and returns
// its key id.
func (o *OIDCIssuer) Rotate(name string) (string, error) { return o.post(name, "rotate", nil) }

// JWKS is issuer name's key set, as a cluster's /openid/v1/jwks would be.
func (o *OIDCIssuer) JWKS(name string) ([]byte, error) {
	resp, err := o.client.Get(o.URL(name) + "/keys")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func (o *OIDCIssuer) post(name, what string, body any) (string, error) {
	data, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, o.URL(name)+"/"+what, strings.NewReader(string(data)))
	resp, err := o.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status + ": " + string(out))
	}
	return string(out), err
}
