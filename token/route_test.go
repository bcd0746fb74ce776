package token_test

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/token"
)

const (
	testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testUUID   = "5f0e3c4a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
)

// repo and catalog are in scope_test.go.

// routeCase is one request and the route ParseRoute must give, or
// ErrBadRoute when want is nil.
type routeCase struct {
	method, path, mount, from string
	want                      *token.Route
}

func known(s token.Scope) *token.Route   { return &token.Route{Scope: s, Known: true} }
func unknown(s token.Scope) *token.Route { return &token.Route{Scope: s} }
func mounted(s token.Scope, from string) *token.Route {
	return &token.Route{Scope: s, Known: true, MountFrom: &token.Scope{Type: token.TypeRepository, Name: from, Actions: token.Pull}}
}

var base = &token.Route{Base: true, Known: true}

const (
	pull     = token.Pull
	pullPush = token.Pull | token.Push
)

var routeCases = []routeCase{
	// end-1: the version check, with and without the slash; the method
	// does not matter.
	{method: "GET", path: "/v2/", want: base},
	{method: "GET", path: "/v2", want: base},
	{method: "HEAD", path: "/v2/", want: base},
	{method: "POST", path: "/v2/", want: base},

	// The catalog: registry:catalog with the literal "*".
	{method: "GET", path: "/v2/_catalog", want: known(catalog)},
	{method: "HEAD", path: "/v2/_catalog", want: known(catalog)},

	// end-8a/8b: tags list.
	{method: "GET", path: "/v2/foo/tags/list", want: known(repo("foo", pull))},
	{method: "GET", path: "/v2/foo/bar/tags/list", want: known(repo("foo/bar", pull))},

	// end-2, end-3, end-7, end-9: manifests by tag and by digest.
	{method: "GET", path: "/v2/foo/manifests/latest", want: known(repo("foo", pull))},
	{method: "HEAD", path: "/v2/foo/manifests/latest", want: known(repo("foo", pull))},
	{method: "GET", path: "/v2/foo/manifests/" + testDigest, want: known(repo("foo", pull))},
	{method: "HEAD", path: "/v2/foo/manifests/" + testDigest, want: known(repo("foo", pull))},
	{method: "PUT", path: "/v2/foo/manifests/v1.0", want: known(repo("foo", pullPush))},
	{method: "PUT", path: "/v2/foo/manifests/" + testDigest, want: known(repo("foo", pullPush))},
	{method: "DELETE", path: "/v2/foo/manifests/" + testDigest, want: known(repo("foo", token.Delete))},
	{method: "DELETE", path: "/v2/foo/manifests/latest", want: known(repo("foo", token.Delete))},

	// end-2, end-10: blobs.
	{method: "GET", path: "/v2/foo/blobs/" + testDigest, want: known(repo("foo", pull))},
	{method: "HEAD", path: "/v2/foo/blobs/" + testDigest, want: known(repo("foo", pull))},
	{method: "DELETE", path: "/v2/foo/blobs/" + testDigest, want: known(repo("foo", token.Delete))},

	// end-4a/4b, end-11: starting an upload (monolithic or not, or a mount).
	{method: "POST", path: "/v2/foo/blobs/uploads/", want: known(repo("foo", pullPush))},
	{method: "POST", path: "/v2/foo/bar/blobs/uploads/", want: known(repo("foo/bar", pullPush))},

	// end-5, end-6, end-13 and the upload status: an upload session.
	{method: "GET", path: "/v2/foo/blobs/uploads/" + testUUID, want: known(repo("foo", pull))},
	{method: "PATCH", path: "/v2/foo/blobs/uploads/" + testUUID, want: known(repo("foo", pullPush))},
	{method: "PUT", path: "/v2/foo/blobs/uploads/" + testUUID, want: known(repo("foo", pullPush))},
	{method: "DELETE", path: "/v2/foo/blobs/uploads/" + testUUID, want: known(repo("foo", token.Delete))},

	// end-11: a cross-repository mount needs pull on the source.
	{method: "POST", path: "/v2/foo/blobs/uploads/", mount: testDigest, from: "lib/bar", want: mounted(repo("foo", pullPush), "lib/bar")},
	{method: "POST", path: "/v2/foo/blobs/uploads/", mount: testDigest, from: "localhost:5000/lib/bar", want: mounted(repo("foo", pullPush), "localhost:5000/lib/bar")},
	{method: "POST", path: "/v2/foo/blobs/uploads/", mount: testDigest, from: "foo", want: mounted(repo("foo", pullPush), "foo")},
	// ... and there is no mount when the source is not a valid name,
	{method: "POST", path: "/v2/foo/blobs/uploads/", mount: testDigest, from: "Lib/Bar", want: known(repo("foo", pullPush))},
	{method: "POST", path: "/v2/foo/blobs/uploads/", mount: testDigest, from: "lib/../bar", want: known(repo("foo", pullPush))},
	{method: "POST", path: "/v2/foo/blobs/uploads/", mount: testDigest, from: "lib//bar", want: known(repo("foo", pullPush))},
	{method: "POST", path: "/v2/foo/blobs/uploads/", mount: testDigest, from: "", want: known(repo("foo", pullPush))},
	// when mount is empty,
	{method: "POST", path: "/v2/foo/blobs/uploads/", from: "lib/bar", want: known(repo("foo", pullPush))},
	// when the method is not POST,
	{method: "PUT", path: "/v2/foo/blobs/uploads/", mount: testDigest, from: "lib/bar", want: known(repo("foo", pullPush))},
	{method: "GET", path: "/v2/foo/blobs/uploads/", mount: testDigest, from: "lib/bar", want: known(repo("foo", pull))},
	// or when the request is not the start of an upload.
	{method: "POST", path: "/v2/foo/blobs/uploads/" + testUUID, mount: testDigest, from: "lib/bar", want: known(repo("foo", pullPush))},
	{method: "PUT", path: "/v2/foo/blobs/uploads/" + testUUID, mount: testDigest, from: "lib/bar", want: known(repo("foo", pullPush))},
	{method: "POST", path: "/v2/foo/manifests/latest", mount: testDigest, from: "lib/bar", want: known(repo("foo", pullPush))},
	{method: "POST", path: "/v2/foo/bar/baz", mount: testDigest, from: "lib/bar", want: unknown(repo("foo/bar", pullPush))},

	// Referrers (OCI distribution-spec 1.1, end-12a/12b).
	{method: "GET", path: "/v2/foo/referrers/" + testDigest, want: known(repo("foo", pull))},
	{method: "HEAD", path: "/v2/foo/bar/referrers/" + testDigest, want: known(repo("foo/bar", pull))},

	// Names of several components and with a host:port first component.
	{method: "GET", path: "/v2/a/b/c/d/manifests/latest", want: known(repo("a/b/c/d", pull))},
	{method: "GET", path: "/v2/localhost:5000/foo/manifests/latest", want: known(repo("localhost:5000/foo", pull))},
	{method: "PUT", path: "/v2/registry.example.com:443/team/app/manifests/v1", want: known(repo("registry.example.com:443/team/app", pullPush))},
	{method: "GET", path: "/v2/localhost:5000/foo/tags/list", want: known(repo("localhost:5000/foo", pull))},
	{method: "POST", path: "/v2/localhost:5000/foo/blobs/uploads/", want: known(repo("localhost:5000/foo", pullPush))},
	{method: "GET", path: "/v2/a-b.c__d/e_f/blobs/" + testDigest, want: known(repo("a-b.c__d/e_f", pull))},

	// Components that are themselves route keywords. Distribution's routes
	// are anchored at both ends and the suffix after the name has a fixed
	// number of components (no tag, digest or upload id contains "/"), so
	// the registry's name is everything before the last keyword: the same
	// as here.
	{method: "GET", path: "/v2/blobs/manifests/manifests/latest", want: known(repo("blobs/manifests", pull))},
	{method: "GET", path: "/v2/manifests/manifests/manifests", want: known(repo("manifests", pull))},
	{method: "GET", path: "/v2/a/tags/tags/list", want: known(repo("a/tags", pull))},
	{method: "GET", path: "/v2/tags/list/tags/list", want: known(repo("tags/list", pull))},
	{method: "GET", path: "/v2/a/tags/list/tags/list", want: known(repo("a/tags/list", pull))},
	{method: "POST", path: "/v2/x/blobs/uploads/blobs/uploads/", want: known(repo("x/blobs/uploads", pullPush))},
	{method: "PATCH", path: "/v2/x/blobs/uploads/blobs/uploads/" + testUUID, want: known(repo("x/blobs/uploads", pullPush))},
	{method: "GET", path: "/v2/a/blobs/uploads/manifests/latest", want: known(repo("a/blobs/uploads", pull))},
	{method: "GET", path: "/v2/a/manifests/x/blobs/" + testDigest, want: known(repo("a/manifests/x", pull))},
	{method: "GET", path: "/v2/blobs/blobs/" + testDigest, want: known(repo("blobs", pull))},
	{method: "DELETE", path: "/v2/uploads/blobs/uploads/" + testUUID, want: known(repo("uploads", token.Delete))},
	{method: "GET", path: "/v2/referrers/referrers/" + testDigest, want: known(repo("referrers", pull))},
	{method: "GET", path: "/v2/v2/manifests/latest", want: known(repo("v2", pull))},

	// Paths that are not API routes need pull and push on the repository
	// the path names (its components but the last), whatever the method.
	{method: "GET", path: "/v2/foo/bar/baz", want: unknown(repo("foo/bar", pullPush))},
	{method: "DELETE", path: "/v2/foo/bar/baz", want: unknown(repo("foo/bar", pullPush|token.Delete))},
	{method: "GET", path: "/v2/foo/manifests/", want: unknown(repo("foo/manifests", pullPush))},
	{method: "GET", path: "/v2/foo/blobs/", want: unknown(repo("foo/blobs", pullPush))},
	{method: "GET", path: "/v2/foo/tags/list/", want: unknown(repo("foo/tags/list", pullPush))},
	{method: "GET", path: "/v2/foo/", want: unknown(repo("foo", pullPush))},
	{method: "GET", path: "/v2/tags/list", want: unknown(repo("tags", pullPush))},
	{method: "GET", path: "/v2/manifests/latest", want: unknown(repo("manifests", pullPush))},
	{method: "GET", path: "/v2/blobs/uploads/" + testUUID, want: unknown(repo("blobs/uploads", pullPush))},
	{method: "POST", path: "/v2/blobs/uploads/", want: unknown(repo("blobs/uploads", pullPush))},
	{method: "GET", path: "/v2/manifests/", want: unknown(repo("manifests", pullPush))},
	// Without the slash the registry redirects to the upload start.
	{method: "POST", path: "/v2/foo/blobs/uploads", want: known(repo("foo", pullPush))},
	{method: "GET", path: "/v2/foo/tags/latest", want: unknown(repo("foo/tags", pullPush))},
	{method: "GET", path: "/v2/foo/bar/list", want: unknown(repo("foo/bar", pullPush))},
	{method: "PATCH", path: "/v2/foo/uploads/" + testUUID, want: unknown(repo("foo/uploads", pullPush))},
	{method: "POST", path: "/v2/foo/bar/uploads/", want: unknown(repo("foo/bar/uploads", pullPush))},
	{method: "POST", path: "/v2/foo/blobs/bar/", want: unknown(repo("foo/blobs/bar", pullPush))},
	{method: "GET", path: "/v2/foo/manifest/latest", want: unknown(repo("foo/manifest", pullPush))},
	{method: "GET", path: "/v2/foo/blob/" + testDigest, want: unknown(repo("foo/blob", pullPush))},
	{method: "GET", path: "/v2/foo/Manifests/latest", want: nil},
	{method: "OPTIONS", path: "/v2/foo/manifests/latest", want: known(repo("foo", pullPush))},
	{method: "get", path: "/v2/foo/manifests/latest", want: known(repo("foo", pullPush))},

	// Invalid repository names.
	{method: "GET", path: "/v2/Foo/manifests/latest"},
	{method: "GET", path: "/v2/foo/Bar/manifests/latest"},
	{method: "GET", path: "/v2/foo/../bar/manifests/latest"},
	{method: "GET", path: "/v2/../manifests/latest"},
	{method: "GET", path: "/v2/foo/./manifests/latest"},
	{method: "GET", path: "/v2/foo//bar/manifests/latest"},
	{method: "GET", path: "/v2//manifests/latest"},
	{method: "GET", path: "/v2//foo/manifests/latest"},
	{method: "GET", path: "/v2/-foo/tags/list"},
	{method: "GET", path: "/v2/foo-/tags/list"},
	{method: "GET", path: "/v2/foo%2fbar/tags/list"},
	{method: "GET", path: "/v2/foo bar/tags/list"},
	{method: "GET", path: "/v2/localhost:/foo/tags/list"},
	{method: "GET", path: "/v2/localhost:5000/tags/list"},
	{method: "GET", path: "/v2/[::1]:5000/foo/tags/list"},
	{method: "GET", path: "/v2/" + strings.Repeat("a", 256) + "/manifests/latest"},
	{method: "GET", path: "/v2/foo"},
	{method: "GET", path: "/v2/_catalog/x"},
	{method: "GET", path: "/v2/_catalog/"},
	{method: "GET", path: "/v2/_catalog/tags/list"},
	{method: "GET", path: "/v2/_x/manifests/latest"},
	{method: "GET", path: "/v2//"},

	// Paths not under /v2.
	{method: "GET", path: ""},
	{method: "GET", path: "/"},
	{method: "GET", path: "/v1/foo/manifests/latest"},
	{method: "GET", path: "/v20/"},
	{method: "GET", path: "/v2x"},
	{method: "GET", path: "/v2_catalog"},
	{method: "GET", path: "/V2/"},
	{method: "GET", path: "v2/foo/manifests/latest"},
	{method: "GET", path: "/auth/token"},
	{method: "GET", path: "//v2/foo/manifests/latest"},
}

func TestParseRoute(t *testing.T) {
	for _, c := range routeCases {
		got, err := token.ParseRoute(c.method, c.path, c.mount, c.from)
		name := c.method + " " + c.path
		if c.mount != "" || c.from != "" {
			name += "?mount=" + c.mount + "&from=" + c.from
		}
		if c.want == nil {
			if !errors.Is(err, token.ErrBadRoute) {
				t.Errorf("%s: got %s, %v; want ErrBadRoute", name, fmtRoute(got), err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v; want %s", name, err, fmtRoute(*c.want))
			continue
		}
		if !sameRoute(got, *c.want) {
			t.Errorf("%s: got %s; want %s", name, fmtRoute(got), fmtRoute(*c.want))
		}
		// Wherever distribution's router matches a path, the name must be
		// the one the registry checks, with at least its actions.
		if rr, ok := distributionRoute(c.method, c.path); ok {
			checkAgainstRegistry(t, c.method, c.path, got, rr)
		}
	}
}

func sameRoute(a, b token.Route) bool {
	if a.Base != b.Base || a.Known != b.Known || a.Scope != b.Scope || (a.MountFrom == nil) != (b.MountFrom == nil) {
		return false
	}
	return a.MountFrom == nil || *a.MountFrom == *b.MountFrom
}

func fmtRoute(r token.Route) string {
	s := "{"
	if r.Base {
		s += "Base "
	}
	if r.Scope != (token.Scope{}) {
		s += r.Scope.String() + " "
	}
	if r.MountFrom != nil {
		s += "MountFrom=" + r.MountFrom.String() + " "
	}
	if r.Known {
		s += "Known"
	} else {
		s += "Unknown"
	}
	return s + "}"
}

func TestMethodActions(t *testing.T) {
	for method, want := range map[string]token.Actions{
		http.MethodGet:     token.Pull,
		http.MethodHead:    token.Pull,
		http.MethodPost:    token.Pull | token.Push,
		http.MethodPut:     token.Pull | token.Push,
		http.MethodPatch:   token.Pull | token.Push,
		http.MethodDelete:  token.Delete,
		http.MethodOptions: token.Pull | token.Push,
		"PROPFIND":         token.Pull | token.Push,
		"get":              token.Pull | token.Push,
	} {
		if got := token.MethodActions(method); got != want {
			t.Errorf("MethodActions(%q) = %v, want %v", method, got, want)
		}
	}
}

// The routes of distribution v3.1.2 (registry/api/v2/descriptors.go), in
// the order its gorilla router tries them, with the name grammar of
// github.com/distribution/reference v0.6.0 and the digest grammar of
// go-digest. The router has StrictSlash: a path differing from a route
// only by its trailing slash gets a redirect, which checks nothing.
const (
	refDomainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	refDomain          = `(?:(?:` + refDomainComponent + `(?:\.` + refDomainComponent + `)*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?)`
	refComponent       = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
	refName            = `(?:` + refDomain + `/)?` + refComponent + `(?:/` + refComponent + `)*`
	refTag             = `[\w][\w.-]{0,127}`
	refDigest          = `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`
)

var registryRoutes = []struct {
	name string
	re   *regexp.Regexp
}{
	{"base", regexp.MustCompile(`^/v2/$`)},
	{"tags", regexp.MustCompile(`^/v2/(?P<name>` + refName + `)/tags/list$`)},
	{"manifest", regexp.MustCompile(`^/v2/(?P<name>` + refName + `)/manifests/(?:` + refTag + `|` + refDigest + `)$`)},
	{"blob", regexp.MustCompile(`^/v2/(?P<name>` + refName + `)/blobs/(?:` + refDigest + `)$`)},
	{"blob-upload", regexp.MustCompile(`^/v2/(?P<name>` + refName + `)/blobs/uploads/$`)},
	{"blob-upload-chunk", regexp.MustCompile(`^/v2/(?P<name>` + refName + `)/blobs/uploads/(?:[a-zA-Z0-9-_.=]+)$`)},
	{"catalog", regexp.MustCompile(`^/v2/_catalog$`)},
}

type registryRoute struct{ route, name string }

// distributionRoute is the route and name distribution's router gives
// path, when it matches one exactly (a redirect checks nothing).
func distributionRoute(method, path string) (registryRoute, bool) {
	toggled := path + "/"
	if strings.HasSuffix(path, "/") {
		toggled = path[:len(path)-1]
	}
	for _, r := range registryRoutes {
		if m := r.re.FindStringSubmatch(path); m != nil {
			name := ""
			if i := r.re.SubexpIndex("name"); i > 0 {
				name = m[i]
			}
			return registryRoute{r.name, name}, true
		}
		if r.re.MatchString(toggled) {
			return registryRoute{}, false // a strict-slash redirect
		}
	}
	return registryRoute{}, false
}

// checkAgainstRegistry: a request the registry routes must be authorized
// for the registry's resource with at least the actions it checks
// (registry/handlers/app.go: appendAccessRecords and the catalog record).
func checkAgainstRegistry(t *testing.T, method, path string, got token.Route, rr registryRoute) {
	t.Helper()
	switch rr.route {
	case "base":
		if !got.Base {
			t.Errorf("%s %s: the registry serves the base route, ParseRoute gave %s", method, path, fmtRoute(got))
		}
	case "catalog":
		if got.Scope != catalog {
			t.Errorf("%s %s: the registry checks registry:catalog:*, ParseRoute gave %s", method, path, fmtRoute(got))
		}
	default:
		need := token.MethodActions(method)
		if got.Base || !got.Known || got.Scope.Type != token.TypeRepository || got.Scope.Name != rr.name || got.Scope.Actions&need != need {
			t.Errorf("%s %s: the registry routes %s on repository %q and checks %v; ParseRoute gave %s",
				method, path, rr.route, rr.name, need, fmtRoute(got))
		}
	}
}

// TestRegistryRouterModel pins the model of distribution's router used
// above on the cases that matter.
func TestRegistryRouterModel(t *testing.T) {
	for path, want := range map[string]*registryRoute{
		"/v2/":                                 {"base", ""},
		"/v2":                                  nil, // redirect
		"/v2/_catalog":                         {"catalog", ""},
		"/v2/blobs/manifests/manifests/latest": {"manifest", "blobs/manifests"},
		"/v2/a/tags/tags/list":                 {"tags", "a/tags"},
		"/v2/x/blobs/uploads/blobs/uploads/":   {"blob-upload", "x/blobs/uploads"},
		"/v2/x/blobs/uploads/blobs/uploads/" + testUUID: {"blob-upload-chunk", "x/blobs/uploads"},
		"/v2/localhost:5000/foo/blobs/" + testDigest:    {"blob", "localhost:5000/foo"},
		"/v2/foo/manifests/latest/":                     nil, // redirect
		"/v2/foo/blobs/uploads":                         nil, // redirect
		"/v2/foo/manifests/":                            nil,
		"/v2/foo/bar/baz":                               nil,
		"/v2/foo/referrers/" + testDigest:               nil, // not a distribution route
	} {
		got, ok := distributionRoute("GET", path)
		if want == nil && ok || want != nil && (!ok || got != *want) {
			t.Errorf("%s: model gives %v %v, want %v", path, got, ok, want)
		}
	}
}

// TestParseRouteMatchesRegistry runs every combination of route keywords
// and names up to four components deep through ParseRoute and the
// registry's router. (The same comparison against distribution v3.1.2's
// own router, five components deep, found no difference either.)
func TestParseRouteMatchesRegistry(t *testing.T) {
	words := []string{"a", "blobs", "uploads", "manifests", "tags", "list", "referrers", "_catalog", testDigest, "", "localhost:5000", "A"}
	var walk func(path string, depth int)
	checked := 0
	walk = func(path string, depth int) {
		for _, method := range []string{"GET", "PUT", "DELETE", "POST"} {
			got, err := token.ParseRoute(method, path, "", "")
			rr, ok := distributionRoute(method, path)
			if err != nil || !ok {
				continue // refused (fail closed) or not a registry route
			}
			checked++
			checkAgainstRegistry(t, method, path, got, rr)
		}
		if depth == 0 {
			return
		}
		for _, w := range words {
			walk(path+"/"+w, depth-1)
		}
	}
	walk("/v2", 4)
	if checked < 1000 {
		t.Fatalf("only %d routed paths checked", checked)
	}
}

func FuzzParseRoute(f *testing.F) {
	for _, c := range routeCases {
		f.Add(c.method, c.path, c.mount, c.from)
	}
	f.Fuzz(func(t *testing.T, method, path, mount, from string) {
		r, err := token.ParseRoute(method, path, mount, from)
		if err != nil {
			if !errors.Is(err, token.ErrBadRoute) || r.Base || r.Known || r.Scope != (token.Scope{}) || r.MountFrom != nil {
				t.Fatalf("error %v with route %s", err, fmtRoute(r))
			}
			return
		}
		if path != "/v2" && !strings.HasPrefix(path, "/v2/") {
			t.Fatalf("%q is not under /v2 but gave %s", path, fmtRoute(r))
		}
		switch {
		case r.Base:
			if r.Scope != (token.Scope{}) || r.MountFrom != nil || !r.Known {
				t.Fatalf("%s %q: base route %s", method, path, fmtRoute(r))
			}
		case r.Scope.Type == token.TypeRegistry:
			if r.Scope != catalog || r.MountFrom != nil || !r.Known {
				t.Fatalf("%s %q: catalog route %s", method, path, fmtRoute(r))
			}
		case r.Scope.Type == token.TypeRepository:
			if !token.ValidRepositoryName(r.Scope.Name) {
				t.Fatalf("%s %q: invalid name %q", method, path, r.Scope.Name)
			}
			if r.Scope.Actions == 0 || r.Scope.Actions&token.All != 0 {
				t.Fatalf("%s %q: actions %v", method, path, r.Scope.Actions)
			}
			if need := token.MethodActions(method); r.Scope.Actions&need != need {
				t.Fatalf("%s %q: actions %v lack %v", method, path, r.Scope.Actions, need)
			}
			if !r.Known && r.Scope.Actions&pullPush != pullPush {
				t.Fatalf("%s %q: unknown route with only %v", method, path, r.Scope.Actions)
			}
		default:
			t.Fatalf("%s %q: scope type %q", method, path, r.Scope.Type)
		}
		if r.MountFrom != nil {
			if method != http.MethodPost || !r.Known || mount == "" || r.MountFrom.Name != from ||
				!token.ValidRepositoryName(from) || *r.MountFrom != repo(from, token.Pull) {
				t.Fatalf("%s %q mount=%q from=%q: MountFrom %s", method, path, mount, from, fmtRoute(r))
			}
		}
		if rr, ok := distributionRoute(method, path); ok {
			checkAgainstRegistry(t, method, path, r, rr)
		}
	})
}

func TestRouteManifestReference(t *testing.T) {
	for path, want := range map[string]string{
		"/v2/team/app/manifests/v1.2":          "v1.2",
		"/v2/team/app/manifests/sha256:abc123": "sha256:abc123",
		"/v2/team/app/blobs/sha256:abc123":     "",
		"/v2/team/app/tags/list":               "",
		"/v2/manifests/manifests/latest":       "latest",
		"/v2/team/app/manifests/":              "",
	} {
		r, err := token.ParseRoute("PUT", path, "", "")
		if err != nil && want != "" {
			t.Fatalf("%s: %v", path, err)
		}
		if r.Manifest != want {
			t.Errorf("%s: reference %q, want %q", path, r.Manifest, want)
		}
	}
}
