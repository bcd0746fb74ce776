package policy

import (
	"strings"
	"testing"
)

// TestCompileRuleErrors: a policy is checked strictly at load, and every
// error names the rule and the field at fault, so a typo never silently
// grants or withholds access.
func TestCompileRuleErrors(t *testing.T) {
	good := allow("everyone", "pull", "**")
	tests := []struct {
		name  string
		rule  Rule
		wants []string // substrings of the error
	}{
		{"unknown effect", Rule{Effect: "permit", Subjects: []string{"everyone"}, Actions: []string{"pull"}, Resources: []string{"**"}}, []string{"effect", "permit"}},
		{"empty effect", Rule{Subjects: []string{"everyone"}, Actions: []string{"pull"}, Resources: []string{"**"}}, []string{"effect"}},
		{"effect is case-sensitive", Rule{Effect: "Allow", Subjects: []string{"everyone"}, Actions: []string{"pull"}, Resources: []string{"**"}}, []string{"effect"}},
		{"no subjects", allow("", "pull", "**"), []string{"subjects"}},
		{"unknown subject", allow("admins", "pull", "**"), []string{"subjects[0]", "admins"}},
		{"user: without a name", allow("everyone user:", "pull", "**"), []string{"subjects[1]"}},
		{"group: without a name", allow("group:", "pull", "**"), []string{"subjects[0]"}},
		{"subject is case-sensitive", allow("Everyone", "pull", "**"), []string{"subjects[0]"}},
		{"no actions", allow("everyone", "", "**"), []string{"actions"}},
		{"unknown action", allow("everyone", "pull write", "**"), []string{"actions[1]", "write"}},
		{"action is case-sensitive", allow("everyone", "PULL", "**"), []string{"actions[0]"}},
		{"search is no rule action", allow("everyone", "search", "**"), []string{"actions[0]"}},
		{"no resources", allow("everyone", "pull", ""), []string{"resources"}},
		{"empty resource", Rule{Effect: "allow", Subjects: []string{"everyone"}, Actions: []string{"pull"}, Resources: []string{""}}, []string{"resources[0]"}},
		{"space in a glob", Rule{Effect: "allow", Subjects: []string{"everyone"}, Actions: []string{"pull"}, Resources: []string{"team/my app"}}, []string{"resources[0]"}},
		{"percent in a glob", allow("everyone", "pull", "team/%2f"), []string{"resources[0]"}},
		{"question mark in a glob", allow("everyone", "pull", "team/app?"), []string{"resources[0]"}},
		{"brackets in a glob", allow("everyone", "pull", "team/[ab]"), []string{"resources[0]"}},
		{"backslash in a glob", allow("everyone", "pull", `team\app`), []string{"resources[0]"}},
		{"plus in a glob", allow("everyone", "pull", "team/a+b"), []string{"resources[0]"}},
		{"misspelt placeholder", allow("everyone", "pull", "team/app {usr}/**"), []string{"resources[1]"}},
		{"bad regexp", allow("everyone", "pull", "regexp:("), []string{"resources[0]", "regular expression"}},
		{"empty regexp", allow("everyone", "pull", "regexp:"), []string{"resources[0]"}},
		{"{user} not a whole component (suffix)", allow("everyone", "pull", "{user}x/**"), []string{"resources[0]", "{user}"}},
		{"{user} not a whole component (prefix)", allow("everyone", "pull", "x{user}/**"), []string{"resources[0]", "{user}"}},
		{"{user} after *", allow("everyone", "pull", "*{user}"), []string{"resources[0]"}},
		{"{user} after **", allow("everyone", "pull", "**/{user}"), []string{"resources[0]", "**"}},
		{"{user} after ** deeper", allow("everyone", "pull", "a/**/b/{user}/c"), []string{"resources[0]"}},
		{"catalog with pull", allow("everyone", "pull", "registry:catalog"), []string{"resources[0]", "registry:catalog"}},
		{"catalog with push and delete", allow("everyone", "push delete", "team/** registry:catalog"), []string{"resources[1]", "registry:catalog"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The bad rule is second, so the index is checked too.
			_, _, err := Compile(Config{Users: []User{anchorUser(t)}, Rules: []Rule{good, tt.rule}})
			if err == nil {
				t.Fatal("Compile accepted it")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "rules[1]: ") {
				t.Errorf("error %q does not start with rules[1]", msg)
			}
			for _, w := range tt.wants {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

// TestCompileRuleAccepts: patterns a registry name can match are fine,
// including upper case (registry host names may have it), host:port,
// placeholders as whole components and regexps.
func TestCompileRuleAccepts(t *testing.T) {
	for _, res := range []string{
		"**", "*", "team/*", "team/**", "team/app", "*/app", "**/app", "a/**/b", "team/*-dev",
		"Registry.Example.COM/**", "localhost:5000/**", "127.0.0.1:5000/team/*",
		"{user}", "{user}/**", "team/{user}/**", "{user}/{user}", "{user}/*",
		"regexp:^x$", "regexp:(team|prod)/.*", "regexp:[a-z]+/[0-9]{2}", "registry:catalog",
	} {
		if err := CheckRule(allow("everyone", "*", res)); err != nil {
			t.Errorf("%q: %v", res, err)
		}
	}
	for _, subject := range []string{"everyone", "anonymous", "authenticated", "user:alice", "group:devs", "user:a b", "group:x:y"} {
		if err := CheckRule(Rule{Effect: "deny", Subjects: []string{subject}, Actions: []string{"pull"}, Resources: []string{"**"}}); err != nil {
			t.Errorf("subject %q: %v", subject, err)
		}
	}
	// "*" together with named actions still names the catalog's "*".
	if err := CheckRule(allow("everyone", "pull *", "registry:catalog")); err != nil {
		t.Errorf("catalog with pull and *: %v", err)
	}
}

func TestCompileGroups(t *testing.T) {
	a := User{Name: "alice", Password: hashOf(t, "pw")}
	p, warnings, err := Compile(Config{
		Users:  []User{a},
		Groups: map[string][]string{"devs": {"alice", "ghost"}, "ops": {"alice"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A member that is no user works (maybe defined later) but is flagged.
	if len(warnings) != 1 || !strings.Contains(warnings[0], "ghost") || !strings.Contains(warnings[0], "devs") {
		t.Errorf("warnings %q, want one about ghost in devs", warnings)
	}
	id, ok := authenticate(p, "alice", "pw")
	if !ok {
		t.Fatal("alice cannot log in")
	}
	groups := map[string]bool{}
	for _, g := range id.Groups {
		groups[g] = true
	}
	if len(id.Groups) != 2 || !groups["devs"] || !groups["ops"] {
		t.Errorf("alice's groups %q, want devs and ops", id.Groups)
	}

	if _, _, err := Compile(Config{Users: []User{a}, Groups: map[string][]string{"": {"alice"}}}); err == nil || !strings.Contains(err.Error(), "groups") {
		t.Errorf("empty group name: %v", err)
	}
}
