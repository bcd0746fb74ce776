// Command bench measures caddy-registry-auth on this machine, everything on
// 127.0.0.1 and every figure a ratio against a baseline taken in the same
// run, on the same Caddy build: repeated logins with and without the
// credential cache; the token endpoint (a remembered user, and anonymous)
// against a site that only answers a static JSON body; the proxy against a
// bare reverse_proxy with the same TLS, for manifests and for blob pushes
// and pulls (with Caddy's peak RSS growth); and logins during a flood of
// wrong passwords. Each comparison alternates its two sides, -runs times,
// and reports medians. `make bench` runs it; it needs the Debian
// docker-registry package (registry 2.8) as the registry.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const (
	user     = "bench"
	password = "bench-password"
	service  = "bench"
)

var (
	duration = flag.Duration("duration", 5*time.Second, "length of each timed load run")
	runs     = flag.Int("runs", 5, "runs of each side of a comparison, alternating")
	blobMiB  = flag.Int("blob-mib", 256, "size of the big blob, MiB")
	blobRuns = flag.Int("blob-runs", 3, "transfers of the big blob per side")
	floodN   = flag.Int("flood", 1000, "wrong-password requests in the flood")
	plugin   = flag.String("plugin", "..", "the plugin's source tree to build Caddy from")
	profile  = flag.String("profile", "", "a directory to write Caddy's CPU profiles to, with their top entries on stderr")
)

// ports of the sites of the benchmark's Caddy.
type ports struct {
	registry, admin        int
	token, noCache, static int // http
	proxy, bare            int // https, tls internal
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	dir, err := os.MkdirTemp("", "registry-auth-bench-")
	check(err)
	defer os.RemoveAll(dir)

	log.Printf("building Caddy with the plugin from %s", *plugin)
	caddyBin := filepath.Join(dir, "caddy")
	run("go", "build", "-C", *plugin, "-o", caddyBin, "./cmd/caddy")

	p := ports{registry: freePort(), admin: freePort(), token: freePort(), noCache: freePort(), static: freePort(), proxy: freePort(), bare: freePort()}
	registry := startRegistry(dir, p.registry)
	defer stop(registry)
	caddy := startCaddy(dir, caddyBin, p)
	defer stop(caddy)

	fmt.Printf("# caddy-registry-auth benchmark\n\n%s, %d cores, %s, %s, %d runs of %s per side\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), runtime.Version(), cpuModel(), *runs, *duration)
	fmt.Printf("| | measured (median) | baseline (median) | throughput ratio | p99 ratio | failures |\n|---|---|---|---|---|---|\n")
	tokenURL := func(port int, scope string) string {
		return fmt.Sprintf("http://127.0.0.1:%d/auth/token?service=%s&scope=%s", port, service, scope)
	}
	get := func(url string, basic bool) func() *http.Request {
		return func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, url, nil)
			if basic {
				r.SetBasicAuth(user, password)
			}
			return r
		}
	}
	static := func() result {
		return load(16, *duration, 0, http.StatusOK, get(fmt.Sprintf("http://127.0.0.1:%d/", p.static), false))
	}

	// a. Repeated logins: credential cache on against off (bcrypt-10 user).
	login := get(tokenURL(p.token, "repository:bench/app:pull,push"), true)
	cached := load(16, *duration, 0, http.StatusOK, login)
	uncached := load(16, *duration, 0, http.StatusOK, get(tokenURL(p.noCache, "repository:bench/app:pull,push"), true))
	comparison{"a. repeated logins, bcrypt-10 user, c=16: credential cache on vs off", []result{cached}, []result{uncached}}.row()

	// b, c. The token endpoint against a static respond site.
	profiled("token", p.admin, func() {
		compare("b. token endpoint, remembered user, c=16, vs a static `respond`", *runs,
			func() result { return load(16, *duration, 0, http.StatusOK, login) }, static).row()
	})
	compare("c. anonymous tokens, c=16, vs a static `respond`", *runs,
		func() result {
			return load(16, *duration, 0, http.StatusOK, get(tokenURL(p.token, "repository:public/app:pull"), false))
		}, static).row()

	// d. The proxy with Basic against a bare reverse_proxy with a bearer
	// token, both over TLS, to the same registry.
	pushImage(fmt.Sprintf("http://127.0.0.1:%d", p.registry), "bench/app", "v1", []byte("a small layer"))
	manifest := func(port int, basic bool, bearer string) func() *http.Request {
		return func() *http.Request {
			r := get(fmt.Sprintf("https://127.0.0.1:%d/v2/bench/app/manifests/v1", port), basic)()
			r.Header.Set("Accept", ociManifest)
			if bearer != "" {
				r.Header.Set("Authorization", "Bearer "+bearer)
			}
			return r
		}
	}
	bearer := fetchToken(tokenURL(p.token, "repository:bench/app:pull"))
	profiled("proxy", p.admin, func() {
		compare("d. manifest GET, c=16, TLS: proxy with Basic vs bare `reverse_proxy` with a token", *runs,
			func() result { return load(16, *duration, 0, http.StatusOK, manifest(p.proxy, true, "")) },
			func() result { return load(16, *duration, 0, http.StatusOK, manifest(p.bare, false, bearer)) }).row()
	})

	// e. A big blob, pushed and pulled through the proxy and the bare
	// reverse_proxy, with Caddy's resident memory watched.
	blobs(caddy.Process.Pid, p)

	// f. Cached logins while wrong passwords flood the same endpoint.
	var flood result
	var wg sync.WaitGroup
	wg.Go(func() {
		flood = load(32, 0, *floodN, http.StatusUnauthorized, func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, tokenURL(p.token, "repository:bench/app:pull"), nil)
			r.SetBasicAuth(user, fmt.Sprintf("wrong-%d", time.Now().UnixNano()))
			return r
		})
	})
	time.Sleep(time.Second) // let the flood fill the hash slots
	during := load(4, *duration, 0, http.StatusOK, login)
	wg.Wait()
	fmt.Printf("| f. cached logins (c=4) during %d wrong passwords (c=32) | p50 %s, p99 %s, %.0f/s | flood: %.1f/s, statuses %v | | | %d |\n",
		*floodN, round(during.percentile(0.5)), round(during.percentile(0.99)), during.rate(), flood.rate(), flood.statuses, during.failures)
}

// blobs compares pushes and pulls of one big blob through the proxy and
// through the bare reverse_proxy, alternating, and prints Caddy's RSS.
func blobs(pid int, p ports) {
	size := int64(*blobMiB) << 20
	digest := blobDigest(size)
	rss := &rssSampler{pid: pid}
	before := rss.now()
	stopSampling := rss.start()
	proxy, bare := fmt.Sprintf("https://127.0.0.1:%d", p.proxy), fmt.Sprintf("https://127.0.0.1:%d", p.bare)
	bearer := fetchToken(fmt.Sprintf("http://127.0.0.1:%d/auth/token?service=%s&scope=repository:bench/big-bare:pull,push", p.token, service))
	n := 0
	pushP, pushB := timedRuns(*blobRuns,
		func() { n++; pushBlob(proxy, fmt.Sprintf("bench/big-proxy-%d", n), size, digest, auth{basic: true}) },
		func() { pushBlob(bare, fmt.Sprintf("bench/big-bare-%d", n), size, digest, auth{bearer: bearer}) })
	pullP, pullB := timedRuns(*blobRuns,
		func() { pullBlob(proxy, "bench/big-proxy-1", digest, size, auth{basic: true}) },
		func() { pullBlob(bare, "bench/big-bare-1", digest, size, auth{bearer: bearer}) })
	peak := stopSampling()
	mib := float64(size) / (1 << 20)
	for _, r := range []struct {
		what string
		m, b time.Duration
	}{{"push", pushP, pushB}, {"pull", pullP, pullB}} {
		fmt.Printf("| e. %d MiB blob %s, TLS: proxy vs bare `reverse_proxy` (median of %d) | %.0f MiB/s | %.0f MiB/s | **%.2f×** | | |\n",
			*blobMiB, r.what, *blobRuns, mib/r.m.Seconds(), mib/r.b.Seconds(), r.b.Seconds()/r.m.Seconds())
	}
	fmt.Printf("| e. Caddy RSS during the transfers | peak %.1f MiB | before %.1f MiB | growth %.1f MiB | | |\n", mb(peak), mb(before), mb(peak-before))
}

// startCaddy writes the benchmark's Caddyfile and runs Caddy on it.
func startCaddy(dir, bin string, p ports) *exec.Cmd {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	check(err)
	// The static site answers about what the token endpoint does.
	body := `{"token":"` + strings.Repeat("x", 600) + `","expires_in":300}`
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%[10]d
	persist_config off
	skip_install_trust
	auto_https disable_redirects
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
https://127.0.0.1:%[5]d {
	tls internal
	registry_auth_proxy {
		upstream 127.0.0.1:%[6]d
	}
}
https://127.0.0.1:%[7]d {
	tls internal
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
http://127.0.0.1:%[11]d {
	header Content-Type application/json
	respond `+"`%[12]s`"+` 200
}
`, dir, service, user, hash, p.proxy, p.registry, p.bare, p.token, p.noCache, p.admin, p.static, body)
	check(os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(caddyfile), 0o600))
	caddy := exec.Command(bin, "run", "--config", filepath.Join(dir, "Caddyfile"))
	caddy.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	caddy.Stderr = os.Stderr
	check(caddy.Start())
	children = append(children, caddy)
	waitFor(fmt.Sprintf("https://127.0.0.1:%d/v2/", p.proxy), http.StatusUnauthorized)
	waitFor(fmt.Sprintf("http://127.0.0.1:%d/v2/", p.registry), http.StatusOK)
	return caddy
}
