package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// rotationTarget is a registry that checks our tokens, as its clients
// reach it (directly, or through instance B's proxy).
type rotationTarget struct {
	name  string
	host  string // what clients name
	realm string // where they get tokens
	reg   *restartable
	rt    string // a refresh token issued before the rotation
	cli   *dockerCLI
}

// opStats counts one client's operations on one target.
type opStats struct {
	mu         sync.Mutex
	name       string
	ok, failed int
	firstErr   string
}

func (s *opStats) record(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.ok++
		return
	}
	s.failed++
	if s.firstErr == "" {
		s.firstErr = time.Now().Format("15:04:05.000 ") + err.Error()
	}
}

func (s *opStats) okCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok
}

// TestRotationWithoutOutage rotates the signing key of a fleet of two
// Caddy instances while registry v3 and registry 2.8 serve pushes and
// pulls of the docker CLI and go-containerregistry: stage at A, the
// registries restarted with the staged bundle (the one planned
// interruption), promote at A, then retire. From the restart on no client
// operation may fail; tokens minted before and after the promotion work
// at every registry; refresh tokens issued before the rotation still work
// after the old key left the bundle.
func TestRotationWithoutOutage(t *testing.T) {
	requireDocker(t)
	base := buildBaseImage(t)
	upstream := FreePort()
	fleet := startFleet(t, 2, fleetConfig{syncInterval: "1s", upstream: upstream})
	a, b := fleet[0], fleet[1]
	logf := func(format string, args ...any) {
		t.Helper()
		t.Logf("ROTATION: "+format, args...)
	}

	targets := rotationTargets(t, a, b, upstream)
	oldKID := kidOf(t, tokenAt(t, a.realm(), "alice", "repository:alice/rot-base:pull"))
	logf("fleet A, B and three registries up; every client logged in; A and B sign with %s", oldKID)

	// 1. Stage at A: both instances publish both keys, in their bundle files too.
	a.mustKeys(t, "stage")
	took := until(t, 30*time.Second, "both bundle files hold the staged key", func() bool {
		return certsInFile(t, a.bundle()) == 2 && certsInFile(t, b.bundle()) == 2
	})
	logf("staged at A; A's and B's bundle files hold both keys %s later", took.Round(time.Millisecond))
	before := map[string]string{"A": tokenAt(t, a.realm(), "alice", "repository:alice/rot-base:pull"), "B": tokenAt(t, b.realm(), "alice", "repository:alice/rot-base:pull")}

	// 2. The planned interruption: every registry restarts and reads the
	// staged bundle.
	for _, tg := range targets {
		logf("restarted %s (%s) with the staged bundle: away %s", tg.reg.family, tg.name, tg.reg.restart(t).Round(time.Millisecond))
	}

	// 3. From now on nothing may fail.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stats []*opStats
	for _, tg := range targets {
		stats = append(stats, runLoops(&wg, stop, tg, base)...)
	}
	stopLoops := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoops()
	waitForOps(t, stats, 2)
	checkTokens(t, targets, before, "minted before the promotion, after the restart")

	// 4. Promote at A; B follows within its sync interval.
	a.mustKeys(t, "promote")
	promotedAt := time.Now()
	newKID := kidOf(t, tokenAt(t, a.realm(), "alice", "repository:alice/rot-base:pull"))
	took = until(t, 30*time.Second, "B signs with the promoted key", func() bool {
		return kidOf(t, tokenAt(t, b.realm(), "alice", "repository:alice/rot-base:pull")) == newKID
	})
	logf("promoted at A: A signs with %s; B signed with it %s later (sync_interval 1s)", newKID, took.Round(time.Millisecond))
	after := map[string]string{"A": tokenAt(t, a.realm(), "alice", "repository:alice/rot-base:pull"), "B": tokenAt(t, b.realm(), "alice", "repository:alice/rot-base:pull")}
	checkTokens(t, targets, before, "minted before the promotion")
	checkTokens(t, targets, after, "minted after the promotion")
	waitForOps(t, stats, 2)

	// 5. Retire: refused until the old key's access tokens have expired,
	// then done by the automatic rotation.
	if out, err := a.keys("retire"); err == nil || !strings.Contains(out, "may leave the bundle from") {
		t.Fatalf("retire right after the promotion: %v\n%s", err, out)
	}
	logf("retire right after the promotion is refused: the old key's access tokens are still alive")
	until(t, 5*time.Minute, "the old key leaves both bundle files", func() bool {
		return certsInFile(t, a.bundle()) == 1 && certsInFile(t, b.bundle()) == 1
	})
	logf("the old key left A's and B's bundle files %s after the promotion (token_lifetime 1m + sync 1s + 1m leeway)", time.Since(promotedAt).Round(time.Second))
	waitForOps(t, stats, 2)
	for _, tg := range targets {
		expect(t, refreshGrant(t, tg.realm, tg.rt, service, "repository:alice/rot-base:pull"), http.StatusOK, "a refresh token from before the rotation, after the retirement, at "+tg.name)
	}

	// 6. A registry started now trusts the new key alone, and a refresh
	// token from before the rotation still gets it tokens.
	pushToFreshRegistry(t, a, targets[0].rt)
	logf("a v3 registry started with the retired bundle (%d certificate) served a push and a pull with a refresh token issued before the rotation", certsInFile(t, a.bundle()))

	stopLoops()
	reportLoops(t, stats)
}

// pushToFreshRegistry pushes and pulls with a refresh token through a new
// v3 registry that trusts a's bundle.
func pushToFreshRegistry(t *testing.T, a *instance, rt string) {
	t.Helper()
	fresh := startRestartable(t, "v3", 0, a.realm(), a.bundle())
	auth := remote.WithAuth(authn.FromConfig(authn.AuthConfig{IdentityToken: rt}))
	img := randomImage(t)
	if err := remote.Write(mustRef(t, fresh.host+"/alice/after-retire:v1"), img, auth); err != nil {
		t.Fatalf("push to a registry trusting only the new key, with a refresh token from before the rotation: %v", err)
	}
	if got, err := remote.Image(mustRef(t, fresh.host+"/alice/after-retire:v1"), auth); err != nil || digest(t, got) != digest(t, img) {
		t.Fatalf("pull from it: %v", err)
	}
}

// reportLoops logs what every client did and fails for every failure.
func reportLoops(t *testing.T, stats []*opStats) {
	t.Helper()
	failed := 0
	for _, s := range stats {
		t.Logf("ROTATION: %-52s %4d ok, %d failed", s.name, s.ok, s.failed)
		if s.failed > 0 {
			failed += s.failed
			t.Errorf("%s: %d operations failed, the first: %s", s.name, s.failed, s.firstErr)
		}
	}
	if failed == 0 {
		t.Logf("ROTATION: zero failed client operations from the restart on")
	}
}

// rotationTargets starts the registries of the rotation, each trusting
// the bundle file of the instance whose realm it names, logs the docker
// CLI in to each and pushes a first image with a password.
func rotationTargets(t *testing.T, a, b *instance, upstream int) []*rotationTarget {
	t.Helper()
	targets := []*rotationTarget{
		{name: "token/v3 (realm A)", realm: a.realm(), reg: startRestartable(t, "v3", 0, a.realm(), a.bundle())},
		{name: "token/v2.8 (realm B)", realm: b.realm(), reg: startRestartable(t, "v2.8", 0, b.realm(), b.bundle())},
		{name: "proxy B/v2.8", realm: "http://" + b.proxyHost() + "/auth/token", reg: startRestartable(t, "v2.8", upstream, b.realm(), b.bundle())},
	}
	targets[0].host, targets[1].host, targets[2].host = targets[0].reg.host, targets[1].reg.host, b.proxyHost()
	for _, tg := range targets {
		tg.rt = dockerLogin(t, tg.realm, "alice", passwords["alice"])
		tg.cli = newDockerCLI(t)
		tg.cli.login(tg.host, "alice")
		if err := remote.Write(mustRef(t, tg.host+"/alice/rot-base:v1"), randomImage(t), remote.WithAuth(login("alice"))); err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
	}
	return targets
}

// runLoops starts the clients of one target: the docker CLI pushing and
// pulling with the refresh token `docker login` stored, go-containerregistry
// pushing and pulling new images with a refresh token, and pulling with a
// password. Each runs until stop is closed.
func runLoops(wg *sync.WaitGroup, stop chan struct{}, tg *rotationTarget, base string) []*opStats {
	dockerOps := &opStats{name: tg.name + " docker push+pull"}
	refreshOps := &opStats{name: tg.name + " ggcr push+pull (refresh token)"}
	passwordOps := &opStats{name: tg.name + " ggcr pull (password)"}
	repeat := func(s *opStats, op func(i int) error) {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s.record(op(i))
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	tag := fmt.Sprintf("%s/alice/rot-docker:v%d", tg.host, 1)
	tg.cli.tag(base, tag)
	repeat(dockerOps, func(i int) error {
		if out, err := tg.cli.run("", "push", tag); err != nil {
			return fmt.Errorf("docker push: %v: %s", err, lastLine(out))
		}
		if out, err := tg.cli.run("", "rmi", tag); err != nil {
			return fmt.Errorf("docker rmi: %v: %s", err, lastLine(out))
		}
		if out, err := tg.cli.run("", "pull", tag); err != nil {
			return fmt.Errorf("docker pull: %v: %s", err, lastLine(out))
		}
		return nil
	})
	byRefresh := remote.WithAuth(authn.FromConfig(authn.AuthConfig{IdentityToken: tg.rt}))
	repeat(refreshOps, func(i int) error {
		img, err := random.Image(1024, 1)
		if err != nil {
			return err
		}
		ref, err := name.ParseReference(fmt.Sprintf("%s/alice/rot-ggcr:v%d", tg.host, i), name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, byRefresh); err != nil {
			return fmt.Errorf("push: %w", err)
		}
		got, err := remote.Image(ref, byRefresh)
		if err != nil {
			return fmt.Errorf("pull: %w", err)
		}
		want, _ := img.Digest()
		if d, _ := got.Digest(); d != want {
			return errors.New("pulled another image")
		}
		_, err = got.RawConfigFile()
		return err
	})
	repeat(passwordOps, func(int) error {
		ref, _ := name.ParseReference(tg.host+"/alice/rot-base:v1", name.Insecure)
		img, err := remote.Image(ref, remote.WithAuth(login("alice")))
		if err == nil {
			_, err = img.RawConfigFile()
		}
		return err
	})
	return []*opStats{dockerOps, refreshOps, passwordOps}
}

// waitForOps waits until every client has done n more operations.
func waitForOps(t *testing.T, stats []*opStats, n int) {
	t.Helper()
	start := make([]int, len(stats))
	for i, s := range stats {
		start[i] = s.okCount()
	}
	until(t, 3*time.Minute, fmt.Sprintf("every client does %d more operations", n), func() bool {
		for i, s := range stats {
			if s.okCount() < start[i]+n {
				return false
			}
		}
		return true
	})
}

// checkTokens lists tags at every registry with each token: all must pass.
func checkTokens(t *testing.T, targets []*rotationTarget, tokens map[string]string, what string) {
	t.Helper()
	for _, tg := range targets {
		for from, tok := range tokens {
			req, _ := http.NewRequest(http.MethodGet, "http://"+tg.reg.host+"/v2/alice/rot-base/tags/list", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			expect(t, do(t, req), http.StatusOK, fmt.Sprintf("a token of %s (%s) at %s", from, what, tg.name))
		}
	}
	t.Logf("ROTATION: tokens of A and B %s pass at every registry", what)
}

func certsInFile(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return certsOf(t, data)
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
