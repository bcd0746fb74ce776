package token

import (
	"errors"
	"net/http"
	"strings"
)

// Route is what one registry API request needs, as the registry itself
// decides it (distribution's registry/handlers/app.go): the method sets the
// actions, the path names the repository.
type Route struct {
	// Base is GET /v2/, the version check: it needs a valid identity and no
	// scope.
	Base bool
	// Scope is what the request needs; the zero value for Base.
	Scope Scope
	// MountFrom, when set, is the source of a cross-repository blob mount.
	// Pull on it is optional: without it the mount is dropped and the
	// registry starts a normal upload instead, which every client handles.
	MountFrom *Scope
	// Known is false for /v2/ paths that are not in the distribution API;
	// they need pull and push on the repository the path names.
	Known bool
	// Manifest is the reference (a tag or a digest) of a manifests route,
	// "" for every other route.
	Manifest string
}

// ErrBadRoute is returned for /v2/ paths whose repository name is invalid
// or cannot be told.
var ErrBadRoute = errors.New("invalid repository name in the request path")

// MethodActions maps an HTTP method to the actions a registry checks.
func MethodActions(method string) Actions {
	switch method {
	case http.MethodGet, http.MethodHead:
		return Pull
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return Pull | Push
	case http.MethodDelete:
		return Delete
	}
	return Pull | Push
}

// ParseRoute maps a request under /v2 to the access it needs. path is the
// decoded URL path; the caller refuses paths that needed percent-encoding
// (no valid repository name does). mount and from are the query
// parameters of a blob upload.
func ParseRoute(method, path, mount, from string) (Route, error) {
	rest, ok := strings.CutPrefix(path, "/v2")
	if !ok || (rest != "" && rest[0] != '/') {
		return Route{}, ErrBadRoute
	}
	rest = strings.TrimPrefix(rest, "/")
	if rest == "" {
		return Route{Base: true, Known: true}, nil
	}
	if rest == "_catalog" {
		return Route{Scope: Scope{Type: TypeRegistry, Name: CatalogName, Actions: All}, Known: true}, nil
	}

	actions := MethodActions(method)
	comps := strings.Split(rest, "/")
	n, last := len(comps), comps[len(comps)-1]
	nameEnd, known := -1, true
	switch {
	case n >= 4 && comps[n-3] == "blobs" && comps[n-2] == "uploads":
		nameEnd = n - 3 // an upload's start (last is "") or its session
	case last == "":
		known = false
	case n >= 3 && comps[n-2] == "tags" && last == "list":
		nameEnd = n - 2
	case n >= 3 && (comps[n-2] == "manifests" || comps[n-2] == "blobs" || comps[n-2] == "referrers"):
		nameEnd = n - 2
	default:
		known = false
	}
	if !known {
		// Not an API route: whatever it is, it needs push and pull on the
		// repository the path names.
		nameEnd = n - 1
		actions |= Pull | Push
	}
	name := strings.Join(comps[:nameEnd], "/")
	if !ValidRepositoryName(name) {
		return Route{}, ErrBadRoute
	}
	r := Route{Scope: Scope{Type: TypeRepository, Name: name, Actions: actions}, Known: known}
	if known && nameEnd == n-2 && comps[n-2] == "manifests" {
		r.Manifest = last
	}
	if known && method == http.MethodPost && nameEnd == n-3 && last == "" && mount != "" && ValidRepositoryName(from) {
		r.MountFrom = &Scope{Type: TypeRepository, Name: from, Actions: Pull}
	}
	return r, nil
}
