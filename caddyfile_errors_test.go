package registryauth

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCaddyfileErrorGoldens checks each file in testdata/caddyfile_errors:
// a Caddyfile, a line of dashes, and the one error adapting it must give,
// word for word. Every such error names the Caddyfile line at fault.
func TestCaddyfileErrorGoldens(t *testing.T) {
	files, _ := filepath.Glob("testdata/caddyfile_errors/*.caddyfiletest")
	if len(files) < 10 {
		t.Fatalf("found %d golden error files, want the whole set", len(files))
	}
	const sep = "\n----------\n"
	names := regexp.MustCompile(`, at Caddyfile:(\d+)$`)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".caddyfiletest"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, want, ok := strings.Cut(string(data), sep)
			if !ok {
				t.Fatalf("%s has no %q separator", f, strings.TrimSpace(sep))
			}
			_, err = adapt(t, caddyfile)
			if err == nil {
				t.Fatal("adapted without an error")
			}
			if *update {
				if err := os.WriteFile(f, []byte(caddyfile+sep+err.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err.Error() != strings.TrimSpace(want) {
				t.Errorf("error:\n%s\nwant:\n%s", err, strings.TrimSpace(want))
			}
			if !names.MatchString(err.Error()) {
				t.Errorf("error %q names no Caddyfile line", err)
			}
		})
	}
}

// Names a block cannot see the source of (htpasswd, policy files,
// authenticators) are not refused: they may well exist.
func TestCaddyfileNamesFromElsewhere(t *testing.T) {
	for _, source := range []string{
		"htpasswd /etc/registry/htpasswd",
		"policy_file /etc/registry-auth/policy.d",
		"authenticator http {\n\t\turl https://auth.internal/check\n\t}",
	} {
		body := "{\n\tregistry_auth {\n\t\tservice r\n\t\t" + source + "\n\t\tgroup devs alice\n\t\tallow user:bob,group:ops pull **\n\t}\n}\n"
		if _, err := adapt(t, body); err != nil {
			t.Errorf("with %q: %v", source, err)
		}
	}
}
