package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The README's quick starts, run as a reader runs them. The blocks marked
// <!-- quickstart MODE NAME --> are read from README.md as written; only
// what cannot stay as written on a shared test machine changes: free ports
// instead of 5000 and 5001, Caddy's admin endpoint on a free port, the
// test's directory for relative paths, and an image built here instead of
// hello-world (nothing is pulled from outside). The commands that start
// Caddy and the registry are the test's to run: Caddy is the binary of
// ./cmd/caddy, the registry distribution 3.x in this process or Debian's
// 2.8 binary.

// quickStarts reads the marked blocks of the README.
func quickStarts(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- quickstart ([a-z]+ [A-Za-z.]+) -->\n```[a-z]*\n(.*?)```")
	blocks := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		blocks[m[1]] = m[2]
	}
	for _, want := range []string{"proxy Caddyfile", "proxy commands", "token config.yml", "token Caddyfile", "token commands"} {
		if blocks[want] == "" {
			t.Fatalf("README.md has no quick-start block %q", want)
		}
	}
	return blocks
}

// quickStart is one run of a quick start.
type quickStart struct {
	t                 *testing.T
	dir               string
	front, back       int // the ports that stand for 5000 and 5001
	image             string
	docker            *dockerCLI
	localize          *strings.Replacer
	startedByTheTests []string // command lines the test runs itself
}

func newQuickStart(t *testing.T) *quickStart {
	requireDocker(t)
	q := &quickStart{t: t, dir: t.TempDir(), front: FreePort(), back: FreePort(), image: buildBaseImage(t), docker: newDockerCLI(t)}
	q.localize = strings.NewReplacer(
		"localhost:5000", fmt.Sprintf("localhost:%d", q.front),
		"localhost:5001", fmt.Sprintf("localhost:%d", q.back),
		"./", q.dir+"/",
	)
	return q
}

// startCaddy runs Caddy with the block as its Caddyfile, in the test's
// directory.
func (q *quickStart) startCaddy(caddyfile string) {
	t := q.t
	text := q.localize.Replace(caddyfile)
	text = strings.Replace(text, "{\n", fmt.Sprintf("{\n\tadmin localhost:%d\n", FreePort()), 1)
	if err := os.WriteFile(filepath.Join(q.dir, "Caddyfile"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(buildCaddy(t), "run", "--config", "Caddyfile")
	cmd.Dir = q.dir
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(q.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(q.dir, "config"))
	startLogged(t, cmd, filepath.Join(q.dir, "caddy.log"), "caddy")
	q.startedByTheTests = append(q.startedByTheTests, "caddy run --config Caddyfile &")
}

// listen opens the port that stands for 5000 or 5001, for a registry in
// this process.
func (q *quickStart) listen(port int) net.Listener {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		q.t.Fatal(err)
	}
	return l
}

// runCommands runs the commands block line by line with bash, but for the
// lines that start what the test started itself, which it checks are there.
func (q *quickStart) runCommands(block string) {
	t := q.t
	q.docker.tags = append(q.docker.tags, fmt.Sprintf("localhost:%d/alice/hello", q.front))
	skipped := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		line, _, _ = strings.Cut(line, "  #")
		line = strings.TrimSpace(line)
		if started(line, q.startedByTheTests) {
			skipped[line] = true
			continue
		}
		line = strings.ReplaceAll(q.localize.Replace(line), "hello-world", q.image)
		cmd := exec.Command("bash", "-c", line)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+q.docker.config)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("README command %q: %v\n%s", line, err, out)
		}
		t.Logf("$ %s\n%s", line, strings.TrimSpace(string(out)))
	}
	for _, line := range q.startedByTheTests {
		if !skipped[line] {
			t.Fatalf("the commands block no longer says %q: the test starts it and must know how", line)
		}
	}
}

func started(line string, lines []string) bool {
	for _, l := range lines {
		if line == l {
			return true
		}
	}
	return false
}

// checkRefusals shows the quick start's policy at work beyond the README's
// own commands: alice may not push outside alice/**, and nobody without
// credentials may pull hers.
func (q *quickStart) checkRefusals() {
	host := fmt.Sprintf("localhost:%d", q.front)
	q.docker.tag(q.image, host+"/bob/hello")
	q.docker.mustFail("denied", "push", host+"/bob/hello")
	anonymous := newDockerCLI(q.t)
	anonymous.mustFail("denied", "pull", host+"/alice/hello")
}

func TestREADMEQuickStartProxy(t *testing.T) {
	blocks := quickStarts(t)
	for _, family := range []string{"v3", "v2.8"} {
		t.Run(family, func(t *testing.T) {
			q := newQuickStart(t)
			// A registry without auth on "localhost:5001", as the README
			// asks for.
			addr := fmt.Sprintf("127.0.0.1:%d", q.back)
			if family == "v3" {
				stop, err := StartV3(q.listen(q.back), RegistryConfig{Addr: addr, Storage: InMemoryStorage})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(stop)
			} else {
				t.Cleanup(startV28Process(t, RegistryConfig{Addr: addr, Storage: FilesystemStorage(filepath.Join(q.dir, "registry-data"))}))
			}
			if err := WaitHTTP("http://"+addr+"/v2/", 200); err != nil {
				t.Fatal(err)
			}
			q.startCaddy(blocks["proxy Caddyfile"])
			if err := WaitHTTP(fmt.Sprintf("http://localhost:%d/v2/", q.front), 401); err != nil {
				t.Fatal(err)
			}
			q.runCommands(blocks["proxy commands"])
			q.checkRefusals()
		})
	}
}

func TestREADMEQuickStartToken(t *testing.T) {
	blocks := quickStarts(t)
	for _, family := range []string{"v3", "v2.8"} {
		t.Run(family, func(t *testing.T) {
			q := newQuickStart(t)
			q.startCaddy(blocks["token Caddyfile"])
			// The registry reads the certificate Caddy writes when it starts.
			bundle := filepath.Join(q.dir, "token-certs.pem")
			deadline := time.Now().Add(30 * time.Second)
			for _, err := os.Stat(bundle); err != nil; _, err = os.Stat(bundle) {
				if time.Now().After(deadline) {
					t.Fatalf("Caddy wrote no %s: %v", bundle, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			config := q.localize.Replace(blocks["token config.yml"])
			if family == "v3" {
				stop, err := StartV3YAML(q.listen(q.front), config)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(stop)
			} else {
				if err := os.WriteFile(filepath.Join(q.dir, "config.yml"), []byte(config), 0o600); err != nil {
					t.Fatal(err)
				}
				// The README's "registry serve config.yml", Debian's name.
				cmd := exec.Command(registryBinary, "serve", "config.yml")
				cmd.Dir = q.dir
				startLogged(t, cmd, filepath.Join(q.dir, "registry.log"), "registry 2.8")
			}
			q.startedByTheTests = append(q.startedByTheTests, "registry serve config.yml &")
			if err := WaitHTTP(fmt.Sprintf("http://localhost:%d/v2/", q.front), 401); err != nil {
				t.Fatal(err)
			}
			q.runCommands(blocks["token commands"])
			q.checkRefusals()
		})
	}
}

// Caddyfile.example validates as shipped: no environment variables, no
// files of its own, and not one warning.
func TestCaddyfileExampleValidates(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(buildCaddy(t), "validate", "--config", "../Caddyfile.example")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("caddy validate Caddyfile.example: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			t.Errorf("caddy validate Caddyfile.example warns: %s", line)
		}
	}
	if !strings.Contains(string(out), "Valid configuration") {
		t.Fatalf("caddy validate said:\n%s", out)
	}
}
