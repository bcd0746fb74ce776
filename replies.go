package registryauth

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// errorBody is the registry API's error document; Docker shows its
// message to the user. The OAuth2 fields are set on POST answers.
type errorBody struct {
	Errors           []errorEntry `json:"errors"`
	OAuthError       string       `json:"error,omitempty"`
	OAuthDescription string       `json:"error_description,omitempty"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(body)
	return err
}

// writeRegistryError answers as a registry does: its version header and
// its JSON error document with one error.
func writeRegistryError(w http.ResponseWriter, status int, code, msg string) error {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	return writeJSON(w, status, errorBody{Errors: []errorEntry{{Code: code, Message: msg}}})
}

// quote makes a quoted-string for a challenge parameter.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
