package migrate

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// alauda/registry-auth: users are name → password (a bcrypt hash or the
// password itself); auths are name → rules, and "_anonymous" holds what
// requests without credentials may do. Every rule of the user that
// matches a requested resource adds an access entry with its actions to
// the token, and the registry grants what any entry allows: the union,
// which is what our allow rules compute. A logged-in user none of whose
// rules matches anything asked falls back to _anonymous's rules.

type alaudaFile struct {
	Users map[string]string       `yaml:"users"`
	Auths map[string][]alaudaRule `yaml:"auths"`
}

type alaudaRule struct {
	Type      string   `yaml:"type"`
	Target    string   `yaml:"target"`
	UseRegexp bool     `yaml:"useRegexp"`
	Actions   []string `yaml:"actions"`
}

// alaudaAnonymous is the auths key of requests without credentials.
const alaudaAnonymous = "_anonymous"

func convertAlauda(data []byte) (policy.Config, []warning, error) {
	var f alaudaFile
	if err := decodeStrict(data, &f); err != nil {
		return policy.Config{}, nil, err
	}
	var n notes
	users, err := alaudaUsers(&n, f.Users)
	if err != nil {
		return policy.Config{}, nil, err
	}
	keys := make([]string, 0, len(f.Auths))
	for k := range f.Auths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var rules []policy.Rule
	for _, key := range keys {
		where := fmt.Sprintf("auths[%q]", key)
		var subjects []string
		if key == alaudaAnonymous {
			subjects = anonymousSubjects(&n, where, users, f.Auths)
		} else {
			if err := token.CheckUserName(key); err != nil {
				n.info("%s: skipped: %v", where, err)
				continue
			}
			if _, ok := f.Users[key]; !ok {
				n.info("%s: no user %q is defined in users (alauda's third-party server may have let it in); converted anyway", where, key)
			}
			subjects = []string{policy.SubjectUserPrefix + key}
		}
		for i, r := range f.Auths[key] {
			rule, ok, err := alaudaRuleOf(&n, fmt.Sprintf("%s[%d]", where, i), r)
			if err != nil {
				return policy.Config{}, nil, err
			}
			if ok {
				rule.Subjects = subjects
				rules = append(rules, rule)
			}
		}
	}
	if len(rules) > 0 {
		n.info("auths: alauda put all the actions of every matching rule in the token whatever was asked; here a token holds only the actions asked for (the registry checks no others)")
	}
	return policy.Config{Users: users, Rules: rules}, n.list, nil
}

func alaudaUsers(n *notes, in map[string]string) ([]policy.User, error) {
	names := make([]string, 0, len(in))
	for name := range in {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []policy.User
	hashed := false
	for _, name := range names {
		pw, where := in[name], fmt.Sprintf("users[%q]", name)
		if err := token.CheckUserName(name); err != nil {
			n.info("%s: skipped: %v", where, err)
			continue
		}
		switch {
		case pw == "":
			return nil, fmt.Errorf("%s: empty password (alauda lets this user in with an empty password); set one", where)
		case policy.IsBcrypt(pw):
			if _, err := policy.CheckHash(pw); err != nil {
				return nil, fmt.Errorf("%s: %v", where, err)
			}
			out = append(out, policy.User{Name: name, Password: pw})
			hashed = true
		default:
			// alauda compares anything else as the password itself.
			out = append(out, policy.User{Name: name, Password: pw, Plaintext: true})
			n.info("%s: plaintext password, kept as such; store a bcrypt hash instead (caddy hash-password)", where)
		}
	}
	if hashed {
		n.info("users: alauda also let a user in who gave the stored bcrypt hash itself as the password; here only the password does")
	}
	return out, nil
}

// anonymousSubjects: _anonymous's rules apply to requests without
// credentials and to logged-in users without rules of their own, who in
// alauda always fall back to them.
func anonymousSubjects(n *notes, where string, users []policy.User, auths map[string][]alaudaRule) []string {
	subjects := []string{policy.SubjectAnonymous}
	var without, with []string
	for _, u := range users {
		if u.Name == alaudaAnonymous || len(auths[u.Name]) == 0 {
			subjects = append(subjects, policy.SubjectUserPrefix+u.Name)
			without = append(without, u.Name)
		} else {
			with = append(with, u.Name)
		}
	}
	if len(auths[alaudaAnonymous]) == 0 {
		return subjects
	}
	if len(without) > 0 {
		n.info("%s: also given to the users without rules of their own (%s), as alauda does", where, listNames(without))
	}
	if len(with) > 0 {
		n.narrow("%s: alauda gave a logged-in user these rules whenever none of the user's own rules matched the request; here the users with rules of their own (%s) get only those", where, listNames(with))
	}
	return subjects
}

// alaudaRuleOf translates one rule; ok is false for a rule that grants
// nothing.
func alaudaRuleOf(n *notes, where string, r alaudaRule) (rule policy.Rule, ok bool, err error) {
	var acts token.Actions
	for i, a := range r.Actions {
		bits := token.ParseAction(a)
		if bits == 0 {
			return rule, false, fmt.Errorf("%s.actions[%d]: unknown action %q (want pull, push, delete or *)", where, i, a)
		}
		acts |= bits
	}
	if r.Type != "" && r.Type != token.TypeRepository && r.Type != token.TypeRegistry {
		return rule, false, fmt.Errorf("%s.type: %q: want repository or registry", where, r.Type)
	}
	if acts == 0 {
		n.info("%s: no actions: it grants nothing", where)
		return rule, false, nil
	}
	var re *regexp.Regexp
	if r.UseRegexp {
		if re, err = regexp.Compile(r.Target); err != nil {
			// alauda then compares the target as a plain name.
			n.info("%s.target: not a valid regular expression, so alauda compared it as a plain name, as here", where)
			re, err = nil, nil
		}
	}
	rule = policy.Rule{Effect: "allow", Actions: actionWords(acts)}
	if r.Type == token.TypeRegistry {
		matches := r.Target == token.CatalogName
		if re != nil {
			matches = re.MatchString(token.CatalogName)
		}
		switch {
		case !matches:
			n.info("%s: the only registry resource is the catalog, which the target does not match: it grants nothing", where)
			return rule, false, nil
		case acts&token.All == 0:
			n.info("%s: the catalog is granted with the action * only: this rule grants nothing", where)
			return rule, false, nil
		}
		rule.Actions, rule.Resources = []string{"*"}, []string{policy.CatalogResource}
		return rule, true, nil
	}
	switch {
	case re != nil && r.Target == "":
		n.narrow("%s.target: the empty regex matched every name in alauda; anchored it matches none: rule dropped", where)
		return rule, false, nil
	case re != nil:
		if !wholeAnchored(r.Target) {
			n.narrow("%s.target: the regex now matches whole names only (alauda matched it anywhere in the name: foo matched xfooy)", where)
		}
		rule.Resources = []string{policy.RegexpPrefix + r.Target}
	case literalResource(r.Target) == "":
		n.info("%s.target: %q is no valid repository name: rule dropped", where, r.Target)
		return rule, false, nil
	default:
		rule.Resources = []string{r.Target}
	}
	return rule, true, nil
}
