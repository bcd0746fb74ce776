package token_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/token"
)

func basic(cred string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(cred)) }

// TestParseBasic: no header is anonymous; anything but exactly one
// well-formed Basic header is an error, never a silent anonymous request
// (SPEC-NOTES §2, §9).
func TestParseBasic(t *testing.T) {
	tests := []struct {
		name     string
		headers  []string
		user     string
		password string
		ok       bool
		err      error
	}{
		{"no header is anonymous", nil, "", "", false, nil},
		{"empty header list is anonymous", []string{}, "", "", false, nil},
		{"one good header", []string{basic("alice:secret")}, "alice", "secret", true, nil},
		{"scheme is case-insensitive (lower)", []string{"basic " + base64.StdEncoding.EncodeToString([]byte("alice:secret"))}, "alice", "secret", true, nil},
		{"scheme is case-insensitive (upper)", []string{"BASIC " + base64.StdEncoding.EncodeToString([]byte("alice:secret"))}, "alice", "secret", true, nil},
		{"extra spaces around credentials", []string{"  Basic    " + base64.StdEncoding.EncodeToString([]byte("alice:secret")) + "  "}, "alice", "secret", true, nil},
		// Basic splits at the first colon: the password keeps the rest.
		{"password containing colons", []string{basic("alice:pa:ss:word:")}, "alice", "pa:ss:word:", true, nil},
		{"empty password", []string{basic("alice:")}, "alice", "", true, nil},
		// containerd's GET fallback with an identity token: empty user name.
		{"empty user name (containerd identity token)", []string{basic(":refresh-token")}, "", "refresh-token", true, nil},
		{"unicode password", []string{basic("alice:pässwörd✓")}, "alice", "pässwörd✓", true, nil},
		{"several headers, both good", []string{basic("alice:a"), basic("bob:b")}, "", "", false, token.ErrMalformedAuthorization},
		{"several headers, one Bearer", []string{"Bearer x", basic("bob:b")}, "", "", false, token.ErrMalformedAuthorization},
		{"two empty headers", []string{"", ""}, "", "", false, token.ErrMalformedAuthorization},
		{"Bearer scheme", []string{"Bearer eyJhbGciOi"}, "", "", false, token.ErrNotBasic},
		{"Digest scheme", []string{`Digest username="alice"`}, "", "", false, token.ErrNotBasic},
		{"scheme alone, not Basic", []string{"Bearer"}, "", "", false, token.ErrNotBasic},
		{"Basic prefix of a longer word", []string{"Basicx " + base64.StdEncoding.EncodeToString([]byte("a:b"))}, "", "", false, token.ErrNotBasic},
		{"empty header", []string{""}, "", "", false, token.ErrMalformedAuthorization},
		{"blank header", []string{"   "}, "", "", false, token.ErrMalformedAuthorization},
		{"Basic without credentials", []string{"Basic"}, "", "", false, token.ErrMalformedAuthorization},
		{"Basic with blank credentials", []string{"Basic   "}, "", "", false, token.ErrMalformedAuthorization},
		{"bad base64", []string{"Basic !!!notbase64"}, "", "", false, token.ErrMalformedAuthorization},
		{"bad padding", []string{"Basic " + base64.RawStdEncoding.EncodeToString([]byte("alice:secret1"))}, "", "", false, token.ErrMalformedAuthorization},
		{"base64 with inner space", []string{"Basic YWxp Y2U6c2VjcmV0"}, "", "", false, token.ErrMalformedAuthorization},
		{"missing colon", []string{basic("alice")}, "", "", false, token.ErrMalformedAuthorization},
		{"empty credentials", []string{basic("")}, "", "", false, token.ErrMalformedAuthorization},
		{"user with newline", []string{basic("ali\nce:secret")}, "", "", false, token.ErrMalformedAuthorization},
		{"user with carriage return", []string{basic("alice\r:secret")}, "", "", false, token.ErrMalformedAuthorization},
		{"user with NUL", []string{basic("al\x00ice:secret")}, "", "", false, token.ErrMalformedAuthorization},
		{"over-long header", []string{basic("alice:" + strings.Repeat("x", 8<<10))}, "", "", false, token.ErrMalformedAuthorization},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, password, ok, err := token.ParseBasic(tt.headers)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if user != tt.user || password != tt.password || ok != tt.ok {
				t.Errorf("got (%q, %q, %v), want (%q, %q, %v)", user, password, ok, tt.user, tt.password, tt.ok)
			}
		})
	}
}

// FuzzParseBasic: never panics; a success re-encodes to a header that
// parses to the same credentials, and the user never holds a colon or a
// line break; a failure returns no credentials.
func FuzzParseBasic(f *testing.F) {
	f.Add(basic("alice:secret"), "")
	f.Add("Bearer x", "")
	f.Add("basic "+base64.StdEncoding.EncodeToString([]byte(":a:b:c")), "")
	f.Add("Basic !!!", "")
	f.Add(basic("a:b"), basic("c:d"))
	f.Add("   ", "Basic")
	f.Fuzz(func(t *testing.T, h1, h2 string) {
		headers := []string{h1}
		if h2 != "" {
			headers = append(headers, h2)
		}
		user, password, ok, err := token.ParseBasic(headers)
		if err != nil {
			if ok || user != "" || password != "" {
				t.Fatalf("error %v with credentials (%q, %q, %v)", err, user, password, ok)
			}
			if !errors.Is(err, token.ErrMalformedAuthorization) && !errors.Is(err, token.ErrNotBasic) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(headers) != 1 || !ok {
			t.Fatalf("accepted %q with ok=%v", headers, ok)
		}
		if strings.ContainsAny(user, ":\x00\r\n") {
			t.Fatalf("user %q", user)
		}
		u2, p2, ok2, err2 := token.ParseBasic([]string{basic(user + ":" + password)})
		if err2 != nil || !ok2 || u2 != user || p2 != password {
			t.Fatalf("re-encoding (%q, %q) parsed as (%q, %q, %v, %v)", user, password, u2, p2, ok2, err2)
		}
	})
}
