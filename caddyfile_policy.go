package registryauth

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// A policy written in a Caddyfile is checked as it is read, so that every
// error names the file and line and speaks of the Caddyfile's lines, not
// of the JSON they become. Provisioning checks the JSON again (a JSON
// config has only its paths to name); what it would refuse, the parser
// refuses first.

// policyLines reads the user, group, allow and deny lines of one block and
// keeps where each name was written, for checkNames.
type policyLines struct {
	users  map[string]int // a user's name → its line
	groups map[string]bool
	refs   []nameRef
	// elsewhere: the block names a source of users or groups that the
	// parser cannot see (htpasswd, policy_file, authenticator).
	elsewhere bool
}

// A nameRef is a user or group a group line or a rule names.
type nameRef struct {
	at    caddyfile.Dispenser // at its line
	what  string              // "group developers: member bob", "allow: subject user:bob"
	group bool
	name  string
}

// user reads `user <name> <bcrypt-hash>` or `user <name> plaintext
// <password>`. A value with a placeholder ({env.*}, {file.*}) is checked
// when it is expanded, at load.
func (pl *policyLines) user(d *caddyfile.Dispenser, users *[]policy.User) error {
	args := d.RemainingArgs()
	var u policy.User
	switch {
	case len(args) == 2:
		u = policy.User{Name: args[0], Password: args[1]}
	case len(args) == 3 && args[1] == "plaintext":
		u = policy.User{Name: args[0], Password: args[2], Plaintext: true}
	default:
		return d.Errf("want: user <name> <bcrypt-hash>, or user <name> plaintext <password>")
	}
	if err := token.CheckUserName(u.Name); err != nil {
		return d.Errf("user: %v", err)
	}
	if line, dup := pl.users[u.Name]; dup {
		return d.Errf("user %s is defined twice (first on line %d)", u.Name, line)
	}
	if !strings.Contains(u.Password, "{") {
		if u.Plaintext && u.Password == "" {
			return d.Errf("user %s: empty password", u.Name)
		}
		if _, err := policy.CheckHash(u.Password); err != nil && !u.Plaintext {
			return d.Errf("user %s: %v; hash it with caddy hash-password, or write: user %s plaintext <password>", u.Name, err, u.Name)
		}
	}
	if pl.users == nil {
		pl.users = map[string]int{}
	}
	pl.users[u.Name] = d.Line()
	*users = append(*users, u)
	return nil
}

// group reads `group <name> <member...>`.
func (pl *policyLines) group(d *caddyfile.Dispenser, groups *map[string][]string) error {
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Errf("want: group <name> <member...>")
	}
	if *groups == nil {
		*groups = map[string][]string{}
	}
	if _, dup := (*groups)[args[0]]; dup {
		return d.Errf("group %q is defined twice", args[0])
	}
	(*groups)[args[0]] = args[1:]
	if pl.groups == nil {
		pl.groups = map[string]bool{}
	}
	pl.groups[args[0]] = true
	for _, m := range args[1:] {
		pl.refs = append(pl.refs, nameRef{at: *d, what: "group " + args[0] + ": member " + m, name: m})
	}
	return nil
}

// rule reads an allow or deny line and checks the rule at once.
func (pl *policyLines) rule(d *caddyfile.Dispenser, rules *[]policy.Rule) error {
	effect := d.Val()
	args := d.RemainingArgs()
	if len(args) < 3 {
		return d.Errf("want: %s <subject[,subject...]> <action[,action...]> <resource...>", effect)
	}
	rule := policy.Rule{
		Effect:    effect,
		Subjects:  strings.Split(args[0], ","),
		Actions:   strings.Split(args[1], ","),
		Resources: args[2:],
		Origin:    origin(d),
	}
	if err := policy.CheckRule(rule); err != nil {
		return d.Errf("%s: %v", effect, err)
	}
	for _, s := range rule.Subjects {
		if strings.HasPrefix(s, policy.SubjectUserPrefix+policy.RegexpPrefix) {
			continue // a pattern, not a name
		}
		if name, ok := strings.CutPrefix(s, policy.SubjectUserPrefix); ok {
			pl.refs = append(pl.refs, nameRef{at: *d, what: effect + ": subject " + s, name: name})
		} else if name, ok := strings.CutPrefix(s, policy.SubjectGroupPrefix); ok {
			pl.refs = append(pl.refs, nameRef{at: *d, what: effect + ": subject " + s, group: true, name: name})
		}
	}
	*rules = append(*rules, rule)
	return nil
}

// checkNames refuses a group member or rule subject that names no user
// or group of the block, when the block has no other source of them: it
// is a typo, or a user the policy forgot.
func (pl *policyLines) checkNames() error {
	if pl.elsewhere {
		return nil
	}
	for _, r := range pl.refs {
		switch {
		case r.group && !pl.groups[r.name]:
			return r.at.Errf("%s names no group: define it with a group line (or an authenticator or policy_file that gives it)", r.what)
		case !r.group && !pl.knows(r.name):
			return r.at.Errf("%s names no user: define it with a user line (or an htpasswd, policy_file or authenticator that knows it)", r.what)
		}
	}
	return nil
}

func (pl *policyLines) knows(user string) bool {
	_, ok := pl.users[user]
	return ok
}

// checkPolicyBlock checks what the whole registry_auth block must hold;
// at is its opening line.
func checkPolicyBlock(at *caddyfile.Dispenser, pc *PolicyConfig, pl *policyLines) error {
	if len(pc.Services) == 0 {
		return at.Errf("registry_auth needs a service line: service <name>, the registry's auth.token.service")
	}
	return pl.checkNames()
}

// checkTokenLifetime holds token_lifetime to what provisioning accepts.
func checkTokenLifetime(d *caddyfile.Dispenser, v time.Duration) error {
	if v < MinTokenLifetime || v > MaxTokenLifetime {
		return d.Errf("token_lifetime: %s is outside %s to %s", shortDuration(v), shortDuration(MinTokenLifetime), shortDuration(MaxTokenLifetime))
	}
	return nil
}

// origin names where the current line was written, for explanations and
// audit lines: the file's base name and the line.
func origin(d *caddyfile.Dispenser) string {
	return fmt.Sprintf("%s:%d", filepath.Base(d.File()), d.Line())
}

// shortDuration writes a duration as a Caddyfile would: 2h, 90s, 1h30m.
func shortDuration(v time.Duration) string {
	s := v.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
