package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regauth/caddy-registry-auth/token"
)

// TestProxyMode runs every client against every registry family behind
// registry_auth_proxy, once with the registry checking our tokens too and
// once with the registry running without auth (the proxy is the only door).
func TestProxyMode(t *testing.T) {
	for _, slot := range shared.slots {
		t.Run(slot.name(), func(t *testing.T) {
			setup := registrySetup{port: slot.registryPort, disk: true}
			if slot.registryAuth {
				setup.realm = fmt.Sprintf("http://localhost:%d/auth/token", slot.proxyPort)
			}
			starters[slot.family](t, shared, setup)
			proxy := &registry{family: slot.family, host: fmt.Sprintf("localhost:%d", slot.proxyPort), proxied: true}
			t.Run("ggcr", func(t *testing.T) {
				tokenMatrix(t, proxy)
				ggcrProxyCells(t, proxy)
			})
			t.Run("basic", func(t *testing.T) { basicMatrix(t, proxy) })
		})
	}
}

// ggcrProxyCells are the proxy-only cells for go-containerregistry.
func ggcrProxyCells(t *testing.T, reg *registry) {
	t.Run("tags list", func(t *testing.T) {
		repo, err := name.NewRepository(reg.host+"/alice/app", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		tags, err := remote.List(repo, remote.WithAuth(login("reader")))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(tags, "v1") {
			t.Fatalf("tags %v lack v1", tags)
		}
	})
	t.Run("referrers", func(t *testing.T) {
		subject := randomImage(t)
		if err := push(t, reg, "alice/signed:v1", "alice", subject); err != nil {
			t.Fatal(err)
		}
		desc, err := partial.Descriptor(subject)
		if err != nil {
			t.Fatal(err)
		}
		artifact := mutate.Subject(mutate.MediaType(randomImage(t), types.OCIManifestSchema1), *desc).(v1.Image)
		rec := &recorder{}
		if err := push(t, reg, "alice/signed:sig", "alice", artifact, remote.WithTransport(rec)); err != nil {
			t.Fatal(err)
		}
		// The referrers route reaches the registry: it answers 200 (the
		// API) or 404 (2.8, then the client keeps the fallback tag), never
		// a refusal of ours.
		calls := rec.matching("GET", "/referrers/")
		if len(calls) == 0 || !(strings.HasSuffix(calls[0], " OK") || strings.HasSuffix(calls[0], " Not Found")) {
			t.Fatalf("referrers request not forwarded: %v", calls)
		}
		subjectRef, err := name.NewDigest(reg.host+"/alice/signed@"+desc.Digest.String(), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Referrers(subjectRef, remote.WithAuth(login("reader")))
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		want := digest(t, artifact)
		if !slices.ContainsFunc(im.Manifests, func(d v1.Descriptor) bool { return d.Digest == want }) {
			t.Fatalf("referrers %v lack the artifact %s", im.Manifests, want)
		}
	})
	t.Run("200 MiB blob", func(t *testing.T) {
		data := make([]byte, 200<<20)
		rng := mrand.NewChaCha8([32]byte{1})
		_, _ = rng.Read(data)
		layer := static.NewLayer(data, types.OCILayer)
		data = nil
		repo, err := name.NewRepository(reg.host+"/alice/big", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteLayer(repo, layer, remote.WithAuth(login("alice"))); err != nil {
			t.Fatal(err)
		}
		want, _ := layer.Digest()
		got, err := remote.Layer(repo.Digest(want.String()), remote.WithAuth(login("reader")))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := got.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		h := sha256.New()
		n, err := io.Copy(h, rc)
		if err != nil {
			t.Fatal(err)
		}
		if n != 200<<20 || fmt.Sprintf("sha256:%x", h.Sum(nil)) != want.String() {
			t.Fatalf("pulled %d bytes with another digest", n)
		}
	})
}

// basicMatrix is the token-core matrix plus proxy cells for a client that
// sends Basic credentials on every request and never asks for a token.
func basicMatrix(t *testing.T, reg *registry) {
	alice, reader, admin, anon := newRawClient(t, reg.host, "alice"), newRawClient(t, reg.host, "reader"), newRawClient(t, reg.host, "admin"), newRawClient(t, reg.host, "")
	layer := []byte("a small layer " + time.Now().String())
	var manifestDigest, layerDigest string

	t.Run("push by a user with push", func(t *testing.T) {
		manifestDigest, layerDigest = alice.pushImage("alice/raw", "v1", layer, 0)
		alice.pushImage("public/raw", "v1", layer, 0)
	})
	t.Run("pull by a pull-only user", func(t *testing.T) {
		body := expect(t, reader.getManifest("alice/raw", "v1"), http.StatusOK, "manifest")
		if sha(body) != manifestDigest {
			t.Fatalf("manifest digest %s, pushed %s", sha(body), manifestDigest)
		}
		if got := expect(t, reader.getBlob("alice/raw", layerDigest), http.StatusOK, "blob"); !bytes.Equal(got, layer) {
			t.Fatal("blob differs")
		}
	})
	t.Run("push by a pull-only user is denied by the proxy", func(t *testing.T) {
		resp, _ := reader.startUpload("alice/raw", "")
		body := expect(t, resp, http.StatusForbidden, "upload by reader")
		wantRegistryError(t, resp, body, "DENIED")
	})
	t.Run("anonymous pull of a public repository", func(t *testing.T) {
		expect(t, anon.getManifest("public/raw", "v1"), http.StatusOK, "anonymous public manifest")
	})
	t.Run("anonymous pull of a private repository is challenged", func(t *testing.T) {
		resp := anon.getManifest("alice/raw", "v1")
		body := expect(t, resp, http.StatusUnauthorized, "anonymous private manifest")
		wantRegistryError(t, resp, body, "UNAUTHORIZED")
		want := fmt.Sprintf(`Bearer realm="http://%s/auth/token",service="%s",scope="repository:alice/raw:pull"`, reg.host, service)
		if got := resp.Header.Get("WWW-Authenticate"); got != want {
			t.Fatalf("challenge %q, want %q", got, want)
		}
	})
	t.Run("anonymous version check is challenged", func(t *testing.T) {
		resp := anon.do(http.MethodGet, "/v2/", nil, nil)
		expect(t, resp, http.StatusUnauthorized, "anonymous /v2/")
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="http://`+reg.host+`/auth/token"`) {
			t.Fatalf("challenge %q", resp.Header.Get("WWW-Authenticate"))
		}
		expect(t, alice.do(http.MethodGet, "/v2/", nil, nil), http.StatusOK, "/v2/ with credentials")
	})
	t.Run("wrong password is refused", func(t *testing.T) {
		bad := newRawClient(t, reg.host, "alice")
		bad.pw = "wrong"
		expect(t, bad.getManifest("public/raw", "v1"), http.StatusUnauthorized, "wrong password")
	})
	t.Run("catalog by admin", func(t *testing.T) {
		body := expect(t, admin.do(http.MethodGet, "/v2/_catalog", nil, nil), http.StatusOK, "catalog")
		var cat struct{ Repositories []string }
		if err := json.Unmarshal(body, &cat); err != nil || !slices.Contains(cat.Repositories, "alice/raw") {
			t.Fatalf("catalog %s", body)
		}
		// Alice gets her own catalog: what she may pull, nothing else.
		body = expect(t, alice.do(http.MethodGet, "/v2/_catalog", nil, nil), http.StatusOK, "catalog by alice")
		cat.Repositories = nil
		if err := json.Unmarshal(body, &cat); err != nil || len(cat.Repositories) == 0 {
			t.Fatalf("catalog by alice: %s", body)
		}
		for _, r := range cat.Repositories {
			if !strings.HasPrefix(r, "alice/") && !strings.HasPrefix(r, "public/") {
				t.Fatalf("alice's catalog %s names %s, which she may not pull", body, r)
			}
		}
	})
	t.Run("tags list", func(t *testing.T) {
		body := expect(t, reader.do(http.MethodGet, "/v2/alice/raw/tags/list", nil, nil), http.StatusOK, "tags")
		if !strings.Contains(string(body), `"v1"`) {
			t.Fatalf("tags %s", body)
		}
	})
	t.Run("cross-repository blob mount", func(t *testing.T) {
		resp, _ := alice.startUpload("alice/rawcopy", "?mount="+layerDigest+"&from=alice/raw")
		expect(t, resp, http.StatusCreated, "mount from a readable repository")
		expect(t, alice.getBlob("alice/rawcopy", layerDigest), http.StatusOK, "mounted blob")
	})
	t.Run("mount from an unreadable repository becomes an upload", func(t *testing.T) {
		secret := []byte("admin's secret layer")
		d := admin.pushBlob("secret/base", secret, 0)
		resp, _ := alice.startUpload("alice/stolen", "?mount="+d+"&from=secret/base")
		expect(t, resp, http.StatusAccepted, "mount from secret/base")
		expect(t, alice.getBlob("alice/stolen", d), http.StatusNotFound, "the secret blob in alice/stolen")
	})
	t.Run("chunked upload of several MiB", func(t *testing.T) {
		big := make([]byte, 5<<20+123)
		rng := mrand.NewChaCha8([32]byte{2})
		_, _ = rng.Read(big)
		_, d := alice.pushImage("alice/chunked", "v1", big, 1<<20)
		if got := expect(t, reader.getBlob("alice/chunked", d), http.StatusOK, "chunked blob"); !bytes.Equal(got, big) {
			t.Fatal("chunked blob differs")
		}
	})
	t.Run("delete by admin", func(t *testing.T) {
		d, _ := alice.pushImage("alice/rawdoomed", "v1", []byte("doomed"), 0)
		expect(t, alice.do(http.MethodDelete, "/v2/alice/rawdoomed/manifests/"+d, nil, nil), http.StatusForbidden, "delete by alice")
		expect(t, admin.do(http.MethodDelete, "/v2/alice/rawdoomed/manifests/"+d, nil, nil), http.StatusAccepted, "delete by admin")
		expect(t, admin.getManifest("alice/rawdoomed", d), http.StatusNotFound, "deleted manifest")
	})
	t.Run("bearer tokens", func(t *testing.T) {
		tok := fetchToken(t, reg.host, "alice", "repository:alice/raw:pull")
		bearer := &rawClient{t: t, base: "http://" + reg.host, bearer: tok}
		expect(t, bearer.getManifest("alice/raw", "v1"), http.StatusOK, "pull with a pull token")
		resp, _ := bearer.startUpload("alice/raw", "")
		expect(t, resp, http.StatusUnauthorized, "push with a pull token")
		if c := resp.Header.Get("WWW-Authenticate"); !strings.Contains(c, `error="insufficient_scope"`) || !strings.Contains(c, `scope="repository:alice/raw:pull,push"`) {
			t.Fatalf("challenge %q", c)
		}
	})
	t.Run("expired and foreign tokens are refused by the proxy", func(t *testing.T) {
		access := []token.Access{{Type: "repository", Name: "public/raw", Actions: []string{"pull"}}}
		ours := caddySigner(t)
		foreignKey, foreignCert, err := token.GenerateKey("ES256", "foreign", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := token.NewSigner(foreignKey, []*x509.Certificate{foreignCert}, token.SignerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for what, c := range map[string]struct {
			s *token.Signer
			c *token.Claims
		}{
			"expired":        {ours, token.NewClaims(issuer, "alice", service, time.Minute, time.Now().Add(-time.Hour), access)},
			"foreign issuer": {ours, token.NewClaims("someone-else", "alice", service, time.Minute, time.Now(), access)},
			"foreign key":    {foreign, token.NewClaims(issuer, "alice", service, time.Minute, time.Now(), access)},
			"other audience": {ours, token.NewClaims(issuer, "alice", "other.service", time.Minute, time.Now(), access)},
		} {
			raw, err := c.s.Sign(c.c)
			if err != nil {
				t.Fatal(err)
			}
			resp := (&rawClient{t: t, base: "http://" + reg.host, bearer: raw}).getManifest("public/raw", "v1")
			expect(t, resp, http.StatusUnauthorized, what+" token")
			if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
				t.Fatalf("%s token: challenge %q", what, ch)
			}
		}
	})
}

// wantRegistryError checks an error in the registry's own format.
func wantRegistryError(t *testing.T, resp *http.Response, body []byte, code string) {
	t.Helper()
	var e struct{ Errors []struct{ Code string } }
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 || e.Errors[0].Code != code {
		t.Fatalf("body %s, want error code %s", body, code)
	}
	if resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
		t.Fatalf("no Docker-Distribution-Api-Version header")
	}
}

// fetchToken asks a token endpoint for a token, as a client would.
func fetchToken(t *testing.T, host, user, scope string) string {
	t.Helper()
	c := newRawClient(t, host, user)
	body := expect(t, c.do(http.MethodGet, "/auth/token?service="+service+"&scope="+scope, nil, nil), http.StatusOK, "token")
	var r struct{ Token string }
	if err := json.Unmarshal(body, &r); err != nil || r.Token == "" {
		t.Fatalf("token response %s", body)
	}
	return r.Token
}

// caddySigner loads the key Caddy generated into its storage (the signing
// key of the policy's keyring), to make tokens the proxy would accept but
// for one flaw.
func caddySigner(t *testing.T) *token.Signer {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(shared.dir, "storage", "registry_auth", "signers", "default", "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ring struct {
		Keys []struct {
			State   string `json:"state"`
			KeyPEM  string `json:"key_pem"`
			CertPEM string `json:"cert_pem"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &ring); err != nil {
		t.Fatal(err)
	}
	for _, k := range ring.Keys {
		if k.State != "signing" {
			continue
		}
		key, err := token.ParsePrivateKeyPEM([]byte(k.KeyPEM))
		if err != nil {
			t.Fatal(err)
		}
		chain, err := token.ParseCertificatesPEM([]byte(k.CertPEM))
		if err != nil {
			t.Fatal(err)
		}
		s, err := token.NewSigner(key, chain, token.SignerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Fatalf("no signing key in %s", data)
	return nil
}
