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

// FuzzPeek: whatever a client sends as a password, Peek answers without a
// panic; it says ok only for three dot-separated parts whose middle one
// decodes, and then reports an expiry that is zero or a real time.
func FuzzPeek(f *testing.F) {
	for _, seed := range []string{
		"", "hunter2", "eyJ", "eyJ.e30.", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2kiLCJzdWIiOiJzIiwiZXhwIjo5OTk5OTk5OTk5fQ.c2ln",
		"eyJ.eyJleHAiOi0xfQ.x", "eyJ.eyJleHAiOjFlMzAwfQ.x", "eyJ.eyJzdWIiOjd9.x", "eyJ.bnVsbA.x", "eyJ.W10.x", "eyJ.%%%.x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, ok := Peek(raw)
		if !ok {
			if p != (Peeked{}) {
				t.Fatalf("refused, yet it says %+v", p)
			}
			return
		}
		if parts := strings.Split(raw, "."); len(parts) != 3 || !strings.HasPrefix(raw, "eyJ") || len(raw) > MaxTokenSize {
			t.Fatalf("%q peeked as a token", raw)
		}
		if !p.Expiry.IsZero() && (p.Expiry.Unix() <= 0 || p.Expiry.Unix() >= maxUnixTime) {
			t.Fatalf("expiry %v", p.Expiry)
		}
	})
}
