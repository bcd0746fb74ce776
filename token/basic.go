package token

import (
	"encoding/base64"
	"errors"
	"strings"
)

// Errors of ParseBasic.
var (
	// ErrNotBasic: the header uses another scheme; the client should be
	// told (401) to use Basic.
	ErrNotBasic = errors.New("the Authorization header must use the Basic scheme")
	// ErrMalformedAuthorization: the header is not valid Basic
	// credentials, or there are several headers (400).
	ErrMalformedAuthorization = errors.New("malformed Authorization header")
)

// maxAuthorizationLength bounds what is decoded: names and passwords, or
// a refresh token, are far shorter.
const maxAuthorizationLength = 8 << 10

// ParseBasic reads the Authorization headers of a request. No header means
// anonymous (ok false, no error). Anything that is not exactly one
// well-formed Basic header is an error, never a silent anonymous request.
func ParseBasic(headers []string) (user, password string, ok bool, err error) {
	switch len(headers) {
	case 0:
		return "", "", false, nil
	case 1:
	default:
		return "", "", false, ErrMalformedAuthorization
	}
	h := headers[0]
	if len(h) > maxAuthorizationLength {
		return "", "", false, ErrMalformedAuthorization
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(h), " ")
	if scheme == "" {
		return "", "", false, ErrMalformedAuthorization
	}
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false, ErrNotBasic
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false, ErrMalformedAuthorization
	}
	user, password, found := strings.Cut(string(raw), ":")
	// An empty name is containerd's way of sending a refresh token.
	if !found || (user != "" && CheckUserName(user) != nil) {
		return "", "", false, ErrMalformedAuthorization
	}
	return user, password, true, nil
}
