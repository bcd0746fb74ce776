// Package policy decides who may log in and what each subject may do to
// which repository. It knows nothing of Caddy or HTTP: it takes a Config,
// checks it strictly, and answers Authenticate and Authorize.
package policy

import (
	"crypto/sha256"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"

	"github.com/regauth/caddy-registry-auth/token"
)

// Config is the users, groups and rules of one policy. Nothing is allowed
// unless a rule allows it.
type Config struct {
	// Users stated inline.
	Users []User `json:"users,omitempty"`
	// HtpasswdFiles are files of name:bcrypt-hash lines, the format the
	// registry's own htpasswd auth reads. A name may be defined once
	// across the inline users and all files.
	HtpasswdFiles []string `json:"htpasswd_files,omitempty"`
	// Groups maps a group name to its members' user names.
	Groups map[string][]string `json:"groups,omitempty"`
	// Rules allow and deny actions. See Rule.
	Rules []Rule `json:"rules,omitempty"`
}

// Policy is a compiled Config, safe for concurrent use.
type Policy struct {
	users map[string][]byte
	// identity is what identifies a user's current password across loads
	// and instances: the stored hash, or for a plaintext password (hashed
	// with a new salt at every load) a digest of it. The credential cache
	// and refresh-token fingerprints key on it.
	identity  map[string][]byte
	dummyHash []byte
	groupsOf  map[string][]string
	rules     []compiledRule
	compares  atomic.Int64
	cache     *CredentialCache
	flight    singleflight.Group
	hashWait  time.Duration
}

// Option tunes a compiled Policy.
type Option func(*Policy)

// WithCredentialCache makes Authenticate remember successful checks in c,
// which may be shared with earlier compilations of the same policy.
func WithCredentialCache(c *CredentialCache) Option { return func(p *Policy) { p.cache = c } }

// WithHashWait sets how long a password check waits for a free hash slot
// before failing with ErrBusy (default DefaultHashWait).
func WithHashWait(d time.Duration) Option { return func(p *Policy) { p.hashWait = d } }

// Compile checks cfg and prepares it for fast evaluation. Warnings are
// things that work but deserve the operator's attention.
func Compile(cfg Config, opts ...Option) (p *Policy, warnings []string, err error) {
	p = &Policy{users: map[string][]byte{}, identity: map[string][]byte{}, groupsOf: map[string][]string{}, hashWait: DefaultHashWait}
	for _, o := range opts {
		o(p)
	}
	var costs []int
	var plaintext []User
	add := func(where string, u User) error {
		if err := checkName(u.Name); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		if _, dup := p.users[u.Name]; dup {
			return fmt.Errorf("%s: user %q is defined twice", where, u.Name)
		}
		if u.Plaintext {
			if u.Password == "" {
				return fmt.Errorf("%s: user %q has an empty password", where, u.Name)
			}
			p.users[u.Name] = nil // hashed below, at the typical cost
			plaintext = append(plaintext, u)
			warnings = append(warnings, fmt.Sprintf("%s: user %q has a plaintext password; store a bcrypt hash instead", where, u.Name))
			return nil
		}
		cost, err := checkHash(u.Password)
		if err != nil {
			return fmt.Errorf("%s: user %q: %v", where, u.Name, err)
		}
		costs = append(costs, cost)
		p.users[u.Name] = []byte(u.Password)
		p.identity[u.Name] = p.users[u.Name]
		return nil
	}
	for i, u := range cfg.Users {
		if err := add(fmt.Sprintf("users[%d]", i), u); err != nil {
			return nil, nil, err
		}
	}
	for i, path := range cfg.HtpasswdFiles {
		users, err := readHtpasswd(path)
		if err != nil {
			return nil, nil, fmt.Errorf("htpasswd_files[%d]: %v", i, err)
		}
		for _, u := range users {
			if err := add(fmt.Sprintf("htpasswd_files[%d] (%s)", i, path), u); err != nil {
				return nil, nil, err
			}
		}
	}

	// Every known user is checked with bcrypt at one cost, and unknown
	// users against a dummy hash of that cost: timing tells nothing.
	cost := typicalCost(costs)
	if len(costs) > 0 && costs[0] != costs[len(costs)-1] { // sorted by typicalCost
		warnings = append(warnings, fmt.Sprintf("password hashes have bcrypt costs from %d to %d: unknown users are checked at cost %d, so users whose cost differs answer faster or slower than unknown names and can be told apart; rehash them at one cost", costs[0], costs[len(costs)-1], cost))
	}
	for _, u := range plaintext {
		h, err := bcrypt.GenerateFromPassword([]byte(u.Password), cost)
		if err != nil {
			return nil, nil, fmt.Errorf("user %q: %v", u.Name, err)
		}
		p.users[u.Name] = h
		sum := sha256.Sum256([]byte("plaintext password\x00" + u.Password))
		p.identity[u.Name] = sum[:]
	}
	if p.dummyHash, err = bcrypt.GenerateFromPassword([]byte(token.RandomID()), cost); err != nil {
		return nil, nil, err
	}

	for group, members := range cfg.Groups {
		if group == "" {
			return nil, nil, fmt.Errorf("groups: empty group name")
		}
		for i, m := range members {
			if _, ok := p.users[m]; !ok {
				warnings = append(warnings, fmt.Sprintf("groups[%q][%d]: no user %q is defined", group, i, m))
			}
			p.groupsOf[m] = append(p.groupsOf[m], group)
		}
	}

	for i, r := range cfg.Rules {
		c, err := CompileRule(r)
		if err != nil {
			return nil, nil, fmt.Errorf("rules[%d]: %v", i, err)
		}
		p.rules = append(p.rules, c)
	}
	return p, warnings, nil
}

// CompileRules compiles rules alone into a Policy without users, for
// callers that only authorize.
func CompileRules(rules []Rule) (*Policy, error) {
	p := &Policy{users: map[string][]byte{}, identity: map[string][]byte{}, groupsOf: map[string][]string{}}
	for i, r := range rules {
		c, err := CompileRule(r)
		if err != nil {
			return nil, fmt.Errorf("rules[%d]: %v", i, err)
		}
		p.rules = append(p.rules, c)
	}
	return p, nil
}

// Check reports the first error Compile would find in cfg on its own,
// without hashing anything: callers that merge a policy from several
// parts check each alone, so that an error names the part it is in.
func Check(cfg Config) error {
	seen := map[string]bool{}
	user := func(where string, u User) error {
		if err := checkName(u.Name); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		if seen[u.Name] {
			return fmt.Errorf("%s: user %q is defined twice", where, u.Name)
		}
		seen[u.Name] = true
		if u.Plaintext {
			if u.Password == "" {
				return fmt.Errorf("%s: user %q has an empty password", where, u.Name)
			}
		} else if _, err := checkHash(u.Password); err != nil {
			return fmt.Errorf("%s: user %q: %v", where, u.Name, err)
		}
		return nil
	}
	for i, u := range cfg.Users {
		if err := user(fmt.Sprintf("users[%d]", i), u); err != nil {
			return err
		}
	}
	for i, path := range cfg.HtpasswdFiles {
		users, err := readHtpasswd(path)
		if err != nil {
			return fmt.Errorf("htpasswd_files[%d]: %v", i, err)
		}
		for _, u := range users {
			if err := user(fmt.Sprintf("htpasswd_files[%d] (%s)", i, path), u); err != nil {
				return err
			}
		}
	}
	if _, ok := cfg.Groups[""]; ok {
		return fmt.Errorf("groups: empty group name")
	}
	for i, r := range cfg.Rules {
		if _, err := CompileRule(r); err != nil {
			return fmt.Errorf("rules[%d]: %v", i, err)
		}
	}
	return nil
}

// Authorize returns the part of requested that id holds: for each
// resource, the union of the actions of matching allow rules minus those
// of matching deny rules, intersected with what was asked. A requested "*"
// means every action held. Resources with nothing granted are left out.
func (p *Policy) Authorize(id Identity, requested []token.Scope) []token.Scope {
	granted := make([]token.Scope, 0, len(requested))
	for _, want := range requested {
		allowed, denied := p.Decide(id, want)
		if g := Limit(allowed, denied) & want.Actions; g != 0 {
			granted = append(granted, token.Scope{Type: want.Type, Name: want.Name, Actions: g})
		}
	}
	return granted
}

// Decide returns the actions on want's resource that id's matching allow
// rules give and those its matching deny rules take away.
func (p *Policy) Decide(id Identity, want token.Scope) (allowed, denied token.Actions) {
	for i := range p.rules {
		r := &p.rules[i]
		if !r.who.match(id) {
			continue
		}
		if a := r.holds(want, id.Name); r.deny {
			denied |= a
		} else {
			allowed |= a
		}
	}
	return allowed, denied
}

// Limit is what remains of allowed after denied. After any deny the
// subject no longer holds "every action".
func Limit(allowed, denied token.Actions) token.Actions {
	if denied != 0 {
		allowed &^= denied | token.All
	}
	return allowed
}
