package policy

import (
	"strings"
	"testing"
)

func TestImmutableTags(t *testing.T) {
	p := mustCompile(t, Config{ImmutableTags: []ImmutableTags{
		{Repositories: "**", Tags: []string{"v*", "release-*"}, Origin: "Caddyfile:7"},
		{Repositories: "team/*", Tags: []string{"latest"}},
	}})
	for _, c := range []struct {
		repo, tag, origin string
		ok                bool
	}{
		{"a/b", "v1.2.3", "Caddyfile:7", true},
		{"a/b", "release-2026", "Caddyfile:7", true},
		{"a/b", "latest", "", false},
		{"team/app", "latest", "immutable_tags[1]", true},
		{"team/app/x", "latest", "", false},
		{"a/b", "xv1", "", false},
		{"a/b", "V1", "", false},
	} {
		origin, ok := p.ImmutableTag(c.repo, c.tag)
		if ok != c.ok || origin != c.origin {
			t.Errorf("%s:%s = %q, %v; want %q, %v", c.repo, c.tag, origin, ok, c.origin, c.ok)
		}
	}
	if !p.HasImmutableTags() || !p.ProtectsRepository("x") {
		t.Fatal("the policy protects every repository")
	}
	for _, bad := range []ImmutableTags{
		{Repositories: "{user}/**", Tags: []string{"v*"}},
		{Repositories: "**"},
		{Repositories: "**", Tags: []string{"v 1"}},
		{Repositories: "**", Tags: []string{"a/b"}},
		{Repositories: "", Tags: []string{"v*"}},
		{Repositories: "regexp:(", Tags: []string{"v*"}},
	} {
		err := Check(Config{ImmutableTags: []ImmutableTags{bad}})
		if err == nil || !strings.HasPrefix(err.Error(), "immutable_tags[0]: ") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func TestRulesExplain(t *testing.T) {
	r := mustCompile(t, Config{Rules: []Rule{
		{Effect: "allow", Subjects: []string{"group:devs"}, Actions: []string{"pull", "push"}, Resources: []string{"team/**"}, Origin: "Caddyfile:3"},
		{Effect: "deny", Subjects: []string{"user:bob"}, Actions: []string{"push"}, Resources: []string{"team/prod/*"}, Origin: "Caddyfile:4"},
		{Effect: "allow", Subjects: []string{"everyone"}, Actions: []string{"pull"}, Resources: []string{"public/**"}},
	}}).Rules()
	bob := Identity{Name: "bob", Groups: []string{"devs"}}
	granted, reasons := r.Explain(bob, request(t, "repository:team/prod/app:pull,push")[0])
	if granted.String() != "pull" || len(reasons) != 2 || reasons[0].Origin != "Caddyfile:3" || !reasons[1].Deny || reasons[1].Origin != "Caddyfile:4" {
		t.Fatalf("granted %s, reasons %+v", granted, reasons)
	}
	if granted, reasons := r.Explain(bob, request(t, "repository:other/x:pull")[0]); granted != 0 || len(reasons) != 0 {
		t.Fatalf("no rule: %s %+v", granted, reasons)
	}
	if _, reasons := r.Explain(Identity{}, request(t, "repository:public/x:pull")[0]); len(reasons) != 1 || reasons[0].Origin != "rules[2]" {
		t.Fatalf("a JSON rule is named by its index: %+v", reasons)
	}
	if !r.Named("devs") || r.Named("ops") {
		t.Fatal("Named")
	}
}
