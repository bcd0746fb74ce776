package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	regref "github.com/regclient/regclient/types/ref"
)

// immutablePolicy is a second policy for a proxy site: immutable v* tags
// in team/**, which alice may push to (a token site may not use it).
const immutablePolicy = `	registry_auth immutable {
		service %s
		issuer %s
%s		allow user:alice,user:admin pull,push,delete team/**
		immutable_tags team/** v* release-*
	}
`

// immutableSite loads the immutable policy and a proxy site for it in
// front of a registry of the family, and returns the proxy's host.
func immutableSite(t *testing.T, family string) string {
	t.Helper()
	regPort, proxyPort := FreePort(), FreePort()
	starters[family](t, shared, registrySetup{port: regPort, disk: true})
	site := fmt.Sprintf("\nhttp://localhost:%d {\n\tregistry_auth_proxy {\n\t\tpolicy immutable\n\t\tupstream localhost:%d\n\t}\n}\n", proxyPort, regPort)
	policy := fmt.Sprintf(immutablePolicy, service, issuer, shared.users)
	cf := strings.Replace(shared.caddyfile(site), "\tregistry_auth {\n", policy+"\tregistry_auth {\n", 1)
	if status, body := loadCaddyfile(t, cf); status != http.StatusOK {
		t.Fatalf("loading the immutable policy: %d %s", status, body)
	}
	t.Cleanup(func() { loadCaddyfile(t, shared.caddyfile("")) })
	host := fmt.Sprintf("localhost:%d", proxyPort)
	if err := WaitHTTP("http://"+host+"/v2/", http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	return host
}

// Issue 17, immutable tags through the proxy against both registry
// families, with go-containerregistry (crane), regclient (regctl) and the
// real docker CLI: the first push works, a push of another manifest to
// the tag is refused, the same manifest again works, deleting the tag or
// its manifest by digest is refused, other tags are free.
func TestImmutableTags(t *testing.T) {
	for _, family := range []string{"v3", "v2.8"} {
		t.Run(family, func(t *testing.T) {
			host := immutableSite(t, family)
			reg := &registry{family: family, host: host}
			a, b := randomImage(t), randomImage(t)
			if err := push(t, reg, "team/app:v1", "alice", a); err != nil {
				t.Fatalf("first push of v1: %v", err)
			}
			err := push(t, reg, "team/app:v1", "alice", b)
			if err == nil || !strings.Contains(err.Error(), "immutable") {
				t.Fatalf("moving v1: %v, want a refusal saying immutable", err)
			}
			if err := push(t, reg, "team/app:v1", "admin", b); err == nil {
				t.Fatal("admin moved v1")
			}
			if err := push(t, reg, "team/app:v1", "alice", a); err != nil {
				t.Fatalf("pushing the same manifest again: %v", err)
			}
			if got, err := pull(t, reg, "team/app:v1", "alice"); err != nil || got != digest(t, a) {
				t.Fatalf("v1 is %v (%v), want %v", got, err, digest(t, a))
			}
			for _, img := range []v1.Image{a, b} {
				if err := push(t, reg, "team/app:latest", "alice", img); err != nil {
					t.Fatalf("latest is free: %v", err)
				}
			}
			c := newRawClient(t, host, "admin")
			body := expect(t, c.do(http.MethodDelete, "/v2/team/app/manifests/v1", nil, nil), http.StatusForbidden, "deleting the tag")
			if !strings.Contains(string(body), "immutable") {
				t.Fatalf("%s", body)
			}
			expect(t, c.do(http.MethodDelete, "/v2/team/app/manifests/"+digest(t, a).String(), nil, nil), http.StatusForbidden, "deleting v1's manifest by digest")
			expect(t, c.do(http.MethodDelete, "/v2/team/app/manifests/"+digest(t, b).String(), nil, nil), http.StatusAccepted, "deleting latest's manifest")
			if err := push(t, reg, "team/app:other", "alice", b); err != nil {
				t.Fatal(err)
			}
			regctlOverwrite(t, host)
			dockerOverwrite(t, host)
		})
	}
}

// regctlOverwrite tries, with regclient, to copy another manifest over v1
// (refused) and v1 onto a new release tag (allowed), as `regctl image
// copy` does.
func regctlOverwrite(t *testing.T, host string) {
	t.Helper()
	h := config.HostNewName(host)
	h.TLS, h.User, h.Pass = config.TLSDisabled, "alice", passwords["alice"]
	rc := regclient.New(regclient.WithConfigHost(*h))
	ctx := context.Background()
	other, _ := regref.New(host + "/team/app:other")
	v1, _ := regref.New(host + "/team/app:v1")
	release, _ := regref.New(host + "/team/app:release-1")
	if err := rc.ImageCopy(ctx, other, v1); err == nil || !strings.Contains(err.Error(), "immutable") && !strings.Contains(strings.ToLower(err.Error()), "denied") {
		t.Fatalf("regclient copying another manifest over v1: %v", err)
	}
	if err := rc.ImageCopy(ctx, v1, release); err != nil {
		t.Fatalf("regclient creating release-1: %v", err)
	}
}

// dockerOverwrite pushes with the real docker CLI: a new tag works, the
// same image again works, another image over it is denied.
func dockerOverwrite(t *testing.T, host string) {
	t.Helper()
	requireDocker(t)
	base := buildBaseImage(t)
	d := newDockerCLI(t)
	d.login(host, "alice")
	tag := host + "/team/docker:v1"
	d.tag(base, tag)
	d.must("", "push", tag)
	d.must("", "push", tag)
	other := otherImage(t, d)
	d.tag(other, tag)
	d.mustFail("denied", "push", tag)
}

// otherImage builds a local image that differs from the base image.
func otherImage(t *testing.T, d *dockerCLI) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY c.txt /c.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c.txt"), []byte(time.Now().String()), 0o644); err != nil {
		t.Fatal(err)
	}
	name := "regauth-e2e-other:" + filepath.Base(dir)
	d.tags = append(d.tags, name)
	d.must("", "build", "-q", "-t", name, dir)
	return name
}

// A policy with immutable tags may not be served by a registry_auth_token
// handler: refused at load, and a policy file that adds them later is
// refused like a broken one while the previous policy keeps serving.
func TestImmutableTagsRefusedInTokenMode(t *testing.T) {
	tokenSite := func(port int) string {
		return fmt.Sprintf("\nhttp://localhost:%d {\n\tregistry_auth_token {\n\t\tpolicy immutable\n\t}\n}\n", port)
	}
	policy := fmt.Sprintf(immutablePolicy, service, issuer, shared.users)
	cf := strings.Replace(shared.caddyfile(tokenSite(FreePort())), "\tregistry_auth {\n", policy+"\tregistry_auth {\n", 1)
	status, body := loadCaddyfile(t, cf)
	if status == http.StatusOK || !strings.Contains(body, `policy \"immutable\" has immutable_tags`) {
		t.Fatalf("a token site for a policy with immutable tags: %d %s", status, body)
	}
	if err := WaitHTTP(shared.realm+"?service="+service, http.StatusOK); err != nil {
		t.Fatalf("the running config stopped serving: %v", err)
	}

	file := filepath.Join(t.TempDir(), "tags.json")
	if err := os.WriteFile(file, []byte(`{"rules": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	port := FreePort()
	plain := strings.Replace(policy, "\t\timmutable_tags team/** v* release-*\n", fmt.Sprintf("\t\tpolicy_file %s\n\t\treload_interval 100ms\n", file), 1)
	cf = strings.Replace(shared.caddyfile(tokenSite(port)), "\tregistry_auth {\n", plain+"\tregistry_auth {\n", 1)
	if status, body := loadCaddyfile(t, cf); status != http.StatusOK {
		t.Fatalf("loading the token site: %d %s", status, body)
	}
	t.Cleanup(func() { loadCaddyfile(t, shared.caddyfile("")) })
	realm := fmt.Sprintf("http://localhost:%d/token", port)
	if err := WaitHTTP(realm+"?service="+service, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	mark := markCaddyLog(t)
	if err := os.WriteFile(file, []byte(`{"immutable_tags": [{"repositories": "**", "tags": ["v*"]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(mark.lines(t, "policy files not reloaded", "immutable_tags")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the policy file with immutable tags was not refused")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if a := askToken(t, realm, "alice", passwords["alice"], "repository:team/app:push"); a.status != http.StatusOK {
		t.Fatalf("the previous policy stopped serving: %d", a.status)
	}
}

// The admin API explains a decision from the running configuration.
func TestExplainThroughAdminAPI(t *testing.T) {
	resp, err := http.Get("http://localhost:2999/registry_auth/explain?user=reader&scope=" + "repository:alice/x:pull,push")
	if err != nil {
		t.Fatal(err)
	}
	body := expect(t, resp, http.StatusOK, "explain")
	resp.Body.Close()
	for _, want := range []string{"user reader", "granted: pull", "allow pull ", "Caddyfile:"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("explain answer lacks %q:\n%s", want, body)
		}
	}
	resp, err = http.Get("http://localhost:2999/registry_auth/explain?user=reader&scope=bad")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, resp, http.StatusBadRequest, "a bad scope")
	resp.Body.Close()
}
