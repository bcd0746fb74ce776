package registryauth

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// An explanation says, for one requested scope, what a subject gets and
// every rule that gave or took away an action: what the explain command
// and the admin API print, and what refusals' audit lines name.
type explanation struct {
	scope     token.Scope
	granted   token.Actions
	reasons   []policy.Reason
	immutable []string // the immutable tag rules of the repository
}

// explain explains each scope for id under snap, the policy's rules alone
// (authorizers, which may grant more, are not asked).
func explain(snap *policy.Compiled, id Identity, scopes []token.Scope) []explanation {
	out := make([]explanation, len(scopes))
	for i, s := range scopes {
		out[i].scope = s
		out[i].granted, out[i].reasons = snap.Rules().Explain(id, s)
		if s.Type == token.TypeRepository {
			out[i].immutable = snap.ImmutableRules(s.Name)
		}
	}
	return out
}

// write prints explanations for people.
func writeExplanations(w io.Writer, es []explanation) {
	for _, e := range es {
		granted := "nothing"
		if e.granted != 0 {
			granted = strings.Join(e.granted.Strings(), ",")
		}
		fmt.Fprintf(w, "%s\n  granted: %s\n", e.scope, granted)
		if len(e.reasons) == 0 {
			fmt.Fprintf(w, "  no rule allows\n")
		}
		for _, r := range e.reasons {
			effect := "allow"
			if r.Deny {
				effect = "deny "
			}
			fmt.Fprintf(w, "  %s %-18s %s\n", effect, strings.Join(r.Actions.Strings(), ","), r.Origin)
		}
		for _, it := range e.immutable {
			fmt.Fprintf(w, "  immutable tags     %s\n", it)
		}
	}
}

// explainRefusal is an audit line's account of why id did not get all of
// want: the rules that spoke about it, or that none allows.
func explainRefusal(snap *policy.Compiled, id Identity, want token.Scope) string {
	_, reasons := snap.Rules().Explain(id, want)
	if len(reasons) == 0 {
		return "no rule allows " + want.String()
	}
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		effect := "allow"
		if r.Deny {
			effect = "deny"
		}
		parts[i] = fmt.Sprintf("%s %s by %s", effect, strings.Join(r.Actions.Strings(), ","), r.Origin)
	}
	return want.String() + ": " + strings.Join(parts, "; ")
}

// refusedRules explains, for the audit line, each requested scope that
// was not granted in full; "" when everything was.
func refusedRules(snap *policy.Compiled, id Identity, requested, granted []token.Scope) string {
	if slices.Equal(requested, granted) {
		return "" // all granted: the usual case, and nothing to explain
	}
	got := map[token.Scope]bool{}
	for _, g := range granted {
		got[g] = true
	}
	var parts []string
	for _, want := range requested {
		if !got[want] {
			parts = append(parts, explainRefusal(snap, id, want))
		}
	}
	return strings.Join(parts, " | ")
}
