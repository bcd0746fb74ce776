package registryauth

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// The proxy serves the public documents beside its token path, the same
// bytes as the token endpoint, and nothing else of the token handler's.
func TestProxyServesPublicDocuments(t *testing.T) {
	f := newTestProxy(t)
	signer := f.h.policy.Signer
	jwks, _ := signer.JWKS()
	for path, want := range map[string][]byte{"/auth/certs.pem": signer.CertificatesPEM(), "/auth/jwks.json": jwks} {
		w := f.do(t, http.MethodGet, path, "")
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), want) || f.nextCalls != 0 || f.up.calls != 0 {
			t.Errorf("%s: %d, next %d, upstream %d, body %q", path, w.Code, f.nextCalls, f.up.calls, w.Body.String())
		}
	}
	var doc struct{ Keys []struct{ Kid string } }
	if err := json.Unmarshal(jwks, &doc); err != nil || len(doc.Keys) != 1 || doc.Keys[0].Kid != signer.KeyID() {
		t.Fatalf("JWKS %s (%v)", jwks, err)
	}
	// Beside another token path.
	f = newTestProxy(t)
	f.h.TokenPath = "/token"
	if w := f.do(t, http.MethodGet, "/certs.pem", ""); w.Code != http.StatusOK || f.nextCalls != 0 {
		t.Errorf("/certs.pem beside /token: %d, next %d", w.Code, f.nextCalls)
	}
	if w := f.do(t, http.MethodGet, "/auth/certs.pem", ""); w.Code != http.StatusTeapot || f.nextCalls != 1 {
		t.Errorf("/auth/certs.pem beside /token: %d, next %d; want it passed on", w.Code, f.nextCalls)
	}
}
