package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// secretVolume lays a directory out as the kubelet mounts a Secret: the
// keys in a timestamped directory, "..data" a symlink to it, each key a
// symlink through "..data"; update swaps "..data" atomically, as the
// kubelet does, and removes the old directory.
type secretVolume struct {
	t   *testing.T
	dir string
	gen int
}

func (v *secretVolume) update(keys map[string]string) {
	v.t.Helper()
	v.gen++
	ts := fmt.Sprintf("..2026_11_24_06_%02d", v.gen)
	check(v.t, os.Mkdir(filepath.Join(v.dir, ts), 0o755))
	for key, content := range keys {
		check(v.t, os.WriteFile(filepath.Join(v.dir, ts, key), []byte(content), 0o600))
		if _, err := os.Lstat(filepath.Join(v.dir, key)); os.IsNotExist(err) {
			check(v.t, os.Symlink(filepath.Join("..data", key), filepath.Join(v.dir, key)))
		}
	}
	check(v.t, os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")))
	check(v.t, os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")))
	if v.gen > 1 {
		check(v.t, os.RemoveAll(filepath.Join(v.dir, fmt.Sprintf("..2026_11_24_06_%02d", v.gen-1))))
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// teamFile is a policy file: each user's password is its name + "-pw",
// and each may pull and push its own namespace.
func teamFile(t *testing.T, users ...string) string {
	t.Helper()
	var us, rs []string
	for _, u := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(u+"-pw"), bcrypt.MinCost)
		check(t, err)
		us = append(us, fmt.Sprintf(`{"name": %q, "password": %q}`, u, h))
		rs = append(rs, fmt.Sprintf(`{"effect": "allow", "subjects": ["user:%s"], "actions": ["pull", "push"], "resources": ["%s/**"]}`, u, u))
	}
	return fmt.Sprintf(`{"users": [%s], "rules": [%s]}`, strings.Join(us, ", "), strings.Join(rs, ", "))
}

// tokenStatus asks the token endpoint for push on user's namespace.
func tokenStatus(user string) (int, error) {
	req, _ := http.NewRequest(http.MethodGet, shared.realm+"?service="+service+"&scope=repository:"+user+"/app:pull,push", nil)
	req.SetBasicAuth(user, user+"-pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestPolicyFilesReloadThroughCaddy keeps clients logging in while the
// users in a Kubernetes-style Secret volume and in a single file change
// under Caddy: by symlink swap, by atomic replace, and by a broken file
// that must leave the policy in force. Reloads are counted in /metrics.
func TestPolicyFilesReloadThroughCaddy(t *testing.T) {
	volume := &secretVolume{t: t, dir: t.TempDir()}
	volume.update(map[string]string{"team-a.json": teamFile(t, "steady"), "team-b.json": teamFile(t, "bea")})
	single := filepath.Join(t.TempDir(), "policy.json")
	replace := func(content string) {
		tmp := single + ".tmp"
		check(t, os.WriteFile(tmp, []byte(content), 0o600))
		check(t, os.Rename(tmp, single))
	}
	replace(teamFile(t, "solo"))

	regPort, proxyPort := FreePort(), FreePort()
	startV3(t, shared, registrySetup{port: regPort})
	files := fmt.Sprintf("throttle 1000\n\t\tpolicy_file %s\n\t\tpolicy_file %s native\n\t\treload_interval 100ms", volume.dir, single)
	if status, body := loadCaddyfile(t, strings.Replace(shared.caddyfile(proxySite(proxyPort, regPort)), "throttle 1000", files, 1)); status != http.StatusOK {
		t.Fatalf("loading the config: %d %s", status, body)
	}
	t.Cleanup(func() { loadCaddyfile(t, shared.caddyfile("")) })
	proxy := &registry{family: "v3", host: fmt.Sprintf("localhost:%d", proxyPort)}
	check(t, WaitHTTP("http://"+proxy.host+"/v2/", http.StatusUnauthorized))
	// The old config's server may still answer a connection or two on the
	// token endpoint's port: start once the new one serves the files.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if s, _ := tokenStatus("steady"); s == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the policy files' users never logged in")
		}
	}
	before := scrape(t)

	// Clients that log in without pause through every change.
	var logins, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, user := range []string{"steady", "solo", "alice"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				status, err := tokenStatus(user)
				if user == "alice" {
					req, _ := http.NewRequest(http.MethodGet, shared.realm+"?service="+service, nil)
					req.SetBasicAuth("alice", passwords["alice"])
					resp, e := http.DefaultClient.Do(req)
					status, err = 0, e
					if e == nil {
						status = resp.StatusCode
						resp.Body.Close()
					}
				}
				logins.Add(1)
				if err != nil || status != http.StatusOK {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s: %d %v", user, status, err))
				}
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("timed out waiting until %s", what)
	}
	statusOf := func(user string) int { s, _ := tokenStatus(user); return s }

	// Symlink swaps, as the kubelet updates a Secret.
	for i := range 3 {
		newcomer := fmt.Sprintf("new%d", i)
		if s := statusOf(newcomer); s != http.StatusUnauthorized {
			t.Fatalf("%s before the swap: %d", newcomer, s)
		}
		volume.update(map[string]string{"team-a.json": teamFile(t, "steady", newcomer), "team-b.json": teamFile(t, "bea")})
		waitFor(newcomer+" can log in", func() bool { return statusOf(newcomer) == http.StatusOK })
	}
	// The newest user pushes and pulls through the proxy.
	img := randomImage(t)
	auth := remote.WithAuth(&authn.Basic{Username: "new2", Password: "new2-pw"})
	check(t, remote.Write(ref(t, proxy, "new2/app:v1"), img, auth))
	if _, err := remote.Image(ref(t, proxy, "new2/app:v1"), auth); err != nil {
		t.Fatal(err)
	}

	// An atomic replace of a single file.
	replace(teamFile(t, "solo", "duo"))
	waitFor("duo can log in", func() bool { return statusOf("duo") == http.StatusOK })

	// A broken file: the policy in force stays (duo still logs in).
	replace(`{"users": [{"name": "trio", "password": "not a hash"}]}`)
	waitFor("the failure is counted", func() bool {
		return scrape(t)[`caddy_registry_auth_policy_reloads_total{result="failed"}`] > before[`caddy_registry_auth_policy_reloads_total{result="failed"}`]
	})
	if s := statusOf("duo"); s != http.StatusOK {
		t.Fatalf("after a broken file, a user of the previous policy gets %d", s)
	}
	replace(teamFile(t, "solo", "trio"))
	waitFor("trio can log in", func() bool { return statusOf("trio") == http.StatusOK })
	if s := statusOf("duo"); s != http.StatusUnauthorized {
		t.Fatalf("duo, removed from the file, gets %d", s)
	}

	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d logins failed while the files changed; first: %v", failures.Load(), logins.Load(), firstFailure.Load())
	}
	after := scrape(t)
	ok := `caddy_registry_auth_policy_reloads_total{result="ok"}`
	if after[ok]-before[ok] < 5 {
		t.Fatalf("policy reloads ok: %v → %v, want at least 5 more", before[ok], after[ok])
	}
	t.Logf("%d logins, none failed, during %v successful reloads", logins.Load(), after[ok]-before[ok])
}
