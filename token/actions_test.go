package token_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/regauth/caddy-registry-auth/token"
)

// TestActionsStrings: a fixed order (pull, push, delete, then "*"), "*"
// only when All is set, and the named actions listed next to it because
// zot does not understand "*" (SPEC-NOTES §3).
func TestActionsStrings(t *testing.T) {
	tests := []struct {
		a    token.Actions
		want []string
	}{
		{0, []string{}},
		{token.Pull, []string{"pull"}},
		{token.Push, []string{"push"}},
		{token.Delete, []string{"delete"}},
		{token.All, []string{"*"}},
		{token.Push | token.Pull, []string{"pull", "push"}},
		{token.Delete | token.Pull, []string{"pull", "delete"}},
		{token.Pull | token.Push | token.Delete, []string{"pull", "push", "delete"}},
		{token.Every, []string{"pull", "push", "delete", "*"}},
		{token.All | token.Pull, []string{"pull", "*"}},
	}
	for _, tt := range tests {
		got := tt.a.Strings()
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Actions(%04b).Strings() = %q, want %q", tt.a, got, tt.want)
		}
		// Never nil, so an empty list marshals as [], not null.
		if got == nil {
			t.Errorf("Actions(%04b).Strings() is nil", tt.a)
		}
		b, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(tt.want)
		if string(b) != string(wantJSON) {
			t.Errorf("JSON %s, want %s", b, wantJSON)
		}
	}
	if s := token.Every.String(); s != "pull,push,delete,*" {
		t.Errorf("Every.String() = %q", s)
	}
	if s := token.Actions(0).String(); s != "" {
		t.Errorf("Actions(0).String() = %q", s)
	}
}

func TestEvery(t *testing.T) {
	if token.Every != token.Pull|token.Push|token.Delete|token.All {
		t.Errorf("Every = %04b", token.Every)
	}
	// The four bits are distinct.
	bits := []token.Actions{token.Pull, token.Push, token.Delete, token.All}
	var seen token.Actions
	for _, b := range bits {
		if b == 0 || b&(b-1) != 0 || seen&b != 0 {
			t.Fatalf("action bit %04b overlaps or is not a single bit", b)
		}
		seen |= b
	}
}

// TestParseActions: unknown words (Docker's "search") are ignored, not
// errors; matching is exact and case-sensitive like the registries'; "*"
// expands to every action.
func TestParseActions(t *testing.T) {
	tests := []struct {
		in   string
		want token.Actions
	}{
		{"", 0},
		{"pull", token.Pull},
		{"push", token.Push},
		{"delete", token.Delete},
		{"*", token.Every},
		{"pull,push", token.Pull | token.Push},
		{"push,pull", token.Pull | token.Push},
		{"pull,push,delete", token.Pull | token.Push | token.Delete},
		{" pull , push ", token.Pull | token.Push},
		{"pull,,push,", token.Pull | token.Push},
		{",", 0},
		{"pull,*", token.Every},
		{"pull,pull", token.Pull},
		{"search", 0},
		{"pull,search", token.Pull},
		{"PULL", 0},
		{"Pull,push", token.Push},
		{"**", 0},
		{"pull push", 0},
	}
	for _, tt := range tests {
		if got := token.ParseActions(tt.in); got != tt.want {
			t.Errorf("ParseActions(%q) = %04b, want %04b", tt.in, got, tt.want)
		}
	}
	for word, want := range map[string]token.Actions{"pull": token.Pull, "push": token.Push, "delete": token.Delete, "*": token.Every, "search": 0, "": 0, " pull": 0} {
		if got := token.ParseAction(word); got != want {
			t.Errorf("ParseAction(%q) = %04b, want %04b", word, got, want)
		}
	}
	// String and ParseActions are inverses on every set.
	for a := token.Actions(0); a <= token.Every; a++ {
		want := a
		if a&token.All != 0 {
			want = token.Every // "*" stands for every action
		}
		if got := token.ParseActions(a.String()); got != want {
			t.Errorf("ParseActions(%q) = %04b, want %04b", a.String(), got, want)
		}
	}
}
