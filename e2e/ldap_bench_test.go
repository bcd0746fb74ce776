package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	registryauth "github.com/regauth/caddy-registry-auth"
	"github.com/regauth/caddy-registry-auth/policy"
)

// BenchmarkLDAPLogin measures one LDAP login (search as the service
// account, bind as the user, group search) against a real slapd: on the
// authenticator's pooled connections, on a new connection each time (what
// a server without a pool does), both in clear to loopback and over TLS,
// and answered by the credential cache.
// Run: cd e2e && go test -run '^$' -bench LDAPLogin -benchtime 3s
func BenchmarkLDAPLogin(b *testing.B) {
	dir, err := StartSlapd(b.TempDir(), ldapUsers, ldapGroups)
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	newAuthenticator := func(url string) *registryauth.LDAPAuthenticator {
		a := &registryauth.LDAPAuthenticator{URL: url, CAFile: dir.CAFile, BindDN: LDAPAdminDN, BindPassword: LDAPAdminPassword, BaseDN: LDAPPeopleDN, GroupBaseDN: LDAPGroupsDN}
		if err := a.Provision(caddy.Context{}); err != nil {
			b.Fatal(err)
		}
		return a
	}
	login := func(b *testing.B, a registryauth.Authenticator) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if id, err := a.Authenticate(context.Background(), "ldev", ldapNames.pw["ldev"]); err != nil || len(id.Groups) == 0 {
					b.Errorf("%+v, %v", id, err)
					return
				}
			}
		})
	}
	for _, u := range []struct{ name, url string }{{"ldap", dir.URL}, {"ldaps", dir.LDAPSURL}} {
		b.Run(u.name+"/pooled", func(b *testing.B) { login(b, newAuthenticator(u.url)) })
		b.Run(u.name+"/new-connection-each", func(b *testing.B) {
			a := newAuthenticator(u.url)
			_ = a.Cleanup() // after Cleanup nothing is pooled: every login dials
			login(b, a)
		})
	}
	b.Run("credential-cache-hit", func(b *testing.B) {
		cache := policy.NewCredentialCache(registryauth.DefaultCredentialCacheTTL, 10000)
		binding := []byte("authenticators\x00ldap")
		cache.Remember(cache.Key("ldev", ldapNames.pw["ldev"], binding), policy.Identity{Name: "ldev", Groups: []string{"devs"}}, false, time.Time{}, time.Now())
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, ok := cache.Recall(cache.Key("ldev", ldapNames.pw["ldev"], binding), time.Now()); !ok {
					b.Error("miss")
					return
				}
			}
		})
	})
}
