package policy

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/regauth/caddy-registry-auth/token"
)

// Rule subjects.
const (
	SubjectEveryone      = "everyone"      // anyone, logged in or not
	SubjectAnonymous     = "anonymous"     // requests without credentials
	SubjectAuthenticated = "authenticated" // any user who logged in
	SubjectUserPrefix    = "user:"         // user:NAME, user:regexp:EXPR
	SubjectGroupPrefix   = "group:"        // group:NAME
)

// CatalogResource names the registry's repository list in a rule.
const CatalogResource = "registry:catalog"

// Rule allows or denies actions on resources to subjects. Rules are
// order-free: what a subject holds on a resource is the union of the
// matching allows minus the union of the matching denies.
type Rule struct {
	// Effect is "allow" or "deny".
	Effect string `json:"effect"`
	// Subjects the rule applies to: "user:NAME", "user:regexp:EXPR" (the
	// users whose whole name matches), "group:NAME", "authenticated",
	// "anonymous" or "everyone".
	Subjects []string `json:"subjects"`
	// Actions: "pull", "push", "delete" or "*" (all of them).
	Actions []string `json:"actions"`
	// Resources: repository globs ("team/*", "team/**", "{user}/**"),
	// "regexp:<expr>" (always matched against the whole name), or
	// "registry:catalog" for the repository list, which is granted with
	// the action "*" only.
	Resources []string `json:"resources"`
	// Origin says where the rule was written, for explanations and
	// audit lines: "Caddyfile:12", "/etc/policy.d/team.json rules[3]".
	// The Caddyfile adapter and policy files set it; rules stated in JSON
	// are named by their index.
	Origin string `json:"origin,omitempty"`
}

type subjects struct {
	everyone, anonymous, authenticated bool
	users, groups                      map[string]bool
	// userPatterns match whole user names ("user:regexp:<expr>"); a
	// name cannot hold ':', so the form cannot be a user's name.
	userPatterns []*regexp.Regexp
}

type compiledRule struct {
	origin   string
	deny     bool
	who      subjects
	actions  token.Actions
	catalog  bool
	patterns []pattern
}

// Rules are compiled rules, safe for concurrent use.
type Rules struct {
	list   []compiledRule
	groups map[string]bool // the groups rules name
}

// CompileRules checks and compiles rules. An error names the rule's index
// and the field at fault.
func CompileRules(rules []Rule) (*Rules, error) {
	r := &Rules{groups: map[string]bool{}}
	for i, rule := range rules {
		c, err := compileRule(rule)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", originOf(rule, i), err)
		}
		c.origin = originOf(rule, i)
		r.list = append(r.list, c)
		for g := range c.who.groups {
			r.groups[g] = true
		}
	}
	return r, nil
}

// originOf names a rule in errors and explanations.
func originOf(r Rule, i int) string {
	if r.Origin != "" {
		return r.Origin
	}
	return fmt.Sprintf("rules[%d]", i)
}

// Named reports whether a rule names the group: only such groups can
// change what the rules grant.
func (r *Rules) Named(group string) bool { return r.groups[group] }

// Reason is one rule that spoke about a requested resource: where it was
// written, whether it denies, and the actions it gives or takes away.
type Reason struct {
	Origin  string
	Deny    bool
	Actions token.Actions
}

// Explain is Decide with its reasons: every matching rule that gives or
// takes away an action on want's resource, in the order written.
func (r *Rules) Explain(id Identity, want token.Scope) (granted token.Actions, reasons []Reason) {
	allowed, denied := r.decide(id, want, &reasons)
	return Limit(allowed, denied) & want.Actions, reasons
}

// Authorize returns the part of requested that id holds: for each
// resource, the union of the actions of matching allow rules minus those
// of matching deny rules, intersected with what was asked. A requested "*"
// means every action held. Resources with nothing granted are left out.
func (r *Rules) Authorize(id Identity, requested []token.Scope) []token.Scope {
	granted := make([]token.Scope, 0, len(requested))
	for _, want := range requested {
		allowed, denied := r.Decide(id, want)
		if g := Limit(allowed, denied) & want.Actions; g != 0 {
			granted = append(granted, token.Scope{Type: want.Type, Name: want.Name, Actions: g})
		}
	}
	return granted
}

// Decide returns the actions on want's resource that id's matching allow
// rules give and those its matching deny rules take away.
func (r *Rules) Decide(id Identity, want token.Scope) (allowed, denied token.Actions) {
	return r.decide(id, want, nil)
}

// decide is Decide, and Explain when reasons is not nil: every matching
// rule that gives or takes away an action is appended to it.
func (r *Rules) decide(id Identity, want token.Scope, reasons *[]Reason) (allowed, denied token.Actions) {
	for i := range r.list {
		c := &r.list[i]
		if !c.who.match(id) {
			continue
		}
		a := c.holds(want, id.Name)
		if a == 0 {
			continue
		}
		if c.deny {
			denied |= a
		} else {
			allowed |= a
		}
		if reasons != nil {
			*reasons = append(*reasons, Reason{Origin: c.origin, Deny: c.deny, Actions: a})
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

// compileWhole compiles a regular expression that must match a whole
// name, never a part of one.
func compileWhole(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// CheckRule checks one rule on its own. Errors name the field at fault.
func CheckRule(r Rule) error {
	_, err := compileRule(r)
	return err
}

func compileRule(r Rule) (compiledRule, error) {
	var c compiledRule
	switch r.Effect {
	case "allow":
	case "deny":
		c.deny = true
	default:
		return c, fmt.Errorf("effect: %q is neither allow nor deny", r.Effect)
	}
	if len(r.Subjects) == 0 {
		return c, fmt.Errorf("subjects: none given")
	}
	for i, s := range r.Subjects {
		if err := c.who.add(s); err != nil {
			return c, fmt.Errorf("subjects[%d]: %v", i, err)
		}
	}
	if len(r.Actions) == 0 {
		return c, fmt.Errorf("actions: none given")
	}
	for i, a := range r.Actions {
		bits := token.ParseAction(a)
		if bits == 0 {
			return c, fmt.Errorf("actions[%d]: unknown action %q (want pull, push, delete or *)", i, a)
		}
		c.actions |= bits
	}
	if len(r.Resources) == 0 {
		return c, fmt.Errorf("resources: none given")
	}
	for i, res := range r.Resources {
		if strings.HasPrefix(res, "registry:") && res != CatalogResource {
			return c, fmt.Errorf("resources[%d]: unknown registry resource %q (the only one is %s)", i, res, CatalogResource)
		}
		if res == CatalogResource {
			if c.actions&token.All == 0 {
				return c, fmt.Errorf("resources[%d]: %s is granted with the action * only", i, CatalogResource)
			}
			c.catalog = true
			continue
		}
		p, err := compilePattern(res)
		if err != nil {
			return c, fmt.Errorf("resources[%d]: %q: %v", i, res, err)
		}
		c.patterns = append(c.patterns, p)
	}
	return c, nil
}

func (s *subjects) add(subject string) error {
	switch subject {
	case SubjectEveryone:
		s.everyone = true
		return nil
	case SubjectAnonymous:
		s.anonymous = true
		return nil
	case SubjectAuthenticated:
		s.authenticated = true
		return nil
	}
	if expr, ok := strings.CutPrefix(subject, SubjectUserPrefix+RegexpPrefix); ok {
		if expr == "" {
			return fmt.Errorf("empty regular expression in %q", subject)
		}
		re, err := compileWhole(expr)
		if err != nil {
			return fmt.Errorf("bad regular expression in %q: %v", subject, err)
		}
		s.userPatterns = append(s.userPatterns, re)
		return nil
	}
	if name, ok := strings.CutPrefix(subject, SubjectUserPrefix); ok && name != "" {
		if s.users == nil {
			s.users = map[string]bool{}
		}
		s.users[name] = true
		return nil
	}
	if name, ok := strings.CutPrefix(subject, SubjectGroupPrefix); ok && name != "" {
		if s.groups == nil {
			s.groups = map[string]bool{}
		}
		s.groups[name] = true
		return nil
	}
	return fmt.Errorf("unknown subject %q (want user:NAME, user:regexp:EXPR, group:NAME, authenticated, anonymous or everyone)", subject)
}

func (s *subjects) match(id Identity) bool {
	if s.everyone {
		return true
	}
	if id.Anonymous() {
		return s.anonymous
	}
	if s.authenticated || s.users[id.Name] {
		return true
	}
	for _, re := range s.userPatterns {
		if re.MatchString(id.Name) {
			return true
		}
	}
	for _, g := range id.Groups {
		if s.groups[g] {
			return true
		}
	}
	return false
}

// holds returns the actions the rule speaks of for one resource, or 0.
func (c *compiledRule) holds(scope token.Scope, user string) token.Actions {
	if scope.Type == token.TypeRegistry {
		if c.catalog {
			return token.All
		}
		return 0
	}
	for i := range c.patterns {
		if c.patterns[i].match(scope.Name, user) {
			return c.actions
		}
	}
	return 0
}
