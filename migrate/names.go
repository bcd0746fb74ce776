package migrate

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// Which repository names two rule patterns share, and whether all of one
// pattern's names are another's, are decided exactly by walking the
// automata of the patterns (and of valid repository names) together over
// the characters a name can hold. Patterns with {user} are compared for
// one user at a time, or for a user no pattern names (see userMark).

// A component of a valid repository name, and a valid name: an optional
// registry host, then components (token.ValidRepositoryName; the length
// limit is left out, which only makes answers more careful).
const (
	validComponent = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	validHost      = `[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?`
)

// userMark stands for the name of a user that no pattern names: a
// character no name holds, so that no literal matches it and only
// wildcards that match any component do.
const userMark = "#"

// maxWalk bounds the states one question explores; beyond it the answer
// is the careful one.
const maxWalk = 4000

// validNames matches valid repository names; withMark also takes a lone
// userMark as a component.
func validNames(withMark bool) *syntax.Prog {
	comp := validComponent
	if withMark {
		comp = `(?:` + comp + `|` + regexp.QuoteMeta(userMark) + `)`
	}
	return mustProg(`(?:` + validHost + `/)?` + comp + `(?:/` + comp + `)*`)
}

var (
	validProg     = validNames(false)
	validMarkProg = validNames(true)
)

func mustProg(expr string) *syntax.Prog {
	p, err := compileProg(expr)
	if err != nil {
		panic(err)
	}
	return p
}

// compileProg compiles a regular expression as Go's regexp reads it.
func compileProg(expr string) (*syntax.Prog, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, err
	}
	return syntax.Compile(re.Simplify())
}

// memo remembers answers, which a conversion asks again and again for
// the same patterns; it forgets all of them when full.
type memo[V any] struct {
	mu sync.Mutex
	m  map[string]V
}

const memoSize = 1 << 14

func (c *memo[V]) get(key string, f func() V) V {
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = f()
	c.mu.Lock()
	if len(c.m) >= memoSize || c.m == nil {
		c.m = map[string]V{}
	}
	c.m[key] = v
	c.mu.Unlock()
	return v
}

var (
	progMemo   memo[*syntax.Prog]
	answerMemo memo[bool]
)

// nameAlphabet is every character a name can hold, and userMark.
var nameAlphabet = func() []rune {
	var out []rune
	for c := 0; c < 128; c++ {
		if token.NameChar(byte(c)) || string(rune(c)) == userMark {
			out = append(out, rune(c))
		}
	}
	return out
}()

// walkState is where each automaton stands: the instructions waiting for
// the next character, and the class of the last character (for \b, ^, $).
type walkState struct {
	prev rune // -1 at the start, 'a' after a word character, '-' after another
	pcs  [][]uint32
	text string // a shortest string that leads here
}

func (w walkState) key() string {
	var b strings.Builder
	b.WriteRune(w.prev)
	for _, p := range w.pcs {
		b.WriteByte('|')
		for _, pc := range p {
			b.WriteString(string(rune(pc + 1)))
		}
	}
	return b.String()
}

// exists reports whether some string (of nameAlphabet) is matched whole by
// every automaton of need and by none of avoid. ok is false when the walk
// gave up.
func exists(need, avoid []*syntax.Prog) (found, ok bool) {
	_, found, ok = witness(need, avoid)
	return found, ok
}

// witness is exists that also returns a shortest such string.
func witness(need, avoid []*syntax.Prog) (text string, found, ok bool) {
	progs := append(slices.Clip(need), avoid...)
	start := walkState{prev: -1}
	for _, p := range progs {
		start.pcs = append(start.pcs, []uint32{uint32(p.Start)})
	}
	seen := map[string]bool{start.key(): true}
	queue := []walkState{start}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		end := syntax.EmptyOpContext(s.prev, -1)
		accepted := true
		for i, p := range progs {
			_, match := closure(p, s.pcs[i], end)
			if match != (i < len(need)) {
				accepted = false
				break
			}
		}
		if accepted {
			return s.text, true, true
		}
		// The empty-width conditions before the next character depend
		// only on whether it is a word character: two closures serve all.
		var waiting [2][][]uint32
		for w, c := range []rune{'-', 'a'} {
			flags := syntax.EmptyOpContext(s.prev, c)
			for i, p := range progs {
				pcs, _ := closure(p, s.pcs[i], flags)
				waiting[w] = append(waiting[w], pcs)
			}
		}
		for _, c := range nameAlphabet {
			w := 0
			if syntax.IsWordChar(c) {
				w = 1
			}
			next, alive := step(progs, waiting[w], s.text, c, len(need))
			if !alive || seen[next.key()] {
				continue
			}
			if len(seen) >= maxWalk {
				return "", false, false
			}
			seen[next.key()] = true
			queue = append(queue, next)
		}
	}
	return "", false, true
}

// step moves every automaton over c from the instructions waiting for a
// character; alive is false when one of the first needed ones can match
// nothing more.
func step(progs []*syntax.Prog, waiting [][]uint32, text string, c rune, needed int) (next walkState, alive bool) {
	next.prev, next.text = '-', text+string(c)
	if syntax.IsWordChar(c) {
		next.prev = 'a'
	}
	for i, p := range progs {
		var out []uint32
		for _, pc := range waiting[i] {
			if in := &p.Inst[pc]; consumes(in, c) && !slices.Contains(out, in.Out) {
				out = append(out, in.Out)
			}
		}
		if len(out) == 0 && i < needed {
			return next, false
		}
		slices.Sort(out)
		next.pcs = append(next.pcs, out)
	}
	return next, true
}

// closure follows the instructions that consume nothing, under the
// empty-width conditions of flags, and returns those waiting for a
// character and whether the automaton matches here.
func closure(p *syntax.Prog, pcs []uint32, flags syntax.EmptyOp) (waiting []uint32, match bool) {
	seen := map[uint32]bool{}
	stack := slices.Clone(pcs)
	for len(stack) > 0 {
		pc := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[pc] {
			continue
		}
		seen[pc] = true
		in := &p.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			stack = append(stack, in.Out, in.Arg)
		case syntax.InstCapture, syntax.InstNop:
			stack = append(stack, in.Out)
		case syntax.InstEmptyWidth:
			if syntax.EmptyOp(in.Arg)&^flags == 0 {
				stack = append(stack, in.Out)
			}
		case syntax.InstMatch:
			match = true
		case syntax.InstFail:
		default:
			waiting = append(waiting, pc)
		}
	}
	return waiting, match
}

func consumes(in *syntax.Inst, c rune) bool {
	switch in.Op {
	case syntax.InstRune:
		return in.MatchRune(c)
	case syntax.InstRune1:
		return c == in.Rune[0]
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return c != '\n'
	}
	return false
}

// perUser reports whether a repository pattern has {user}.
func perUser(res string) bool {
	return !strings.HasPrefix(res, policy.RegexpPrefix) && strings.Contains(res, policy.UserPlaceholder)
}

// patternExpr is a repository pattern as a whole-name regular expression,
// with user (a regular expression) in place of {user}; "" for a pattern
// that matches nothing for that user.
func patternExpr(res, user string) string {
	if expr, ok := strings.CutPrefix(res, policy.RegexpPrefix); ok {
		return expr
	}
	if perUser(res) && user == "" {
		return "" // {user} matches no anonymous request
	}
	var b strings.Builder
	for i := 0; i < len(res); {
		switch {
		case strings.HasPrefix(res[i:], "**"):
			b.WriteString(`.*`)
			i += 2
		case res[i] == '*':
			b.WriteString(`[^/]*`)
			i++
		case strings.HasPrefix(res[i:], policy.UserPlaceholder):
			b.WriteString(`(?:` + user + `)`)
			i += len(policy.UserPlaceholder)
		default:
			b.WriteString(regexp.QuoteMeta(res[i : i+1]))
			i++
		}
	}
	return b.String()
}

// progsOf compiles patterns for one user; nil entries match nothing.
func progsOf(patterns []string, user string) []*syntax.Prog {
	var out []*syntax.Prog
	for _, res := range patterns {
		if p := progOf(patternExpr(res, user)); p != nil {
			out = append(out, p)
		}
	}
	return out
}

// progOf compiles a whole-name expression, nil for "" or one that does
// not compile (the policy refuses such a pattern; no conversion makes one).
func progOf(expr string) *syntax.Prog {
	if expr == "" {
		return nil
	}
	return progMemo.get(expr, func() *syntax.Prog {
		p, err := compileProg(expr)
		if err != nil {
			return nil
		}
		return p
	})
}

// union compiles patterns for one user as one automaton, nil for none.
func union(patterns []string, user string) *syntax.Prog {
	var alts []string
	for _, res := range patterns {
		if expr := patternExpr(res, user); expr != "" {
			alts = append(alts, `(?:`+expr+`)`)
		}
	}
	if len(alts) == 0 {
		return nil
	}
	return progOf(strings.Join(alts, "|"))
}

// shareName reports whether two patterns may match a same valid name for
// user (a regular expression in place of {user}; "" for anonymous).
func shareName(a, b, user string, mark bool) bool {
	return answerMemo.get(strings.Join([]string{"share", a, b, user, fmt.Sprint(mark)}, "\x00"), func() bool {
		return shareNameNow(a, b, user, mark)
	})
}

func shareNameNow(a, b, user string, mark bool) bool {
	pa, pb := progsOf([]string{a}, user), progsOf([]string{b}, user)
	if len(pa) == 0 || len(pb) == 0 {
		return false
	}
	valid := validProg
	if mark {
		valid = validMarkProg
	}
	found, ok := exists([]*syntax.Prog{valid, pa[0], pb[0]}, nil)
	return found || !ok
}

// within reports whether every valid name a matches for user is matched
// by one of bs (false when unsure).
func within(a string, bs []string, user string, mark bool) bool {
	return answerMemo.get(strings.Join([]string{"within", a, strings.Join(bs, "\x01"), user, fmt.Sprint(mark)}, "\x00"), func() bool {
		return withinNow(a, bs, user, mark)
	})
}

func withinNow(a string, bs []string, user string, mark bool) bool {
	pa := progsOf([]string{a}, user)
	if len(pa) == 0 {
		return true
	}
	valid := validProg
	if mark {
		valid = validMarkProg
	}
	var avoid []*syntax.Prog
	if u := union(bs, user); u != nil {
		avoid = append(avoid, u)
	}
	found, ok := exists([]*syntax.Prog{valid, pa[0]}, avoid)
	return ok && !found
}

// anyComponent stands for {user} when any user may be meant.
const anyComponent = `[^/]+`

// exampleName returns a valid name both patterns match, for messages ("" if
// none is found, or a pattern has {user}).
func exampleName(a, b string) string {
	if perUser(a) || perUser(b) {
		return ""
	}
	pa, pb := progsOf([]string{a}, ""), progsOf([]string{b}, "")
	if len(pa) == 0 || len(pb) == 0 {
		return ""
	}
	text, _, _ := witness([]*syntax.Prog{validProg, pa[0], pb[0]}, nil)
	return text
}

// meetUsers tells for whom two repository patterns share a name: for
// every identity (all), or only for the listed users (anonymous never,
// when one pattern has {user}).
func meetUsers(a, b string) (users []string, all bool) {
	ua, ub := perUser(a), perUser(b)
	switch {
	case !ua && !ub:
		return nil, shareName(a, b, "", false)
	case ua && ub:
		if strings.Count(a, "/") != strings.Count(b, "/") && !strings.Contains(a+b, "**") {
			return nil, false
		}
		return nil, true
	case ub:
		a, b = b, a
	}
	// a has {user}, b not: b may fix the component {user} stands at.
	if !shareName(a, b, anyComponent, false) {
		return nil, false
	}
	at := strings.Count(a[:strings.Index(a, policy.UserPlaceholder)], "/")
	prefix, complete := literalPrefix(patternExpr(b, ""))
	comps := strings.Split(prefix, "/")
	if len(comps) <= at || (len(comps) == at+1 && !complete) {
		return nil, true
	}
	u := comps[at]
	if u != "" && shareName(a, b, regexp.QuoteMeta(u), false) {
		return []string{u}, false
	}
	return nil, false
}

// namesWithin reports whether, for every identity of who, the names a
// matches are all matched by bs (false when unsure).
func namesWithin(a string, bs []string, who subj) bool {
	someUser := perUser(a) || slices.ContainsFunc(bs, perUser)
	if !someUser {
		return within(a, bs, "", false)
	}
	if who.finite() {
		for _, m := range who.members() {
			if !within(a, bs, userExpr(m), false) {
				return false
			}
		}
		return true
	}
	if !slices.ContainsFunc(bs, func(b string) bool { return strings.HasPrefix(b, policy.RegexpPrefix) }) {
		// Globs only: a user no pattern names is one that only
		// wildcards match, which userMark stands for; and users named
		// in a pattern are checked one by one.
		if !within(a, bs, regexp.QuoteMeta(userMark), true) {
			return false
		}
		for _, u := range literalComponents(append([]string{a}, bs...)) {
			if !within(a, bs, regexp.QuoteMeta(u), false) {
				return false
			}
		}
		return true
	}
	// Any user: {user} in a may be any component, in bs it is left out.
	if perUser(a) {
		a = strings.ReplaceAll(a, policy.UserPlaceholder, "*")
	}
	return within(a, slices.DeleteFunc(slices.Clone(bs), perUser), "", false)
}

// userExpr is the regular expression of one identity's name ("" stays
// "" for anonymous).
func userExpr(name string) string { return regexp.QuoteMeta(name) }

// literalComponents lists the path components of globs that hold no
// wildcard.
func literalComponents(globs []string) []string {
	set := map[string]bool{}
	for _, g := range globs {
		for _, c := range strings.Split(g, "/") {
			if c != "" && !strings.ContainsAny(c, "*{") {
				set[c] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
