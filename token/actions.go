package token

import "strings"

// Actions is a set of registry actions as a bit set, so that intersecting
// what was asked with what is held is one AND.
type Actions uint8

// The actions a registry checks. All stands for the literal "*": every
// action, including ones this package has no name for.
const (
	Pull Actions = 1 << iota
	Push
	Delete
	All

	// Every is what a held or requested "*" expands to.
	Every = Pull | Push | Delete | All
)

// ParseAction returns the bits of one action word. Unknown words (Docker's
// "search", say) give 0: they are intersected away, not errors.
func ParseAction(word string) Actions {
	switch word {
	case "pull":
		return Pull
	case "push":
		return Push
	case "delete":
		return Delete
	case "*":
		return Every
	}
	return 0
}

// ParseActions parses a comma-separated action list, ignoring unknown words.
func ParseActions(list string) Actions {
	var a Actions
	for list != "" {
		word, rest, _ := strings.Cut(list, ",")
		a |= ParseAction(strings.TrimSpace(word))
		list = rest
	}
	return a
}

// Strings lists the actions in a fixed order. "*" comes last and only when
// All is set; the named actions are listed as well because zot does not
// understand "*" while distribution ignores the duplicates.
func (a Actions) Strings() []string {
	out := make([]string, 0, 4)
	if a&Pull != 0 {
		out = append(out, "pull")
	}
	if a&Push != 0 {
		out = append(out, "push")
	}
	if a&Delete != 0 {
		out = append(out, "delete")
	}
	if a&All != 0 {
		out = append(out, "*")
	}
	return out
}

// String is the comma-separated form used inside a scope.
func (a Actions) String() string { return strings.Join(a.Strings(), ",") }
