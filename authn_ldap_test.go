package registryauth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// The LDAP authenticator against a real slapd is tested in e2e; these are
// the checks that need no directory.
func TestLDAPProvision(t *testing.T) {
	for name, tc := range map[string]struct {
		a    LDAPAuthenticator
		want string
	}{
		"direct bind":          {LDAPAuthenticator{URL: "ldaps://ldap.example.com", UserDN: "uid={user},dc=x"}, ""},
		"search":               {LDAPAuthenticator{URL: "ldap://ldap.example.com", StartTLS: true, BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p"}, ""},
		"plain to loopback":    {LDAPAuthenticator{URL: "ldap://127.0.0.1:3389", BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p"}, ""},
		"plain over a network": {LDAPAuthenticator{URL: "ldap://ldap.example.com", BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p"}, "in clear"},
		"starttls on ldaps":    {LDAPAuthenticator{URL: "ldaps://ldap.example.com", StartTLS: true, BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p"}, "starttls goes with ldap://"},
		"other scheme":         {LDAPAuthenticator{URL: "http://ldap.example.com", BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p"}, "want ldap://"},
		"no mode":              {LDAPAuthenticator{URL: "ldaps://ldap.example.com"}, "set user_dn"},
		"both modes":           {LDAPAuthenticator{URL: "ldaps://l", UserDN: "uid={user}", BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p"}, "exclude each other"},
		"dn without {user}":    {LDAPAuthenticator{URL: "ldaps://l", UserDN: "uid=alice,dc=x"}, "has no {user}"},
		"filter without user":  {LDAPAuthenticator{URL: "ldaps://l", BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p", UserFilter: "(uid=alice)"}, "has no {user}"},
		"bad filter":           {LDAPAuthenticator{URL: "ldaps://l", BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p", UserFilter: "(uid={user}"}, "user_filter"},
		"bad group filter":     {LDAPAuthenticator{URL: "ldaps://l", BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p", GroupBaseDN: "dc=g", GroupFilter: "member={dn})("}, "group_filter"},
		"missing ca file":      {LDAPAuthenticator{URL: "ldaps://l", BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p", CAFile: "/nonexistent.pem"}, "ca_file"},
		"no service account":   {LDAPAuthenticator{URL: "ldaps://l", BaseDN: "dc=x", BindDN: "cn=s"}, "needs bind_dn and bind_password"},
		"a UPN template":       {LDAPAuthenticator{URL: "ldaps://l", UserDN: "{user}@corp.example.com"}, "not a DN template"},
		"negative timeout":     {LDAPAuthenticator{URL: "ldaps://l", BaseDN: "dc=x", BindDN: "cn=s", BindPassword: "p", Timeout: -1}, "timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.a.Provision(caddy.Context{})
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// An empty password is refused before anything is sent: LDAP servers
// take an empty-password bind as an anonymous one and answer success.
func TestLDAPEmptyPasswordNeverSent(t *testing.T) {
	a := LDAPAuthenticator{URL: "ldap://127.0.0.1:1", UserDN: "uid={user},dc=x", Timeout: caddy.Duration(time.Second)}
	if err := a.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), "alice", ""); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("got %v, want bad credentials without dialling", err)
	}
	// With a password it does dial, and a refused connection is an error
	// that refuses the login, not an answer about the user.
	_, err := a.Authenticate(context.Background(), "alice", "pw")
	if err == nil || errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrUnknownUser) {
		t.Fatalf("got %v, want a connection error", err)
	}
}
