package registryauth

import (
	"regexp"
	"testing"
)

// TestCaddyfileErrorGoldens checks each file in testdata/caddyfile_errors:
// a Caddyfile, a line of dashes, and the one error adapting it must give,
// word for word. Every such error names the Caddyfile line at fault.
func TestCaddyfileErrorGoldens(t *testing.T) {
	names := regexp.MustCompile(`, at Caddyfile:(\d+)$`)
	eachGolden(t, "testdata/caddyfile_errors", 10, func(t *testing.T, caddyfile string) string {
		_, err := adapt(t, caddyfile)
		if err == nil {
			t.Fatal("adapted without an error")
		}
		if !names.MatchString(err.Error()) {
			t.Errorf("error %q names no Caddyfile line", err)
		}
		return err.Error()
	})
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
