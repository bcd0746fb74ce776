package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestMigratedConfigs serves a registry through a policy read straight
// from a docker_auth config and an alauda config (the migrate package's
// realistic test configs), and checks what their users can do against
// what those servers would have allowed.
func TestMigratedConfigs(t *testing.T) {
	dockerAuth, _ := filepath.Abs("../migrate/testdata/docker_auth.yml")
	alauda, _ := filepath.Abs("../migrate/testdata/alauda.yml")
	regPort, proxyPort := FreePort(), FreePort()
	startV3(t, shared, registrySetup{port: regPort})
	migrated := fmt.Sprintf(`registry_auth migrated {
		service %s
		policy_file %s docker_auth
		policy_file %s alauda
	}
	registry_auth {`, service, dockerAuth, alauda)
	site := fmt.Sprintf("\nhttp://localhost:%d {\n\tregistry_auth_proxy {\n\t\tpolicy migrated\n\t\tupstream localhost:%d\n\t}\n}\n", proxyPort, regPort)
	if status, body := loadCaddyfile(t, strings.Replace(shared.caddyfile(site), "registry_auth {", migrated, 1)); status != http.StatusOK {
		t.Fatalf("loading the config: %d %s", status, body)
	}
	t.Cleanup(func() { loadCaddyfile(t, shared.caddyfile("")) })
	proxy := &registry{family: "v3", host: fmt.Sprintf("localhost:%d", proxyPort)}
	if err := WaitHTTP("http://"+proxy.host+"/v2/", http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}

	as := func(user, password string) remote.Option {
		if user == "" {
			return remote.WithAuth(authn.Anonymous)
		}
		return remote.WithAuth(&authn.Basic{Username: user, Password: password})
	}
	// A new image each time: a push of what is there already is skipped
	// after a pull-scoped check, and would prove nothing.
	pushAs := func(repo, user, password string) error {
		return remote.Write(ref(t, proxy, repo+":v1"), randomImage(t), as(user, password))
	}
	pullAs := func(repo, user, password string) error {
		_, err := remote.Image(ref(t, proxy, repo+":v1"), as(user, password))
		return err
	}
	ok := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// docker_auth: "${account}/*" for /.+/, the ci robot pulls only (its
	// own entry comes first), team labels, anonymous pulls of public/*.
	ok("alice pushes alice/app", pushAs("alice/app", "alice", "alice-secret"))
	ok("ci pulls alice/app", pullAs("alice/app", "ci", "ci-secret"))
	wantRefused(t, pushAs("ci/app", "ci", "ci-secret"), "ci pushing its own namespace (docker_auth's first match gives it pull only)")
	wantRefused(t, pushAs("bob/app", "alice", "alice-secret"), "alice pushing bob's namespace")
	ok("admin pushes web/app", pushAs("web/app", "admin", "admin-secret"))
	ok("bob, of team web, pulls web/app", pullAs("web/app", "bob", "bob-secret"))
	wantRefused(t, pullAs("web/app", "carol", "carol-secret"), "carol, of no team, pulling web/app")
	// acl[5] (team web pushes web/*) comes before acl[6] (teams pull), so
	// docker_auth lets bob push web/app, and so does the translation.
	ok("bob, of team web, pushes web/app", pushAs("web/app", "bob", "bob-secret"))
	wantRefused(t, pushAs("ops/app", "bob", "bob-secret"), "bob pushing ops/app (his team ops pulls only)")
	ok("admin pushes public/app", pushAs("public/app", "admin", "admin-secret"))
	ok("anonymous pulls public/app", pullAs("public/app", "", ""))
	// admin comes first with "*": later entries that grant less take
	// nothing from it.
	ok("admin pushes mirror/ubuntu", pushAs("mirror/ubuntu", "admin", "admin-secret"))
	ok("carol pulls mirror/ubuntu", pullAs("mirror/ubuntu", "carol", "carol-secret"))
	wantRefused(t, pushAs("mirror/ubuntu", "carol", "carol-secret"), "carol pushing mirror/ubuntu (pull only)")
	wantRefused(t, pullAs("alice/app", "", ""), "an anonymous pull of alice/app")
	wantRefused(t, pushAs("alice/app", "alice", "wrong"), "alice with a wrong password")
	// alauda: a plaintext and a bcrypt user, exact and regex targets.
	ok("user1 pushes usersrepo/test1", pushAs("usersrepo/test1", "user1", "password1"))
	ok("user2 pulls usersrepo/test1", pullAs("usersrepo/test1", "user2", "user2-secret"))
	wantRefused(t, pushAs("usersrepo/test1", "user2", "user2-secret"), "user2 pushing usersrepo/test1 (pull only)")
	ok("user2 pushes team2/app", pushAs("team2/app", "user2", "user2-secret"))
	wantRefused(t, pushAs("team2/app/extra", "user2", "user2-secret"), "user2 pushing past its anchored regex")
	// alauda finds a regex anywhere in the name: _anonymous's public/.*
	// matches x/public/y, for anonymous and for user2, none of whose own
	// rules matches it.
	ok("admin pushes x/public/y", pushAs("x/public/y", "admin", "admin-secret"))
	ok("anonymous pulls x/public/y", pullAs("x/public/y", "", ""))
	ok("user2 pulls x/public/y through _anonymous's rule", pullAs("x/public/y", "user2", "user2-secret"))
}
