package registryauth

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExplainGolden runs `caddy registry-auth explain` on a policy with
// groups, denies, {user}, regexps, immutable tags and a policy file, and
// compares each output with its golden file (-update rewrites them).
func TestExplainGolden(t *testing.T) {
	const config = "testdata/explain/Caddyfile"
	for _, c := range []struct {
		name   string
		req    explainRequest
		status int
	}{
		{"bob-denied-push", explainRequest{user: "bob", scopes: []string{"repository:team/prod/app:pull,push", "repository:bob/tools:pull,push,delete"}}, 0},
		{"anonymous", explainRequest{user: "-", scopes: []string{"repository:public/internal-x:pull", "repository:public/app:pull"}}, 0},
		{"ci-regexp", explainRequest{user: "ci-7", scopes: []string{"repository:ci-7/build:push", "repository:ci-8/build:push"}}, 0},
		{"policy-file-deny", explainRequest{user: "carol", groups: []string{"devs"}, scopes: []string{"repository:team/secret:pull", "registry:catalog:*"}}, 1},
		{"bad-scope", explainRequest{user: "bob", scopes: []string{"team/app:pull"}}, 2},
		{"no-such-policy", explainRequest{policy: "nope", user: "bob", scopes: []string{"repository:a:pull"}}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.req.policy == "" {
				c.req.policy = DefaultPolicy
			}
			var out, errOut bytes.Buffer
			if status := runExplain(config, "", c.req, &out, &errOut); status != c.status {
				t.Fatalf("exit status %d, want %d; stderr %s", status, c.status, errOut.String())
			}
			got := out.String() + errOut.String()
			golden := filepath.Join("testdata/explain", c.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("output differs from %s:\n%s", golden, got)
			}
		})
	}
}

// A refusal's audit line names the rules that decided it; the client's
// message says only what was refused.
func TestRefusalNamesTheRules(t *testing.T) {
	pc, err := loadPolicyConfig("testdata/explain/Caddyfile", "", DefaultPolicy)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := compilePolicyConfig(pc)
	if err != nil {
		t.Fatal(err)
	}
	bob := snap.WithGroups(Identity{Name: "bob"})
	got := explainRefusal(snap, bob, scope("team/prod/app", 3))
	if !strings.Contains(got, "deny push by Caddyfile:9") || !strings.Contains(got, "allow pull,push by Caddyfile:8") {
		t.Fatalf("%q", got)
	}
	if got := explainRefusal(snap, bob, scope("elsewhere/x", 1)); got != "no rule allows repository:elsewhere/x:pull" {
		t.Fatalf("%q", got)
	}
}
