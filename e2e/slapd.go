package e2e

import (
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // {SSHA} is what OpenLDAP stores; strength is no concern in a test directory
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The Debian slapd package's server binary. CI installs slapd and
// ldap-utils; the tests fail, never skip, without it.
const SlapdBinary = "/usr/sbin/slapd"

// The test directory's fixed names.
const (
	LDAPSuffix        = "dc=example,dc=org"
	LDAPAdminDN       = "cn=admin," + LDAPSuffix
	LDAPAdminPassword = "slapd-admin-secret"
	LDAPPeopleDN      = "ou=people," + LDAPSuffix
	LDAPGroupsDN      = "ou=groups," + LDAPSuffix
)

// LDAPUser is an inetOrgPerson under LDAPPeopleDN, named uid=UID.
type LDAPUser struct{ UID, Password string }

// LDAPGroup is a groupOfNames under LDAPGroupsDN whose members are the
// named users (by uid).
type LDAPGroup struct {
	CN      string
	Members []string
}

// Slapd is a private OpenLDAP server on a loopback port, configured with
// an old-style slapd.conf in its own directory: an mdb database for
// LDAPSuffix, the memberof overlay (so user entries carry memberOf), and
// the rootdn LDAPAdminDN. It runs in the foreground as a child process.
type Slapd struct {
	URL  string // ldap://127.0.0.1:<port>, with StartTLS offered
	Port int
	// LDAPSURL is ldaps://localhost:<port>, and CAFile the PEM of the CA
	// that signed the server's certificate (for localhost and 127.0.0.1).
	LDAPSURL  string
	LDAPSPort int
	CAFile    string
	// MemberOf is true when the overlay filled in the users' memberOf.
	MemberOf bool

	dir  string
	conf string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

// StartSlapd configures a directory under dir, starts slapd on a free
// port and loads the users and groups (through LDAP as the rootdn, so that
// the memberof overlay sees the groups being made).
func StartSlapd(dir string, users []LDAPUser, groups []LDAPGroup) (*Slapd, error) {
	if _, err := os.Stat(SlapdBinary); err != nil {
		return nil, fmt.Errorf("slapd missing (%v): install it with `apt-get install slapd ldap-utils`", err)
	}
	s := &Slapd{dir: dir, conf: filepath.Join(dir, "slapd.conf"), Port: FreePort(), LDAPSPort: FreePort()}
	s.URL = fmt.Sprintf("ldap://127.0.0.1:%d", s.Port)
	s.LDAPSURL = fmt.Sprintf("ldaps://localhost:%d", s.LDAPSPort)
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	var err error
	if s.CAFile, err = writeTestPKI(dir); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/server.pem
TLSCertificateKeyFile %[1]s/server.key

database mdb
maxsize 16777216
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
overlay memberof
`, dir, LDAPSuffix, LDAPAdminDN, LDAPAdminPassword)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if s.log, err = os.Create(filepath.Join(dir, "slapd.log")); err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.load(users, groups); err != nil {
		s.Close()
		return nil, fmt.Errorf("loading the directory: %v", err)
	}
	return s, nil
}

// Start runs slapd and waits until it answers a bind as the rootdn.
func (s *Slapd) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("slapd is running")
	}
	// -d 0: stay in the foreground (the test owns the process) and log
	// nothing but errors.
	cmd := exec.Command(SlapdBinary, "-h", fmt.Sprintf("ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/", s.Port, s.LDAPSPort), "-f", s.conf, "-d", "0")
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("slapd exited at start: %s", s.tail())
		default:
		}
		c, err := s.admin()
		if err == nil {
			c.Close()
			return nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	s.stopLocked()
	return fmt.Errorf("slapd did not answer within 15s (%v): %s", last, s.tail())
}

// Stop kills slapd and waits for it to exit: the port refuses connections.
func (s *Slapd) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Slapd) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart stops slapd and starts it again on the same port and database.
func (s *Slapd) Restart() error {
	s.Stop()
	return s.Start()
}

// Pause freezes slapd (SIGSTOP): the kernel still accepts connections on
// its port, but nothing answers. Resume lets it go on.
func (s *Slapd) Pause() error  { return s.signal(syscall.SIGSTOP) }
func (s *Slapd) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Slapd) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("slapd is not running")
	}
	return s.cmd.Process.Signal(sig)
}

// Close stops slapd for good.
func (s *Slapd) Close() {
	s.Stop()
	if s.log != nil {
		s.log.Close()
	}
}

// Log returns the end of slapd's output.
func (s *Slapd) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tail()
}

func (s *Slapd) tail() string {
	data, err := os.ReadFile(filepath.Join(s.dir, "slapd.log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// admin connects and binds as the rootdn.
func (s *Slapd) admin() (*ldap.Conn, error) {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(5 * time.Second)
	if err := c.Bind(LDAPAdminDN, LDAPAdminPassword); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// UserDN is the DN of the user with this uid.
func UserDN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + "," + LDAPPeopleDN }

func (s *Slapd) load(users []LDAPUser, groups []LDAPGroup) error {
	c, err := s.admin()
	if err != nil {
		return err
	}
	defer c.Close()
	add := func(dn string, attrs map[string][]string) error {
		req := ldap.NewAddRequest(dn, nil)
		for k, v := range attrs {
			req.Attribute(k, v)
		}
		if err := c.Add(req); err != nil {
			return fmt.Errorf("add %s: %v", dn, err)
		}
		return nil
	}
	if err := add(LDAPSuffix, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"example"}, "o": {"Example"}}); err != nil {
		return err
	}
	for _, ou := range []string{"people", "groups"} {
		if err := add("ou="+ou+","+LDAPSuffix, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {ou}}); err != nil {
			return err
		}
	}
	for _, u := range users {
		if err := add(UserDN(u.UID), map[string][]string{
			"objectClass":  {"inetOrgPerson"},
			"uid":          {u.UID},
			"cn":           {u.UID},
			"sn":           {u.UID},
			"userPassword": {ssha(u.Password)},
		}); err != nil {
			return err
		}
	}
	for _, g := range groups {
		members := make([]string, len(g.Members))
		for i, m := range g.Members {
			members[i] = UserDN(m)
		}
		if err := add("cn="+ldap.EscapeDN(g.CN)+","+LDAPGroupsDN, map[string][]string{
			"objectClass": {"groupOfNames"},
			"cn":          {g.CN},
			"member":      members,
		}); err != nil {
			return err
		}
	}
	// Did the overlay fill in memberOf?
	for _, g := range groups {
		if len(g.Members) == 0 {
			continue
		}
		res, err := c.Search(ldap.NewSearchRequest(UserDN(g.Members[0]), ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 5, false, "(objectClass=*)", []string{"memberOf"}, nil))
		if err != nil {
			return err
		}
		s.MemberOf = len(res.Entries) == 1 && len(res.Entries[0].GetAttributeValues("memberOf")) > 0
		break
	}
	return nil
}

// ssha is OpenLDAP's salted SHA-1 password scheme.
func ssha(password string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt)
	h := sha1.New() //nolint:gosec // see the import
	h.Write([]byte(password))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...))
}
