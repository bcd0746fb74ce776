package registryauth

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The convert command prints a policy file that loads as one, with the
// warnings apart; errors name the input.
func TestConvertCommand(t *testing.T) {
	for _, format := range []string{FormatDockerAuth, FormatAlauda} {
		t.Run(format, func(t *testing.T) {
			in := map[string]string{FormatDockerAuth: "migrate/testdata/docker_auth.yml", FormatAlauda: "migrate/testdata/alauda.yml"}[format]
			var out, warn bytes.Buffer
			if err := runConvert(format, in, nil, &out, &warn); err != nil {
				t.Fatal(err)
			}
			cfg, _, err := parsePolicyFile(FormatNative, out.Bytes())
			if err != nil {
				t.Fatalf("the output is not a policy file: %v\n%s", err, out.String())
			}
			if len(cfg.Users) == 0 || len(cfg.Rules) == 0 {
				t.Fatalf("no users or rules in %s", out.String())
			}
			if !strings.HasPrefix(warn.String(), "warning: ") || strings.Contains(out.String(), "warning") {
				t.Fatalf("warnings belong on stderr only: stderr %q", warn.String())
			}
			// Reading the file directly gives the same policy.
			data, _ := os.ReadFile(in)
			direct, _, err := parsePolicyFile(format, data)
			if err != nil || len(direct.Rules) != len(cfg.Rules) || len(direct.Users) != len(cfg.Users) {
				t.Fatalf("read directly: %d rules, %d users, %v", len(direct.Rules), len(direct.Users), err)
			}
		})
	}
	var out, warn bytes.Buffer
	err := runConvert(FormatDockerAuth, "-", strings.NewReader("users:\n  bob: {}\n"), &out, &warn)
	if err == nil || !strings.Contains(err.Error(), `users["bob"]`) || out.Len() != 0 {
		t.Fatalf("a user without a password: %v, output %q", err, out.String())
	}
	if err := runConvert("htpasswd", "x", nil, &out, &warn); err == nil || !strings.Contains(err.Error(), "--from") {
		t.Fatalf("unknown format: %v", err)
	}
	if err := runConvert(FormatAlauda, "/nonexistent.yml", nil, &out, &warn); err == nil {
		t.Fatal("a missing file must be an error")
	}
}
