package registryauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

// adminKeys sends one request to the keys routes of the admin API and
// returns the status and body (the error's message for refusals).
func adminKeys(t *testing.T, method, target, body string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	w := httptest.NewRecorder()
	err := (&adminAPI{}).keys(w, r)
	var apiErr caddy.APIError
	switch {
	case err == nil:
		return http.StatusOK, w.Body.String()
	case errors.As(err, &apiErr):
		return apiErr.HTTPStatus, apiErr.Err.Error()
	}
	t.Fatalf("%s %s: %v", method, target, err)
	return 0, ""
}

func TestAdminKeys(t *testing.T) {
	k := mustOpen(t, &certmagic.FileStorage{Path: t.TempDir()}, SignerConfig{Rotation: rotationManual}, &testClock{now: time.Now()})
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	defer runningKeyrings.remove(k)

	status, body := adminKeys(t, http.MethodGet, "/registry_auth/keys?policy=p", "")
	var st keyringStatus
	if err := json.Unmarshal([]byte(body), &st); status != http.StatusOK || err != nil || len(st.Keys) != 1 || st.Keys[0].KeyID != k.signer.KeyID() || st.Rotation != rotationManual {
		t.Fatalf("status: %d %s", status, body)
	}
	if strings.Contains(body, "PRIVATE") || strings.Contains(body, "refresh_secret") {
		t.Fatalf("the status shows a secret: %s", body)
	}
	status, body = adminKeys(t, http.MethodPost, "/registry_auth/keys/stage", `{"policy":"p"}`)
	if err := json.Unmarshal([]byte(body), &st); status != http.StatusOK || err != nil || len(st.Keys) != 2 || st.Keys[0].State != keyStaged || st.Keys[1].State != keySigning {
		t.Fatalf("stage: %d %s", status, body)
	}
	for _, tc := range []struct {
		method, target, body string
		status               int
		says                 string
	}{
		{http.MethodPost, "/registry_auth/keys/stage", `{"policy":"p"}`, http.StatusConflict, "already staged"},
		{http.MethodPost, "/registry_auth/keys/retire", `{"policy":"p"}`, http.StatusConflict, "no previous key"},
		{http.MethodPost, "/registry_auth/keys/emergency", `{"policy":"p"}`, http.StatusBadRequest, `"confirm": true`},
		{http.MethodPost, "/registry_auth/keys/rotate", `{"policy":"p"}`, http.StatusNotFound, `unknown step "rotate"`},
		{http.MethodPost, "/registry_auth/keys/promote", `{"policy":"p","forse":true}`, http.StatusBadRequest, "forse"},
		{http.MethodPost, "/registry_auth/keys/promote", `{"policy":"p"`, http.StatusBadRequest, "decoding"},
		{http.MethodPost, "/registry_auth/keys/promote", `{"policy":"nope"}`, http.StatusNotFound, `no running registry_auth policy named "nope"`},
		{http.MethodPost, "/registry_auth/keys/promote", `{"policy":"../x"}`, http.StatusBadRequest, "invalid policy name"},
		{http.MethodGet, "/registry_auth/keys/promote", "", http.StatusMethodNotAllowed, "POST"},
		{http.MethodDelete, "/registry_auth/keys", "", http.StatusMethodNotAllowed, "GET"},
		{http.MethodGet, "/registry_auth/keys", "", http.StatusNotFound, `"default"`},
	} {
		status, body := adminKeys(t, tc.method, tc.target, tc.body)
		if status != tc.status || !strings.Contains(body, tc.says) {
			t.Errorf("%s %s %s: %d %s, want %d saying %q", tc.method, tc.target, tc.body, status, body, tc.status, tc.says)
		}
	}
	before := k.signer.KeyID()
	if status, body := adminKeys(t, http.MethodPost, "/registry_auth/keys/promote", `{"policy":"p"}`); status != http.StatusOK || k.signer.KeyID() == before {
		t.Fatalf("promote: %d %s", status, body)
	}
	if status, body := adminKeys(t, http.MethodPost, "/registry_auth/keys/retire", `{"policy":"p","force":true}`); status != http.StatusOK || !strings.Contains(body, `"state":"retired"`) {
		t.Fatalf("forced retire: %d %s", status, body)
	}
	if status, body := adminKeys(t, http.MethodPost, "/registry_auth/keys/emergency", `{"policy":"p","confirm":true}`); status != http.StatusOK || !strings.Contains(body, `"withdrawn"`) {
		t.Fatalf("emergency: %d %s", status, body)
	}
}
