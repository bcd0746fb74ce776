package registryauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/go-ldap/ldap/v3"

	"github.com/regauth/caddy-registry-auth/policy"
)

func init() { caddy.RegisterModule(LDAPAuthenticator{}) }

// LDAPAuthenticator checks passwords by binding to an LDAP directory
// (OpenLDAP, Active Directory, ...), in one of two ways:
//   - direct bind: user_dn is a DN template such as
//     "uid={user},ou=people,dc=example,dc=org"; a name the directory does
//     not have fails like a wrong password;
//   - search, then bind: the service account (bind_dn, bind_password)
//     searches base_dn with user_filter for exactly one entry, whose DN
//     then binds with the password; a name with no entry is left to the
//     next authenticator.
//
// Groups come from an attribute of the user's entry that lists group DNs
// (group_attribute, e.g. memberOf; each DN's first value is the name),
// and/or from a search for group entries (group_base_dn, group_filter,
// group_name_attribute). The user name is escaped wherever it is put in a
// DN or filter. Connections are pooled; every operation is bounded by the
// timeout, and a directory that cannot answer refuses the login.
type LDAPAuthenticator struct {
	// URL of the directory: ldaps://host[:636], or ldap://host[:389] with
	// starttls (plain ldap:// without it only to a loopback address).
	URL string `json:"url"`
	// StartTLS upgrades an ldap:// connection before anything is sent.
	StartTLS bool `json:"starttls,omitempty"`
	// CAFile is a PEM file of the certificates to trust for the directory
	// instead of the system's. The certificate is always verified.
	CAFile string `json:"ca_file,omitempty"`
	// Timeout bounds connecting and each operation. Default 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// PoolSize is how many idle connections are kept. Default 4.
	PoolSize int `json:"pool_size,omitempty"`

	// UserDN is the DN template of direct bind; "{user}" is the name.
	UserDN string `json:"user_dn,omitempty"`
	// BindDN and BindPassword are the service account that searches.
	// The password may be a placeholder such as {env.LDAP_PASSWORD}.
	BindDN       string `json:"bind_dn,omitempty"`
	BindPassword string `json:"bind_password,omitempty"`
	// BaseDN is where users are searched for.
	BaseDN string `json:"base_dn,omitempty"`
	// UserFilter finds a user's entry. Default "(uid={user})".
	UserFilter string `json:"user_filter,omitempty"`
	// UserAttribute of the user's entry holds the login name, which must
	// equal the name given exactly (directories compare names ignoring
	// case and surrounding spaces; this plugin's rules do not). Default
	// "uid".
	UserAttribute string `json:"user_attribute,omitempty"`

	// GroupAttribute of the user's entry lists the DNs of the user's
	// groups (memberOf with OpenLDAP's memberof overlay or Active
	// Directory).
	GroupAttribute string `json:"group_attribute,omitempty"`
	// GroupBaseDN is where groups are searched for, with GroupFilter
	// ("{dn}" is the user's DN, "{user}" the name; default
	// "(member={dn})"). Each match's GroupNameAttribute (default "cn")
	// names a group.
	GroupBaseDN        string `json:"group_base_dn,omitempty"`
	GroupFilter        string `json:"group_filter,omitempty"`
	GroupNameAttribute string `json:"group_name_attribute,omitempty"`

	timeout time.Duration
	tls     *tls.Config
	pool    chan *ldap.Conn
	closed  *atomic.Bool // after Cleanup, connections are closed, not pooled
}

// LDAP defaults.
const (
	DefaultLDAPPoolSize    = 4
	DefaultLDAPUserFilter  = "(uid={user})"
	DefaultLDAPGroupFilter = "(member={dn})"
)

// CaddyModule returns the Caddy module information.
func (LDAPAuthenticator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "registry_auth.authenticators.ldap", New: func() caddy.Module { return new(LDAPAuthenticator) }}
}

// Provision checks the configuration; nothing connects yet, so a
// directory that is down does not stop Caddy from starting.
func (a *LDAPAuthenticator) Provision(caddy.Context) error {
	a.URL, a.BindPassword = expand(a.URL), expand(a.BindPassword)
	u, err := url.Parse(a.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("url: want ldap://host or ldaps://host, got %q", a.URL)
	}
	switch {
	case u.Scheme == "ldaps" && !a.StartTLS:
	case u.Scheme == "ldap" && (a.StartTLS || isLoopback(u.Hostname())):
	case u.Scheme == "ldap":
		return fmt.Errorf("url: plain ldap:// sends passwords in clear; use ldaps:// or starttls (plain is allowed to a loopback address only)")
	default:
		return fmt.Errorf("url: want ldap:// or ldaps://, got %q (starttls goes with ldap://)", a.URL)
	}
	if a.tls, err = tlsConfigFor(a.CAFile, u.Hostname()); err != nil {
		return err
	}
	if a.timeout = time.Duration(a.Timeout); a.timeout == 0 {
		a.timeout = DefaultBackendTimeout
	}
	if a.timeout < 0 {
		return fmt.Errorf("timeout: negative")
	}
	if a.PoolSize == 0 {
		a.PoolSize = DefaultLDAPPoolSize
	}
	if a.PoolSize < 0 {
		return fmt.Errorf("pool_size: negative")
	}
	if a.UserAttribute == "" {
		a.UserAttribute = "uid"
	}
	a.pool = make(chan *ldap.Conn, a.PoolSize)
	a.closed = new(atomic.Bool)
	switch {
	case a.UserDN != "" && a.BaseDN != "":
		return fmt.Errorf("user_dn (direct bind) and base_dn (search, then bind) exclude each other")
	case a.UserDN != "":
		if !strings.Contains(a.UserDN, "{user}") {
			return fmt.Errorf("user_dn: %q has no {user}", a.UserDN)
		}
		if _, err := ldap.ParseDN(strings.ReplaceAll(a.UserDN, "{user}", "x")); err != nil || !strings.Contains(a.UserDN, "=") {
			return fmt.Errorf("user_dn: %q is not a DN template (for Active Directory user principal names, search then bind: base_dn, user_filter \"(sAMAccountName={user})\", user_attribute sAMAccountName)", a.UserDN)
		}
	case a.BaseDN != "":
		if a.BindDN == "" || a.BindPassword == "" {
			return fmt.Errorf("base_dn (search, then bind) needs bind_dn and bind_password, the service account that searches (is the placeholder's variable set?)")
		}
		if a.UserFilter == "" {
			a.UserFilter = DefaultLDAPUserFilter
		}
		if !strings.Contains(a.UserFilter, "{user}") {
			return fmt.Errorf("user_filter: %q has no {user}", a.UserFilter)
		}
		if _, err := ldap.CompileFilter(strings.ReplaceAll(a.UserFilter, "{user}", "x")); err != nil {
			return fmt.Errorf("user_filter: %v", err)
		}
	default:
		return fmt.Errorf("set user_dn (direct bind) or base_dn (search, then bind)")
	}
	if a.GroupBaseDN != "" {
		if a.GroupFilter == "" {
			a.GroupFilter = DefaultLDAPGroupFilter
		}
		if a.GroupNameAttribute == "" {
			a.GroupNameAttribute = "cn"
		}
		f := strings.NewReplacer("{dn}", "x", "{user}", "x").Replace(a.GroupFilter)
		if _, err := ldap.CompileFilter(f); err != nil {
			return fmt.Errorf("group_filter: %v", err)
		}
	}
	return nil
}

// Cleanup closes the pooled connections.
func (a *LDAPAuthenticator) Cleanup() error {
	if a.closed == nil {
		return nil // never provisioned
	}
	a.closed.Store(true)
	for {
		select {
		case c := <-a.pool:
			c.Close()
		default:
			return nil
		}
	}
}

// Authenticate binds as the user and reads the user's groups.
func (a *LDAPAuthenticator) Authenticate(ctx context.Context, name, password string) (Identity, error) {
	// An empty password would be an unauthenticated bind, which LDAP
	// servers answer with success.
	if password == "" {
		return Identity{}, policy.ErrBadCredentials
	}
	// One deadline for the whole login, retry included.
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if conn := a.idle(); conn != nil {
		id, err := a.attempt(ctx, conn, false, name, password)
		if !a.release(conn, err) || ctx.Err() != nil {
			return id, err
		}
		// The directory closed the idle connection (a restart, an idle
		// timeout): try once more on a new one in the time left.
	}
	conn, err := a.dial(ctx)
	if err != nil {
		return Identity{}, err
	}
	id, err := a.attempt(ctx, conn, a.StartTLS, name, password)
	a.release(conn, err)
	return id, err
}

// attempt runs one login on conn. The connection is closed when ctx ends,
// so nothing (a stalled TLS handshake included) outlives the deadline.
func (a *LDAPAuthenticator) attempt(ctx context.Context, conn *ldap.Conn, startTLS bool, name, password string) (Identity, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetTimeout(time.Until(dl))
	}
	if startTLS {
		if err := conn.StartTLS(a.tls); err != nil {
			return Identity{}, fmt.Errorf("starttls with %s: %w", a.URL, err)
		}
	}
	return a.authenticate(conn, name, password)
}

func (a *LDAPAuthenticator) authenticate(conn *ldap.Conn, name, password string) (Identity, error) {
	var dn string
	if a.UserDN != "" {
		dn = strings.ReplaceAll(a.UserDN, "{user}", ldap.EscapeDN(name))
	} else {
		if err := conn.Bind(a.BindDN, a.BindPassword); err != nil {
			return Identity{}, fmt.Errorf("bind as the service account %q: %w", a.BindDN, err)
		}
		filter := strings.ReplaceAll(a.UserFilter, "{user}", ldap.EscapeFilter(name))
		res, err := conn.Search(ldap.NewSearchRequest(a.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, a.seconds(), false, filter, []string{a.UserAttribute}, nil))
		switch {
		case err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
			return Identity{}, fmt.Errorf("search for the user: %w", err)
		case len(res.Entries) == 0:
			return Identity{}, ErrUnknownUser
		case len(res.Entries) > 1:
			return Identity{}, fmt.Errorf("user_filter matches more than one entry for a name; refusing to guess")
		}
		if !spelledAs(res.Entries[0], a.UserAttribute, name) {
			return Identity{}, policy.ErrBadCredentials
		}
		dn = res.Entries[0].DN
	}
	if err := conn.Bind(dn, password); err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return Identity{}, policy.ErrBadCredentials
		}
		return Identity{}, fmt.Errorf("bind as the user: %w", err)
	}
	if a.UserDN != "" {
		res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, a.seconds(), false, "(objectClass=*)", []string{a.UserAttribute}, nil))
		if err != nil {
			return Identity{}, fmt.Errorf("read %s of the user: %w", a.UserAttribute, err)
		}
		if len(res.Entries) != 1 || !spelledAs(res.Entries[0], a.UserAttribute, name) {
			return Identity{}, policy.ErrBadCredentials
		}
	}
	groups, err := a.groups(conn, dn, name)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Name: name, Groups: groups}, nil
}

// spelledAs reports whether the entry's naming attribute holds name
// exactly. Directories match names ignoring case and surrounding spaces;
// taking "ALICE " as alice would give one user many names, each dodging
// "user:" rules and the throttle.
func spelledAs(e *ldap.Entry, attribute, name string) bool {
	for _, v := range e.GetAttributeValues(attribute) {
		if v == name {
			return true
		}
	}
	return false
}

// groups reads the user's groups, bound as the user (who may read their
// own entry) or, when there is one, as the service account.
func (a *LDAPAuthenticator) groups(conn *ldap.Conn, dn, name string) ([]string, error) {
	if a.GroupAttribute == "" && a.GroupBaseDN == "" {
		return nil, nil
	}
	if a.BindDN != "" {
		if err := conn.Bind(a.BindDN, a.BindPassword); err != nil {
			return nil, fmt.Errorf("bind as the service account %q: %w", a.BindDN, err)
		}
	}
	var groups []string
	if a.GroupAttribute != "" {
		res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, a.seconds(), false, "(objectClass=*)", []string{a.GroupAttribute}, nil))
		if err != nil {
			return nil, fmt.Errorf("read %s of the user: %w", a.GroupAttribute, err)
		}
		for _, e := range res.Entries {
			for _, v := range e.GetAttributeValues(a.GroupAttribute) {
				if g, err := ldap.ParseDN(v); err == nil && len(g.RDNs) > 0 && len(g.RDNs[0].Attributes) > 0 {
					groups = append(groups, g.RDNs[0].Attributes[0].Value)
				}
			}
		}
	}
	if a.GroupBaseDN != "" {
		filter := strings.NewReplacer("{dn}", ldap.EscapeFilter(dn), "{user}", ldap.EscapeFilter(name)).Replace(a.GroupFilter)
		res, err := conn.Search(ldap.NewSearchRequest(a.GroupBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, MaxGroups+1, a.seconds(), false, filter, []string{a.GroupNameAttribute}, nil))
		if err != nil {
			return nil, fmt.Errorf("search for the user's groups: %w", err)
		}
		for _, e := range res.Entries {
			groups = append(groups, e.GetAttributeValues(a.GroupNameAttribute)...)
		}
	}
	return groups, nil
}

// idle takes a pooled connection, if there is one.
func (a *LDAPAuthenticator) idle() *ldap.Conn {
	for {
		select {
		case c := <-a.pool:
			if !c.IsClosing() {
				return c
			}
			c.Close()
		default:
			return nil
		}
	}
}

// dial connects (and for ldaps:// completes the TLS handshake) by ctx's
// deadline.
func (a *LDAPAuthenticator) dial(ctx context.Context) (*ldap.Conn, error) {
	dialer := &net.Dialer{}
	if dl, ok := ctx.Deadline(); ok {
		dialer.Deadline = dl
	}
	c, err := ldap.DialURL(a.URL, ldap.DialWithDialer(dialer), ldap.DialWithTLSConfig(a.tls))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", a.URL, err)
	}
	return c, nil
}

// release keeps a connection for the next login, unless the error says
// the connection itself failed: then it is closed and release reports it.
func (a *LDAPAuthenticator) release(c *ldap.Conn, err error) (broken bool) {
	var lerr *ldap.Error
	broken = errors.As(err, &lerr) && (lerr.ResultCode == ldap.ErrorNetwork ||
		lerr.ResultCode == ldap.ErrorUnexpectedMessage || lerr.ResultCode == ldap.ErrorUnexpectedResponse ||
		lerr.ResultCode == ldap.ErrorMalformedPacket)
	if broken || c.IsClosing() || a.closed.Load() {
		c.Close()
		return broken
	}
	select {
	case a.pool <- c:
	default:
		c.Close()
	}
	if a.closed.Load() {
		_ = a.Cleanup() // Cleanup ran meanwhile: do not leave c pooled
	}
	return false
}

// seconds is the timeout as an LDAP time limit (whole seconds, at least 1).
func (a *LDAPAuthenticator) seconds() int {
	return int((a.timeout + time.Second - 1) / time.Second)
}

// Interface guards.
var (
	_ Authenticator         = (*LDAPAuthenticator)(nil)
	_ caddy.Provisioner     = (*LDAPAuthenticator)(nil)
	_ caddy.CleanerUpper    = (*LDAPAuthenticator)(nil)
	_ caddyfile.Unmarshaler = (*LDAPAuthenticator)(nil)
)
