// Package policy decides who may log in and what each subject may do to
// which repository. It knows nothing of Caddy or HTTP: it takes a Config,
// checks it strictly, and answers who a user is and what they may do.
package policy

import (
	"fmt"
	"slices"
	"time"
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
	// ImmutableTags protect tags from being moved or deleted. See
	// ImmutableTags.
	ImmutableTags []ImmutableTags `json:"immutable_tags,omitempty"`
}

// Compiled is a checked Config prepared for fast evaluation: its users,
// their groups and its rules. It is safe for concurrent use and never
// changes; a policy that changes is compiled again.
type Compiled struct {
	users     *Users
	groupsOf  map[string][]string
	rules     *Rules
	immutable []compiledImmutable
}

// Option tunes compiled users.
type Option func(*Users)

// WithHashWait sets how long a password check waits for a free hash slot
// before failing with ErrBusy (default DefaultHashWait).
func WithHashWait(d time.Duration) Option { return func(u *Users) { u.hashWait = d } }

// Compile checks cfg and prepares it for fast evaluation. Warnings are
// things that work but deserve the operator's attention.
func Compile(cfg Config, opts ...Option) (*Compiled, []string, error) {
	users, warnings, err := CompileUsers(cfg.Users, cfg.HtpasswdFiles, opts...)
	if err != nil {
		return nil, nil, err
	}
	groupsOf, more, err := compileGroups(cfg.Groups, users)
	if err != nil {
		return nil, nil, err
	}
	rules, err := CompileRules(cfg.Rules)
	if err != nil {
		return nil, nil, err
	}
	immutable, err := compileAllImmutable(cfg.ImmutableTags)
	if err != nil {
		return nil, nil, err
	}
	return &Compiled{users: users, groupsOf: groupsOf, rules: rules, immutable: immutable}, append(warnings, more...), nil
}

// compileGroups inverts the groups map: the groups of each member.
func compileGroups(groups map[string][]string, users *Users) (map[string][]string, []string, error) {
	groupsOf := map[string][]string{}
	var warnings []string
	for group, members := range groups {
		if group == "" {
			return nil, nil, fmt.Errorf("groups: empty group name")
		}
		for i, m := range members {
			if !users.Knows(m) {
				warnings = append(warnings, fmt.Sprintf("groups[%q][%d]: no user %q is defined", group, i, m))
			}
			groupsOf[m] = append(groupsOf[m], group)
		}
	}
	return groupsOf, warnings, nil
}

// Check reports the first error Compile would find in cfg on its own,
// without hashing anything: callers that merge a policy from several
// parts check each alone, so that an error names the part it is in.
func Check(cfg Config) error {
	seen := map[string]bool{}
	err := eachUser(cfg.Users, cfg.HtpasswdFiles, func(where string, u User) error {
		if seen[u.Name] {
			return fmt.Errorf("%s: user %q is defined twice", where, u.Name)
		}
		seen[u.Name] = true
		return nil
	})
	if err != nil {
		return err
	}
	if _, ok := cfg.Groups[""]; ok {
		return fmt.Errorf("groups: empty group name")
	}
	if _, err = CompileRules(cfg.Rules); err != nil {
		return err
	}
	return CheckImmutableTags(cfg.ImmutableTags)
}

// Users are the policy's own users.
func (c *Compiled) Users() *Users { return c.users }

// Rules are the policy's allow and deny rules.
func (c *Compiled) Rules() *Rules { return c.rules }

// Authenticate checks a password of one of the policy's own users and
// returns the user with the groups the policy gives them. An unknown name
// costs one compare too and fails with ErrUnknownUser.
func (c *Compiled) Authenticate(name, password string) (Identity, error) {
	if err := c.users.Check(name, password); err != nil {
		return Identity{}, err
	}
	return Identity{Name: name, Groups: c.groupsOf[name]}, nil
}

// User returns the identity of one of the policy's own users, for callers
// that authenticated it another way (a refresh token, a remembered login).
func (c *Compiled) User(name string) (Identity, bool) {
	if !c.users.Knows(name) {
		return Identity{}, false
	}
	return Identity{Name: name, Groups: c.groupsOf[name]}, true
}

// ForeignGroups are the groups of id that the policy's own groups map did
// not give it (a directory's, an identity provider's) and that its rules
// name: what a token must carry for the subject's groups to be known
// again when the token comes back.
func (c *Compiled) ForeignGroups(id Identity) []string {
	var out []string
	for _, g := range id.Groups {
		// A user is in few groups: a scan costs less than a set, on a
		// path every token takes.
		if !slices.Contains(c.groupsOf[id.Name], g) && c.rules.Named(g) {
			out = append(out, g)
		}
	}
	return out
}

// WithGroups adds the groups the policy itself gives id's user (its
// "groups" map) to those id already has, say from a directory.
func (c *Compiled) WithGroups(id Identity) Identity {
	own := c.groupsOf[id.Name]
	if len(own) == 0 {
		return id
	}
	id.Groups = append(append([]string(nil), id.Groups...), own...)
	return id
}
