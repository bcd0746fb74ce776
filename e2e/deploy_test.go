package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// The files of deploy/ as an operator uses them: the FROM scratch image
// built and run with the Kubernetes example's policy Secret, the compose
// file, the Kubernetes example and the systemd unit.

const deployDir = "../deploy"

// run runs a command and fails the test if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// k8sObject is the part of the Kubernetes example's objects the tests read.
type k8sObject struct {
	APIVersion string                `yaml:"apiVersion"`
	Kind       string                `yaml:"kind"`
	Metadata   struct{ Name string } `yaml:"metadata"`
	StringData map[string]string     `yaml:"stringData"`
	Spec       struct {
		Template struct {
			Spec struct {
				SecurityContext struct {
					RunAsUser int `yaml:"runAsUser"`
					FSGroup   int `yaml:"fsGroup"`
				} `yaml:"securityContext"`
				Containers []struct {
					Env          []struct{ Name, Value string } `yaml:"env"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
					PVC *struct {
						ClaimName string `yaml:"claimName"`
					} `yaml:"persistentVolumeClaim"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// k8sExample reads deploy/kubernetes/registry-auth.yaml, by kind.
func k8sExample(t *testing.T) map[string]k8sObject {
	t.Helper()
	f, err := os.Open(filepath.Join(deployDir, "kubernetes", "registry-auth.yaml"))
	check(t, err)
	defer f.Close()
	objects := map[string]k8sObject{}
	dec := yaml.NewDecoder(f)
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if err == io.EOF {
			break
		}
		check(t, err)
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("an object without apiVersion, kind or name: %+v", o)
		}
		objects[o.Kind] = o
	}
	return objects
}

// imageUser is the uid the Dockerfile runs Caddy as.
func imageUser(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, "docker", "Dockerfile"))
	check(t, err)
	m := regexp.MustCompile(`(?m)^USER (\d+):\d+$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("the Dockerfile has no USER uid:gid line")
	}
	return string(m[1])
}

// requiredEnv returns the environment variables the image's Caddyfile
// needs: the {$VAR} placeholders without a default.
func requiredEnv(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, "docker", "Caddyfile"))
	check(t, err)
	var names []string
	for _, m := range regexp.MustCompile(`\{\$(\w+)(:[^}]*)?\}`).FindAllStringSubmatch(string(data), -1) {
		if m[2] == "" && !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		t.Fatal("the image's Caddyfile reads no environment variable")
	}
	return names
}

// TestKubernetesExample checks that the example parses and holds
// together: every mount has its volume, the volumes name the Secret and
// the claim defined beside them, the paths and user are those the image
// uses, and every variable the image's Caddyfile needs is set.
// TestContainerImage runs the image with this Secret and these variables.
func TestKubernetesExample(t *testing.T) {
	objects := k8sExample(t)
	for _, kind := range []string{"Secret", "PersistentVolumeClaim", "Deployment", "Service"} {
		if _, ok := objects[kind]; !ok {
			t.Errorf("no %s in the example", kind)
		}
	}
	pod := objects["Deployment"].Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	volumes := map[string]string{} // name → what it holds
	for _, v := range pod.Volumes {
		switch {
		case v.Secret != nil && v.Secret.SecretName == objects["Secret"].Metadata.Name:
			volumes[v.Name] = "secret"
		case v.PVC != nil && v.PVC.ClaimName == objects["PersistentVolumeClaim"].Metadata.Name:
			volumes[v.Name] = "claim"
		default:
			volumes[v.Name] = "other"
		}
	}
	mounts := map[string]string{} // path → what is there
	for _, m := range pod.Containers[0].VolumeMounts {
		what, ok := volumes[m.Name]
		if !ok {
			t.Errorf("mount %s names no volume %q", m.MountPath, m.Name)
		}
		mounts[m.MountPath] = what
	}
	// The image keeps Caddy's storage in /data and reads policy files
	// from /etc/registry-auth.
	if mounts["/data"] != "claim" || mounts["/etc/registry-auth"] != "secret" {
		t.Errorf("mounts %v: want the claim on /data and the Secret on /etc/registry-auth", mounts)
	}
	if uid := fmt.Sprint(pod.SecurityContext.RunAsUser); uid != imageUser(t) || fmt.Sprint(pod.SecurityContext.FSGroup) != uid {
		t.Errorf("runAsUser %d, fsGroup %d: want the image's user %s for both", pod.SecurityContext.RunAsUser, pod.SecurityContext.FSGroup, imageUser(t))
	}
	for _, name := range requiredEnv(t) {
		if !slices.ContainsFunc(pod.Containers[0].Env, func(e struct{ Name, Value string }) bool { return e.Name == name && e.Value != "" }) {
			t.Errorf("the Deployment does not set %s, which the image's Caddyfile needs", name)
		}
	}
	if len(objects["Secret"].StringData) == 0 {
		t.Error("the Secret holds no policy file")
	}
}

// TestComposeFile checks the compose file with docker-compose's own
// validation, and that it gives the caddy service what the image needs.
func TestComposeFile(t *testing.T) {
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatal("docker-compose is not installed (Debian package docker-compose)")
	}
	file := filepath.Join(deployDir, "docker", "compose.yaml")
	config := func(env ...string) (string, error) {
		cmd := exec.Command(compose, "-f", file, "config")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// Without the registry's name it must refuse, saying what is missing.
	if out, err := config(); err == nil || !strings.Contains(out, "REGISTRY_HOST") {
		t.Errorf("compose config without REGISTRY_HOST: %v\n%s", err, out)
	}
	out, err := config("REGISTRY_HOST=registry.example.com")
	if err != nil {
		t.Fatalf("compose config: %v\n%s", err, out)
	}
	var resolved struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Volumes     []any             `yaml:"volumes"`
		} `yaml:"services"`
	}
	check(t, yaml.Unmarshal([]byte(out), &resolved))
	caddy, ok := resolved.Services["caddy"]
	if !ok {
		t.Fatal("no caddy service")
	}
	for _, name := range requiredEnv(t) {
		if caddy.Environment[name] == "" {
			t.Errorf("the caddy service does not set %s", name)
		}
	}
	var targets []string
	for _, v := range caddy.Volumes {
		switch v := v.(type) {
		case string: // docker-compose 1: "source:target[:mode]"
			if parts := strings.Split(v, ":"); len(parts) > 1 {
				targets = append(targets, parts[1])
			}
		case map[string]any: // docker compose 2: the long form
			targets = append(targets, fmt.Sprint(v["target"]))
		}
	}
	for _, want := range []string{"/data", "/etc/registry-auth"} {
		if !slices.Contains(targets, want) {
			t.Errorf("the caddy service mounts %v, not %s", targets, want)
		}
	}
}

// TestSystemdUnit verifies the unit with systemd-analyze in a scratch
// root holding the system's unit files and the built caddy where the unit
// runs it. A unit with a misspelled key must fail the same check.
func TestSystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is not installed (Debian package systemd)")
	}
	unit, err := os.ReadFile(filepath.Join(deployDir, "systemd", "caddy-registry-auth.service"))
	check(t, err)
	bin := staticCaddy(t)
	verify := func(unit []byte) string {
		root := t.TempDir()
		check(t, os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
		check(t, os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755))
		check(t, os.MkdirAll(filepath.Join(root, "etc/systemd/system"), 0o755))
		run(t, "cp", "-a", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/"))
		run(t, "cp", bin, filepath.Join(root, "usr/bin/caddy"))
		check(t, os.WriteFile(filepath.Join(root, "etc/systemd/system/caddy-registry-auth.service"), unit, 0o644))
		// Warnings (an unknown key, a bad value) leave the exit status 0:
		// any output is a failure.
		out, err := exec.Command("systemd-analyze", "verify", "--root="+root, "caddy-registry-auth.service").CombinedOutput()
		if err != nil && len(out) == 0 {
			out = []byte(err.Error())
		}
		return strings.TrimSpace(string(out))
	}
	if out := verify(unit); out != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
	broken := strings.Replace(string(unit), "NoNewPrivileges=", "NoNewPrivilege=", 1)
	if out := verify([]byte(broken)); !strings.Contains(out, "NoNewPrivilege") {
		t.Errorf("a misspelled key passed systemd-analyze verify: %q", out)
	}
}

// TestContainerImage builds the FROM scratch image of deploy/docker with
// the local Docker engine and runs it as the Kubernetes example does: the
// example's Secret mounted as the kubelet mounts it, its Deployment's
// variables, Caddy's storage on a volume. The token endpoint must grant
// what the Secret's rules say, /metrics and the admin socket must answer,
// and a new container on the same volume must sign with the same key.
func TestContainerImage(t *testing.T) {
	requireDocker(t)
	image := buildImage(t)
	objects := k8sExample(t)

	const password = "image-test-pw"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	check(t, err)
	policy := &secretVolume{t: t, dir: readableDir(t)}
	files := map[string]string{}
	for name, content := range objects["Secret"].StringData {
		files[name] = strings.ReplaceAll(content, "<output of caddy hash-password>", string(hash))
	}
	policy.update(files)
	check(t, filepath.Walk(policy.dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			err = os.Chmod(path, 0o644) // the kubelet's defaultMode
		}
		return err
	}))
	admin := readableDir(t)
	uid := imageUser(t)
	run(t, "chown", uid+":"+uid, admin)

	volume := "regauth-e2e-data-" + filepath.Base(shared.dir)
	run(t, "docker", "volume", "create", volume)
	t.Cleanup(func() { _ = exec.Command("docker", "volume", "rm", "-f", volume).Run() })

	// Confined as the Deployment's securityContext confines it.
	args := []string{"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"-v", policy.dir + ":/etc/registry-auth:ro", "-v", admin + ":/run/caddy-admin",
		"-e", "CADDY_ADMIN=unix//run/caddy-admin/admin.sock", "-e", "SITE_ADDRESS=:8080"}
	env := map[string]string{}
	for _, e := range objects["Deployment"].Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
		if e.Name != "SITE_ADDRESS" { // the example's name would start ACME
			args = append(args, "-e", e.Name+"="+e.Value)
		}
	}
	site, metricsAddr := startContainer(t, image, append(args, "-v", volume+":/data")...)

	tokenURL := "http://" + site + "/auth/token?service=" + env["REGISTRY_SERVICE"] + "&scope=repository:team/app:pull,push"
	tok := loginAt(t, site, tokenURL, password)
	if got := actionsOn(accessOf(t, tok), "team/app"); !slices.Equal(got, []string{"pull", "push"}) {
		t.Errorf("alice (group devs in users.json, rule in rules.json) got %v on team/app", got)
	}
	if status, _ := getWithBasic(t, tokenURL, "alice", "wrong"); status != http.StatusUnauthorized {
		t.Errorf("a wrong password got %d", status)
	}
	if _, metrics := getWithBasic(t, "http://"+metricsAddr+"/metrics", "", ""); !strings.Contains(metrics, `caddy_registry_auth_token_requests_total{outcome="granted"} 1`) {
		t.Errorf("the metrics port does not count the granted request")
	}
	sock := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(admin, "admin.sock"))
	}}}
	resp, err := sock.Get("http://localhost/registry_auth/revocations")
	check(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("admin API on the socket: %d", resp.StatusCode)
	}

	// The key lives on the volume: a new container signs with it. Without
	// the volume, a new key: registries trusting the old bundle would
	// refuse its tokens.
	keyID := signingKeyID(t, tok)
	run(t, "docker", "rm", "-f", "-v", containerOf(site))
	again, _ := startContainer(t, image, append(args, "-v", volume+":/data")...)
	if id := signingKeyID(t, loginAt(t, again, tokenURL, password)); id != keyID {
		t.Errorf("a new container on the same volume signs with key %s, not %s", id, keyID)
	}
	fresh, _ := startContainer(t, image, args...)
	if id := signingKeyID(t, loginAt(t, fresh, tokenURL, password)); id == keyID {
		t.Error("a container without the volume signs with the same key")
	}
}

// loginAt asks the token endpoint at site (replacing the host of tokenURL)
// for alice's token.
func loginAt(t *testing.T, site, tokenURL, password string) string {
	t.Helper()
	u, err := url.Parse(tokenURL)
	check(t, err)
	u.Host = site
	status, body := getWithBasic(t, u.String(), "alice", password)
	if status != http.StatusOK {
		t.Fatalf("token request: %d %s", status, body)
	}
	var tok struct{ Token string }
	check(t, json.Unmarshal([]byte(body), &tok))
	return tok.Token
}

// signingKeyID reads the key id from a token's header.
func signingKeyID(t *testing.T, raw string) string {
	t.Helper()
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	check(t, err)
	var h struct{ Kid string }
	check(t, json.Unmarshal(header, &h))
	if h.Kid == "" {
		t.Fatalf("a token without a key id: %s", header)
	}
	return h.Kid
}

// buildImage builds deploy/docker's image from a copy of the directory
// with the static binary and the host's CA roots added, as the
// Dockerfile's comment says, and removes it when the test ends.
func buildImage(t *testing.T) string {
	t.Helper()
	ctx := t.TempDir()
	run(t, "cp", "-a", filepath.Join(deployDir, "docker")+"/.", ctx)
	run(t, "cp", staticCaddy(t), filepath.Join(ctx, "caddy"))
	run(t, "cp", "/etc/ssl/certs/ca-certificates.crt", ctx)
	image := "regauth-e2e-caddy:" + filepath.Base(shared.dir)
	cmd := exec.Command("docker", "build", "-q", "-t", image, ctx)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
	return image
}

// containers maps a site address to the container serving it.
var containers sync.Map

func containerOf(site string) string {
	id, _ := containers.Load(site)
	return id.(string)
}

// startContainer runs the image detached with ports 8080 (the site) and
// 9180 (metrics) published on loopback, waits for the token endpoint, and
// returns both addresses. The container is removed when the test ends.
func startContainer(t *testing.T, image string, args ...string) (site, metrics string) {
	t.Helper()
	id := run(t, "docker", append(append([]string{"run", "-d", "-p", "127.0.0.1::8080", "-p", "127.0.0.1::9180"}, args...), image)...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", id).CombinedOutput()
			t.Logf("container log:\n%s", out)
		}
		_ = exec.Command("docker", "rm", "-f", "-v", id).Run() // -v: its anonymous /config volume
	})
	site = run(t, "docker", "port", id, "8080/tcp")
	metrics = run(t, "docker", "port", id, "9180/tcp")
	containers.Store(site, id)
	// The proxy challenges an anonymous version check once it serves.
	if err := WaitHTTP("http://"+site+"/v2/", http.StatusUnauthorized); err != nil {
		out, _ := exec.Command("docker", "logs", id).CombinedOutput()
		t.Fatalf("the container never served: %v\n%s", err, out)
	}
	return site, metrics
}

// readableDir is a temporary directory that the image's user can read.
func readableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "regauth-e2e-mount-")
	check(t, err)
	check(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// getWithBasic GETs url, with Basic credentials when user is set, and
// returns the status and body.
func getWithBasic(t *testing.T, url, user, password string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	check(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	check(t, err)
	return resp.StatusCode, string(body)
}
