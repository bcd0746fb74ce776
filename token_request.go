package registryauth

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/regauth/caddy-registry-auth/token"
)

// tokenRequest is a token request once parsed, GET or POST alike.
type tokenRequest struct {
	oauth    bool // POST form: answer in OAuth2 terms
	service  string
	scopes   []string
	user     string
	password string
	hasCreds bool
	// offline asks for a refresh token along with the access token.
	offline bool
	// refresh is a refresh token presented instead of a password.
	refresh string
}

// requestError is a request we refuse, with the status and codes to say so.
type requestError struct {
	status int
	code   string // distribution error code
	oauth  string // OAuth2 error code, for POST
	msg    string
	// retryAfter is the Retry-After header's value, if any.
	retryAfter string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(oauth, format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, code: "BAD_REQUEST", oauth: oauth, msg: fmt.Sprintf(format, args...)}
}

// maxFormBytes bounds a POST body: a form with the maximum number of
// scopes fits easily.
const maxFormBytes = 64 << 10

// parseGetRequest reads the spec's GET form: credentials in a Basic
// header, parameters in the query.
func parseGetRequest(r *http.Request) (*tokenRequest, *requestError) {
	req := &tokenRequest{}
	user, password, ok, err := token.ParseBasic(r.Header.Values("Authorization"))
	if err != nil {
		if authorizationStatus(err) == http.StatusUnauthorized {
			return req, &requestError{status: http.StatusUnauthorized, code: "UNAUTHORIZED", oauth: "invalid_client", msg: err.Error()}
		}
		return req, badRequest("invalid_request", "%v", err)
	}
	req.user, req.password, req.hasCreds = user, password, ok
	if ok && user == "" && password != "" {
		// containerd's GET fallback carries a refresh token this way.
		req.refresh, req.password, req.hasCreds = password, "", false
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return req, badRequest("invalid_request", "malformed query: %v", err)
	}
	var account, offline string
	if rerr := singles(q, params{{"service", &req.service}, {"account", &account}, {"offline_token", &offline}}); rerr != nil {
		return req, rerr
	}
	// account is not in the spec; Docker sends the login name. A different
	// name is never honoured.
	if account != "" && req.hasCreds && account != req.user {
		return req, badRequest("invalid_request", "account %q differs from the user name of the credentials", account)
	}
	req.offline = offline == "true"
	req.scopes = q["scope"]
	return req, nil
}

// parsePostRequest reads the OAuth2 form of the token endpoint: the
// password grant (with access_type=offline, it asks for a refresh token
// too) and the refresh-token grant.
func parsePostRequest(w http.ResponseWriter, r *http.Request) (*tokenRequest, *requestError) {
	req := &tokenRequest{oauth: true}
	form, rerr := readForm(w, r)
	if rerr != nil {
		return req, rerr
	}
	var grant, accessType string
	fields := params{
		{"grant_type", &grant},
		{"service", &req.service},
		{"username", &req.user},
		{"password", &req.password},
		{"refresh_token", &req.refresh},
		{"access_type", &accessType},
	}
	if rerr := singles(form, fields); rerr != nil {
		return req, rerr
	}
	switch grant {
	case "password":
		if req.user == "" {
			return req, badRequest("invalid_request", "username is missing")
		}
		req.hasCreds, req.refresh, req.offline = true, "", accessType == "offline"
	case "refresh_token":
		if req.refresh == "" {
			return req, badRequest("invalid_request", "refresh_token is missing")
		}
		req.user, req.password = "", ""
	case "":
		return req, badRequest("invalid_request", "grant_type is missing")
	default:
		return req, badRequest("unsupported_grant_type", "grant_type %q is not supported", grant)
	}
	req.scopes = form["scope"]
	return req, nil
}

// readForm reads a POST's form body, refusing anything but one
// form-encoded body of bounded size.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *requestError) {
	if len(r.Header.Values("Authorization")) > 1 {
		return nil, badRequest("invalid_request", "%v", token.ErrMalformedAuthorization)
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/x-www-form-urlencoded" {
		return nil, badRequest("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &requestError{status: http.StatusRequestEntityTooLarge, code: "SIZE_INVALID", oauth: "invalid_request", msg: fmt.Sprintf("the form is larger than %d bytes", maxFormBytes)}
		}
		return nil, badRequest("invalid_request", "reading the form: %v", err)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, badRequest("invalid_request", "malformed form: %v", err)
	}
	return form, nil
}

// params are parameters that may each appear at most once, with where
// their value goes.
type params []struct {
	name string
	dst  *string
}

// singles reads each parameter's one value, if any.
func singles(v url.Values, ps params) *requestError {
	for _, p := range ps {
		switch vals := v[p.name]; len(vals) {
		case 0:
		case 1:
			*p.dst = vals[0]
		default:
			return badRequest("invalid_request", "%s is given more than once", p.name)
		}
	}
	return nil
}
