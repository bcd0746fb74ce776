package migrate

import (
	"fmt"
	"math/rand"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// The reference evaluators below answer as the original servers do, read
// from their code: docker_auth's static ACL (first match) and alauda's
// Authorize (every matching rule, then the registry's union).

// refRequest is one resource asked for, with the actions asked.
type refRequest struct {
	typ, name string
	actions   []string
}

// A request's own context, for the conditions our rules cannot see.
const (
	refService = "registry.example.com"
	refIP      = "10.1.2.3"
)

// daReference answers for docker_auth: who (account "" = anonymous) may do
// which of the asked actions. An account the file does not define is a
// user of another source (docker_auth's LDAP, say), let in without labels.
func daReference(f daFile, account string, req refRequest) []string {
	u, ok := f.Users[account]
	switch {
	case !ok && account != "":
		u = &daUser{}
	case !ok || u == nil || account == "" && u.Password != nil:
		return nil // not let in
	}
	for _, e := range f.ACL {
		if refEntryMatches(e.Match, account, u.Labels, req) {
			if len(*e.Actions) == 1 && (*e.Actions)[0] == "*" {
				return req.actions
			}
			var out []string
			for _, a := range req.actions {
				for _, b := range *e.Actions {
					if a == b {
						out = append(out, a)
						break
					}
				}
			}
			return out
		}
	}
	return nil
}

func refEntryMatches(m *daMatchCond, account string, labels map[string][]string, req refRequest) bool {
	if m == nil {
		return true
	}
	vars := []string{
		"${account}", regexp.QuoteMeta(account),
		"${type}", regexp.QuoteMeta(req.typ),
		"${name}", regexp.QuoteMeta(req.name),
		"${service}", regexp.QuoteMeta(refService),
	}
	if m.IP != nil {
		_, n, err := net.ParseCIDR(*m.IP)
		if err != nil {
			n = &net.IPNet{IP: net.ParseIP(*m.IP), Mask: net.CIDRMask(32, 32)}
		}
		if !n.Contains(net.ParseIP(refIP)) {
			return false
		}
	}
	for label, pat := range m.Labels {
		p := strings.NewReplacer(vars...).Replace(pat)
		found := false
		for _, v := range labels[label] {
			found = found || refMatchString(p, v)
		}
		if !found {
			return false
		}
	}
	return refMatchPermuted(m.Account, account, vars, labels) &&
		refMatchPermuted(m.Type, req.typ, vars, labels) &&
		refMatchPermuted(m.Name, req.name, vars, labels) &&
		refMatchPermuted(m.Service, refService, vars, labels)
}

// refMatchPermuted tries the pattern with the plain substitutions, then
// with every combination of the values of the labels it names.
func refMatchPermuted(p *string, s string, vars []string, labels map[string][]string) bool {
	if p == nil {
		return true
	}
	if refMatchString(strings.NewReplacer(vars...).Replace(*p), s) {
		return true
	}
	var used []string
	for label := range labels {
		if strings.Contains(*p, "${labels:"+label+"}") {
			used = append(used, label)
		}
	}
	if len(used) == 0 {
		return false
	}
	var try func(i int, vars []string) bool
	try = func(i int, vars []string) bool {
		if i == len(used) {
			return refMatchString(strings.NewReplacer(vars...).Replace(*p), s)
		}
		for _, v := range labels[used[i]] {
			if try(i+1, append(vars[:len(vars):len(vars)], "${labels:"+used[i]+"}", v)) {
				return true
			}
		}
		return false
	}
	return try(0, vars)
}

func refMatchString(p, s string) bool {
	if len(p) > 2 && p[0] == '/' && p[len(p)-1] == '/' {
		m, err := regexp.MatchString(p[1:len(p)-1], s)
		return err == nil && m
	}
	m, err := path.Match(p, s)
	return err == nil && m
}

// alaudaReference answers for alauda: the user's matching rules, or
// _anonymous's when none matches (and always for a user without rules),
// then the registry grants what any matching rule lists ("*" = all).
func alaudaReference(f alaudaFile, user string, req refRequest) []string {
	key := alaudaAnonymous
	if user != "" {
		if _, ok := f.Users[user]; !ok {
			return nil
		}
		key = user
	}
	held := refAlaudaMatch(f.Auths[key], req)
	if held == nil {
		held = refAlaudaMatch(f.Auths[alaudaAnonymous], req)
	}
	var out []string
	for _, a := range req.actions {
		if held["*"] || held[a] {
			out = append(out, a)
		}
	}
	return out
}

// refAlaudaMatch returns the actions of the matching rules, nil when none
// matches (a matching rule with no actions still counts as a match).
func refAlaudaMatch(rules []alaudaRule, req refRequest) map[string]bool {
	var held map[string]bool
	for _, r := range rules {
		typ := r.Type
		if typ == "" {
			typ = token.TypeRepository
		}
		if typ != req.typ {
			continue
		}
		match := req.name == r.Target
		if re, err := regexp.Compile(r.Target); r.UseRegexp && err == nil {
			match = re.MatchString(req.name)
		}
		if match {
			if held == nil {
				held = map[string]bool{}
			}
			for _, a := range r.Actions {
				held[a] = true
			}
		}
	}
	return held
}

// The grid every config is checked on.
var (
	gridNames = []string{
		"alice/app", "alice-x/app", "alice/app/sub", "bob/app", "admin/tool", "carol/x", "evil/test/x",
		"catalog", "web/site", "ops/db", "public/hello", "mirror/ubuntu", "mirror/ubuntu/extra",
		"xmirror/ubuntu", "library/mirror", "usersrepo/test1", "team1repo/a", "xteam1repo/a",
		"team2/app", "team2/app/x", "a/b", "b/app", "u", "x", "secret/key", "xpublic/hello", "public",
		"zed/app", "ghost/app", "library/ubuntu", "internal/tool", "shared/x", "team1/app", "x/team1/app",
	}
	// gridOthers are users of other sources: names that no file defines,
	// some of them also names in patterns or prefixes of users' names.
	gridOthers  = []string{"zed", "ghost", "administrator", "ad", "mirror", "public", "a"}
	gridActions = [][]string{{"pull"}, {"push"}, {"delete"}, {"pull", "push"}, {"pull", "push", "delete"}}
)

func bitsOf(actions []string) token.Actions {
	var a token.Actions
	for _, w := range actions {
		a |= token.ParseAction(w)
	}
	return a
}

// compareOnGrid checks ours against the reference for every identity and
// request of the grid: never more, and the same for those exact holds.
func compareOnGrid(t *testing.T, label string, p *policy.Compiled, users []string, exact func(user string) bool, ref func(user string, req refRequest) []string) (checked int) {
	t.Helper()
	var reqs []refRequest
	for _, n := range gridNames {
		for _, a := range gridActions {
			reqs = append(reqs, refRequest{token.TypeRepository, n, a})
		}
	}
	reqs = append(reqs, refRequest{token.TypeRegistry, token.CatalogName, []string{"*"}})
	for _, user := range append([]string{""}, users...) {
		for _, req := range reqs {
			scopes, err := token.ParseScopes([]string{req.typ + ":" + req.name + ":" + strings.Join(req.actions, ",")})
			if err != nil || len(scopes) != 1 {
				t.Fatalf("test bug: scope for %+v: %v %v", req, scopes, err)
			}
			var ours token.Actions
			for _, g := range p.Rules().Authorize(policy.Identity{Name: user}, scopes) {
				ours |= g.Actions
			}
			theirs := bitsOf(ref(user, req))
			if req.typ == token.TypeRegistry {
				ours, theirs = ours&token.All, theirs&token.All // the catalog's one action, "*"
			}
			who := user
			if who == "" {
				who = "anonymous"
			}
			if ours&^theirs != 0 {
				t.Fatalf("%s: %s asking %s:%s:%v gets %v here but only %v from the original", label, who, req.typ, req.name, req.actions, ours, theirs)
			}
			if exact(user) && ours != theirs {
				t.Fatalf("%s: %s asking %s:%s:%v gets %v here but %v from the original, with no warning that grants narrow", label, who, req.typ, req.name, req.actions, ours, theirs)
			}
			checked++
		}
	}
	return checked
}

// convertAndCompare converts one config and compares it on the grid:
// never more than the original, and exactly the same for the file's users
// (and for users of other sources, who docker_auth lets in too) unless a
// warning says they may get less. With mustBeExact, any such warning
// fails the test and every identity must get exactly the same.
func convertAndCompare(t *testing.T, label, format string, data []byte, mustBeExact bool) (converted, exact bool, checked int) {
	t.Helper()
	var cfg policy.Config
	var ws []warning
	var err error
	var ref func(string, refRequest) []string
	var users, others []string
	switch format {
	case DockerAuth:
		var f daFile
		if decodeStrict(data, &f) != nil {
			t.Fatalf("%s: test bug: config does not parse", label)
		}
		cfg, ws, err = convertDockerAuth(data)
		ref = func(u string, r refRequest) []string { return daReference(f, u, r) }
		others = gridOthers
	case Alauda:
		var f alaudaFile
		if decodeStrict(data, &f) != nil {
			t.Fatalf("%s: test bug: config does not parse", label)
		}
		cfg, ws, err = convertAlauda(data)
		ref = func(u string, r refRequest) []string { return alaudaReference(f, u, r) }
	}
	if err != nil {
		if mustBeExact {
			t.Fatalf("%s: %v", label, err)
		}
		return false, false, 0
	}
	if err := checkRules(cfg.Rules); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	exact, exactOthers := true, true
	for _, w := range ws {
		if mustBeExact && (w.narrows || w.others) {
			t.Errorf("%s: a warning that grants narrow: %s", label, w.msg)
		}
		exact = exact && !w.narrows
		exactOthers = exactOthers && !w.narrows && !w.others
	}
	file := map[string]bool{"": true}
	for _, u := range cfg.Users {
		users = append(users, u.Name)
		file[u.Name] = true
	}
	for _, o := range others {
		if !file[o] {
			users = append(users, o)
		}
	}
	exactFor := func(u string) bool {
		if file[u] {
			return exact || mustBeExact
		}
		return exactOthers || mustBeExact
	}
	p := mustCompile(t, cfg)
	return true, exact, compareOnGrid(t, label, p, users, exactFor, ref)
}

// TestEquivalenceTestdata compares the realistic configs with the
// original servers' behaviour.
func TestEquivalenceTestdata(t *testing.T) {
	for _, c := range []struct{ format, file string }{{DockerAuth, "docker_auth.yml"}, {Alauda, "alauda.yml"}} {
		data, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			t.Fatal(err)
		}
		ok, exact, n := convertAndCompare(t, c.file, c.format, data, true)
		if !ok {
			t.Fatalf("%s does not convert", c.file)
		}
		t.Logf("%s: %d requests, each answered exactly as the original: %v", c.file, n, exact)
	}
}

// exactLayouts are the layouts configs are usually written in (issue 19):
// each converts with no warning that grants narrow, and every identity of
// the grid (the file's users, anonymous, users of other sources) gets
// exactly what the original gives.
var exactLayouts = []struct{ name, format, config string }{
	{"admin first", DockerAuth, daUsers + `acl:
  - {match: {account: admin}, actions: ['*']}
  - {match: {account: '/.+/', name: '${account}/*'}, actions: ['*']}
  - {match: {account: '/.+/', name: 'library/*'}, actions: [pull]}
  - {match: {account: '/.+/', type: registry, name: catalog}, actions: ['*']}
  - {match: {account: '/.+/'}, actions: [pull]}
  - {match: {account: '/.+/', name: 'web/*'}, actions: [push]}
`},
	{"admin first, then a deny for everyone else", DockerAuth, daUsers + `  '': {}
acl:
  - {match: {account: admin}, actions: ['*']}
  - {match: {name: 'secret/*'}, actions: []}
  - {match: {account: '*'}, actions: [pull]}
  - {match: {account: '/.+/', name: '${account}/*'}, actions: ['*']}
`},
	{"anonymous public by regexp", DockerAuth, daUsers + `  '': {}
acl:
  - {match: {account: admin}, actions: ['*']}
  - {match: {account: '', name: '/^public\//'}, actions: [pull]}
  - {match: {account: '/.+/', name: '${account}/*'}, actions: ['*']}
  - {match: {account: '/.+/', name: '/^public\//'}, actions: [pull]}
  - {match: {account: '/.+/', name: '/mirror/'}, actions: [pull]}
`},
	{"per-user namespace, a pull-only robot first", DockerAuth, daUsers + `acl:
  - {match: {account: carol}, actions: [pull]}
  - {match: {account: '/.+/', name: '${account}/*'}, actions: ['*']}
  - {match: {account: '/.+/', type: registry, name: catalog}, actions: ['*']}
  - {match: {account: '/.+/', name: 'public/*'}, actions: [pull]}
`},
	{"labels as groups", DockerAuth, daUsers + `acl:
  - {match: {labels: {team: web}, name: 'web/*'}, actions: [push, pull]}
  - {match: {account: '/.+/', name: '${labels:team}/*'}, actions: [pull]}
  - {match: {labels: {team: '/o/'}, name: 'ops/*'}, actions: ['*']}
  - {match: {labels: {team: ops}}, actions: [pull]}
`},
	{"deny by empty actions", DockerAuth, daUsers + `acl:
  - {match: {account: bob, name: 'ops/*'}, actions: []}
  - {match: {labels: {team: ops}, name: 'ops/*'}, actions: ['*']}
  - {match: {account: '/.+/', name: 'ops/*'}, actions: [pull]}
  - {match: {account: carol}, actions: []}
  - {match: {account: '/.+/', name: '/^(web|team2)\//'}, actions: [pull, push]}
  - {match: {account: '/.+/'}, actions: [pull]}
`},
	{"alauda regex targets", Alauda, `users: {user1: password1, user2: "` + hashBob + `"}
auths:
  user1: [{target: 'team1/.*', useRegexp: true, actions: [pull, push]}, {target: usersrepo/test1, actions: [pull]}]
  user2: [{target: '^team2/.*$', useRegexp: true, actions: ['*']}, {target: catalog, type: registry, actions: ['*']}]
  _anonymous: [{target: '^public/', useRegexp: true, actions: [pull]}]
`},
	{"alauda anonymous fallback", Alauda, `users: {user1: password1, user2: "` + hashBob + `", guest: guest-password}
auths:
  user1: [{target: 'team1/.*', useRegexp: true, actions: [pull]}]
  user2: [{target: 'usersrepo/test1', actions: [pull, push]}, {target: '^public/h', useRegexp: true, actions: ['*']}]
  _anonymous: [{target: '.*', useRegexp: true, actions: [pull]}, {target: 'public/hello', actions: [push]}]
`},
}

// TestEquivalenceExactLayouts checks exactLayouts in the exact mode.
func TestEquivalenceExactLayouts(t *testing.T) {
	for _, l := range exactLayouts {
		t.Run(l.name, func(t *testing.T) {
			if ok, _, n := convertAndCompare(t, l.name, l.format, []byte(l.config), true); ok {
				t.Logf("%d requests, each answered exactly as the original", n)
			}
		})
	}
}

// TestEquivalenceRandomDockerAuth compares random docker_auth configs
// built from a vocabulary of the constructs above.
func TestEquivalenceRandomDockerAuth(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	accounts := []string{"", "admin", "alice", "''", "'/.+/'", "'*'", "'/^a/'", "'a*'", "'/.*/'", "'/o/'", "ghost"}
	types := []string{"", "repository", "registry"}
	names := []string{
		"", "'alice/*'", "'${account}/*'", "'web/*'", "'public/*'", "'/^mirror\\/[a-z]+/'", "'/mirror/'",
		"catalog", "'*'", "'*/*'", "'[ab]*/app'", "'${labels:team}/*'", "'${account}-*/app'", "'a?ice/*'",
		"'*/[^a]pp'", "'*[^x]*'", "evil/test/x", "'/^team2\\/.*$/'", "'/.*/'", "'${account}'",
	}
	labels := []string{"", "{team: web}", "{team: '/o/'}", "{team: '${account}'}"}
	actions := []string{"['*']", "[pull]", "[pull, push]", "[]", "[push]", "[pull, '*']", "[delete, pull]", "[]"}
	var converted, exact, checked int
	for i := 0; i < 400; i++ {
		var b strings.Builder
		b.WriteString(daUsers)
		if rng.Intn(3) > 0 {
			b.WriteString("  '': {}\n")
		}
		b.WriteString("acl:\n")
		for n := 1 + rng.Intn(6); n > 0; n-- {
			var conds []string
			pick := func(key string, from []string) {
				if v := from[rng.Intn(len(from))]; v != "" {
					conds = append(conds, key+": "+v)
				}
			}
			pick("account", accounts)
			pick("type", types)
			pick("name", names)
			pick("labels", labels)
			act := actions[rng.Intn(len(actions))]
			if act == "[]" && rng.Intn(3) == 0 {
				conds = append(conds, "ip: 10.0.0.0/8")
			}
			fmt.Fprintf(&b, "  - match: {%s}\n    actions: %s\n", strings.Join(conds, ", "), act)
		}
		ok, ex, n := convertAndCompare(t, fmt.Sprintf("config %d:\n%s\n", i, b.String()), DockerAuth, []byte(b.String()), false)
		if ok {
			converted++
		}
		if ex {
			exact++
		}
		checked += n
	}
	t.Logf("%d random configs converted, %d of them with no narrowing warning (checked equal), %d requests compared", converted, exact, checked)
	if converted < 200 || exact < 40 {
		t.Errorf("the generator makes too few usable configs: %d converted, %d exact", converted, exact)
	}
}

// TestEquivalenceRandomAlauda does the same for alauda.
func TestEquivalenceRandomAlauda(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	keys := []string{"user1", "user2", "guest", "_anonymous", "ghost"}
	targets := []string{
		"{target: alice/app}", "{target: 'team1repo/.*', useRegexp: true}", "{target: '^team2/.*$', useRegexp: true}",
		"{target: catalog, type: registry}", "{target: 'cat', useRegexp: true, type: registry}", "{target: '^public/.*$', useRegexp: true}",
		"{target: '.*', useRegexp: true}", "{target: 'mirror', useRegexp: true}", "{target: '', useRegexp: true}",
		"{target: usersrepo/test1}", "{target: '^(a|b)/.*$', useRegexp: true}", "{target: 'a(', useRegexp: true}",
	}
	actions := []string{"['*']", "[pull]", "[pull, push]", "[]", "[push]", "[delete]"}
	var converted, exact, checked int
	for i := 0; i < 300; i++ {
		var b strings.Builder
		b.WriteString("users:\n  user1: password1\n  user2: " + hashBob + "\n  guest: guest-password\n")
		if rng.Intn(4) == 0 {
			b.WriteString("  _anonymous: anon-password\n")
		}
		b.WriteString("auths:\n")
		for _, k := range keys {
			if rng.Intn(3) == 0 {
				continue
			}
			fmt.Fprintf(&b, "  %s:\n", k)
			for n := rng.Intn(4); n > 0; n-- {
				t := targets[rng.Intn(len(targets))]
				fmt.Fprintf(&b, "    - %s, actions: %s}\n", strings.TrimSuffix(t, "}"), actions[rng.Intn(len(actions))])
			}
			if strings.HasSuffix(b.String(), ":\n") {
				b.WriteString("    []\n")
			}
		}
		ok, ex, n := convertAndCompare(t, fmt.Sprintf("config %d:\n%s\n", i, b.String()), Alauda, []byte(b.String()), false)
		if ok {
			converted++
		}
		if ex {
			exact++
		}
		checked += n
	}
	t.Logf("%d random configs converted, %d of them with no narrowing warning (checked equal), %d requests compared", converted, exact, checked)
	if converted < 250 || exact < 30 {
		t.Errorf("the generator makes too few usable configs: %d converted, %d exact", converted, exact)
	}
}
