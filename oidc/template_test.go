package oidc

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// k8sClaims are a Kubernetes service account token's claims (as its
// documentation shows them), with a few more for the tests.
func k8sClaims(t *testing.T) map[string]any {
	t.Helper()
	var c map[string]any
	err := json.Unmarshal([]byte(`{
		"aud": ["registry.example.com"],
		"iss": "https://kubernetes.default.svc.cluster.local",
		"sub": "system:serviceaccount:ci:builder",
		"kubernetes.io": {
			"namespace": "ci",
			"pod": {"name": "builder-7d9f", "uid": "0f9e"},
			"serviceaccount": {"name": "builder", "uid": "1a2b"}
		},
		"teams": ["infra", "", 7, "web"],
		"empty": "",
		"number": 42,
		"flag": true,
		"a.b": "dotted"
	}`), &c)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParsePath(t *testing.T) {
	for in, want := range map[string][]string{
		"repository":                         {"repository"},
		`kubernetes\.io.namespace`:           {"kubernetes.io", "namespace"},
		`kubernetes\.io.serviceaccount.name`: {"kubernetes.io", "serviceaccount", "name"},
		`a\\b`:                               {`a\b`},
		`a\\.b`:                              {`a\`, "b"},
		"x-y_z:w":                            {"x-y_z:w"},
	} {
		p, err := ParsePath(in)
		if err != nil || !slices.Equal(p, want) {
			t.Errorf("%q: %q, %v; want %q", in, p, err, want)
			continue
		}
		if again, _ := ParsePath(p.String()); !slices.Equal(again, p) {
			t.Errorf("%q: String %q reads back as %q", in, p.String(), again)
		}
	}
	for _, bad := range []string{"", ".", "a.", ".a", "a..b", `a\`, `a\b`, "a{b", "a}b", "a\nb"} {
		if p, err := ParsePath(bad); err == nil {
			t.Errorf("%q: accepted as %q", bad, p)
		}
	}
}

func TestTemplateRender(t *testing.T) {
	claims := k8sClaims(t)
	for in, want := range map[string]string{
		`k8s/{claims.kubernetes\.io.namespace}/{claims.kubernetes\.io.serviceaccount.name}`: "k8s/ci/builder",
		"plain":                                  "plain",
		"x/{claims.a\\.b}":                       "x/dotted",
		"{claims.sub}{claims.sub}":               "system:serviceaccount:ci:buildersystem:serviceaccount:ci:builder",
		"pod {claims.kubernetes\\.io.pod.name}!": "pod builder-7d9f!",
	} {
		tpl, err := ParseTemplate(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if got, err := tpl.Render(claims); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for in, why := range map[string]string{
		"x/{claims.missing}":                          "claim missing is missing",
		"x/{claims.kubernetes\\.io.missing}":          `claim kubernetes\.io.missing is missing`,
		"x/{claims.kubernetes\\.io.namespace.deeper}": "is missing",
		"x/{claims.number}":                           "is a number, not a string",
		"x/{claims.flag}":                             "is a boolean",
		"x/{claims.teams}":                            "is an array",
		"x/{claims.kubernetes\\.io}":                  "is an object",
		"x/{claims.empty}":                            "is empty",
	} {
		tpl, err := ParseTemplate(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		got, err := tpl.Render(claims)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%q: %q, %v; want an error saying %q", in, got, err, why)
		}
	}
}

func TestTemplateExpand(t *testing.T) {
	claims := k8sClaims(t)
	for in, want := range map[string][]string{
		"{claims.teams}":                     {"infra", "web"},
		"team-{claims.teams}":                {"team-infra", "team-web"},
		"{claims.kubernetes\\.io.namespace}": {"ci"},
		"{claims.teams}/{claims.teams}":      {"infra/infra", "infra/web", "web/infra", "web/web"},
		"{claims.missing}":                   nil,
		"{claims.empty}":                     nil,
		"{claims.number}":                    nil,
		"ns-{claims.kubernetes\\.io.namespace}-{claims.missing}": nil,
		"literal": {"literal"},
	} {
		tpl, err := ParseTemplate(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		got, err := tpl.Expand(claims, 10)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	tpl, _ := ParseTemplate("{claims.teams}{claims.teams}{claims.teams}{claims.teams}")
	if got, err := tpl.Expand(claims, 10); err == nil {
		t.Fatalf("16 combinations with a bound of 10: %q", got)
	}
}

func TestParseTemplateErrors(t *testing.T) {
	for in, why := range map[string]string{
		"":                                       "empty",
		"{repository}":                           "braces only enclose claims",
		"gh/{claims.repo":                        "without its closing",
		"gh/}":                                   "braces only enclose claims",
		"gh/{claims.}":                           "empty segment",
		"gh/{claims.a..b}":                       "empty segment",
		"gh/{claims.a{b}":                        "not allowed",
		"gh/{claims.a\\b}":                       "backslash",
		"gh/\n{claims.a}":                        "control character",
		strings.Repeat("x", MaxTemplateLength+1): "more than",
	} {
		if _, err := ParseTemplate(in); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%q: %v, want an error saying %q", in, err, why)
		}
	}
}

func TestTemplateParts(t *testing.T) {
	tpl, err := ParseTemplate(`gh/{claims.repository}@{claims.kubernetes\.io.namespace}`)
	if err != nil {
		t.Fatal(err)
	}
	if tpl.LiteralPrefix() != "gh/" {
		t.Fatalf("prefix %q", tpl.LiteralPrefix())
	}
	if got := tpl.Claims(); len(got) != 2 || got[1].String() != `kubernetes\.io.namespace` {
		t.Fatalf("claims %q", got)
	}
	if tpl, _ := ParseTemplate("{claims.a}/x"); tpl.LiteralPrefix() != "" {
		t.Fatalf("prefix of a template that starts with a claim: %q", tpl.LiteralPrefix())
	}
}

func TestRequirement(t *testing.T) {
	claims := k8sClaims(t)
	ns, _ := ParsePath(`kubernetes\.io.namespace`)
	num, _ := ParsePath("number")
	miss, _ := ParsePath("repository_owner")
	for _, tc := range []struct {
		r   Requirement
		why string
	}{
		{Requirement{ns, "ci"}, ""},
		{Requirement{ns, "prod"}, `is "ci", not "prod"`},
		{Requirement{ns, "CI"}, "not"},
		{Requirement{num, "42"}, "is a number, not a string"},
		{Requirement{miss, "acme"}, "required claim repository_owner is missing"},
	} {
		err := tc.r.Check(claims)
		if (err == nil) != (tc.why == "") || (err != nil && !strings.Contains(err.Error(), tc.why)) {
			t.Errorf("%s = %q: %v, want %q", tc.r.Path, tc.r.Value, err, tc.why)
		}
	}
}
