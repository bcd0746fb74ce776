package migrate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// docker_auth's first match, in rules that have no order. Take each
// action on its own (pull, push, delete, and the catalog). A request gets
// it when the first entry matching the request grants it. So an entry
// that grants the action is an allow of it where the entry matches, and
// an entry k that does not grant it matters only where a later entry
// that grants it matches too. There, one of two things keeps the first
// match's answer:
//
//   - a deny of the action on what k matches, less what earlier entries
//     granting it match (they come first there), or
//   - the later entries' allows leave out what k matches.
//
// Either is exact when the differences can be written as subjects and
// patterns (see part.minus); the one with the simpler rules is taken. When
// neither can, the later allows leave out what k matches for each user of
// the file on their own if that is exact for all of them (users of other
// sources then lose the grant); else the deny covers the overlap with the
// earlier entries too. Both never grant more, and a warning gives the
// rule to add or the grant that was lost.

// part is what one translated clause matches: subjects and one resource,
// a repository pattern or the catalog.
type part struct {
	who subj
	res string
}

func newPart(who subj, res string) (part, bool) {
	if perUser(res) {
		who.anon = false // {user} matches no anonymous request
	}
	return part{who: who, res: res}, !who.empty()
}

func (p part) catalog() bool { return p.res == policy.CatalogResource }

func (p part) key() string { return p.who.key() + "\x01" + p.res }

// meets reports whether p and o may match a same request.
func (p part) meets(o part) bool {
	if !p.who.meets(o.who) || p.catalog() != o.catalog() {
		return false
	}
	if p.catalog() {
		return true
	}
	users, all := meetUsers(p.res, o.res)
	return all || slices.ContainsFunc(users, func(u string) bool { return p.who.has(u) && o.who.has(u) })
}

// minus returns p without the requests o matches; ok is false when no
// subjects and patterns can say it.
func (p part) minus(o part) (out []part, ok bool) {
	if !p.meets(o) {
		return []part{p}, true
	}
	if p.who.anon && perUser(o.res) {
		// o leaves anonymous out: keep that part whole.
		rest := p
		rest.who.anon = false
		more, ok := rest.minus(o)
		return append([]part{{who: subj{anon: true}, res: p.res}}, more...), ok
	}
	if p.catalog() {
		return p.without(p.who.minus(o.who))
	}
	users, all := meetUsers(p.res, o.res)
	if !all {
		var both []string
		for _, u := range users {
			if p.who.has(u) && o.who.has(u) {
				if !within(p.res, []string{o.res}, userExpr(u), false) {
					return nil, false
				}
				both = append(both, u)
			}
		}
		return p.without(p.who.minus(userSubj(both...)))
	}
	if namesWithin(p.res, []string{o.res}, p.who) {
		return p.without(p.who.minus(o.who))
	}
	return nil, false
}

// without is p for the subjects left, if they could be stated.
func (p part) without(who subj, ok bool) ([]part, bool) {
	if !ok {
		return nil, false
	}
	if q, ok := newPart(who, p.res); ok {
		return []part{q}, true
	}
	return nil, true
}

// minusAll subtracts every part of os from every part of ps.
func minusAll(ps, os []part) ([]part, bool) {
	for _, o := range os {
		var next []part
		for _, p := range ps {
			out, ok := p.minus(o)
			if !ok {
				return nil, false
			}
			next = append(next, out...)
		}
		ps = next
	}
	return ps, true
}

func anyMeet(ps, os []part) bool {
	for _, p := range ps {
		for _, o := range os {
			if p.meets(o) {
				return true
			}
		}
	}
	return false
}

// cost weighs rules for choosing between two exact translations: a rule
// for every part, more for "every user but", which is hard to read.
func cost(ps []part) int {
	n := 0
	for _, p := range ps {
		n++
		if p.who.all && len(p.who.except) > 0 {
			n += 2
		}
	}
	return n
}

// daRegion is one acl entry as parts: repository parts (lo within what
// docker_auth matches, hi around it: they differ only for globs
// path.Match reads more narrowly than a regular expression) and catalog
// parts.
type daRegion struct {
	where  string
	act    daActions
	lo, hi []part
	cat    []part
}

// daBits are the actions taken one at a time; token.All stands for the
// catalog.
var daBits = []token.Actions{token.Pull, token.Push, token.Delete, token.All}

func (r *daRegion) grants(b token.Actions) bool {
	if b == token.All {
		return r.act.catalog
	}
	return r.act.repo&b != 0
}

// parts is what r matches for one action: lo for allows and what is taken
// from a deny, hi for denies and what is taken from an allow.
func (r *daRegion) parts(b token.Actions, hi bool) []part {
	switch {
	case b == token.All:
		return r.cat
	case hi:
		return r.hi
	}
	return r.lo
}

// firstMatch computes, for each entry and action, where it is allowed
// and where it is denied.
func (c *daConv) firstMatch(entries []*daRegion) (allow, deny [][][]part) {
	allow, deny = make([][][]part, len(entries)), make([][][]part, len(entries))
	for i := range entries {
		allow[i], deny[i] = make([][]part, len(daBits)), make([][]part, len(daBits))
	}
	for bi, b := range daBits {
		x := make([][]part, len(entries))
		for i, e := range entries {
			if e.grants(b) {
				x[i] = e.parts(b, false)
			}
		}
		for k, e := range entries {
			if e.grants(b) {
				continue
			}
			deny[k][bi] = c.keepFirst(entries, x, k, b)
		}
		prune(x)
		for i := range entries {
			allow[i][bi] = x[i]
		}
	}
	widenDenies(entries, deny)
	return allow, deny
}

// prune drops the allows that earlier entries already give for the same
// action (a later entry's alice/* beside an earlier **), one at a time, so
// that what they give together stays the same.
func prune(x [][]part) {
	for i := range x {
		for n := 0; n < len(x[i]); {
			var others []part
			for j := range x[:i] {
				others = append(others, x[j]...)
			}
			others = append(others, x[i][:n]...)
			others = append(others, x[i][n+1:]...)
			if left, ok := minusAll(x[i][n:n+1], others); ok && len(left) == 0 {
				x[i] = slices.Delete(slices.Clone(x[i]), n, n+1)
				continue
			}
			n++
		}
	}
}

// widenDenies makes an entry that must deny some actions deny the others
// it refuses on the same parts too: a deny less what earlier entries
// granting the action match is always exact, and the rule reads as the
// entry did (deny * rather than deny pull).
func widenDenies(entries []*daRegion, deny [][][]part) {
	for k, e := range entries {
		ref := slices.IndexFunc(deny[k][:3], func(ps []part) bool { return len(ps) > 0 })
		if ref < 0 {
			continue
		}
		who := map[string]bool{}
		for _, p := range deny[k][ref] {
			who[p.who.key()] = true
		}
		for bi, b := range daBits {
			if e.grants(b) || len(deny[k][bi]) > 0 {
				continue
			}
			y, ok := minusAll(e.parts(b, true), earlierParts(entries, k, b))
			if !ok || len(y) == 0 {
				continue
			}
			same := partsKey(y) == partsKey(deny[k][ref])
			if b == token.All {
				same = !slices.ContainsFunc(y, func(p part) bool { return !who[p.who.key()] })
			}
			if same {
				deny[k][bi] = y
			}
		}
	}
}

// earlierParts is what the entries before k that grant b match.
func earlierParts(entries []*daRegion, k int, b token.Actions) []part {
	var out []part
	for _, e := range entries[:k] {
		if e.grants(b) {
			out = append(out, e.parts(b, false)...)
		}
	}
	return out
}

// partsKey identifies a set of parts.
func partsKey(ps []part) string {
	keys := make([]string, len(ps))
	for i, p := range ps {
		keys[i] = p.key()
	}
	slices.Sort(keys)
	return strings.Join(keys, "\x02")
}

// keepFirst makes entry k's refusal of b hold where later entries grant
// it: it returns the deny to write, or shrinks the later allows in x.
func (c *daConv) keepFirst(entries []*daRegion, x [][]part, k int, b token.Actions) []part {
	mk := entries[k].parts(b, true)
	var later []int
	for l := k + 1; l < len(entries); l++ {
		if anyMeet(x[l], mk) {
			later = append(later, l)
		}
	}
	if len(later) == 0 {
		return nil
	}
	shrunk, okE, costE := map[int][]part{}, true, 0
	for _, l := range later {
		r, ok := minusAll(x[l], mk)
		if !ok {
			okE = false
			break
		}
		shrunk[l], costE = r, costE+cost(r)
	}
	denied, okD := minusAll(mk, earlierParts(entries, k, b))
	switch {
	case okE && (!okD || costE <= cost(denied)):
		for l, r := range shrunk {
			x[l] = r
		}
		return nil
	case okD:
		return denied
	}
	if done, ok := c.writeOut(entries, x, later, mk, k, b); ok {
		for l, r := range done {
			x[l] = r
		}
		return nil
	}
	return c.overDeny(entries, k, b)
}

// writeOut takes what k matches from the allows of the later entries
// when no rule can state the difference, by writing the grants out for
// each user of the file: ok when that is exact for all of them. Users of
// other sources then lose the grants, with a warning giving the rule to
// add.
func (c *daConv) writeOut(entries []*daRegion, x [][]part, later []int, mk []part, k int, b token.Actions) (map[int][]part, bool) {
	done := map[int][]part{}
	type loss struct {
		l int
		p part
	}
	var lost []loss
	for _, l := range later {
		for _, p := range x[l] {
			if r, ok := minusAll([]part{p}, mk); ok {
				done[l] = append(done[l], r...)
				continue
			}
			for _, m := range c.members {
				if !p.who.has(m.name) {
					continue
				}
				who := subj{anon: true}
				if m.name != "" {
					who = userSubj(m.name)
				}
				r, ok := minusAll([]part{{who: who, res: p.res}}, mk)
				if !ok {
					return nil, false
				}
				done[l] = append(done[l], r...)
			}
			if !p.who.finite() {
				lost = append(lost, loss{l, p})
			}
		}
	}
	for _, ls := range lost {
		action := bitName(b)
		c.narrowOthers("%s and %s: users of other sources (%s) lose %s on %s, which %s granted them where %s does not match: no rule here can leave out exactly what %s matches, so the grant is written out for the users of this file; for each user of another source who should keep it, add: allow user:NAME %s %s",
			entries[k].where, entries[ls.l].where, ls.p.who.describe(), action, ls.p.res, entries[ls.l].where, entries[k].where, entries[k].where, bitWord(b), ls.p.res)
	}
	return done, true
}

// overDeny is k's deny of b on what it matches less what the earlier
// entries granting b match, where that can be stated: elsewhere it also
// refuses what an earlier entry granted first, which never grants more
// and is said in a warning.
func (c *daConv) overDeny(entries []*daRegion, k int, b token.Actions) []part {
	y := entries[k].parts(b, true)
	for _, e := range entries[:k] {
		if !e.grants(b) {
			continue
		}
		for _, q := range e.parts(b, false) {
			var next []part
			for _, p := range y {
				r, ok := p.minus(q)
				if !ok {
					c.lostToDeny(e, entries[k], b, q, p)
					r = []part{p}
				}
				next = append(next, r...)
			}
			y = next
		}
	}
	return y
}

// lostToDeny warns that a deny of entry k also refuses what the earlier
// entry j granted first.
func (c *daConv) lostToDeny(j, k *daRegion, b token.Actions, granted, denied part) {
	example := ""
	if granted.catalog() {
		example = " (the catalog)"
	} else if n := exampleName(granted.res, denied.res); n != "" {
		example = fmt.Sprintf(" (such as %s)", n)
	}
	c.narrow("%s and %s both match %s asking %s on names both match%s: docker_auth answered with %s, the first match, which grants it; here %s's deny of it (deny %s %s %s) refuses it there too, since no rule can leave that overlap out of the deny. What docker_auth granted there: allow %s %s %s; to keep it, make the two entries match apart in the original (an account or name pattern that leaves the other out)",
		j.where, k.where, granted.who.describe(), bitName(b), example, j.where, k.where, strings.Join(denied.who.subjects(), ","), bitWord(b), denied.res,
		strings.Join(granted.who.subjects(), ","), bitWord(b), granted.res)
}

// bitWord is an action as a rule writes it; the catalog's is "*".
func bitWord(b token.Actions) string {
	if b == token.All {
		return "*"
	}
	return b.Strings()[0]
}

func bitName(b token.Actions) string {
	if b == token.All {
		return "the catalog"
	}
	return describe(b)
}

// emitRegions writes the rules of each entry: its allows, then its
// denies, each action set on the parts it shares.
func (c *daConv) emitRegions(entries []*daRegion, allow, deny [][][]part) {
	for i, e := range entries {
		c.emitGroups(e.where, "allow", e.act.repo == token.Every, allow[i])
		c.emitGroups(e.where, "deny", true, deny[i])
	}
}

// emitGroups writes one rule per set of subjects for the actions that
// share exactly the same parts. all says whether the three repository
// actions together are "*".
func (c *daConv) emitGroups(where, effect string, all bool, byBit [][]part) {
	type group struct {
		acts  token.Actions
		parts []part
	}
	var groups []*group
	index := map[string]*group{}
	for bi, ps := range byBit[:3] {
		if len(ps) == 0 {
			continue
		}
		ps = mergeNamed(ps)
		k := partsKey(ps)
		if g := index[k]; g != nil {
			g.acts |= daBits[bi]
			continue
		}
		index[k] = &group{acts: daBits[bi], parts: ps}
		groups = append(groups, index[k])
	}
	catalog := mergeNamed(byBit[3])
	for _, g := range groups {
		acts := g.acts
		if acts == repoActions && all {
			acts = token.Every
		}
		for _, who := range whoOrder(g.parts) {
			resources := resourcesOf(g.parts, who)
			if acts == token.Every {
				// The catalog goes with "*" when it is granted to the same subjects.
				if j := slices.IndexFunc(catalog, func(p part) bool { return p.who.key() == who.key() }); j >= 0 {
					resources = append(resources, policy.CatalogResource)
					catalog = slices.Delete(slices.Clone(catalog), j, j+1)
				}
			}
			c.rule(where, effect, who, actionWords(acts), resources)
		}
	}
	for _, who := range whoOrder(catalog) {
		c.rule(where, effect, who, []string{"*"}, []string{policy.CatalogResource})
	}
}

func (c *daConv) rule(where, effect string, who subj, actions, resources []string) {
	if who.all && len(who.except) > 0 {
		others := policy.SubjectUserPrefix + policy.RegexpPrefix + othersThan(sortedKeys(who.except))
		c.info("%s: the subject %s stands for every user but %s, whom an earlier entry matches first", where, others, listNames(sortedKeys(who.except)))
	}
	c.rules = append(c.rules, policy.Rule{Effect: effect, Subjects: who.subjects(), Actions: actions, Resources: resources})
}

// mergeNamed joins the parts on a same resource whose subjects are only
// named users (and anonymous), as writing grants out for each user makes.
func mergeNamed(ps []part) []part {
	var out []part
	at := map[string]int{}
	for _, p := range ps {
		if !p.who.finite() {
			out = append(out, p)
			continue
		}
		i, ok := at[p.res]
		if !ok {
			at[p.res] = len(out)
			out = append(out, part{who: userSubj(), res: p.res})
			i = len(out) - 1
		}
		w := &out[i].who
		w.anon = w.anon || p.who.anon
		for u := range p.who.users {
			w.addUser(u)
		}
	}
	return out
}

// whoOrder lists the distinct subjects of parts in their order.
func whoOrder(ps []part) []subj {
	var out []subj
	seen := map[string]bool{}
	for _, p := range ps {
		if k := p.who.key(); !seen[k] {
			seen[k] = true
			out = append(out, p.who)
		}
	}
	return out
}

func resourcesOf(ps []part, who subj) []string {
	var out []string
	for _, p := range ps {
		if p.who.key() == who.key() && !slices.Contains(out, p.res) {
			out = append(out, p.res)
		}
	}
	return out
}

// regionOf turns an entry's clauses into parts.
func regionOf(p daParsed, clauses []clause) *daRegion {
	r := &daRegion{where: p.where, act: p.act}
	for _, cl := range clauses {
		who := subjOf(cl.subjects)
		for _, res := range cl.allow {
			if q, ok := newPart(who, res); ok {
				r.lo = append(r.lo, q)
			}
		}
		for _, res := range cl.deny {
			if q, ok := newPart(who, res); ok {
				r.hi = append(r.hi, q)
			}
		}
		if cl.catalog {
			r.cat = append(r.cat, part{who: who, res: policy.CatalogResource})
		}
	}
	return r
}
