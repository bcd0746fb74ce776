package e2e

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// login returns go-containerregistry's credentials for a test user, or
// anonymous for "".
func login(user string) authn.Authenticator {
	if user == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: user, Password: passwords[user]}
}

// recorder remembers every request a client sends and its status.
type recorder struct {
	mu    sync.Mutex
	calls []string // "METHOD path?query STATUS"
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	status := "error"
	if err == nil {
		status = http.StatusText(resp.StatusCode)
	}
	r.mu.Lock()
	r.calls = append(r.calls, req.Method+" "+req.URL.RequestURI()+" "+status)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) matching(method, substr string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.calls {
		if strings.HasPrefix(c, method+" ") && strings.Contains(c, substr) {
			out = append(out, c)
		}
	}
	return out
}

func ref(t *testing.T, reg *registry, repoTag string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(reg.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func push(t *testing.T, reg *registry, repoTag, user string, img v1.Image, opts ...remote.Option) error {
	t.Helper()
	return remote.Write(ref(t, reg, repoTag), img, append(opts, remote.WithAuth(login(user)))...)
}

// pull fetches an image and all its layers as a test user, returning its
// digest.
func pull(t *testing.T, reg *registry, repoTag, user string) (v1.Hash, error) {
	t.Helper()
	return pullAs(t, reg, repoTag, login(user))
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// wantRefused asserts that a client call failed with 401 or 403 from the
// registry or the token endpoint: refused, not broken.
func wantRefused(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want it refused", what)
	}
	var terr *transport.Error
	if !errors.As(err, &terr) {
		t.Fatalf("%s failed with %v, want a 401 or 403 answer", what, err)
	}
	if terr.StatusCode != http.StatusUnauthorized && terr.StatusCode != http.StatusForbidden {
		t.Fatalf("%s failed with status %d (%v), want 401 or 403", what, terr.StatusCode, err)
	}
}

// wrongPassword is user with a password that is not theirs.
func wrongPassword(user string) *authn.Basic {
	return &authn.Basic{Username: user, Password: "not-the-password"}
}
