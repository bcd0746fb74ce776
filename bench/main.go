// Command bench measures caddy-registry-auth on this machine, everything on
// 127.0.0.1 and every figure a ratio against a baseline taken in the same
// run: repeated logins with and without the credential cache, the proxy
// against a bare reverse_proxy, a 1 GiB blob through the proxy against the
// registry directly (with Caddy's peak RSS growth), logins during a flood
// of wrong passwords, and anonymous token issuance against the cost of an
// ES256 signature. `make bench` runs it; it needs the Debian
// docker-registry package (registry 2.8) as the registry.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regauth/caddy-registry-auth/token"
)

const (
	user     = "bench"
	password = "bench-password"
	service  = "bench"
)

var (
	duration = flag.Duration("duration", 5*time.Second, "length of each timed load run")
	blobMiB  = flag.Int("blob-mib", 1024, "size of the big blob, MiB")
	floodN   = flag.Int("flood", 1000, "wrong-password requests in the flood")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	dir, err := os.MkdirTemp("", "registry-auth-bench-")
	check(err)
	defer os.RemoveAll(dir)

	log.Printf("building Caddy with the plugin")
	caddyBin := filepath.Join(dir, "caddy")
	run("go", "build", "-C", "..", "-o", caddyBin, "./cmd/caddy")

	regPort, proxyPort, bareProxyPort, tokenPort, noCachePort := freePort(), freePort(), freePort(), freePort(), freePort()
	registry := startRegistry(dir, regPort)
	defer stop(registry)

	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	check(err)
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %[1]s/storage
	log {
		level ERROR
	}
	registry_auth {
		service %[2]s
		user %[3]s %[4]s
		allow user:%[3]s * ** registry:catalog
		allow everyone pull public/**
	}
	registry_auth nocache {
		service %[2]s
		credential_cache off
		user %[3]s %[4]s
		allow user:%[3]s * **
	}
}
http://127.0.0.1:%[5]d {
	registry_auth_proxy {
		upstream 127.0.0.1:%[6]d
	}
}
http://127.0.0.1:%[7]d {
	reverse_proxy 127.0.0.1:%[6]d
}
http://127.0.0.1:%[8]d {
	registry_auth_token
}
http://127.0.0.1:%[9]d {
	registry_auth_token {
		policy nocache
	}
}
`, dir, service, user, hash, proxyPort, regPort, bareProxyPort, tokenPort, noCachePort)
	check(os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(caddyfile), 0o600))
	caddy := exec.Command(caddyBin, "run", "--config", filepath.Join(dir, "Caddyfile"))
	caddy.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	caddy.Stderr = os.Stderr
	check(caddy.Start())
	defer stop(caddy)
	waitFor(fmt.Sprintf("http://127.0.0.1:%d/v2/", proxyPort), http.StatusUnauthorized)
	waitFor(fmt.Sprintf("http://127.0.0.1:%d/v2/", regPort), http.StatusOK)

	fmt.Printf("# caddy-registry-auth benchmark\n\n%s, %d cores, %s, %s\n\n", time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), runtime.Version(), cpuModel())
	fmt.Printf("| | measured | baseline | ratio |\n|---|---|---|---|\n")

	// a. Repeated logins: credential cache on against off (bcrypt-10 user).
	tokenURL := func(port int, scope string) string {
		return fmt.Sprintf("http://127.0.0.1:%d/auth/token?service=%s&scope=%s", port, service, scope)
	}
	login := func(port int) func() *http.Request {
		return func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, tokenURL(port, "repository:bench/app:pull,push"), nil)
			r.SetBasicAuth(user, password)
			return r
		}
	}
	cached := load(16, *duration, 0, http.StatusOK, login(tokenPort))
	uncached := load(16, *duration, 0, http.StatusOK, login(noCachePort))
	row("a. repeated logins, bcrypt-10 user, c=16: cache on vs off", cached, uncached)

	// b. Proxy with Basic against bare reverse_proxy with a bearer token.
	base := fmt.Sprintf("http://127.0.0.1:%d", regPort)
	pushImage(base, "bench/app", "v1", []byte("a small layer"))
	viaProxy := load(16, *duration, 0, http.StatusOK, func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v2/bench/app/manifests/v1", proxyPort), nil)
		r.SetBasicAuth(user, password)
		r.Header.Set("Accept", ociManifest)
		return r
	})
	bearer := fetchToken(tokenURL(tokenPort, "repository:bench/app:pull"))
	viaBare := load(16, *duration, 0, http.StatusOK, func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v2/bench/app/manifests/v1", bareProxyPort), nil)
		r.Header.Set("Authorization", "Bearer "+bearer)
		r.Header.Set("Accept", ociManifest)
		return r
	})
	row("b. manifest GET, c=16: proxy with Basic vs bare reverse_proxy with a token", viaProxy, viaBare)

	// c. A big blob through the proxy against the registry directly.
	size := int64(*blobMiB) << 20
	digest := blobDigest(size)
	rss := &rssSampler{pid: caddy.Process.Pid}
	baseRSS := rss.now()
	proxyBase := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	stopSampling := rss.start()
	pushProxy := timeIt(func() { pushBlob(proxyBase, "bench/big-proxy", size, digest, true) })
	pullProxy := timeIt(func() { pullBlob(proxyBase, "bench/big-proxy", digest, size, true) })
	peak := stopSampling()
	pushDirect := timeIt(func() { pushBlob(base, "bench/big-direct", size, digest, false) })
	pullDirect := timeIt(func() { pullBlob(base, "bench/big-direct", digest, size, false) })
	bare := fmt.Sprintf("http://127.0.0.1:%d", bareProxyPort)
	pushBare := timeIt(func() { pushBlob(bare, "bench/big-bare", size, digest, false) })
	pullBare := timeIt(func() { pullBlob(bare, "bench/big-bare", digest, size, false) })
	mib := float64(size) / (1 << 20)
	fmt.Printf("| c. %d MiB blob push: proxy vs direct | %.0f MiB/s | %.0f MiB/s | %.2f× |\n", *blobMiB, mib/pushProxy.Seconds(), mib/pushDirect.Seconds(), pushDirect.Seconds()/pushProxy.Seconds())
	fmt.Printf("| c. %d MiB blob pull: proxy vs direct | %.0f MiB/s | %.0f MiB/s | %.2f× |\n", *blobMiB, mib/pullProxy.Seconds(), mib/pullDirect.Seconds(), pullDirect.Seconds()/pullProxy.Seconds())
	fmt.Printf("| c. %d MiB blob push: proxy vs bare reverse_proxy | %.0f MiB/s | %.0f MiB/s | %.2f× |\n", *blobMiB, mib/pushProxy.Seconds(), mib/pushBare.Seconds(), pushBare.Seconds()/pushProxy.Seconds())
	fmt.Printf("| c. %d MiB blob pull: proxy vs bare reverse_proxy | %.0f MiB/s | %.0f MiB/s | %.2f× |\n", *blobMiB, mib/pullProxy.Seconds(), mib/pullBare.Seconds(), pullBare.Seconds()/pullProxy.Seconds())
	fmt.Printf("| c. Caddy RSS during both transfers | peak %.1f MiB | before %.1f MiB | growth %.1f MiB |\n", mb(peak), mb(baseRSS), mb(peak-baseRSS))

	// d. Cached logins while wrong passwords flood the same endpoint.
	var flood result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		flood = load(32, 0, *floodN, http.StatusUnauthorized, func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, tokenURL(tokenPort, "repository:bench/app:pull"), nil)
			r.SetBasicAuth(user, "wrong-"+strconv.Itoa(mrand.IntN(1<<30)))
			return r
		})
	}()
	time.Sleep(time.Second) // let the flood fill the hash slots
	during := load(4, *duration, 0, http.StatusOK, login(tokenPort))
	wg.Wait()
	fmt.Printf("| d. cached logins (c=4) during %d wrong passwords (c=32) | p50 %s, p99 %s, %.0f/s | flood: %.1f/s, statuses %v | p99 goal < 50 ms |\n",
		*floodN, during.percentile(0.5).Round(10*time.Microsecond), during.percentile(0.99).Round(10*time.Microsecond), during.rate(), flood.rate(), flood.statuses)

	// e. Anonymous tokens against the ES256 signing rate, the limit.
	anon := load(16, *duration, 0, http.StatusOK, func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, tokenURL(tokenPort, "repository:public/app:pull"), nil)
		return r
	})
	signs := signRate(*duration)
	fmt.Printf("| e. anonymous tokens, c=16, vs ES256 signatures/s in-process (%d cores) | %.0f/s, p99 %s | %.0f/s | %.2f× |\n",
		runtime.NumCPU(), anon.rate(), anon.percentile(0.99).Round(10*time.Microsecond), signs, anon.rate()/signs)
	fmt.Printf("\nfailures: a %d/%d, b %d/%d, d %d, e %d\n", cached.failures, uncached.failures, viaProxy.failures, viaBare.failures, during.failures, anon.failures)
}

func row(what string, measured, baseline result) {
	fmt.Printf("| %s | %.0f/s, p50 %s, p99 %s | %.1f/s, p50 %s, p99 %s | %.1f× |\n", what,
		measured.rate(), measured.percentile(0.5).Round(10*time.Microsecond), measured.percentile(0.99).Round(10*time.Microsecond),
		baseline.rate(), baseline.percentile(0.5).Round(10*time.Microsecond), baseline.percentile(0.99).Round(10*time.Microsecond),
		measured.rate()/baseline.rate())
}

// signRate measures ES256 tokens signed per second with every core busy.
func signRate(d time.Duration) float64 {
	key, cert, err := token.GenerateKey("ES256", "bench", time.Now())
	check(err)
	s, err := token.NewSigner(key, []*x509.Certificate{cert}, token.SignerOptions{})
	check(err)
	var n atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				c := token.NewClaims("i", "", service, time.Minute, time.Now(), []token.Access{{Type: "repository", Name: "public/app", Actions: []string{"pull"}}})
				if _, err := s.Sign(c); err != nil {
					panic(err)
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// pushImage puts a one-layer OCI image straight into the registry.
func pushImage(base, repo, tag string, layer []byte) {
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	for _, b := range [][]byte{config, layer} {
		sum := sha256.Sum256(b)
		d := fmt.Sprintf("sha256:%x", sum)
		loc := startUpload(base, repo, "")
		put(loc+sep(loc)+"digest="+d, bytes.NewReader(b), int64(len(b)), "")
	}
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": ociManifest,
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": fmt.Sprintf("sha256:%x", sha256.Sum256(config)), "size": len(config)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": fmt.Sprintf("sha256:%x", sha256.Sum256(layer)), "size": len(layer)}},
	})
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(m))
	req.Header.Set("Content-Type", ociManifest)
	expectStatus(req, http.StatusCreated)
}

func sep(loc string) string {
	if strings.Contains(loc, "?") {
		return "&"
	}
	return "?"
}

func startUpload(base, repo, basicUser string) string {
	req, _ := http.NewRequest(http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
	if basicUser != "" {
		req.SetBasicAuth(basicUser, password)
	}
	resp := expectStatus(req, http.StatusAccepted)
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = base + loc
	}
	return loc
}

func put(url string, body io.Reader, size int64, basicUser string) {
	req, _ := http.NewRequest(http.MethodPut, url, body)
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	if basicUser != "" {
		req.SetBasicAuth(basicUser, password)
	}
	expectStatus(req, http.StatusCreated)
}

// blobReader is the big blob: a fixed pseudo-random stream, made again
// for every transfer instead of being held in memory.
func blobReader(size int64) io.Reader {
	return io.LimitReader(mrand.NewChaCha8([32]byte{42}), size)
}

func blobDigest(size int64) string {
	h := sha256.New()
	_, err := io.Copy(h, blobReader(size))
	check(err)
	return fmt.Sprintf("sha256:%x", h.Sum(nil))
}

func pushBlob(base, repo string, size int64, digest string, auth bool) {
	u := ""
	if auth {
		u = user
	}
	loc := startUpload(base, repo, u)
	put(loc+sep(loc)+"digest="+digest, blobReader(size), size, u)
}

func pullBlob(base, repo, digest string, size int64, auth bool) {
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/"+repo+"/blobs/"+digest, nil)
	if auth {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	check(err)
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	check(err)
	if resp.StatusCode != http.StatusOK || n != size || fmt.Sprintf("sha256:%x", h.Sum(nil)) != digest {
		log.Fatalf("pull of %s: status %d, %d bytes, digest mismatch or short", repo, resp.StatusCode, n)
	}
}

func expectStatus(req *http.Request, status int) *http.Response {
	resp, err := http.DefaultClient.Do(req)
	check(err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status {
		log.Fatalf("%s %s: %d, want %d: %s", req.Method, req.URL, resp.StatusCode, status, body)
	}
	return resp
}

func fetchToken(url string) string {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth(user, password)
	resp := expectStatusBody(req)
	var t struct{ Token string }
	check(json.Unmarshal(resp, &t))
	return t.Token
}

func expectStatusBody(req *http.Request) []byte {
	resp, err := http.DefaultClient.Do(req)
	check(err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		log.Fatalf("%s: %d %s", req.URL, resp.StatusCode, body)
	}
	return body
}

func timeIt(f func()) time.Duration {
	t := time.Now()
	f()
	return time.Since(t)
}

// rssSampler follows a process's resident memory from /proc.
type rssSampler struct {
	pid  int
	peak atomic.Int64
}

func (s *rssSampler) now() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	check(err)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (s *rssSampler) start() (stop func() int64) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if v := s.now(); v > s.peak.Load() {
				s.peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(done); <-finished; return s.peak.Load() }
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func startRegistry(dir string, port int) *exec.Cmd {
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		log.Fatalf("the registry 2.8 binary is missing: apt-get install docker-registry")
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s/registry\nhttp:\n  addr: 127.0.0.1:%d\n  secret: bench\n", dir, port)
	path := filepath.Join(dir, "registry.yml")
	check(os.WriteFile(path, []byte(cfg), 0o600))
	cmd := exec.Command(bin, "serve", path)
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	return cmd
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
	}
}

func waitFor(url string, status int) {
	for range 300 {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Fatalf("%s never answered %d", url, status)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	check(cmd.Run())
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
