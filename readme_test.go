package registryauth

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMECoversCaddyfile fails when a Caddyfile subdirective the parser
// knows is missing from the reference (the README and docs/), so the docs
// cannot drift.
func TestREADMECoversCaddyfile(t *testing.T) {
	var src []byte
	for _, f := range []string{"caddyfile.go", "caddyfile_modules.go"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, data...)
	}
	// The README and the reference in docs/.
	docs, _ := filepath.Glob("docs/*.md")
	var readme []byte
	for _, f := range append([]string{"README.md"}, docs...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		readme = append(readme, data...)
	}
	// Subdirective tables: "name": once(...), "name": repeatable(...),
	// subs["name"] = ..., and string fields "name": &x.Field.
	re := regexp.MustCompile(`"([a-z_]+)":\s+(?:once|repeatable)\(|subs\["([a-z_]+)"\] =|"([a-z_]+)": +&`)
	var names []string
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		names = append(names, m[1]+m[2]+m[3])
	}
	t.Logf("subdirectives: %v", names)
	if len(names) < 15 {
		t.Fatalf("found only %d subdirectives in caddyfile.go (%v): the pattern is stale", len(names), names)
	}
	for _, n := range names {
		if !strings.Contains(string(readme), "\t"+n+" ") && !strings.Contains(string(readme), "`"+n+"`") {
			t.Errorf("neither README.md nor docs/ documents the subdirective %q", n)
		}
	}
}
