package policy

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// User is one account stated inline in the configuration.
type User struct {
	// Name is the login name. It may not contain ":" (Basic credentials
	// split at the first one) and may not be empty.
	Name string `json:"name"`
	// Password is a bcrypt hash ($2a$, $2b$ or $2y$, as made by
	// `caddy hash-password` or `htpasswd -B`), unless Plaintext is set.
	Password string `json:"password"`
	// Plaintext marks Password as the password itself. It is hashed at
	// load and a warning is logged: prefer a hash.
	Plaintext bool `json:"plaintext,omitempty"`
}

// Identity is who a request is from. The zero value is anonymous.
type Identity struct {
	Name   string
	Groups []string
}

// Anonymous reports whether the request carried no credentials.
func (id Identity) Anonymous() bool { return id.Name == "" }

// defaultCost is the bcrypt cost used for plaintext passwords and the
// dummy hash when no stored hash says otherwise.
const defaultCost = bcrypt.DefaultCost

// checkName refuses names no Basic header can carry.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty user name")
	case strings.ContainsAny(name, ":\r\n"):
		return fmt.Errorf("user name %q contains ':' or a line break", name)
	}
	return nil
}

// checkHash accepts only bcrypt hashes, the one format both registry
// htpasswd files and this plugin use.
func checkHash(hash string) (cost int, err error) {
	if !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$2y$") {
		return 0, fmt.Errorf("not a bcrypt hash ($2a$, $2b$ or $2y$); set plaintext to use a password as it is")
	}
	cost, err = bcrypt.Cost([]byte(hash))
	if err != nil {
		return 0, fmt.Errorf("malformed bcrypt hash: %v", err)
	}
	// $2x$NN$ then 53 characters of bcrypt's base64: anything else would
	// fail every login without a word.
	if len(hash) != 60 || strings.Trim(hash[7:], bcryptAlphabet) != "" {
		return 0, fmt.Errorf("malformed bcrypt hash: want 60 characters, $2x$NN$ and bcrypt's base64")
	}
	return cost, nil
}

const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// readHtpasswd reads name:bcrypt-hash lines; blank lines and lines starting
// with # are skipped. Errors name the file and line, never the hash.
func readHtpasswd(path string) ([]User, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var users []User
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, hash, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want name:hash", path, line)
		}
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		if _, err := checkHash(hash); err != nil {
			return nil, fmt.Errorf("%s:%d: user %q: %v", path, line, name, err)
		}
		users = append(users, User{Name: name, Password: hash})
	}
	return users, sc.Err()
}

// typicalCost is the median cost of the stored hashes, so that the dummy
// hash an unknown user is checked against costs what a real one does.
func typicalCost(costs []int) int {
	if len(costs) == 0 {
		return defaultCost
	}
	sort.Ints(costs)
	return costs[len(costs)/2]
}

// Errors of Authenticate.
var (
	ErrBadCredentials = errors.New("wrong user name or password")
	// ErrBusy: too many password checks are queued; the caller should ask
	// the client to retry shortly.
	ErrBusy = errors.New("too many password checks under way, try again shortly")
)

// hashSlots bounds the bcrypt compares running at once in the process, one
// per core: a flood of wrong passwords then queues for a bounded time
// instead of taking the CPU from requests that are already authenticated.
var hashSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// DefaultHashWait is how long a password check waits for a free slot.
const DefaultHashWait = 5 * time.Second

// Authenticate checks a name and password. A check that succeeded recently
// is answered from the credential cache; otherwise exactly one bcrypt
// compare runs, against a dummy hash for unknown users, so that an unknown
// name costs the same time and gives the same answer as a wrong password.
// bcrypt's compare is itself constant-time, and a stored hash given as the
// password simply fails to match. Identical checks under way at once share
// one compare.
func (p *Policy) Authenticate(name, password string) (Identity, error) {
	hash, known := p.users[name]
	if !known {
		hash = p.dummyHash
	}
	var id [32]byte
	if known && p.cache != nil {
		id = p.cache.id(name, password, p.identity[name])
		if p.cache.hit(id, time.Now()) {
			return Identity{Name: name, Groups: p.groupsOf[name]}, nil
		}
	}
	err := p.compareShared(id, hash, password)
	if err != nil {
		return Identity{}, err
	}
	if !known {
		return Identity{}, ErrBadCredentials
	}
	if p.cache != nil {
		p.cache.remember(id, time.Now())
	}
	return Identity{Name: name, Groups: p.groupsOf[name]}, nil
}

// Knows reports whether name is one of the policy's own users.
func (p *Policy) Knows(name string) bool {
	_, ok := p.users[name]
	return ok
}

// WithGroups adds the groups the policy itself gives id's user (its
// "groups" map) to those id already has, say from a directory.
func (p *Policy) WithGroups(id Identity) Identity {
	own := p.groupsOf[id.Name]
	if len(own) == 0 {
		return id
	}
	id.Groups = append(append([]string(nil), id.Groups...), own...)
	return id
}

// User returns the identity of a defined user, for callers that
// authenticated it another way (a refresh token).
func (p *Policy) User(name string) (Identity, bool) {
	if _, ok := p.users[name]; !ok {
		return Identity{}, false
	}
	return Identity{Name: name, Groups: p.groupsOf[name]}, true
}

// Fingerprint is an HMAC under key of what identifies the user's current
// password (see Policy.identity): the same on every load and instance, it
// changes whenever the password does, and tells nothing about it.
// Refresh tokens carry it so that a new password revokes them.
func (p *Policy) Fingerprint(name string, key []byte) (string, bool) {
	ident, ok := p.identity[name]
	if !ok {
		return "", false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write(ident)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16]), true
}

// Remembered reports whether the credential cache holds a recent success
// for exactly these credentials against the user's current hash. It never
// runs bcrypt, so callers may ask it before deciding whether to throttle.
func (p *Policy) Remembered(name, password string) (Identity, bool) {
	ident, known := p.identity[name]
	if !known || p.cache == nil {
		return Identity{}, false
	}
	if !p.cache.hit(p.cache.id(name, password, ident), time.Now()) {
		return Identity{}, false
	}
	return Identity{Name: name, Groups: p.groupsOf[name]}, true
}

// compareShared runs one bcrypt compare in a hash slot; concurrent calls
// for the same cache id share it.
func (p *Policy) compareShared(id [32]byte, hash []byte, password string) error {
	if p.cache == nil || id == ([32]byte{}) {
		return p.compare(hash, password)
	}
	_, err, _ := p.flight.Do(string(id[:]), func() (any, error) { return nil, p.compare(hash, password) })
	return err
}

func (p *Policy) compare(hash []byte, password string) error {
	timer := time.NewTimer(p.hashWait)
	defer timer.Stop()
	select {
	case hashSlots <- struct{}{}:
	case <-timer.C:
		return ErrBusy
	}
	defer func() { <-hashSlots }()
	p.compares.Add(1)
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return ErrBadCredentials
	}
	return nil
}

// Compares counts the bcrypt compares run so far (tests use it to prove
// that unknown users take the same path as known ones).
func (p *Policy) Compares() int64 { return p.compares.Load() }
