package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/regauth/caddy-registry-auth/policy"
)

// FuzzConvert: Convert never panics, and whatever it returns without an
// error is accepted by policy.Compile.
func FuzzConvert(f *testing.F) {
	for _, c := range []struct {
		alauda bool
		file   string
	}{{false, "docker_auth.yml"}, {true, "alauda.yml"}} {
		data, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c.alauda, data)
	}
	for _, s := range []string{
		daUsers + "  '': {}\nacl: [{match: {account: '/^a/', name: '${account}-*/[^a]pp'}, actions: [pull, '*']}, {match: {labels: {team: '${account}'}, name: '/${labels:team}/'}, actions: []}]",
		daUsers + "acl: [{match: {account: '*', type: registry}, actions: ['*']}, {match: {ip: 10.0.0.1, name: 'a\\[b'}, actions: []}, {match: {name: x}, actions: [push]}]",
	} {
		f.Add(false, []byte(s))
	}
	for _, c := range errorCases {
		f.Add(c.format == Alauda, []byte(c.config))
	}
	for _, c := range warningCases {
		f.Add(c.format == Alauda, []byte(c.config))
	}
	for _, l := range exactLayouts {
		f.Add(l.format == Alauda, []byte(l.config))
	}
	f.Add(true, []byte(`{"users": {"u": "p", "_anonymous": "q"}, "auths": {"_anonymous": [{"target": "(", "useRegexp": true, "actions": ["pull"]}], "u": [{"target": "catalog", "type": "registry", "actions": ["*"]}]}}`))

	anchor, err := bcrypt.GenerateFromPassword([]byte("fuzz-anchor"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, alauda bool, data []byte) {
		format := DockerAuth
		if alauda {
			format = Alauda
		}
		cfg, _, err := Convert(format, data)
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatal(err)
			}
			return
		}
		// Keep Compile fast: stored hashes are checked here, then replaced
		// by one of the minimum cost, and a user with such a hash makes
		// Compile hash plaintext passwords at that cost too.
		const anchorName = "fuzz anchor"
		add := true
		for i, u := range cfg.Users {
			add = add && u.Name != anchorName
			if u.Plaintext {
				continue
			}
			if _, err := policy.CheckHash(u.Password); err != nil {
				t.Fatalf("users[%d]: %v", i, err)
			}
			if cost, _ := bcrypt.Cost([]byte(u.Password)); cost > bcrypt.MinCost {
				cfg.Users[i].Password = string(anchor)
			}
		}
		if add {
			cfg.Users = append(cfg.Users, policy.User{Name: anchorName, Password: string(anchor)})
		}
		if _, _, err := policy.Compile(cfg); err != nil {
			t.Fatalf("Convert gave a config that does not compile: %v", err)
		}
	})
}
