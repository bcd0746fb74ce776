package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestFleet runs two Caddy processes on one file_system storage, started
// at the same moment, with a v3 registry behind each one's proxy site:
// they generate one key between them, honour each other's refresh tokens,
// revocations, access tokens and key rotations, and serve the same public
// documents on the token endpoint and beside the proxy's token path.
func TestFleet(t *testing.T) {
	upstream := FreePort()
	startV3(t, shared, registrySetup{port: upstream, disk: true})
	storage := t.TempDir()
	fleet := startFleet(t, 2, fleetConfig{storage: storage, syncInterval: "2s", upstream: upstream})
	a, b := fleet[0], fleet[1]
	proxyB := &registry{family: "v3", host: b.proxyHost()}

	t.Run("one key, generated once", func(t *testing.T) {
		_, certsA := get(t, a.realm()[:strings.LastIndex(a.realm(), "/")]+"/certs.pem")
		_, certsB := get(t, b.realm()[:strings.LastIndex(b.realm(), "/")]+"/certs.pem")
		if certsOf(t, certsA) != 1 || !bytes.Equal(certsA, certsB) {
			t.Fatalf("A and B publish different keys:\n%s\n%s", certsA, certsB)
		}
		data, err := os.ReadFile(filepath.Join(storage, "registry_auth", "signers", "default", "keyring.json"))
		if err != nil {
			t.Fatal(err)
		}
		var ring struct{ Keys []json.RawMessage }
		if err := json.Unmarshal(data, &ring); err != nil || len(ring.Keys) != 1 {
			t.Fatalf("the shared keyring holds %d keys (%v)", len(ring.Keys), err)
		}
	})
	t.Run("the proxy serves the public documents beside its token path", func(t *testing.T) {
		for _, doc := range []string{"certs.pem", "jwks.json"} {
			status, fromProxy := get(t, "http://"+b.proxyHost()+"/auth/"+doc)
			_, fromEndpoint := get(t, fmt.Sprintf("http://localhost:%d/auth/%s", b.site, doc))
			if status != http.StatusOK || !bytes.Equal(fromProxy, fromEndpoint) {
				t.Errorf("%s beside the proxy's token path: %d %q", doc, status, fromProxy)
			}
		}
	})
	t.Run("a refresh token from A works at B", func(t *testing.T) {
		rt := dockerLogin(t, a.realm(), "alice", passwords["alice"])
		expect(t, refreshGrant(t, b.realm(), rt, service, "repository:alice/x:pull"), http.StatusOK, "A's refresh token at B")
		// go-containerregistry with only the identity token, through B's proxy.
		auth := remote.WithAuth(authn.FromConfig(authn.AuthConfig{IdentityToken: rt}))
		img := randomImage(t)
		if err := remote.Write(ref(t, proxyB, "alice/fleet:v1"), img, auth); err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Image(ref(t, proxyB, "alice/fleet:v1"), auth); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("B's proxy accepts A's access tokens", func(t *testing.T) {
		tok := tokenAt(t, a.realm(), "alice", "repository:alice/fleet-bearer:pull,push")
		auth := remote.WithAuth(authn.FromConfig(authn.AuthConfig{RegistryToken: tok}))
		if err := remote.Write(ref(t, proxyB, "alice/fleet-bearer:v1"), randomImage(t), auth); err != nil {
			t.Fatalf("push through B with A's token: %v", err)
		}
		forged := tok[:strings.LastIndexByte(tok, '.')+1] + "AAAA"
		req, _ := http.NewRequest(http.MethodGet, "http://"+b.proxyHost()+"/v2/alice/fleet-bearer/tags/list", nil)
		req.Header.Set("Authorization", "Bearer "+forged)
		expect(t, do(t, req), http.StatusUnauthorized, "a token with a broken signature at B")
	})
	t.Run("a revocation at A is refused at B", func(t *testing.T) {
		rt := dockerLogin(t, a.realm(), "reader", passwords["reader"])
		expect(t, refreshGrant(t, b.realm(), rt, service, "repository:alice/x:pull"), http.StatusOK, "refresh at B before the revocation")
		resp, err := http.Post("http://"+a.adminAddr()+"/registry_auth/revocations", "application/json", strings.NewReader(`{"user":"reader"}`))
		if err != nil {
			t.Fatal(err)
		}
		expect(t, resp, http.StatusOK, "revocation at A")
		resp.Body.Close()
		took := until(t, 30*time.Second, "B refuses the revoked refresh token", func() bool {
			return refreshGrant(t, b.realm(), rt, service, "repository:alice/x:pull").StatusCode == http.StatusUnauthorized
		})
		t.Logf("FLEET: B refused a refresh token revoked at A %s after the revocation", took.Round(time.Millisecond))
	})
	t.Run("a key staged and promoted at A is served and used by B", func(t *testing.T) { stageAndPromoteAcross(t, a, b) })
}

// stageAndPromoteAcross stages and promotes a key at a, with the command
// an operator would run, and measures how soon b publishes and uses it.
func stageAndPromoteAcross(t *testing.T, a, b *instance) {
	out := a.mustKeys(t, "stage")
	if !strings.Contains(out, "staged ") {
		t.Fatalf("stage:\n%s", out)
	}
	staged := until(t, 30*time.Second, "B publishes the staged key", func() bool {
		_, certs := get(t, "http://"+b.proxyHost()+"/auth/certs.pem")
		return certsOf(t, certs) == 2
	})
	t.Logf("FLEET: B published the key staged at A %s after the stage", staged.Round(time.Millisecond))
	data, err := os.ReadFile(b.bundle())
	if err != nil || certsOf(t, data) != 2 {
		t.Fatalf("B's bundle_file after the stage: %v", err)
	}

	oldKID := kidOf(t, tokenAt(t, b.realm(), "alice", "repository:alice/fleet:pull"))
	a.mustKeys(t, "promote")
	newKID := kidOf(t, tokenAt(t, a.realm(), "alice", "repository:alice/fleet:pull"))
	if newKID == oldKID {
		t.Fatal("A still signs with the old key after the promotion")
	}
	promoted := until(t, 30*time.Second, "B signs with the promoted key", func() bool {
		return kidOf(t, tokenAt(t, b.realm(), "alice", "repository:alice/fleet:pull")) == newKID
	})
	t.Logf("FLEET: B signed with the key promoted at A %s after the promotion (sync_interval 2s)", promoted.Round(time.Millisecond))
	// A's tokens of the new key pass B's proxy.
	tok := tokenAt(t, a.realm(), "alice", "repository:alice/fleet:pull")
	req, _ := http.NewRequest(http.MethodGet, "http://"+b.proxyHost()+"/v2/alice/fleet/tags/list", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	expect(t, do(t, req), http.StatusOK, "A's token of the promoted key at B's proxy")
	status := b.mustKeys(t, "status")
	if !strings.Contains(status, "signing ") || !strings.Contains(status, "previous ") || !strings.Contains(status, newKID) {
		t.Fatalf("status at B:\n%s", status)
	}
}
