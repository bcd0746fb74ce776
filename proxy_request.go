package registryauth

import (
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/regauth/caddy-registry-auth/token"
)

// checkRequest refuses (400) what a registry request must never carry and
// returns the route it needs: the access the registry will check. ok is
// false with the error code and message of a refusal.
func checkRequest(r *http.Request) (route token.Route, code, msg string, ok bool) {
	// No repository name needs percent-encoding; a path that used it
	// could mean one name to us and another to the registry.
	if r.URL.RawPath != "" {
		return route, "NAME_INVALID", "invalid repository name", false
	}
	// The registry reads mount and from with FormValue, which also looks
	// into form bodies; the registry API never sends one, so a form body
	// could only smuggle a mount source past us.
	if isFormBody(r) {
		return route, "UNSUPPORTED", "form bodies are not part of the registry API", false
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return route, "UNSUPPORTED", "malformed query", false
	}
	// A control character in a query value means nothing to a registry
	// and makes some fail with an error that shows their storage paths.
	for name, values := range query {
		for _, v := range append(values, name) {
			if hasControl(v) {
				return route, "UNSUPPORTED", "a query parameter holds a control character", false
			}
		}
	}
	if len(query["mount"]) > 1 || len(query["from"]) > 1 {
		return route, "UNSUPPORTED", "mount and from may be given once", false
	}
	route, err = token.ParseRoute(r.Method, r.URL.Path, query.Get("mount"), query.Get("from"))
	if err != nil {
		return route, "NAME_INVALID", err.Error(), false
	}
	if route.MountFrom == nil && (query.Has("mount") || query.Has("from")) {
		// A source we could not name (the registry's grammar is wider
		// than ours, e.g. IPv6 hosts) is never authorized: no mount.
		dropMount(r)
	}
	return route, "", "", true
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// isFormBody reports whether the body would be parsed by Request.FormValue.
func isFormBody(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return false
	}
	mediaType, _, err := mime.ParseMediaType(ct)
	if err != nil {
		// net/http would not parse it either, but be strict.
		mediaType = strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	return mediaType == "application/x-www-form-urlencoded" || mediaType == "multipart/form-data"
}

// dropMount turns a cross-repository mount the caller may not read from
// into a plain upload start, as a registry does when a mount fails.
func dropMount(r *http.Request) {
	q := r.URL.Query()
	q.Del("mount")
	q.Del("from")
	r.URL.RawQuery = q.Encode()
}

// clientForwardingHeaders are headers a client could send to make the
// registry believe another scheme, host, path, address or method.
// reverse_proxy replaces X-Forwarded-For, -Proto and -Host itself; these
// it passes on, and both registry families build upload URLs from
// Forwarded. An operator who wants one sends it with header_up, which
// reverse_proxy applies after this.
var clientForwardingHeaders = []string{
	"Forwarded", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server",
	"X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Url-Scheme", "Front-End-Https",
	"X-Real-Ip", "X-Client-Ip", "True-Client-Ip",
	"X-Original-Url", "X-Original-Uri", "X-Original-Host", "X-Rewrite-Url", "X-Host",
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
}

// stripForwarding removes what a client said about forwarding.
func stripForwarding(h http.Header) {
	for _, name := range clientForwardingHeaders {
		delete(h, name)
	}
}
