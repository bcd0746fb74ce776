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
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regauth/caddy-registry-auth/token"
)

// User is one account stated inline in the configuration.
type User struct {
	// Name is the login name. It may not contain ":" (Basic credentials
	// split at the first one) or a control character, and may not be
	// empty.
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
	// Origin is set when an issuer outside the policy vouched for the
	// name (a workload's OIDC token): audit lines and refresh tokens name
	// it.
	Origin *Origin
}

// Origin is the issuer outside the policy that vouched for an identity.
type Origin struct {
	// Issuer and Subject name the caller where it came from ("iss" and
	// "sub" of its token).
	Issuer, Subject string
	// Groups are those the issuer's token gave, before the policy's own.
	Groups []string
	// RefreshUntil bounds the life of refresh tokens issued to it.
	RefreshUntil time.Time
}

// Anonymous reports whether the request carried no credentials.
func (id Identity) Anonymous() bool { return id.Name == "" }

// Errors of Users.Check.
var (
	ErrBadCredentials = errors.New("wrong user name or password")
	// ErrUnknownUser: the set has no such user (after the same compare a
	// known user costs); the next source of users may have it.
	ErrUnknownUser = errors.New("no such user")
	// ErrBusy: too many password checks are queued; the caller should ask
	// the client to retry shortly.
	ErrBusy = errors.New("too many password checks under way, try again shortly")
)

// Users is a compiled set of users with bcrypt hashes, safe for concurrent
// use.
type Users struct {
	hashes map[string][]byte
	// binding is what identifies a user's current password across loads
	// and instances: the stored hash, or for a plaintext password (hashed
	// with a new salt at every load) a digest of it. The credential cache
	// and refresh-token fingerprints key on it.
	binding  map[string][]byte
	dummy    []byte
	compares atomic.Int64
	hashWait time.Duration
}

// defaultCost is the bcrypt cost used for plaintext passwords and the
// dummy hash when no stored hash says otherwise.
const defaultCost = bcrypt.DefaultCost

// DefaultHashWait is how long a password check waits for a free slot.
const DefaultHashWait = 5 * time.Second

// hashSlots bounds the bcrypt compares running at once in the process, one
// per core: a flood of wrong passwords then queues for a bounded time
// instead of taking the CPU from requests that are already authenticated.
var hashSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// CompileUsers checks users and the users of htpasswd files and hashes
// plaintext passwords. Every known user is checked with bcrypt at one
// cost, and unknown users against a dummy hash of that cost, so timing
// tells nothing.
func CompileUsers(users []User, htpasswdFiles []string, opts ...Option) (*Users, []string, error) {
	u := &Users{hashes: map[string][]byte{}, binding: map[string][]byte{}, hashWait: DefaultHashWait}
	for _, o := range opts {
		o(u)
	}
	var costs []int
	var plaintext []User
	var warnings []string
	err := eachUser(users, htpasswdFiles, func(where string, user User) error {
		if _, dup := u.hashes[user.Name]; dup {
			return fmt.Errorf("%s: user %q is defined twice", where, user.Name)
		}
		if user.Plaintext {
			u.hashes[user.Name] = nil // hashed below, at the typical cost
			plaintext = append(plaintext, user)
			warnings = append(warnings, fmt.Sprintf("%s: user %q has a plaintext password; store a bcrypt hash instead", where, user.Name))
			return nil
		}
		cost, _ := CheckHash(user.Password) // eachUser checked it
		costs = append(costs, cost)
		u.hashes[user.Name] = []byte(user.Password)
		u.binding[user.Name] = u.hashes[user.Name]
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	cost := typicalCost(costs)
	if len(costs) > 0 && costs[0] != costs[len(costs)-1] { // sorted by typicalCost
		warnings = append(warnings, fmt.Sprintf("password hashes have bcrypt costs from %d to %d: unknown users are checked at cost %d, so users whose cost differs answer faster or slower than unknown names and can be told apart; rehash them at one cost", costs[0], costs[len(costs)-1], cost))
	}
	for _, p := range plaintext {
		h, err := bcrypt.GenerateFromPassword([]byte(p.Password), cost)
		if err != nil {
			return nil, nil, fmt.Errorf("user %q: %v", p.Name, err)
		}
		u.hashes[p.Name] = h
		sum := sha256.Sum256([]byte("plaintext password\x00" + p.Password))
		u.binding[p.Name] = sum[:]
	}
	if u.dummy, err = bcrypt.GenerateFromPassword([]byte(token.RandomID()), cost); err != nil {
		return nil, nil, err
	}
	return u, warnings, nil
}

// eachUser checks every inline user and every user of the htpasswd files
// on its own (name, hash or plaintext password) and hands it to add with
// where it was defined.
func eachUser(users []User, htpasswdFiles []string, add func(where string, u User) error) error {
	check := func(where string, u User) error {
		if err := token.CheckUserName(u.Name); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		if u.Plaintext {
			if u.Password == "" {
				return fmt.Errorf("%s: user %q has an empty password", where, u.Name)
			}
		} else if _, err := CheckHash(u.Password); err != nil {
			return fmt.Errorf("%s: user %q: %v; set plaintext to use a password as it is", where, u.Name, err)
		}
		return add(where, u)
	}
	for i, u := range users {
		if err := check(fmt.Sprintf("users[%d]", i), u); err != nil {
			return err
		}
	}
	for i, path := range htpasswdFiles {
		list, err := readHtpasswd(path)
		if err != nil {
			return fmt.Errorf("htpasswd_files[%d]: %v", i, err)
		}
		for _, u := range list {
			if err := check(fmt.Sprintf("htpasswd_files[%d] (%s)", i, path), u); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckHash accepts only bcrypt hashes, the one format both registry
// htpasswd files and this plugin use, and returns the cost. The error never
// quotes the hash.
func CheckHash(hash string) (cost int, err error) {
	if !IsBcrypt(hash) {
		return 0, fmt.Errorf("not a bcrypt hash ($2a$, $2b$ or $2y$)")
	}
	cost, err = bcrypt.Cost([]byte(hash))
	if err != nil {
		return 0, fmt.Errorf("malformed bcrypt hash")
	}
	// $2x$NN$ then 53 characters of bcrypt's base64: anything else would
	// fail every login without a word.
	if len(hash) != 60 || strings.Trim(hash[7:], bcryptAlphabet) != "" {
		return 0, fmt.Errorf("malformed bcrypt hash: want 60 characters, $2x$NN$ and bcrypt's base64")
	}
	return cost, nil
}

// IsBcrypt reports whether s claims to be a bcrypt hash by its prefix.
func IsBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
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
		if err := token.CheckUserName(name); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		if _, err := CheckHash(hash); err != nil {
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

// Check checks a name and password with exactly one bcrypt compare, against
// a dummy hash for unknown users, so that an unknown name costs the same
// time as a wrong password. bcrypt's compare is itself constant-time, and a
// stored hash given as the password simply fails to match. It returns nil,
// ErrBadCredentials, ErrUnknownUser or ErrBusy.
func (u *Users) Check(name, password string) error {
	hash, known := u.hashes[name]
	if !known {
		hash = u.dummy
	}
	err := u.compare(hash, password)
	if !known && !errors.Is(err, ErrBusy) {
		return ErrUnknownUser
	}
	return err
}

// Knows reports whether name is one of the users.
func (u *Users) Knows(name string) bool {
	_, ok := u.hashes[name]
	return ok
}

// Binding is what identifies the user's current password, for keys that
// must change when the password does; ok is false for an unknown user.
func (u *Users) Binding(name string) (binding []byte, ok bool) {
	b, ok := u.binding[name]
	return b, ok
}

// Fingerprint is an HMAC under key of the user's binding: the same on every
// load and instance, it changes whenever the password does, and tells
// nothing about it. Refresh tokens carry it so that a new password revokes
// them.
func (u *Users) Fingerprint(name string, key []byte) (string, bool) {
	b, ok := u.binding[name]
	if !ok {
		return "", false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16]), true
}

func (u *Users) compare(hash []byte, password string) error {
	timer := time.NewTimer(u.hashWait)
	defer timer.Stop()
	select {
	case hashSlots <- struct{}{}:
	case <-timer.C:
		return ErrBusy
	}
	defer func() { <-hashSlots }()
	u.compares.Add(1)
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return ErrBadCredentials
	}
	return nil
}

// Compares counts the bcrypt compares run so far (tests use it to prove
// that unknown users take the same path as known ones).
func (u *Users) Compares() int64 { return u.compares.Load() }
