package oidc

import (
	"strings"
	"testing"
)

// FuzzParseTemplate: any text either parses or is refused with an error,
// never a panic; what parses reads back the same from its String, has no
// control character in its literal parts, and renders and expands
// against real claims without a panic and within the bound.
func FuzzParseTemplate(f *testing.F) {
	for _, seed := range []string{
		// README recipes and the Caddyfile.
		"gh/{claims.repository}",
		"{claims.repository_owner}",
		"{claims.environment}",
		"gl/{claims.project_path}",
		`k8s/{claims.kubernetes\.io.namespace}/{claims.kubernetes\.io.serviceaccount.name}`,
		// Edges.
		"plain", "{claims.a}{claims.b}", `x/{claims.a\\b}`, `x/{claims.a\\\.b}`,
		"{claims.}", "{claims", "}", "{", "{claims.a", "{claims.a}}", "{{claims.a}}",
		`{claims.a\}`, `{claims.a\`, "{claims.a.b.c.d.e.f}", "é/{claims.ü}", "\x00", "{claims.\x7f}",
	} {
		f.Add(seed)
	}
	claims := map[string]any{
		"a": "x", "b": []any{"1", "2", 3, ""}, "repository": "acme/app",
		"kubernetes.io": map[string]any{"namespace": "ci", "serviceaccount": map[string]any{"name": "builder"}},
	}
	f.Fuzz(func(t *testing.T, s string) {
		tpl, err := ParseTemplate(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		again, err := ParseTemplate(tpl.String())
		if err != nil || again.String() != tpl.String() {
			t.Fatalf("%q: String %q reads back as %q, %v", s, tpl.String(), again.String(), err)
		}
		for _, p := range tpl.parts {
			if p.path == nil && strings.ContainsFunc(p.text, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("%q: a control character in the literal %q", s, p.text)
			}
			if p.path != nil && len(p.path) == 0 {
				t.Fatalf("%q: an empty claim path", s)
			}
		}
		if out, err := tpl.Render(claims); err == nil && strings.Contains(out, "{claims.") && !strings.Contains(s, "{claims.") {
			t.Fatalf("%q rendered a placeholder it did not hold: %q", s, out)
		}
		if out, err := tpl.Expand(claims, 4); err == nil && len(out) > 4 {
			t.Fatalf("%q expanded to %d values, bound 4", s, len(out))
		}
	})
}
