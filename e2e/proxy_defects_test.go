package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defects 4 and 5 of issue 15, through the proxy against both registry
// families: a client's Forwarded header never reaches the registry (both
// build upload URLs from it), and a control character in a query is a
// 400 from the proxy, not the registry's 500 with its storage path.
func TestProxyGuardsTheRegistry(t *testing.T) {
	for _, family := range []string{"v3", "v2.8"} {
		t.Run(family, func(t *testing.T) {
			regPort, proxyPort := FreePort(), FreePort()
			starters[family](t, shared, registrySetup{port: regPort, disk: true})
			host := addProxySite(t, proxyPort, regPort)
			c := newRawClient(t, host, "alice")
			resp := c.do(http.MethodPost, "/v2/alice/fwd/blobs/uploads/", nil, map[string]string{
				"Forwarded":        "host=evil.example;proto=http",
				"X-Forwarded-Port": "6666",
			})
			expect(t, resp, http.StatusAccepted, "upload start")
			if loc := resp.Header.Get("Location"); strings.Contains(loc, "evil.example") || strings.Contains(loc, "6666") || !strings.Contains(loc, host) {
				t.Fatalf("the registry built its upload URL from the client's headers: %s", loc)
			}
			for _, target := range []string{"/v2/alice/fwd/tags/list?last=%00", "/v2/_catalog?last=%00", "/v2/alice/fwd/manifests/v1?x=%0d%0a"} {
				resp := c.do(http.MethodGet, target, nil, nil)
				body := expect(t, resp, http.StatusBadRequest, target)
				if strings.Contains(string(body), "/docker/registry") || strings.Contains(string(body), "storage") {
					t.Fatalf("%s: the answer shows storage paths: %s", target, body)
				}
			}
		})
	}
}

// Defect 6: the registry behind the proxy stops while a client keeps
// pulling: the client gets the registry's JSON error UNAVAILABLE with
// Retry-After, never an empty 502, and works again as soon as the
// registry is back, without a Caddy reload.
func TestProxyRegistryDownAndBack(t *testing.T) {
	regPort, proxyPort := FreePort(), FreePort()
	storage := FilesystemStorage(t.TempDir())
	start := func() func() {
		t.Helper()
		var l net.Listener
		var err error
		for try := 0; try < 50; try++ { // the port may linger a moment after a stop
			if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", regPort)); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		stop, err := StartV3(l, shared.registryConfig(l.Addr().String(), storage, ""))
		if err != nil {
			t.Fatal(err)
		}
		return stop
	}
	stop := start()
	proxy := &registry{family: "v3", host: addProxySite(t, proxyPort, regPort)}
	img := randomImage(t)
	if err := push(t, proxy, "alice/down:v1", "alice", img); err != nil {
		t.Fatal(err)
	}
	mark := markCaddyLog(t)

	// The running client: a manifest GET every 50 ms.
	type answer struct {
		status           int
		retryAfter, body string
	}
	var mu sync.Mutex
	var answers []answer
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		c := newRawClient(t, proxy.host, "alice")
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			resp := c.do(http.MethodGet, "/v2/alice/down/manifests/v1", nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"})
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			answers = append(answers, answer{resp.StatusCode, resp.Header.Get("Retry-After"), string(body)})
			mu.Unlock()
		}
	})
	waitFor := func(what string, pred func(answer) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for seen := 0; time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			mu.Lock()
			for ; seen < len(answers); seen++ {
				if pred(answers[seen]) {
					mu.Unlock()
					return
				}
			}
			mu.Unlock()
		}
		t.Fatalf("the client never saw %s", what)
	}
	waitFor("the manifest", func(a answer) bool { return a.status == http.StatusOK })
	stop()
	waitFor("503 UNAVAILABLE with Retry-After", func(a answer) bool {
		return a.status == http.StatusServiceUnavailable && a.retryAfter != "" && strings.Contains(a.body, `"UNAVAILABLE"`)
	})
	time.Sleep(300 * time.Millisecond) // several refused requests in a row
	stop = start()
	defer stop()
	waitFor("the manifest again", func(a answer) bool { return a.status == http.StatusOK })
	close(done)
	wg.Wait()

	refused := 0
	for _, a := range answers {
		switch {
		case a.status == http.StatusOK:
		case a.status == http.StatusServiceUnavailable && strings.Contains(a.body, `"UNAVAILABLE"`):
			refused++
		default:
			t.Fatalf("an answer that is neither the manifest nor UNAVAILABLE: %d %q", a.status, a.body)
		}
	}
	if lines := mark.lines(t, "not reachable"); len(lines) != 1 {
		t.Fatalf("%d log lines for %d refused requests, want 1 (once per interval)", len(lines), refused)
	}
	t.Logf("%d requests, %d answered UNAVAILABLE while the registry was down", len(answers), refused)
}
