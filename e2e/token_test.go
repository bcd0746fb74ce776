package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestTokenMode runs the token-mode matrix against both registry
// families, each trusting the one key and configuration of one Caddy.
func TestTokenMode(t *testing.T) {
	for _, family := range []string{"v3", "v2.8"} {
		t.Run(family, func(t *testing.T) {
			reg := starters[family](t, shared, registrySetup{realm: shared.realm})
			tokenMatrix(t, reg)
		})
	}
}

func tokenMatrix(t *testing.T, reg *registry) {
	img := randomImage(t)
	public := randomImage(t)

	t.Run("push by a user with push", func(t *testing.T) {
		if err := push(t, reg, "alice/app:v1", "alice", img); err != nil {
			t.Fatal(err)
		}
		if err := push(t, reg, "public/base:v1", "alice", public); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("pull by a pull-only user", func(t *testing.T) {
		got, err := pull(t, reg, "alice/app:v1", "reader")
		if err != nil {
			t.Fatal(err)
		}
		if want := digest(t, img); got != want {
			t.Fatalf("pulled %s, pushed %s", got, want)
		}
	})
	t.Run("push by a pull-only user is denied", func(t *testing.T) {
		wantRefused(t, push(t, reg, "alice/app:v2", "reader", randomImage(t)), "push by reader")
	})
	t.Run("anonymous pull of a public repository", func(t *testing.T) {
		got, err := pull(t, reg, "public/base:v1", "")
		if err != nil {
			t.Fatal(err)
		}
		if want := digest(t, public); got != want {
			t.Fatalf("pulled %s, pushed %s", got, want)
		}
	})
	t.Run("anonymous pull of a private repository is denied", func(t *testing.T) {
		_, err := pull(t, reg, "alice/app:v1", "")
		wantRefused(t, err, "anonymous pull of alice/app")
	})
	t.Run("wrong password is denied", func(t *testing.T) {
		_, err := remote.Image(ref(t, reg, "alice/app:v1"), remote.WithAuth(wrongPassword("alice")))
		wantRefused(t, err, "pull with a wrong password")
		_, err = remote.Image(ref(t, reg, "alice/app:v1"), remote.WithAuth(wrongPassword("nobody")))
		wantRefused(t, err, "pull as an unknown user")
	})
	t.Run("catalog by admin", func(t *testing.T) {
		repos, err := remote.Catalog(context.Background(), registryName(t, reg), remote.WithAuth(login("admin")))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"alice/app", "public/base"} {
			if !slices.Contains(repos, want) {
				t.Fatalf("catalog %v lacks %s", repos, want)
			}
		}
		repos, err = remote.Catalog(context.Background(), registryName(t, reg), remote.WithAuth(login("alice")))
		if !reg.proxied {
			wantRefused(t, err, "catalog by alice")
			return
		}
		// Through the proxy alice gets her own catalog.
		if err != nil || !slices.Contains(repos, "alice/app") {
			t.Fatalf("alice's catalog through the proxy: %v, %v", repos, err)
		}
		for _, r := range repos {
			if !strings.HasPrefix(r, "alice/") && !strings.HasPrefix(r, "public/") {
				t.Fatalf("alice's catalog %v names %s, which she may not pull", repos, r)
			}
		}
	})
	t.Run("cross-repository blob mount", func(t *testing.T) {
		src, err := remote.Image(ref(t, reg, "alice/app:v1"), remote.WithAuth(login("alice")))
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		if err := push(t, reg, "alice/copy:v1", "alice", src, remote.WithTransport(rec)); err != nil {
			t.Fatal(err)
		}
		mounts := rec.matching("POST", "mount=")
		if len(mounts) == 0 {
			t.Fatalf("no mount was attempted; requests: %v", rec.calls)
		}
		for _, m := range mounts {
			if !strings.HasSuffix(m, "Created") {
				t.Fatalf("mount not granted: %s (all: %v)", m, rec.calls)
			}
		}
		if uploads := rec.matching("PATCH", "/blobs/uploads/"); len(uploads) != 0 {
			t.Fatalf("blobs were uploaded again: %v", uploads)
		}
		got, err := pull(t, reg, "alice/copy:v1", "alice")
		if err != nil {
			t.Fatal(err)
		}
		if want := digest(t, img); got != want {
			t.Fatalf("copy is %s, source %s", got, want)
		}
	})
	t.Run("delete by admin", func(t *testing.T) {
		victim := randomImage(t)
		if err := push(t, reg, "alice/doomed:v1", "alice", victim); err != nil {
			t.Fatal(err)
		}
		byDigest := ref(t, reg, "alice/doomed@"+digest(t, victim).String())
		wantRefused(t, remote.Delete(byDigest, remote.WithAuth(login("alice"))), "delete by alice")
		if err := remote.Delete(byDigest, remote.WithAuth(login("admin"))); err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Head(byDigest, remote.WithAuth(login("admin"))); err == nil {
			t.Fatal("the deleted manifest is still there")
		}
	})
}

func registryName(t *testing.T, reg *registry) name.Registry {
	t.Helper()
	r, err := name.NewRegistry(reg.host, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
