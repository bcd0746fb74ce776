package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The real clients most people meet a registry through: the docker CLI
// (its daemon does the pushing and pulling) and containerd's ctr, against
// both modes and both registry families. No image can be pulled from
// outside, so the test image is built here from scratch.

// target is one registry as the real clients reach it.
type target struct {
	name string // mode/family
	host string // host:port the client uses
}

// realClientTargets starts, for each family, a registry with token auth
// whose clients go to it directly (token mode), and one without auth behind
// a proxy site added to Caddy (proxy mode).
func realClientTargets(t *testing.T) []target {
	t.Helper()
	var targets []target
	var sites strings.Builder
	for _, family := range []string{"v3", "v2.8"} {
		reg := starters[family](t, shared, registrySetup{realm: shared.realm, disk: true})
		targets = append(targets, target{"token/" + family, reg.host})
		regPort, proxyPort := FreePort(), FreePort()
		starters[family](t, shared, registrySetup{port: regPort, disk: true})
		sites.WriteString(proxySite(proxyPort, regPort))
		targets = append(targets, target{"proxy/" + family, fmt.Sprintf("localhost:%d", proxyPort)})
	}
	if status, body := loadCaddyfile(t, shared.caddyfile(sites.String())); status != 200 {
		t.Fatalf("adding the proxy sites: %d %s", status, body)
	}
	t.Cleanup(func() { loadCaddyfile(t, shared.caddyfile("")) })
	return targets
}

// requireDocker fails, never skips, when the engine is missing: CI must
// not go green without these cells.
func requireDocker(t *testing.T) {
	t.Helper()
	out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		t.Fatalf("the Docker engine is not available (%v: %s): these tests need the docker CLI and a running daemon", err, strings.TrimSpace(string(out)))
	}
}

var (
	baseImageOnce sync.Once
	baseImage     string // a local image: two layers, built from scratch
	baseImageErr  error
)

// buildBaseImage builds the test image once per run.
func buildBaseImage(t *testing.T) string {
	t.Helper()
	baseImageOnce.Do(func() {
		dir := t.TempDir()
		files := map[string]string{
			"Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n",
			"a.txt":      "first layer\n",
			"b.txt":      "second layer " + shared.dir + "\n", // unique per run
		}
		for name, body := range files {
			if baseImageErr = os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); baseImageErr != nil {
				return
			}
		}
		baseImage = "regauth-e2e-base:" + filepath.Base(shared.dir)
		cmd := exec.Command("docker", "build", "-q", "-t", baseImage, dir)
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			baseImageErr = fmt.Errorf("docker build: %v: %s", err, out)
		}
	})
	if baseImageErr != nil {
		t.Fatal(baseImageErr)
	}
	return baseImage
}

// removeBaseImage deletes the test image, if one was built, at the end of
// the run.
func removeBaseImage() {
	if baseImage != "" {
		_ = exec.Command("docker", "rmi", "-f", baseImage).Run()
	}
}

// dockerCLI runs docker with its own config directory.
type dockerCLI struct {
	t      *testing.T
	config string
	tags   []string // to remove at the end
}

func newDockerCLI(t *testing.T) *dockerCLI {
	d := &dockerCLI{t: t, config: t.TempDir()}
	t.Cleanup(func() {
		for _, tag := range d.tags {
			_ = exec.Command("docker", "rmi", "-f", tag).Run()
		}
	})
	return d
}

func (d *dockerCLI) run(stdin string, args ...string) (string, error) {
	d.t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+d.config)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *dockerCLI) must(stdin string, args ...string) string {
	d.t.Helper()
	out, err := d.run(stdin, args...)
	if err != nil {
		d.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (d *dockerCLI) mustFail(want string, args ...string) {
	d.t.Helper()
	out, err := d.run("", args...)
	if err == nil {
		d.t.Fatalf("docker %s succeeded, want a failure saying %q\n%s", strings.Join(args, " "), want, out)
	}
	if !strings.Contains(strings.ToLower(out), want) {
		d.t.Fatalf("docker %s failed without saying %q:\n%s", strings.Join(args, " "), want, out)
	}
}

func (d *dockerCLI) tag(src, dst string) {
	d.must("", "tag", src, dst)
	d.tags = append(d.tags, dst)
}

func (d *dockerCLI) login(host, user string) {
	out := d.must(passwords[user], "login", host, "-u", user, "--password-stdin")
	if !strings.Contains(out, "Login Succeeded") {
		d.t.Fatalf("docker login: %s", out)
	}
}

// auths is what the client stored in config.json.
func (d *dockerCLI) auths() map[string]json.RawMessage {
	d.t.Helper()
	var cfg struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	data, err := os.ReadFile(filepath.Join(d.config, "config.json"))
	if err != nil && !os.IsNotExist(err) {
		d.t.Fatal(err)
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &cfg); err != nil {
			d.t.Fatal(err)
		}
	}
	return cfg.Auths
}

func TestDockerCLI(t *testing.T) {
	requireDocker(t)
	base := buildBaseImage(t)
	for _, tg := range realClientTargets(t) {
		t.Run(tg.name, func(t *testing.T) {
			d := newDockerCLI(t)
			app, app2 := tg.host+"/alice/app:v1", tg.host+"/alice/app2:v1"
			t.Run("wrong password", func(t *testing.T) {
				out, err := d.run("not-the-password", "login", tg.host, "-u", "alice", "--password-stdin")
				if err == nil || !strings.Contains(strings.ToLower(out), "unauthorized") {
					t.Fatalf("login with a wrong password: %v\n%s", err, out)
				}
			})
			t.Run("login stores a refresh token, not the password", func(t *testing.T) {
				d.login(tg.host, "alice")
				entry, ok := d.auths()[tg.host]
				if !ok {
					t.Fatalf("config.json has no entry for %s: %v", tg.host, d.auths())
				}
				var stored struct {
					Auth          string `json:"auth"`
					IdentityToken string `json:"identitytoken"`
				}
				if err := json.Unmarshal(entry, &stored); err != nil {
					t.Fatal(err)
				}
				raw, _ := base64.StdEncoding.DecodeString(stored.Auth)
				if stored.IdentityToken == "" || strings.Contains(string(raw), passwords["alice"]) {
					t.Fatalf("config.json entry %s: want an identitytoken and no password", entry)
				}
			})
			t.Run("push", func(t *testing.T) {
				d.tag(base, app)
				d.must("", "push", app)
			})
			t.Run("pull after rmi", func(t *testing.T) {
				d.must("", "rmi", app)
				d.must("", "pull", app)
			})
			t.Run("second repository mounts the shared layers", func(t *testing.T) {
				d.tag(base, app2)
				out := d.must("", "push", app2)
				if !strings.Contains(out, "Mounted from alice/app") {
					t.Fatalf("no layer was mounted:\n%s", out)
				}
			})
			t.Run("push by a pull-only user is denied", func(t *testing.T) {
				d.login(tg.host, "reader")
				d.must("", "pull", app)
				denied := tg.host + "/alice/app:denied"
				d.tag(base, denied)
				d.mustFail("denied", "push", denied)
			})
			t.Run("anonymous pull of a public repository after logout", func(t *testing.T) {
				d.login(tg.host, "alice")
				public := tg.host + "/public/base:v1"
				d.tag(base, public)
				d.must("", "push", public)
				d.must("", "logout", tg.host)
				if _, ok := d.auths()[tg.host]; ok {
					t.Fatalf("logout left credentials for %s", tg.host)
				}
				d.must("", "rmi", public)
				d.must("", "pull", public)
			})
			t.Run("anonymous pull of a private repository is denied", func(t *testing.T) {
				d.must("", "rmi", app)
				d.mustFail("denied", "pull", app)
			})
		})
	}
}

// ctrAddress finds containerd's socket: its own, or the one dockerd runs.
func ctrAddress(t *testing.T) string {
	t.Helper()
	for _, s := range []string{"/run/containerd/containerd.sock", "/var/run/docker/containerd/containerd.sock"} {
		if exec.Command("ctr", "--address", s, "version").Run() == nil {
			return s
		}
	}
	t.Fatal("containerd is not reachable: these tests need ctr and a running containerd (Docker's will do)")
	return ""
}

// ctrNamespace runs ctr in the containerd namespace ns, which is emptied
// and removed when t ends: ctr returns the output, must fails the test on
// an error.
func ctrNamespace(t *testing.T, address, ns string) (ctr func(args ...string) (string, error), must func(t *testing.T, args ...string)) {
	ctr = func(args ...string) (string, error) {
		out, err := exec.Command("ctr", append([]string{"--address", address, "-n", ns}, args...)...).CombinedOutput()
		return string(out), err
	}
	must = func(t *testing.T, args ...string) {
		t.Helper()
		if out, err := ctr(args...); err != nil {
			t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		out, _ := ctr("images", "ls", "-q")
		for _, img := range strings.Fields(out) {
			_, _ = ctr("images", "rm", img)
		}
		// A namespace goes only once its content does; the garbage
		// collector may not have run yet, so remove the content too.
		out, _ = ctr("content", "ls", "-q")
		if digests := strings.Fields(out); len(digests) > 0 {
			_, _ = ctr(append([]string{"content", "rm"}, digests...)...)
		}
		for try := 0; try < 10; try++ {
			if exec.Command("ctr", "--address", address, "namespaces", "rm", ns).Run() == nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("could not remove the containerd namespace %s", ns)
	})
	return ctr, must
}

func TestContainerdCtr(t *testing.T) {
	requireDocker(t)
	address := ctrAddress(t)
	base := buildBaseImage(t)
	tarball := filepath.Join(t.TempDir(), "base.tar")
	if out, err := exec.Command("docker", "save", "-o", tarball, base).CombinedOutput(); err != nil {
		t.Fatalf("docker save: %v %s", err, out)
	}
	ctr, must := ctrNamespace(t, address, "regauth-e2e-"+filepath.Base(shared.dir))
	must(t, "images", "import", tarball)
	// containerd names what docker saved with the full reference.
	base = "docker.io/library/" + base
	cred := func(user string) string { return user + ":" + passwords[user] }
	for _, tg := range realClientTargets(t) {
		t.Run(tg.name, func(t *testing.T) {
			app, public := tg.host+"/alice/ctr:v1", tg.host+"/public/ctr:v1"
			t.Run("push", func(t *testing.T) {
				must(t, "images", "tag", "--force", base, app)
				must(t, "images", "push", "--plain-http", "--user", cred("alice"), app)
				must(t, "images", "tag", "--force", base, public)
				must(t, "images", "push", "--plain-http", "--user", cred("alice"), public)
			})
			t.Run("pull by a pull-only user", func(t *testing.T) {
				must(t, "images", "rm", app)
				must(t, "images", "pull", "--plain-http", "--user", cred("reader"), app)
			})
			t.Run("anonymous pull of a public repository", func(t *testing.T) {
				must(t, "images", "rm", public)
				must(t, "images", "pull", "--plain-http", public)
			})
			t.Run("wrong password fails cleanly", func(t *testing.T) {
				must(t, "images", "rm", app)
				out, err := ctr("images", "pull", "--plain-http", "--user", "alice:not-the-password", app)
				if err == nil || !strings.Contains(strings.ToLower(out), "unauthorized") {
					t.Fatalf("pull with a wrong password: %v\n%s", err, out)
				}
			})
			t.Run("push by a pull-only user is denied", func(t *testing.T) {
				denied := tg.host + "/alice/ctr:denied"
				must(t, "images", "tag", "--force", base, denied)
				out, err := ctr("images", "push", "--plain-http", "--user", cred("reader"), denied)
				if err == nil {
					t.Fatalf("push by reader succeeded:\n%s", out)
				}
			})
		})
	}
}

// Defect 3 of issue 15 with the real docker CLI: right after a revocation
// of carol's refresh tokens, `docker login` stores a new one and
// `docker push` works. Before, the revocation reached to the end of its
// second, so the token of a login in that second was born revoked and the
// push failed with "the refresh token is not valid".
func TestDockerLoginRightAfterRevocation(t *testing.T) {
	requireDocker(t)
	base := buildBaseImage(t)
	for _, family := range []string{"v3", "v2.8"} {
		t.Run(family, func(t *testing.T) {
			reg := starters[family](t, shared, registrySetup{realm: shared.realm, disk: true})
			d := newDockerCLI(t)
			d.login(reg.host, "carol")
			for i := range 3 {
				resp, err := http.Post("http://localhost:2999/registry_auth/revocations", "application/json", strings.NewReader(`{"user":"carol"}`))
				if err != nil {
					t.Fatal(err)
				}
				expect(t, resp, http.StatusOK, "revocation")
				resp.Body.Close()
				d.login(reg.host, "carol")
				img := fmt.Sprintf("%s/carol/revoked:v%d", reg.host, i)
				d.tag(base, img)
				d.must("", "push", img)
			}
		})
	}
}
