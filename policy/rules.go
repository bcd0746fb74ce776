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
	subjectUserPrefix    = "user:"
	subjectGroupPrefix   = "group:"
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
}

type subjects struct {
	everyone, anonymous, authenticated bool
	users, groups                      map[string]bool
	// userPatterns match whole user names ("user:regexp:<expr>"); a
	// name cannot hold ':', so the form cannot be a user's name.
	userPatterns []*regexp.Regexp
}

type compiledRule struct {
	deny     bool
	who      subjects
	actions  token.Actions
	catalog  bool
	patterns []pattern
}

// CompileRule checks one rule. Errors name the field at fault.
func CompileRule(r Rule) (compiledRule, error) {
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
	if expr, ok := strings.CutPrefix(subject, subjectUserPrefix+regexpPrefix); ok {
		if expr == "" {
			return fmt.Errorf("empty regular expression in %q", subject)
		}
		re, err := regexp.Compile(`^(?:` + expr + `)$`)
		if err != nil {
			return fmt.Errorf("bad regular expression in %q: %v", subject, err)
		}
		s.userPatterns = append(s.userPatterns, re)
		return nil
	}
	if name, ok := strings.CutPrefix(subject, subjectUserPrefix); ok && name != "" {
		if s.users == nil {
			s.users = map[string]bool{}
		}
		s.users[name] = true
		return nil
	}
	if name, ok := strings.CutPrefix(subject, subjectGroupPrefix); ok && name != "" {
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
