package registryauth

import (
	"testing"

	"github.com/regauth/caddy-registry-auth/policy"
)

// FuzzPolicyFile: whatever a policy file holds, in any format, reading it
// gives an error or a config, never a panic, and checking that config
// gives an error or nil, never a panic.
func FuzzPolicyFile(f *testing.F) {
	f.Add(FormatNative, []byte(`{"users": [{"name": "a", "password": "$2a$04$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz012345"}], "groups": {"g": ["a"]}, "rules": [{"effect": "allow", "subjects": ["group:g"], "actions": ["pull"], "resources": ["{user}/**", "regexp:x.*"]}]}`))
	f.Add(FormatNative, []byte(`{"htpasswd_files": ["/nonexistent"], "rules": []} {}`))
	f.Add(FormatDockerAuth, []byte("users:\n  a: {password: \"$2y$05$x\"}\nacl:\n  - match: {account: /.+/, name: \"${account}/*\"}\n    actions: [\"*\"]\n"))
	f.Add(FormatAlauda, []byte("users: {u: p}\nauths:\n  u:\n    - {target: .*, useRegexp: true, actions: [pull]}\n"))
	f.Fuzz(func(t *testing.T, format string, data []byte) {
		cfg, _, err := parsePolicyFile(format, data)
		if err != nil {
			return
		}
		if len(cfg.HtpasswdFiles) > 0 {
			return // would read files of the machine
		}
		_ = policy.Check(cfg)
	})
}
