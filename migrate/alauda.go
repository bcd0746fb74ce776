package migrate

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

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
	parsed := map[string][]alaudaParsed{}
	for _, key := range keys {
		where := fmt.Sprintf("auths[%q]", key)
		if key != alaudaAnonymous {
			if err := token.CheckUserName(key); err != nil {
				n.info("%s: skipped: %v", where, err)
				continue
			}
			if _, ok := f.Users[key]; !ok {
				n.info("%s: no user %q is defined in users (alauda's third-party server may have let it in); converted anyway", where, key)
			}
		}
		for i, r := range f.Auths[key] {
			p, err := alaudaRuleOf(&n, fmt.Sprintf("%s[%d]", where, i), r)
			if err != nil {
				return policy.Config{}, nil, err
			}
			parsed[key] = append(parsed[key], p)
		}
	}
	var rules []policy.Rule
	for _, key := range keys {
		for _, p := range parsed[key] {
			if p.acts == 0 || p.res == "" {
				continue
			}
			subjects := []string{policy.SubjectUserPrefix + key}
			if key == alaudaAnonymous {
				subjects = anonymousSubjects(&n, p, users, parsed)
			}
			rules = append(rules, policy.Rule{Effect: "allow", Subjects: subjects, Actions: p.words, Resources: []string{p.res}})
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

// alaudaParsed is one rule: the resource it matches ("" for none) and
// the actions it grants (none for a rule that only matches, which still
// keeps its user from _anonymous's rules).
type alaudaParsed struct {
	where string
	res   string
	acts  token.Actions
	words []string
}

// anonymousSubjects: _anonymous's rule p applies to requests without
// credentials and, in alauda, to each user where none of the user's own
// rules matches the request: to the users without rules, and to those
// whose rules match none of p's names, or grant all of p's actions where
// they do.
func anonymousSubjects(n *notes, p alaudaParsed, users []policy.User, parsed map[string][]alaudaParsed) []string {
	subjects := []string{policy.SubjectAnonymous}
	var without []string
	for _, u := range users {
		own := parsed[u.Name]
		if u.Name == alaudaAnonymous || len(own) == 0 {
			subjects = append(subjects, policy.SubjectUserPrefix+u.Name)
			without = append(without, u.Name)
			continue
		}
		them := part{who: userSubj(u.Name), res: p.res}
		var theirs []part
		for _, o := range own {
			if o.res != "" && p.acts&^o.acts != 0 {
				theirs = append(theirs, part{who: them.who, res: o.res})
			}
		}
		left, ok := minusAll([]part{them}, theirs)
		switch {
		case ok && len(left) == 0:
		case ok:
			subjects = append(subjects, policy.SubjectUserPrefix+u.Name)
		default:
			n.narrow("%s: alauda gave it to %s where none of %s's own rules matched the request, on the names of %s that those rules do not match; no rule here states that difference, so %s does not get it: add the grants meant, such as: allow user:%s %s <name>",
				p.where, u.Name, u.Name, p.res, u.Name, u.Name, strings.Join(p.words, ","))
		}
	}
	if len(without) > 0 {
		n.info("%s: also given to the users without rules of their own (%s), as alauda does", p.where, listNames(without))
	}
	return subjects
}

// alaudaRuleOf reads one rule.
func alaudaRuleOf(n *notes, where string, r alaudaRule) (p alaudaParsed, err error) {
	p.where = where
	for i, a := range r.Actions {
		bits := token.ParseAction(a)
		if bits == 0 {
			return p, fmt.Errorf("%s.actions[%d]: unknown action %q (want pull, push, delete or *)", where, i, a)
		}
		p.acts |= bits
	}
	if r.Type != "" && r.Type != token.TypeRepository && r.Type != token.TypeRegistry {
		return p, fmt.Errorf("%s.type: %q: want repository or registry", where, r.Type)
	}
	if p.acts == 0 {
		n.info("%s: no actions: it grants nothing", where)
	}
	p.words = actionWords(p.acts)
	var re *regexp.Regexp
	if r.UseRegexp {
		if re, err = regexp.Compile(r.Target); err != nil {
			// alauda then compares the target as a plain name.
			n.info("%s.target: not a valid regular expression, so alauda compared it as a plain name, as here", where)
			re, err = nil, nil
		}
	}
	if r.Type == token.TypeRegistry {
		matches := r.Target == token.CatalogName
		if re != nil {
			matches = re.MatchString(token.CatalogName)
		}
		switch {
		case !matches:
			n.info("%s: the only registry resource is the catalog, which the target does not match: it grants nothing", where)
		case p.acts != 0 && p.acts&token.All == 0:
			n.info("%s: the catalog is granted with the action * only: this rule grants nothing", where)
			p.res, p.acts = policy.CatalogResource, 0
		default:
			p.res, p.words = policy.CatalogResource, []string{"*"}
		}
		return p, nil
	}
	switch {
	case re != nil && r.Target == "":
		p.res = policy.RegexpPrefix + ".*"
		if p.acts != 0 {
			n.info("%s.target: the empty regex matches every name, and so does regexp:.* here", where)
		}
	case re != nil:
		expr, wide := anywhere(r.Target)
		if expr == "" {
			n.info("%s.target: the regex matches only the empty name, which no repository has: rule dropped", where)
			return p, nil
		}
		p.res = policy.RegexpPrefix + expr
		if wide && p.acts != 0 {
			n.info("%s.target: alauda finds the regex anywhere in the name (foo matches xfooy/bar), and so does %s here; it probably grants on more names than meant: anchor it (^...$) to tighten it", where, p.res)
		}
	case !token.ValidRepositoryName(r.Target):
		n.info("%s.target: %q is no valid repository name: rule dropped", where, r.Target)
	default:
		p.res = r.Target
	}
	return p, nil
}
