package migrate

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// cesanta/docker_auth: users are name → {password, labels}; acl is an
// ordered list whose first matching entry decides, its actions
// intersected with the request. Each entry is read here as clauses
// (subjects and the names they are matched on), then firstmatch.go makes
// order-free rules that give each request what its first match gives.

// daFile is the part of a docker_auth configuration read here.
type daFile struct {
	Users map[string]*daUser `yaml:"users"`
	ACL   []daEntry          `yaml:"acl"`
	// Other holds the sections that are not policy (server, token, the
	// other authentication and authorization back ends).
	Other map[string]any `yaml:",inline"`
}

type daUser struct {
	Password *string             `yaml:"password"`
	Labels   map[string][]string `yaml:"labels"`
}

type daEntry struct {
	Match   *daMatchCond `yaml:"match"`
	Actions *[]string    `yaml:"actions"`
	Comment string       `yaml:"comment"`
}

type daMatchCond struct {
	Account *string           `yaml:"account"`
	Type    *string           `yaml:"type"`
	Name    *string           `yaml:"name"`
	Service *string           `yaml:"service"`
	IP      *string           `yaml:"ip"`
	Labels  map[string]string `yaml:"labels"`
}

// daActions is what an entry grants.
type daActions struct {
	// repo: the repository actions (token.Every for the lone "*", which
	// docker_auth reads as "everything asked for").
	repo token.Actions
	// catalog: the literal action "*" is listed, which is what a catalog
	// request asks for.
	catalog bool
	// mixed: "*" is listed with other actions.
	mixed bool
}

func (a daActions) none() bool { return a.repo == 0 && !a.catalog }

// member is one identity docker_auth could see: a user of the file, or
// the anonymous user (name "") when it lets anonymous requests in.
type member struct {
	name   string
	labels map[string][]string
}

func (m member) subject() string {
	if m.name == "" {
		return policy.SubjectAnonymous
	}
	return policy.SubjectUserPrefix + m.name
}

// display names a member in a message.
func (m member) display() string {
	if m.name == "" {
		return "anonymous"
	}
	return m.name
}

// daParsed is one checked acl entry.
type daParsed struct {
	where   string // "acl[3]"
	act     daActions
	account *string
	name    *string
	typ     string // "", "repository" or "registry"
	labels  map[string]string
	dropped []string // conditions left out of a deny: "service", "ip"
}

// clause is one translated part of an entry: subjects and what they are
// matched on.
type clause struct {
	subjects    []string
	allow, deny []string // repository resources (see nameRes)
	catalog     bool     // the entry matches the catalog request
}

type daConv struct {
	notes
	members []member
	anon    bool            // docker_auth lets requests without credentials in
	known   map[string]bool // the file's user names
	rules   []policy.Rule
	regions []*daRegion
}

func convertDockerAuth(data []byte) (policy.Config, []warning, error) {
	var f daFile
	if err := decodeStrict(data, &f); err != nil {
		return policy.Config{}, nil, err
	}
	c := &daConv{known: map[string]bool{}}
	c.ignored(f.Other)
	users, err := c.users(f.Users)
	if err != nil {
		return policy.Config{}, nil, err
	}
	entries := make([]daParsed, len(f.ACL))
	for i, e := range f.ACL {
		if entries[i], err = parseEntry(i, e); err != nil {
			return policy.Config{}, nil, err
		}
	}
	// Denies at the end only restate "no match = deny"; translated, they
	// would cancel what earlier entries grant.
	last := len(entries)
	for last > 0 && entries[last-1].act.none() {
		last--
	}
	for i := last; i < len(entries); i++ {
		c.info("%s: dropped: an entry with actions [] at the end of the list changes nothing in docker_auth (what no entry grants is denied), and here it would cancel what earlier entries grant", entries[i].where)
	}
	for _, p := range entries[:last] {
		if err := c.entry(p); err != nil {
			return policy.Config{}, nil, err
		}
	}
	allow, deny := c.firstMatch(c.regions)
	c.emitRegions(c.regions, allow, deny)
	return policy.Config{Users: users, Rules: c.rules}, c.list, nil
}

// ignored warns once about the sections that are not policy.
func (c *daConv) ignored(other map[string]any) {
	if len(other) == 0 {
		return
	}
	keys := make([]string, 0, len(other))
	for k := range other {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hint := ""
	if _, ok := other["token"]; ok {
		hint = "; token's issuer and expiration belong in the Caddyfile's registry_auth block (issuer, token_lifetime)"
	}
	c.info("ignored, not policy: %s%s", strings.Join(keys, ", "), hint)
}

// users checks the users and records who docker_auth could see.
func (c *daConv) users(in map[string]*daUser) ([]policy.User, error) {
	names := make([]string, 0, len(in))
	for name := range in {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []policy.User
	for _, name := range names {
		u, where := in[name], fmt.Sprintf("users[%q]", name)
		if name == "" {
			c.anonymousUser(where, u)
			continue
		}
		if err := token.CheckUserName(name); err != nil {
			c.info("%s: skipped: %v", where, err)
			continue
		}
		if strings.Contains(name, "/") {
			// Such a name would be several path components where
			// docker_auth substitutes it into a name pattern.
			c.narrow("%s: skipped: a name with '/' is not supported", where)
			continue
		}
		if u == nil {
			c.info("%s: skipped: an empty entry, which docker_auth ignores", where)
			continue
		}
		if u.Password == nil {
			return nil, fmt.Errorf("%s: no password: docker_auth accepts any password for such a user; give it a bcrypt hash", where)
		}
		if *u.Password == "" {
			return nil, fmt.Errorf("%s: empty password; give the user a bcrypt hash", where)
		}
		if _, err := policy.CheckHash(*u.Password); err != nil {
			return nil, fmt.Errorf("%s.password: %v", where, err)
		}
		out = append(out, policy.User{Name: name, Password: *u.Password})
		c.known[name] = true
		c.members = append(c.members, member{name: name, labels: u.Labels})
	}
	return out, nil
}

// anonymousUser handles users[""]: docker_auth lets requests without
// credentials in only when it exists without a password.
func (c *daConv) anonymousUser(where string, u *daUser) {
	switch {
	case u == nil:
		c.info("%s: an empty entry, which docker_auth ignores: requests without credentials get nothing", where)
	case u.Password != nil:
		c.info("%s: has a password, so docker_auth let no request without credentials in: rules for anonymous are left out", where)
	default:
		c.anon = true
		c.members = append([]member{{labels: u.Labels}}, c.members...)
		c.info("%s: skipped: it lets requests without credentials in, which are the subject anonymous here", where)
	}
}

// substRe finds docker_auth's substitutions.
var substRe = regexp.MustCompile(`\$\{([^}]*)\}`)

var captureRe = regexp.MustCompile(`^.+:[0-9]+$`)

func hasSubst(p *string) bool { return p != nil && substRe.MatchString(*p) }

// checkSubst accepts ${account} and ${labels:x}, the substitutions that
// depend only on who asks.
func checkSubst(where, p string) error {
	for _, m := range substRe.FindAllStringSubmatch(p, -1) {
		v := m[1]
		switch {
		case v == "account", strings.HasPrefix(v, "labels:") && len(v) > len("labels:"):
		case v == "service", v == "type", v == "name":
			return fmt.Errorf("%s: ${%s} depends on the request, which no rule here can express", where, v)
		case captureRe.MatchString(v):
			return fmt.Errorf("%s: ${%s}, a regex capture group, has no equivalent here", where, v)
		default:
			return fmt.Errorf("%s: unknown substitution ${%s}", where, v)
		}
	}
	return nil
}

// checkPattern refuses what docker_auth refuses (a regex that does not
// compile) and a malformed glob, which would match nothing.
func checkPattern(where, p string) error {
	if err := checkSubst(where, p); err != nil {
		return err
	}
	if re, ok := daRegex(p); ok {
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("%s: bad regular expression: %v", where, err)
		}
		return nil
	}
	if !hasSubst(&p) {
		if _, err := parseGlob(p); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
	}
	return nil
}

func parseActions(where string, list []string) (daActions, error) {
	var a daActions
	if len(list) == 1 && list[0] == "*" {
		return daActions{repo: token.Every, catalog: true}, nil
	}
	for i, w := range list {
		switch w {
		case "pull":
			a.repo |= token.Pull
		case "push":
			a.repo |= token.Push
		case "delete":
			a.repo |= token.Delete
		case "*":
			// Listed with others, "*" is only the literal action a
			// catalog request asks for.
			a.catalog, a.mixed = true, true
		default:
			return a, fmt.Errorf("%s.actions[%d]: unknown action %q (want pull, push, delete or *)", where, i, w)
		}
	}
	return a, nil
}

// parseEntry checks one entry. Errors are for what cannot be translated
// without granting more.
func parseEntry(i int, e daEntry) (daParsed, error) {
	p := daParsed{where: fmt.Sprintf("acl[%d]", i)}
	if e.Actions == nil {
		return p, fmt.Errorf("%s.actions: missing (write [] to deny)", p.where)
	}
	var err error
	if p.act, err = parseActions(p.where, *e.Actions); err != nil {
		return p, err
	}
	m := e.Match
	if m == nil {
		m = &daMatchCond{}
	}
	if m.Account == nil && m.Type == nil && m.Name == nil && m.Service == nil && m.IP == nil && len(m.Labels) == 0 && !p.act.none() {
		return p, fmt.Errorf("%s.match: empty or missing: the entry grants its actions on everything to everyone", p.where)
	}
	for _, cond := range []struct {
		key, what string
		v         *string
	}{{"service", "service", m.Service}, {"ip", "address", m.IP}} {
		if cond.v == nil {
			continue
		}
		if !p.act.none() {
			return p, fmt.Errorf("%s.match.%s: no equivalent here, and leaving it out would grant the entry's actions from every %s", p.where, cond.key, cond.what)
		}
		p.dropped = append(p.dropped, cond.key)
	}
	if m.Type != nil {
		switch *m.Type {
		case token.TypeRepository, token.TypeRegistry:
			p.typ = *m.Type
		default:
			return p, fmt.Errorf("%s.match.type: %q: want repository or registry", p.where, *m.Type)
		}
	}
	for _, f := range []struct {
		key string
		v   *string
	}{{"account", m.Account}, {"name", m.Name}} {
		if f.v == nil {
			continue
		}
		if err := checkPattern(p.where+".match."+f.key, *f.v); err != nil {
			return p, err
		}
	}
	for label, pat := range m.Labels {
		if err := checkPattern(fmt.Sprintf("%s.match.labels[%q]", p.where, label), pat); err != nil {
			return p, err
		}
	}
	p.account, p.name, p.labels = m.Account, m.Name, m.Labels
	return p, nil
}

// entry translates one entry into rules.
func (c *daConv) entry(p daParsed) error {
	if p.act.mixed {
		c.narrow(`%s.actions: "*" listed with other actions is, in docker_auth, the literal action "*" (all actions to a client that asks for "*"); here the entry grants the other actions listed, and the catalog`, p.where)
	}
	if p.typ == token.TypeRegistry && !p.act.catalog && !p.act.none() {
		c.info(`%s: the catalog is granted with the action "*" only (what a catalog request asks for), so this entry grants nothing`, p.where)
	}
	for _, k := range p.dropped {
		c.narrow("%s.match.%s: left out: the entry now denies whatever the %s", p.where, k, map[string]string{"ip": "address", "service": "service"}[k])
	}
	var clauses []clause
	if g, ok := c.userGlob(p); ok || (!hasSubst(p.account) && !hasSubst(p.name) && len(p.labels) == 0) {
		var err error
		if clauses, err = c.symbolic(p, g); err != nil {
			return err
		}
	} else {
		// Written out for the file's users, the entry covers no user of
		// another source. That only grants less, unless the entry also
		// denies (as every entry that is not "*" does): then such a user
		// would escape the denial. Labels belong to the file's users, so
		// an entry with a labels condition, or a name that substitutes a
		// label, matches no one else anyway (docker_auth too leaves such a
		// name unsubstituted for a user without the label, and it then
		// matches no repository).
		labels := len(p.labels) > 0 || (p.name != nil && strings.Contains(*p.name, "${labels:"))
		if !labels && p.act.repo != token.Every && !c.accountIsName(p) {
			return fmt.Errorf("%s: with an account pattern, this name can only be written out for the users of this file, and users of other sources would escape what the entry denies; use ${account} as a whole path component, or name the account", p.where)
		}
		var err error
		if clauses, err = c.perUser(p, !labels && !c.accountIsName(p)); err != nil {
			return err
		}
	}
	if len(clauses) == 0 {
		c.info("%s: dropped: it matches no request here", p.where)
		return nil
	}
	c.regions = append(c.regions, regionOf(p, clauses))
	return nil
}

// userGlob translates a name whose only substitutions are ${account} as
// whole path components into our {user} glob, when nothing else needs the
// per-user expansion.
func (c *daConv) userGlob(p daParsed) (string, bool) {
	const ph = "${account}"
	if p.name == nil || !hasSubst(p.name) || hasSubst(p.account) || len(p.labels) > 0 {
		return "", false
	}
	name := *p.name
	if _, re := daRegex(name); re {
		return "", false
	}
	rest := strings.ReplaceAll(name, ph, "")
	// For anonymous the substitution is empty, which could turn the
	// pattern into a regex; and without a "/" the name could be the
	// catalog's.
	if _, re := daRegex(rest); re || (p.typ != token.TypeRepository && !strings.Contains(rest, "/")) {
		return "", false
	}
	comps := strings.Split(name, "/")
	for i, comp := range comps {
		if comp == ph {
			comps[i] = policy.UserPlaceholder
			continue
		}
		for j := 0; j < len(comp); j++ {
			if !token.NameChar(comp[j]) && comp[j] != '*' {
				return "", false
			}
		}
	}
	g := strings.Join(comps, "/")
	for strings.Contains(g, "**") {
		g = strings.ReplaceAll(g, "**", "*") // path.Match's "**" is "*"
	}
	return g, true
}

// accountIsName reports whether the entry's account is one literal name
// (or "", the anonymous user).
func (c *daConv) accountIsName(p daParsed) bool {
	if p.account == nil {
		return false
	}
	if _, re := daRegex(*p.account); re {
		return false
	}
	_, ok := literalGlob(*p.account)
	return ok
}

// symbolic translates an entry that needs no per-user expansion of its
// name; userGlob is its name when it has ${account}.
func (c *daConv) symbolic(p daParsed, userGlob string) ([]clause, error) {
	subjects, err := c.accountSubjects(p)
	if err != nil || len(subjects) == 0 {
		return nil, err
	}
	cl := clause{subjects: subjects}
	switch {
	case p.name == nil:
		cl.allow, cl.deny, cl.catalog = []string{"**"}, []string{"**"}, true
	case userGlob != "":
		if c.accountIsName(p) {
			if lit, _ := literalGlob(*p.account); lit != "" && literalPattern(lit) == lit {
				userGlob = strings.ReplaceAll(userGlob, policy.UserPlaceholder, lit) // one user: say who
			}
		}
		cl.allow, cl.deny = []string{userGlob}, []string{userGlob}
	default:
		r, err := daName(*p.name)
		if err != nil { // parseEntry checked it
			return nil, nil
		}
		cl.add(r)
		c.grantWarning(p, r)
	}
	c.applyType(p, &cl)
	if cl.empty() {
		return nil, nil
	}
	return []clause{cl}, nil
}

// accountSubjects turns a substitution-free account pattern into subjects:
// a name, the usual "everyone" forms, or the users (of any source) whose
// name the pattern matches as docker_auth matches it.
func (c *daConv) accountSubjects(p daParsed) ([]string, error) {
	all := policy.SubjectAuthenticated
	if c.anon {
		all = policy.SubjectEveryone
	}
	if p.account == nil {
		return []string{all}, nil
	}
	a, where := *p.account, p.where+".match.account"
	switch a {
	case "*", "/.*/":
		return []string{all}, nil
	case "/.+/":
		return []string{policy.SubjectAuthenticated}, nil
	}
	expr, re := daRegex(a)
	if !re {
		if lit, ok := literalGlob(a); ok {
			switch {
			case lit == "" && c.anon:
				return []string{policy.SubjectAnonymous}, nil
			case lit == "":
				c.info(`%s: "" is the anonymous user, whom docker_auth lets in only with a users[""] entry without password: entry dropped`, where)
				return nil, nil
			case !c.known[lit]:
				c.info("%s: no user %q is defined in users", where, lit)
			}
			return []string{policy.SubjectUserPrefix + lit}, nil
		}
		var err error
		if expr, err = accountGlobRegexp(a); err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
	} else {
		if _, err := regexp.Compile(expr); err != nil {
			c.info("%s: %q does not parse, so docker_auth never matches it: entry dropped", where, a)
			return nil, nil
		}
		// docker_auth finds the regex anywhere in the name.
		var wide bool
		if expr, wide = anywhere(expr); wide && p.act.repo != 0 {
			c.info("%s: docker_auth finds %s anywhere in the user name, and so does user:regexp:%s here; it probably covers more users than meant: anchor it (^...$) to tighten it", where, a, expr)
		}
	}
	var subjects []string
	if expr != "" {
		subjects = append(subjects, policy.SubjectUserPrefix+policy.RegexpPrefix+expr)
	}
	if c.anon && daMatch(a, "") {
		subjects = append(subjects, policy.SubjectAnonymous)
	}
	return subjects, nil
}

// accountGlobRegexp is a path.Match glob on account names as a regular
// expression, for the globs whose meaning is plain: literal characters,
// "*" and "?" (neither crossing "/").
func accountGlobRegexp(glob string) (string, error) {
	var b strings.Builder
	for _, r := range glob {
		switch r {
		case '*':
			b.WriteString("[^/]*")
		case '?':
			b.WriteString("[^/]")
		case '[', '\\':
			return "", fmt.Errorf("%q: character classes and escapes in account globs are not translated; write the pattern as a /regex/", glob)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	return b.String(), nil
}

// perUser translates an entry with labels or substitutions by evaluating
// it for each identity docker_auth could see, exactly as docker_auth does.
// others tells whether docker_auth would match users of other sources too.
func (c *daConv) perUser(p daParsed, others bool) ([]clause, error) {
	var out []clause
	var names []string
	index := map[string]int{}
	var narrowed nameRes // which narrowings of grants happened
	for _, m := range c.members {
		ok, err := c.memberMatches(p, m)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		cl := clause{subjects: []string{m.subject()}}
		if p.name == nil {
			cl.allow, cl.deny, cl.catalog = []string{"**"}, []string{"**"}, true
		} else {
			vs, err := variants(*p.name, m)
			if err != nil {
				return nil, fmt.Errorf("%s.match.name for %s: %v", p.where, m.display(), err)
			}
			for _, v := range vs {
				r, err := daName(v)
				if err != nil {
					continue // docker_auth: a pattern that does not parse matches nothing
				}
				cl.add(r)
				narrowed.wide = narrowed.wide || r.wide
				narrowed.slash = narrowed.slash || r.slash
			}
		}
		c.applyType(p, &cl)
		if cl.empty() {
			continue
		}
		names = append(names, m.display())
		// One rule for all the identities that get the same resources.
		key := strings.Join(cl.allow, "\x00") + "\x01" + strings.Join(cl.deny, "\x00") + fmt.Sprint(cl.catalog)
		if i, ok := index[key]; ok {
			out[i].subjects = append(out[i].subjects, cl.subjects...)
			continue
		}
		index[key] = len(out)
		out = append(out, cl)
	}
	if len(out) > 0 && others {
		c.narrowOthers("%s: written out for each user defined in the file that it matches (%s): it covers no user of another source", p.where, listNames(names))
	}
	c.grantWarning(p, narrowed)
	return out, nil
}

// memberMatches evaluates the account and labels conditions for m.
func (c *daConv) memberMatches(p daParsed, m member) (bool, error) {
	if p.account != nil {
		vs, err := variants(*p.account, m)
		if err != nil {
			return false, fmt.Errorf("%s.match.account for %s: %v", p.where, m.display(), err)
		}
		if !slices.ContainsFunc(vs, func(v string) bool { return daMatch(v, m.name) }) {
			return false, nil
		}
	}
	for label, pat := range p.labels {
		// docker_auth substitutes only ${account} in label patterns.
		pat = strings.ReplaceAll(pat, "${account}", regexp.QuoteMeta(m.name))
		if !slices.ContainsFunc(m.labels[label], func(v string) bool { return daMatch(pat, v) }) {
			return false, nil
		}
	}
	return true, nil
}

// maxVariants bounds the label-value combinations tried for one pattern.
const maxVariants = 256

// variants returns the pattern p as docker_auth tries it for m: with
// ${account} replaced (quoted), then, if p has ${labels:x} for labels m
// has, once for each combination of their values (not quoted, as there).
func variants(p string, m member) ([]string, error) {
	base := []string{"${account}", regexp.QuoteMeta(m.name)}
	out := []string{strings.NewReplacer(base...).Replace(p)}
	var keys []string
	for k := range m.labels {
		if strings.Contains(p, "${labels:"+k+"}") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return out, nil
	}
	sort.Strings(keys)
	combos := [][]string{nil}
	for _, k := range keys {
		var next [][]string
		for _, cmb := range combos {
			for _, v := range m.labels[k] {
				next = append(next, append(slices.Clip(cmb), "${labels:"+k+"}", v))
			}
		}
		if len(next) > maxVariants {
			return nil, fmt.Errorf("more than %d combinations of label values", maxVariants)
		}
		combos = next
	}
	for _, cmb := range combos {
		out = append(out, strings.NewReplacer(append(slices.Clip(base), cmb...)...).Replace(p))
	}
	return out, nil
}

// grantWarning tells where an entry may give less than docker_auth did,
// or grants on names it probably did not mean to.
func (c *daConv) grantWarning(p daParsed, r nameRes) {
	if p.typ == token.TypeRegistry {
		return
	}
	if r.wide && p.act.repo != 0 {
		c.info("%s.match.name: docker_auth finds the regex anywhere in the name (/foo/ matches xfooy/bar), and so does the rule here (regexp:.*(?:foo).*); it probably grants on more names than meant: anchor it (^...$) to tighten it", p.where)
	}
	if r.slash {
		c.narrow(`%s.match.name: a [...] class that matches "/" after a "*", which path.Match reads more narrowly than a regular expression does: here the entry grants on the narrower reading and refuses on the wider one, so it may give less`, p.where)
	}
}

func (c *daConv) applyType(p daParsed, cl *clause) {
	switch p.typ {
	case token.TypeRepository:
		cl.catalog = false
	case token.TypeRegistry:
		cl.allow, cl.deny = nil, nil
	}
}

func (cl *clause) add(r nameRes) {
	if r.allow != "" && !slices.Contains(cl.allow, r.allow) {
		cl.allow = append(cl.allow, r.allow)
	}
	if r.deny != "" && !slices.Contains(cl.deny, r.deny) {
		cl.deny = append(cl.deny, r.deny)
	}
	cl.catalog = cl.catalog || r.catalog
}

func (cl *clause) empty() bool { return len(cl.deny) == 0 && !cl.catalog }
