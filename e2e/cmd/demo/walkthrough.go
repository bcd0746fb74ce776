package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// walkthrough shows the protocol with real requests and a real client,
// and pushes the sample image the banner's commands use; say prints the
// steps. It returns the image's reference.
func walkthrough(host, user, password string, say bool) (string, error) {
	step := func(format string, args ...any) {
		if say {
			fmt.Printf("==> "+format+"\n", args...)
		}
	}
	resp, err := http.Get("http://" + host + "/v2/")
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	step("GET /v2/ without credentials: %s\n    WWW-Authenticate: %s", resp.Status, resp.Header.Get("WWW-Authenticate"))

	scope := "repository:" + user + "/hello:pull,push"
	claims, expires, err := tokenClaims(host, user, password, scope)
	if err != nil {
		return "", err
	}
	step("GET /auth/token as %s for %s: 200 OK, a token for %d s with claims\n    %s", user, scope, expires, claims)

	img, err := sampleImage(user)
	if err != nil {
		return "", err
	}
	ref, err := name.ParseReference(host+"/"+user+"/hello:latest", name.Insecure)
	if err != nil {
		return "", err
	}
	auth := remote.WithAuth(&authn.Basic{Username: user, Password: password})
	if err := remote.Write(ref, img, auth); err != nil {
		return "", err
	}
	d, _ := img.Digest()
	step("push %s with go-containerregistry: %s", ref, d)

	got, err := remote.Image(ref, auth)
	if err != nil {
		return "", err
	}
	gd, _ := got.Digest()
	step("pull %s as %s: %s", ref, user, gd)

	_, err = remote.Image(ref)
	step("pull %s anonymously: refused (%v)", ref, firstLine(err))
	return ref.String(), nil
}

// tokenClaims asks the token endpoint for a token and returns its claims.
func tokenClaims(host, user, password, scope string) (claims []byte, expires int, err error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/auth/token?service="+host+"&scope="+scope, nil)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tok struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("token request: %s %s", resp.Status, body)
	}
	parts := strings.Split(tok.Token, ".")
	if len(parts) != 3 {
		return nil, 0, fmt.Errorf("token request: not a JWT")
	}
	claims, err = base64.RawURLEncoding.DecodeString(parts[1])
	return claims, tok.ExpiresIn, err
}

// sampleImage is a small image for this machine's platform, so that
// docker pull takes it: one file, which `docker run` cannot run (there is
// no program in it), but `docker create` and `docker cp` can show.
func sampleImage(user string) (v1.Image, error) {
	img, err := crane.Image(map[string][]byte{"hello.txt": []byte("Hello from the registry_auth demo, pushed as " + user + ".\n")})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config.Cmd = []string{"/hello.txt"}
	return mutate.ConfigFile(img, cfg)
}

func firstLine(err error) string {
	if err == nil {
		return "no error: UNEXPECTED"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// printBanner tells what runs and what to try, with the image the demo
// pushed (a fresh machine has no image to tag).
func printBanner(host, registry, dir string, o options, image string) {
	kept := "removed when the demo stops"
	if o.dataDir != "" {
		kept = "kept when the demo stops"
	}
	fmt.Printf(`
An authenticated registry is running at http://%[1]s
  Caddy (registry_auth_proxy) on %[1]s, the only door;
  distribution v3 behind it on %[2]s, without auth of its own.
  Caddyfile and data: %[3]s (%[7]s)

User %[4]q, password %[5]q, may push and pull %[4]s/** and public/**;
anyone may pull public/**. The demo pushed %[6]s.

Try:
  docker login %[1]s -u %[4]s --password-stdin <<< %[5]s
  docker pull %[6]s
  docker tag %[6]s %[1]s/public/hello:latest && docker push %[1]s/public/hello:latest
  docker logout %[1]s && docker pull %[1]s/public/hello:latest     # anyone may pull public/**
  curl -u %[4]s:%[5]s http://%[1]s/v2/_catalog
  curl -i http://%[1]s/v2/%[4]s/hello/tags/list     # 401 and a Bearer challenge

Ctrl-C stops it.
`, host, registry, dir, o.user, o.password, image, kept)
}
