package token_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/token"
)

func repo(name string, a token.Actions) token.Scope {
	return token.Scope{Type: token.TypeRepository, Name: name, Actions: a}
}

var catalog = token.Scope{Type: token.TypeRegistry, Name: token.CatalogName, Actions: token.All}

// TestParseScopes covers what real clients send (SPEC-NOTES §1): repeated
// scope parameters, several scopes in one value, host:port names, plugin
// classes, the catalog, Docker search's unknown action, and the merging of
// repeated resources. Scopes a registry would never check are dropped, not
// refused.
func TestParseScopes(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []token.Scope
	}{
		{"no scope at all (docker login)", nil, nil},
		{"empty values only", []string{"", " ", "\t \n"}, nil},
		{"one scope", []string{"repository:foo:pull"}, []token.Scope{repo("foo", token.Pull)}},
		{"repeated scope parameters (containers/image)",
			[]string{"repository:a:pull", "repository:b:push"},
			[]token.Scope{repo("a", token.Pull), repo("b", token.Push)}},
		{"space-separated scopes in one value (ggcr, regclient)",
			[]string{"repository:a:pull repository:b:push,pull"},
			[]token.Scope{repo("a", token.Pull), repo("b", token.Pull|token.Push)}},
		{"empty pieces dropped",
			[]string{"", "  repository:a:pull   repository:b:pull  ", " "},
			[]token.Scope{repo("a", token.Pull), repo("b", token.Pull)}},
		{"tabs and newlines separate too",
			[]string{"repository:a:pull\trepository:b:pull\nrepository:c:pull"},
			[]token.Scope{repo("a", token.Pull), repo("b", token.Pull), repo("c", token.Pull)}},
		// Regression: a server that honoured only the first scope made
		// cross-repository mounts fail. Every scope counts.
		{"first scope only (regression): all honoured",
			[]string{"repository:a:pull repository:b:pull,push", "repository:c:delete"},
			[]token.Scope{repo("a", token.Pull), repo("b", token.Pull|token.Push), repo("c", token.Delete)}},
		{"host:port name", []string{"repository:localhost:5000/foo:pull"},
			[]token.Scope{repo("localhost:5000/foo", token.Pull)}},
		{"host:port name with several components", []string{"repository:registry.example.com:443/team/app:push"},
			[]token.Scope{repo("registry.example.com:443/team/app", token.Push)}},
		{"plugin class maps to type repository", []string{"repository(plugin):vieux/sshfs:pull"},
			[]token.Scope{repo("vieux/sshfs", token.Pull)}},
		{"plugin class merges with the plain type",
			[]string{"repository(plugin):foo:pull", "repository:foo:push"},
			[]token.Scope{repo("foo", token.Pull|token.Push)}},
		{"catalog", []string{"registry:catalog:*"}, []token.Scope{catalog}},
		// The catalog is granted as the literal "*" only: no other bit.
		{"catalog with extra actions keeps All only", []string{"registry:catalog:pull,*"}, []token.Scope{catalog}},
		{"catalog search (Docker) dropped", []string{"registry:catalog:search"}, nil},
		{"catalog pull dropped", []string{"registry:catalog:pull"}, nil},
		{"registry resource other than catalog dropped", []string{"registry:other:*"}, nil},
		{"unknown type dropped", []string{"blob:foo:pull", "repository:bar:pull"},
			[]token.Scope{repo("bar", token.Pull)}},
		{"unknown class dropped", []string{"repository(Plugin):foo:pull", "repository():foo:pull", "repository(plugin:foo:pull", "repository(a-b):foo:pull"}, nil},
		{"type is case-sensitive", []string{"Repository:foo:pull", "REGISTRY:catalog:*"}, nil},
		{"unknown action dropped", []string{"repository:foo:search"}, nil},
		{"unknown action among known ones ignored", []string{"repository:foo:pull,search,PUSH"},
			[]token.Scope{repo("foo", token.Pull)}},
		{"empty actions dropped", []string{"repository:foo:", "repository:foo:,"}, nil},
		{"star on a repository", []string{"repository:foo:*"}, []token.Scope{repo("foo", token.Every)}},
		{"push,pull and pull,push are the same",
			[]string{"repository:a:push,pull", "repository:b:pull,push"},
			[]token.Scope{repo("a", token.Pull|token.Push), repo("b", token.Pull|token.Push)}},
		{"repeated resource merged, order of first appearance",
			[]string{"repository:foo:push,pull repository:bar:pull", "repository:foo:delete"},
			[]token.Scope{repo("foo", token.Pull|token.Push|token.Delete), repo("bar", token.Pull)}},
		{"repeated catalog merged", []string{"registry:catalog:* registry:catalog:*"}, []token.Scope{catalog}},
		// A dropped piece does not take a place in the order: the resource
		// appears where it is first kept.
		{"dropped piece does not fix the order",
			[]string{"repository:b:search repository:a:pull repository:b:pull"},
			[]token.Scope{repo("a", token.Pull), repo("b", token.Pull)}},
		{"invalid names dropped", []string{
			"repository:Foo:pull",
			"repository:foo/../bar:pull",
			"repository:foo//bar:pull",
			"repository:foo%2fbar:pull",
			"repository:foo/:pull",
			"repository:/foo:pull",
			"repository::pull",
			"repository:localhost:5000:pull",
			"repository:" + strings.Repeat("a", token.MaxNameLength+1) + ":pull",
			"repository:ok:pull",
		}, []token.Scope{repo("ok", token.Pull)}},
		{"longest valid name kept", []string{"repository:" + strings.Repeat("a", token.MaxNameLength) + ":pull"},
			[]token.Scope{repo(strings.Repeat("a", token.MaxNameLength), token.Pull)}},
		{"empty name and actions dropped", []string{"repository::"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := token.ParseScopes(tt.values)
			if err != nil {
				t.Fatalf("ParseScopes(%q) error: %v", tt.values, err)
			}
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseScopes(%q)\n got  %v\n want %v", tt.values, got, tt.want)
			}
		})
	}
}

// TestParseScopesErrors: text that is not type:name:actions, or too much of
// it, is refused (400) with an error wrapping ErrBadScope, and nothing is
// returned: a partial list could be mistaken for the whole request.
func TestParseScopesErrors(t *testing.T) {
	many := func(n int) []string {
		v := make([]string, n)
		for i := range v {
			v[i] = fmt.Sprintf("repository:r%d:pull", i)
		}
		return v
	}
	tests := []struct {
		name   string
		values []string
	}{
		{"no colon", []string{"foo"}},
		{"one colon", []string{"repository:foo"}},
		{"empty type", []string{":foo:pull"}},
		{"colon alone", []string{":"}},
		{"two colons alone", []string{"::"}},
		{"bad piece after good ones", []string{"repository:a:pull garbage"}},
		{"bad value after good ones", []string{"repository:a:pull", "garbage"}},
		{"more than MaxScopes in one value", []string{strings.Join(many(token.MaxScopes+1), " ")}},
		{"more than MaxScopes across values", many(token.MaxScopes + 1)},
		// Duplicates and dropped scopes count: the cap bounds work, not output.
		{"more than MaxScopes duplicates", []string{strings.Repeat("repository:a:pull ", token.MaxScopes+1)}},
		{"more than MaxScopes dropped", []string{strings.Repeat("registry:catalog:search ", token.MaxScopes+1)}},
		{"piece longer than MaxScopeLength", []string{"repository:" + strings.Repeat("a", token.MaxScopeLength) + ":pull"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := token.ParseScopes(tt.values)
			if err == nil {
				t.Fatalf("ParseScopes: no error, got %v", got)
			}
			if !errors.Is(err, token.ErrBadScope) {
				t.Errorf("error %v does not wrap ErrBadScope", err)
			}
			if got != nil {
				t.Errorf("ParseScopes returned %v with the error", got)
			}
		})
	}
}

// TestParseScopesLimits: the caps are inclusive. ggcr piles up every scope
// it has seen, so exactly MaxScopes must still work.
func TestParseScopesLimits(t *testing.T) {
	v := make([]string, token.MaxScopes)
	for i := range v {
		v[i] = fmt.Sprintf("repository:r%d:pull", i)
	}
	got, err := token.ParseScopes(v)
	if err != nil {
		t.Fatalf("MaxScopes scopes: %v", err)
	}
	if len(got) != token.MaxScopes {
		t.Errorf("got %d scopes, want %d", len(got), token.MaxScopes)
	}

	// A piece of exactly MaxScopeLength bytes is structurally fine (its
	// name is too long to be valid, so it is dropped, not an error).
	piece := "repository:" + strings.Repeat("a", token.MaxScopeLength-len("repository::pull")) + ":pull"
	if len(piece) != token.MaxScopeLength {
		t.Fatalf("test bug: piece is %d bytes", len(piece))
	}
	if _, err := token.ParseScopes([]string{piece}); err != nil {
		t.Errorf("piece of MaxScopeLength bytes: %v", err)
	}
}

func TestScopeStringAndFormat(t *testing.T) {
	scopes := []token.Scope{repo("localhost:5000/foo", token.Push|token.Pull), catalog, repo("bar", token.Every)}
	want := "repository:localhost:5000/foo:pull,push registry:catalog:* repository:bar:pull,push,delete,*"
	if got := token.FormatScopes(scopes); got != want {
		t.Errorf("FormatScopes = %q, want %q", got, want)
	}
	if got := token.FormatScopes(nil); got != "" {
		t.Errorf("FormatScopes(nil) = %q", got)
	}
	// The wire form parses back to the same scopes.
	back, err := token.ParseScopes([]string{want})
	if err != nil || !reflect.DeepEqual(back, scopes) {
		t.Errorf("round trip: %v, %v", back, err)
	}
}

// TestAccessClaim: the claim is never nil (an empty grant is "access":[]),
// the type is never a class form, and a catalog grant carries the literal "*".
func TestAccessClaim(t *testing.T) {
	for _, in := range [][]token.Scope{nil, {}} {
		b, err := json.Marshal(token.AccessClaim(in))
		if err != nil || string(b) != "[]" {
			t.Errorf("AccessClaim(%v) marshals as %s (%v), want []", in, b, err)
		}
	}
	got := token.AccessClaim([]token.Scope{repo("foo", token.Pull|token.Push), catalog})
	want := []token.Access{
		{Type: "repository", Name: "foo", Actions: []string{"pull", "push"}},
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AccessClaim = %+v, want %+v", got, want)
	}
	b, _ := json.Marshal(got[0])
	if string(b) != `{"type":"repository","name":"foo","actions":["pull","push"]}` {
		t.Errorf("Access JSON = %s", b)
	}
}

// FuzzParseScopes: never panics; on success every scope is either a
// repository with a valid name or the catalog with exactly All, has
// non-zero actions within Every, appears once, and there are at most
// MaxScopes of them; every error wraps ErrBadScope.
func FuzzParseScopes(f *testing.F) {
	f.Add("repository:foo:pull", "")
	f.Add("repository:localhost:5000/foo:pull,push repository:bar:*", "registry:catalog:*")
	f.Add("repository(plugin):a/b:pull", "registry:catalog:search")
	f.Add("repository:foo/../bar:pull", ":::")
	f.Add("a:b", "repository:Foo:push,pull,delete")
	f.Add("repository:foo:pull repository:foo:push", "repository:foo:delete")
	f.Fuzz(func(t *testing.T, a, b string) {
		got, err := token.ParseScopes([]string{a, b})
		if err != nil {
			if !errors.Is(err, token.ErrBadScope) {
				t.Fatalf("error %v does not wrap ErrBadScope", err)
			}
			if got != nil {
				t.Fatalf("scopes returned with an error: %v", got)
			}
			return
		}
		if len(got) > token.MaxScopes {
			t.Fatalf("%d scopes", len(got))
		}
		seen := map[string]bool{}
		for _, s := range got {
			key := s.Type + ":" + s.Name
			if seen[key] {
				t.Fatalf("resource %s twice in %v", key, got)
			}
			seen[key] = true
			if s.Actions == 0 || s.Actions&^token.Every != 0 {
				t.Fatalf("scope %v has actions %b", s, s.Actions)
			}
			switch s.Type {
			case token.TypeRepository:
				if !token.ValidRepositoryName(s.Name) {
					t.Fatalf("invalid name kept: %q", s.Name)
				}
			case token.TypeRegistry:
				if s.Name != token.CatalogName || s.Actions != token.All {
					t.Fatalf("registry scope %+v", s)
				}
			default:
				t.Fatalf("type %q kept", s.Type)
			}
		}
	})
}

func BenchmarkParseScopes(b *testing.B) {
	values := []string{
		"repository:localhost:5000/team/app:pull,push repository:team/base:pull",
		"repository(plugin):vieux/sshfs:pull",
		"registry:catalog:*",
		"repository:team/app:delete",
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := token.ParseScopes(values); err != nil {
			b.Fatal(err)
		}
	}
}
