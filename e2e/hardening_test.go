package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// loadCaddyfile replaces the running config through the admin API, as
// `caddy reload` does, and returns the status and body of the answer.
func loadCaddyfile(t *testing.T, caddyfile string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://localhost:2999/load", strings.NewReader(caddyfile))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	// The reload closed the server's idle keep-alive connections; a POST
	// sent on one of them would fail without a retry. The tests after a
	// reload start on fresh connections, once the old listeners are gone
	// (TestReloadUnderLoad looks at these races on purpose).
	http.DefaultClient.CloseIdleConnections()
	waitReloadSettled(t, caddyPorts(caddyfile))
	return resp.StatusCode, string(body)
}

// proxySite is an extra proxy site for tests that bring their own registry.
func proxySite(proxyPort, registryPort int) string {
	return fmt.Sprintf("\nhttp://localhost:%d {\n\tlog\n\tregistry_auth_proxy {\n\t\tupstream localhost:%d\n\t}\n}\n", proxyPort, registryPort)
}

// addProxySite adds a proxy site on proxyPort in front of the registry on
// regPort to Caddy for the test (removed when it ends), and returns the
// proxy's host once it answers.
func addProxySite(t *testing.T, proxyPort, regPort int) string {
	t.Helper()
	if status, body := loadCaddyfile(t, shared.caddyfile(proxySite(proxyPort, regPort))); status != http.StatusOK {
		t.Fatalf("adding a proxy site: %d %s", status, body)
	}
	t.Cleanup(func() { loadCaddyfile(t, shared.caddyfile("")) })
	host := fmt.Sprintf("localhost:%d", proxyPort)
	if err := WaitHTTP("http://"+host+"/v2/", http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	return host
}

// startProxied starts a v3 registry without auth of its own behind a proxy
// site added to Caddy for the test (removed when it ends), and returns the
// proxy as clients reach it.
func startProxied(t *testing.T) *registry {
	t.Helper()
	regPort, proxyPort := FreePort(), FreePort()
	startV3(t, shared, registrySetup{port: regPort})
	return &registry{family: "v3", host: addProxySite(t, proxyPort, regPort)}
}

// TestReloadUnderLoad pushes and pulls through the proxy without pause
// while Caddy's config is replaced many times, valid and invalid in turn.
// Valid reloads must not fail a request in flight; invalid ones must be
// refused, naming the line, with the running config still serving.
func TestReloadUnderLoad(t *testing.T) {
	regPort, proxyPort := FreePort(), FreePort()
	startV3(t, shared, registrySetup{port: regPort, disk: true})
	site := proxySite(proxyPort, regPort)
	valid := func(i int) string {
		// A different lifetime each time, so every load is a real reload.
		return strings.Replace(shared.caddyfile(site), "throttle 1000", fmt.Sprintf("throttle 1000\n\t\ttoken_lifetime %dm", 5+i%2), 1)
	}
	invalid := strings.Replace(shared.caddyfile(site), "throttle 1000", "throttle 1000\n\t\tallow everyone pul **", 1)
	if status, body := loadCaddyfile(t, valid(0)); status != http.StatusOK {
		t.Fatalf("loading the config: %d %s", status, body)
	}
	t.Cleanup(func() {
		if status, body := loadCaddyfile(t, shared.caddyfile("")); status != http.StatusOK {
			t.Errorf("restoring the suite's config: %d %s", status, body)
		}
	})
	proxy := &registry{family: "v3", host: fmt.Sprintf("localhost:%d", proxyPort)}
	if err := WaitHTTP("http://"+proxy.host+"/v2/", http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var ops, failures, races atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				img := randomImage(t)
				repo := fmt.Sprintf("alice/reload-%d-%d:v1", w, i)
				var err error
				// A reload closes idle keep-alive connections (Go's
				// http.Server.Shutdown, under every Caddy handler). A client
				// that was just writing a PATCH on one gets "server closed
				// idle connection" and, the request not being replayable,
				// must retry it, as Docker and containerd do. Such races
				// are counted; any HTTP answer that is an error is not
				// tolerated.
				for attempt := 0; attempt < 3; attempt++ {
					err = remote.Write(ref(t, proxy, repo), img, remote.WithAuth(login("alice")))
					if err == nil || !strings.Contains(err.Error(), "server closed idle connection") {
						break
					}
					races.Add(1)
				}
				if err == nil {
					var got interface{ String() string }
					got, err = pull(t, proxy, repo, "reader")
					if err == nil && got.String() != digest(t, img).String() {
						err = fmt.Errorf("pulled %s, pushed %s", got, digest(t, img))
					}
				}
				ops.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", repo, err))
				}
			}
		}()
	}
	const reloads = 20
	for i := 1; i <= reloads; i++ {
		time.Sleep(150 * time.Millisecond)
		if i%2 == 0 {
			status, body := loadCaddyfile(t, invalid)
			if status != http.StatusBadRequest || !strings.Contains(body, "at Caddyfile:") || !strings.Contains(body, `unknown action \"pul\"`) {
				t.Errorf("invalid config: %d %s, want 400 naming the line and the action", status, body)
			}
			continue
		}
		if status, body := loadCaddyfile(t, valid(i)); status != http.StatusOK {
			t.Errorf("reload %d: %d %s", i, status, body)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d push+pull rounds during %d reloads (half of them invalid), %d failed, %d retried after a keep-alive connection closed by a reload", ops.Load(), reloads, failures.Load(), races.Load())
	if failures.Load() != 0 {
		t.Fatalf("%d of %d rounds failed during reloads; first: %v", failures.Load(), ops.Load(), firstErr.Load())
	}
	if ops.Load() < reloads/2 {
		t.Fatalf("only %d rounds ran: the load did not overlap the reloads", ops.Load())
	}
}

// TestSecretsNeverLeave runs a full session at debug log level, with the
// access log on, through both handlers, and checks that no password, hash,
// token, credential or key appears in the logs or in any error body.
func TestSecretsNeverLeave(t *testing.T) {
	reg := startV3(t, shared, registrySetup{realm: shared.realm})
	proxy := startProxied(t)
	logPath := filepath.Join(shared.dir, "caddy.log")
	before, _ := os.ReadFile(logPath)

	const wrong = "Wr0ng-Passw0rd-Probe"
	var bodies [][]byte
	keep := func(resp *http.Response) {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 400 {
			bodies = append(bodies, body)
		}
	}
	// ggcr through both modes, a wrong password in each.
	for _, r := range []*registry{reg, proxy} {
		if err := push(t, r, "alice/secret-probe:v1", "alice", randomImage(t)); err != nil {
			t.Fatal(err)
		}
		if _, err := pull(t, r, "alice/secret-probe:v1", "reader"); err != nil {
			t.Fatal(err)
		}
		_, err := remote.Image(ref(t, r, "alice/secret-probe:v1"), remote.WithAuth(wrongPassword("alice")))
		wantRefused(t, err, "wrong password")
	}
	// Raw requests: GET and POST to the token endpoint, Basic through the
	// proxy, right and wrong.
	for _, pw := range []string{passwords["alice"], wrong} {
		req, _ := http.NewRequest(http.MethodGet, shared.realm+"?service="+service+"&scope=repository:alice/x:pull", nil)
		req.SetBasicAuth("alice", pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		keep(resp)
		form := url.Values{"grant_type": {"password"}, "service": {service}, "username": {"alice"}, "password": {pw}, "scope": {"repository:alice/x:pull"}}
		resp, err = http.Post(shared.realm, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		keep(resp)
		c := newRawClient(t, proxy.host, "alice")
		c.pw = pw
		keep(c.getManifest("alice/secret-probe", "v1"))
	}

	after, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	session := after[len(before):]
	if !bytes.Contains(session, []byte(`"user":"alice"`)) || !bytes.Contains(session, []byte("registry request refused")) || !bytes.Contains(session, []byte(`"logger":"http.log.access`)) {
		t.Fatalf("the session left no decision lines in the log (%d bytes): the probe would prove nothing", len(session))
	}
	secrets := map[string]string{"the JWT prefix": "eyJ", "a bcrypt hash": "$2a$", "a private key": "PRIVATE KEY", "the wrong password": wrong}
	for user, pw := range passwords {
		secrets[user+"'s password"] = pw
		secrets[user+"'s Basic credentials"] = base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))
	}
	for what, s := range secrets {
		if i := bytes.Index(session, []byte(s)); i >= 0 {
			t.Errorf("the log holds %s: …%s…", what, session[max(0, i-80):min(len(session), i+80)])
		}
		for _, b := range bodies {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("an error body holds %s: %s", what, b)
			}
		}
	}
	if len(bodies) < 3 {
		t.Fatalf("only %d error bodies were seen", len(bodies))
	}
}

// TestClientIPIgnoresForwardedFor: without trusted_proxies, a client's own
// X-Forwarded-For never becomes the address that decisions (the throttle)
// and the log use.
func TestClientIPIgnoresForwardedFor(t *testing.T) {
	logPath := filepath.Join(shared.dir, "caddy.log")
	before, _ := os.ReadFile(logPath)
	req, _ := http.NewRequest(http.MethodGet, shared.realm+"?service="+service+"&scope=repository:public/xff-probe:pull", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6, 127.0.0.1")
	req.Header.Set("X-Real-IP", "6.6.6.6")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	after, _ := os.ReadFile(logPath)
	var line string
	for _, l := range strings.Split(string(after[len(before):]), "\n") {
		if strings.Contains(l, "xff-probe") && strings.Contains(l, `"msg":"token request"`) {
			line = l
		}
	}
	if line == "" {
		t.Fatal("no decision line for the probe")
	}
	if !strings.Contains(line, `"client_ip":"127.0.0.1"`) || strings.Contains(line, "6.6.6.6") {
		t.Fatalf("decision line %s: want client_ip 127.0.0.1", line)
	}
}
