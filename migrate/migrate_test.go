package migrate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regauth/caddy-registry-auth/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// mustCompile checks that a converted config is accepted by our engine.
func mustCompile(tb testing.TB, cfg policy.Config) *policy.Compiled {
	tb.Helper()
	p, _, err := policy.Compile(cfg)
	if err != nil {
		tb.Fatalf("policy.Compile of the converted config: %v", err)
	}
	return p
}

// secretsOf lists the passwords and hashes of a test config, which no
// message may contain.
func secretsOf(cfg policy.Config) []string {
	var out []string
	for _, u := range cfg.Users {
		out = append(out, u.Password)
	}
	return out
}

func checkNoSecret(t *testing.T, secrets []string, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		for _, s := range secrets {
			if s != "" && strings.Contains(m, s) {
				t.Errorf("message %q contains a password or hash", m)
			}
		}
	}
}

// golden is what a testdata config converts to, passwords left out.
type golden struct {
	Users    []string      `json:"users"`
	Rules    []policy.Rule `json:"rules"`
	Warnings []string      `json:"warnings"`
}

// TestConvertTestdata converts the realistic configs of testdata and
// compares the users, rules and warnings with the golden files (go test
// -update rewrites them; review the diff).
func TestConvertTestdata(t *testing.T) {
	for _, c := range []struct{ format, file string }{
		{DockerAuth, "docker_auth.yml"},
		{Alauda, "alauda.yml"},
	} {
		t.Run(c.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			cfg, warnings, err := Convert(c.format, data)
			if err != nil {
				t.Fatalf("Convert: %v", err)
			}
			mustCompile(t, cfg)
			checkNoSecret(t, secretsOf(cfg), warnings...)
			got := golden{Rules: cfg.Rules, Warnings: warnings}
			for _, u := range cfg.Users {
				name := u.Name
				if u.Plaintext {
					name += " (plaintext)"
				}
				got.Users = append(got.Users, name)
			}
			out, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, '\n')
			path := filepath.Join("testdata", strings.TrimSuffix(c.file, ".yml")+".golden.json")
			if *update {
				if err := os.WriteFile(path, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("%s differs from the conversion (go test -update rewrites it):\n%s", path, out)
			}
		})
	}
}

const (
	hashAdmin = "$2a$04$PV9jy3rMLmOEXMQEOYgmCeZNkPWvBMB1wEDdsuJtiwFYSjf2i6U5K" // admin-secret
	hashAlice = "$2a$04$9vm3LCEMRv67JmVEXgWTQufg3QVna0nFQHRpOgqadAHBxXyt/16/u" // alice-secret
	hashBob   = "$2a$04$edmbbw.xA5hgkMIqYX19OutOO/dYrkKBtvz6.bnYE2djBgQzo.weu" // bob-secret
	hashCarol = "$2a$04$8anYS6Tc4.aSVcWGX9/LvOaLQ167Np/d.UUhs8xCWOpdEheuj2pUS" // carol-secret
)

// daUsers is a users section for small docker_auth test configs.
var daUsers = `users:
  admin: {password: "` + hashAdmin + `"}
  alice: {password: "` + hashAlice + `", labels: {team: [web]}}
  bob: {password: "` + hashBob + `", labels: {team: [web, ops]}}
  carol: {password: "` + hashCarol + `"}
`

// errorCases cannot be translated safely: each is an error naming the
// place. They also seed FuzzConvert.
var errorCases = []struct {
	name, format, config, want string
}{
	{"empty match with actions", DockerAuth, daUsers + "acl: [{match: {}, actions: [pull]}]", "acl[0].match: empty or missing"},
	// What yaml.v2 (docker_auth, alauda) reads differently from yaml.v3.
	{"merge key", DockerAuth, daUsers + "acl:\n  - match: &admins {account: admin}\n    actions: ['*']\n  - match: {account: alice, name: 'alice/*', <<: *admins}\n    actions: [pull, push]\n", "merge keys (<<) are not read here"},
	{"alauda merge key", Alauda, "users: {bob: pw}\nauths:\n  bob:\n    - &ro {target: x, actions: [pull]}\n    - {target: secret, actions: [pull, push], <<: *ro}\n", "merge keys (<<) are not read here"},
	{"null key", DockerAuth, daUsers + "acl: [{match: {name: 'secret/*', labels: {null: admins}}, actions: [pull, push]}]", "a key that is not a string (null)"},
	{"number key", Alauda, "users: {'007': pw}\nauths: {007: [{target: secret, actions: [pull]}]}", "a key that is not a string (int)"},
	{"number password", Alauda, "users: {bob: 0123}", "an unquoted int where a string is expected"},
	{"boolean target", Alauda, "users: {bob: pw}\nauths: {bob: [{target: yes, actions: [pull]}]}", `an unquoted "yes" where a string is expected`},
	{"no match with actions", DockerAuth, daUsers + "acl: [{match: {account: admin}, actions: ['*']}, {actions: [pull]}]", "acl[1].match: empty or missing"},
	{"unknown match key", DockerAuth, daUsers + "acl: [{match: {acount: alice}, actions: [pull]}]", "field acount not found"},
	{"unknown entry key", DockerAuth, daUsers + "acl: [{match: {account: alice}, action: [pull]}]", "field action not found"},
	{"ip on an allow", DockerAuth, daUsers + "acl: [{match: {account: alice, ip: 10.0.0.0/8}, actions: [pull]}]", "acl[0].match.ip: no equivalent here"},
	{"service on an allow", DockerAuth, daUsers + "acl: [{match: {service: registry}, actions: [pull]}]", "acl[0].match.service: no equivalent here"},
	{"user without password", DockerAuth, "users: {bob: {}}", `users["bob"]: no password`},
	{"user with labels only", DockerAuth, "users: {bob: {labels: {team: [a]}}}", `users["bob"]: no password`},
	{"empty password", DockerAuth, `users: {bob: {password: ""}}`, `users["bob"]: empty password`},
	{"not a hash", DockerAuth, `users: {bob: {password: "s3cret-pass"}}`, `users["bob"].password: not a bcrypt hash`},
	{"truncated hash", DockerAuth, `users: {bob: {password: "` + hashBob[:50] + `"}}`, `users["bob"].password: malformed bcrypt hash`},
	{"unknown user key", DockerAuth, `users: {bob: {password: "` + hashBob + `", group: x}}`, "field group not found"},
	{"password without its key", DockerAuth, `users: {bob: {"` + hashBob + `"}}`, "field (a key not shown) not found"},
	{"user as a string", DockerAuth, `users: {bob: "` + hashBob + `"}`, "cannot unmarshal !!str into"},
	{"capture group", DockerAuth, daUsers + "acl: [{match: {account: '/^(.+)-ci$/', name: '${account:1}/*'}, actions: [pull]}]", "acl[0].match.name: ${account:1}, a regex capture group"},
	{"service substitution", DockerAuth, daUsers + "acl: [{match: {name: '${service}/*'}, actions: [pull]}]", "acl[0].match.name: ${service} depends on the request"},
	{"name substitution in account", DockerAuth, daUsers + "acl: [{match: {account: '${name}'}, actions: [pull]}]", "acl[0].match.account: ${name} depends on the request"},
	{"unknown substitution", DockerAuth, daUsers + "acl: [{match: {name: '${team}/*'}, actions: [pull]}]", "unknown substitution ${team}"},
	{"unknown action", DockerAuth, daUsers + "acl: [{match: {account: alice}, actions: [pull, pul]}]", `acl[0].actions[1]: unknown action "pul"`},
	{"missing actions", DockerAuth, daUsers + "acl: [{match: {account: alice}}]", "acl[0].actions: missing"},
	{"unknown type", DockerAuth, daUsers + "acl: [{match: {type: repo}, actions: [pull]}]", `acl[0].match.type: "repo"`},
	{"bad regex", DockerAuth, daUsers + "acl: [{match: {name: '/a(/'}, actions: [pull]}]", "acl[0].match.name: bad regular expression"},
	{"bad label regex", DockerAuth, daUsers + "acl: [{match: {labels: {team: '/(/'}}, actions: [pull]}]", `acl[0].match.labels["team"]: bad regular expression`},
	{"malformed glob", DockerAuth, daUsers + "acl: [{match: {name: 'a[b'}, actions: [pull]}]", "acl[0].match.name: malformed glob"},
	{"malformed YAML", DockerAuth, "users: {bob: [", "yaml:"},
	{"tab-indented YAML", DockerAuth, "users:\n\tbob: {}", "yaml:"},
	{"two documents", DockerAuth, daUsers + "---\nacl: []", "more than one YAML document"},
	{"empty document", DockerAuth, "", "empty document"},
	{"not a map", DockerAuth, "- a\n- b", "cannot unmarshal !!seq into"},
	{"unknown format", "htpasswd", "x", `unknown format "htpasswd"`},

	{"alauda unknown key", Alauda, "users: {u: p4ssw0rd}\nauths: {u: [{target: a, userRegexp: true, actions: [pull]}]}", "field userRegexp not found"},
	{"alauda unknown top key", Alauda, "users: {u: p4ssw0rd}\nauth: {}", "field auth not found"},
	{"alauda unknown action", Alauda, "auths: {u: [{target: a, actions: [pull, write]}]}", `auths["u"][0].actions[1]: unknown action "write"`},
	{"alauda unknown type", Alauda, "auths: {u: [{target: a, type: repo, actions: [pull]}]}", `auths["u"][0].type: "repo"`},
	{"alauda empty password", Alauda, `users: {u: ""}`, `users["u"]: empty password`},
	{"alauda malformed hash", Alauda, `users: {u: "` + hashBob[:59] + `"}`, `users["u"]: malformed bcrypt hash`},
	{"alauda malformed JSON", Alauda, `{"users": {"u": "p4ssw0rd"}`, "yaml:"},
	{"alauda list", Alauda, `users: [u]`, "cannot unmarshal !!seq into"},
	{"alauda bad bool", Alauda, "auths: {u: [{target: a, useRegexp: maybe, actions: [pull]}]}", "cannot unmarshal !!str into bool"},
}

// TestErrors: what cannot be translated safely is an error naming the
// place, without the secret at hand.
func TestErrors(t *testing.T) {
	for _, c := range errorCases {
		t.Run(c.name, func(t *testing.T) {
			cfg, warnings, err := Convert(c.format, []byte(c.config))
			if err == nil {
				t.Fatalf("no error; rules %+v, warnings %q", cfg.Rules, warnings)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
			for _, secret := range []string{hashBob, hashBob[:50], "$2a$04$", "s3cret-pass", "p4ssw0rd"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains a secret", err)
				}
			}
		})
	}
}

// warningCases are single constructs: the rules they become and the
// warning they give. They also seed FuzzConvert.
var warningCases = []struct {
	name, format, config string
	rules                []string // "effect subjects actions resources"; none for none
	warning              string   // a fragment of one warning, if any
}{
	{
		name:   "an allow alone: nothing later grants more, so nothing is denied",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: alice, name: 'alice/*'}, actions: [pull]}]",
		rules: []string{"allow user:alice pull alice/*"},
	},
	{
		name:   "deny entry before a broader grant",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: bob}, actions: []}, {match: {account: '/.+/'}, actions: [pull]}]",
		rules: []string{"deny user:bob * **,registry:catalog", "allow authenticated pull **"},
	},
	{
		name:   "trailing denies dropped",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: alice}, actions: [pull]}, {match: {account: bob}, actions: []}, {match: {}, actions: []}]",
		rules:   []string{"allow user:alice pull **"},
		warning: "acl[2]: dropped: an entry with actions [] at the end",
	},
	{
		name:   "ip on a deny is left out",
		format: DockerAuth, config: daUsers + "acl: [{match: {ip: 10.0.0.0/8, name: 'secret/*'}, actions: []}, {match: {account: alice}, actions: [pull]}]",
		rules:   []string{"deny authenticated * secret/*", "allow user:alice pull **"},
		warning: "acl[0].match.ip: left out: the entry now denies whatever the address",
	},
	{
		name:   "account glob as a user pattern, for users of every source",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: 'a*', name: 'shared/*'}, actions: [pull]}]",
		rules: []string{"allow user:regexp:a[^/]* pull shared/*"},
	},
	{
		name:   "account regex as a user pattern, found anywhere as docker_auth does",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: '/^contractor-/', name: 'internal/*'}, actions: []}, {match: {account: '/.+/', name: 'internal/*'}, actions: ['*']}]",
		rules: []string{"deny user:regexp:contractor-.* * internal/*", "allow authenticated * internal/*"},
	},
	{
		name:   "${account} as a path component",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: '/.+/', name: '${account}/*'}, actions: ['*']}]",
		rules: []string{"allow authenticated * {user}/*"},
	},
	{
		name:   "${account} inside a component is written per user",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: '/^a/', name: '${account}-*/app'}, actions: ['*']}]",
		rules: []string{
			"allow user:admin * admin-*/app", "allow user:alice * alice-*/app",
		},
		warning: "acl[0]: written out for each user defined in the file that it matches (admin, alice)",
	},
	{
		name:   "labels",
		format: DockerAuth, config: daUsers + "acl: [{match: {labels: {team: ops}}, actions: [pull]}]",
		rules: []string{"allow user:bob pull **"},
	},
	{
		name:   "a regex found anywhere in the name, kept exactly, with advice",
		format: DockerAuth, config: daUsers + "acl: [{match: {name: '/mirror/'}, actions: [pull]}]",
		rules:   []string{"allow authenticated pull regexp:.*(?:mirror).*"},
		warning: "acl[0].match.name: docker_auth finds the regex anywhere in the name (/foo/ matches xfooy/bar), and so does the rule here",
	},
	{
		name:   "catalog",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: '/.+/', type: registry, name: catalog}, actions: ['*']}]",
		rules: []string{"allow authenticated * registry:catalog"},
	},
	{
		name:   "catalog with other actions than *",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: '/.+/', type: registry, name: catalog}, actions: [pull]}]",
		warning: `acl[0]: the catalog is granted with the action "*" only`,
	},
	{
		name:   "anonymous",
		format: DockerAuth, config: daUsers + "  '': {}\nacl: [{match: {account: '', name: 'public/*'}, actions: [pull]}, {match: {name: 'docs/*'}, actions: [pull]}]",
		rules:   []string{"allow anonymous pull public/*", "allow everyone pull docs/*"},
		warning: `users[""]: skipped: it lets requests without credentials in`,
	},
	{
		name:   "no anonymous user, no anonymous access",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: '', name: 'public/*'}, actions: [pull]}, {match: {name: 'docs/*'}, actions: [pull]}]",
		rules:   []string{"allow authenticated pull docs/*"},
		warning: `acl[0].match.account: "" is the anonymous user`,
	},
	{
		// Lock-out case 1 of issue 19: the regex was made to match whole
		// names, and public/hello matched none.
		name:   "anonymous pulls by an anchored regex",
		format: DockerAuth, config: daUsers + "  '': {}\nacl: [{match: {account: '', name: '/^public\\//'}, actions: [pull]}]",
		rules: []string{"allow anonymous pull regexp:public\\/.*"},
	},
	{
		// Lock-out case 2 of issue 19: admin kept pull only where later
		// entries granted pull only.
		name:   "admin first keeps everything",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: admin}, actions: ['*']}, {match: {account: '/.+/', name: '${account}/*'}, actions: ['*']}, {match: {account: '/.+/'}, actions: [pull]}]",
		rules: []string{"allow user:admin * **,registry:catalog", "allow authenticated * {user}/*", "allow authenticated pull **"},
	},
	{
		name:   "a deny after admin leaves admin out",
		format: DockerAuth, config: daUsers + "  '': {}\nacl: [{match: {account: admin}, actions: ['*']}, {match: {name: 'secret/*'}, actions: []}, {match: {account: '*'}, actions: [pull]}]",
		rules: []string{
			"allow user:admin * **,registry:catalog",
			"deny anonymous,user:regexp:(?s:[^a].*|a|a[^d].*|ad|ad[^m].*|adm|adm[^i].*|admi|admi[^n].*|admin.+) * secret/*",
			"allow everyone pull **",
		},
		warning: "acl[1]: the subject user:regexp:(?s:[^a].*|a|a[^d].*|ad|ad[^m].*|adm|adm[^i].*|admi|admi[^n].*|admin.+) stands for every user but admin",
	},
	{
		name:   "a robot first: its deny is the simpler rule",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: carol}, actions: [pull]}, {match: {account: '/.+/', name: '${account}/*'}, actions: ['*']}, {match: {account: '/.+/', type: registry, name: catalog}, actions: ['*']}]",
		rules: []string{"allow user:carol pull **", "deny user:carol push,delete **", "deny user:carol * registry:catalog", "allow authenticated * {user}/*", "allow authenticated * registry:catalog"},
	},
	{
		name:   "an entry that earlier ones shadow adds nothing",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: '/.+/'}, actions: [pull]}, {match: {account: alice, name: 'alice/*'}, actions: ['*']}]",
		rules: []string{"allow authenticated pull **"},
	},
	{
		name:   "no exact rule: the overlap is denied, with the grant docker_auth gave",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: '/.+/', name: 'team/*'}, actions: [pull, push]}, {match: {account: '/.+/', name: '*/secret'}, actions: []}, {match: {account: '/.+/'}, actions: [pull]}]",
		rules:   []string{"allow authenticated pull,push team/*", "deny authenticated pull,delete */secret", "allow authenticated pull **"},
		warning: "acl[0] and acl[1] both match authenticated asking pull on names both match (such as team/secret): docker_auth answered with acl[0], the first match, which grants it; here acl[1]'s deny of it (deny authenticated pull */secret) refuses it there too, since no rule can leave that overlap out of the deny. What docker_auth granted there: allow authenticated pull team/*",
	},
	{
		name:   "no exact rule for every user: written out for the users of the file",
		format: DockerAuth, config: daUsers + "acl: [{match: {account: admin}, actions: ['*']}, {match: {account: '/^a/', name: 'prod/*'}, actions: [pull]}, {match: {account: '/.+/', name: 'prod/*'}, actions: ['*']}]",
		rules:   []string{"allow user:admin * **,registry:catalog", "allow user:regexp:a.* pull prod/*", "allow authenticated pull prod/*", "allow user:bob,user:carol push,delete prod/*"},
		warning: "acl[1] and acl[2]: users of other sources (authenticated) lose push on prod/*, which acl[2] granted them where acl[1] does not match: no rule here can leave out exactly what acl[1] matches, so the grant is written out for the users of this file; for each user of another source who should keep it, add: allow user:NAME push prod/*",
	},
	{
		name:   "sections that are not policy",
		format: DockerAuth, config: "server: {addr: ':5001'}\ntoken: {issuer: x, expiration: 900}\nldap_auth: {addr: ldap:389}\n" + daUsers,
		warning: "ignored, not policy: ldap_auth, server, token; token's issuer and expiration belong in the Caddyfile",
	},
	{
		name:   "alauda union",
		format: Alauda, config: "users: {u: " + hashBob + "}\nauths: {u: [{target: a/b, actions: [pull]}, {target: 'a/.*', useRegexp: true, actions: [push]}]}",
		rules:   []string{"allow user:u pull a/b", "allow user:u push regexp:.*(?:a/.*).*"},
		warning: `auths["u"][1].target: alauda finds the regex anywhere in the name`,
	},
	{
		// A registry never serves a name with upper case or an empty
		// component: no rule is written for one.
		name:   "alauda targets that are no repository name",
		format: Alauda, config: "users: {u: " + hashBob + "}\nauths: {u: [{target: a/b, actions: [pull]}, {target: App/Web, actions: [push]}, {target: 'a//b', actions: [push]}]}",
		rules:   []string{"allow user:u pull a/b"},
		warning: `auths["u"][1].target: "App/Web" is no valid repository name: rule dropped`,
	},
	{
		name:   "alauda anchored regex and the empty one",
		format: Alauda, config: "users: {u: " + hashBob + "}\nauths: {u: [{target: '^a/.*$', useRegexp: true, actions: [pull]}, {target: '', useRegexp: true, actions: [push]}]}",
		rules:   []string{"allow user:u pull regexp:a/.*", "allow user:u push regexp:.*"},
		warning: `auths["u"][1].target: the empty regex matches every name`,
	},
	{
		name:   "alauda catalog",
		format: Alauda, config: "users: {u: " + hashBob + "}\nauths: {u: [{target: catalog, type: registry, actions: ['*']}, {target: catalog, type: registry, actions: [pull]}]}",
		rules:   []string{"allow user:u * registry:catalog"},
		warning: `auths["u"][1]: the catalog is granted with the action * only`,
	},
	{
		name:   "alauda anonymous, for users without rules and where users' rules do not match",
		format: Alauda, config: "users: {u: " + hashBob + ", v: " + hashAlice + ", w: " + hashCarol + "}\nauths: {u: [{target: a, actions: [push]}], w: [{target: '^pub', useRegexp: true, actions: []}], _anonymous: [{target: pub, actions: [pull]}]}",
		rules: []string{"allow anonymous,user:u,user:v pull pub", "allow user:u push a"},
	},
	{
		name:   "alauda anonymous where a user's rules match some of its names",
		format: Alauda, config: "users: {u: " + hashBob + "}\nauths: {u: [{target: 'pub/a', actions: [push]}], _anonymous: [{target: '^pub/', useRegexp: true, actions: [pull]}]}",
		rules:   []string{"allow anonymous pull regexp:pub/.*", "allow user:u push pub/a"},
		warning: `auths["_anonymous"][0]: alauda gave it to u where none of u's own rules matched the request, on the names of regexp:pub/.* that those rules do not match; no rule here states that difference, so u does not get it: add the grants meant, such as: allow user:u pull <name>`,
	},
	{
		name:   "alauda user not in users",
		format: Alauda, config: "auths: {ext: [{target: a, actions: [pull]}]}",
		rules:   []string{"allow user:ext pull a"},
		warning: `auths["ext"]: no user "ext" is defined in users`,
	},
	{
		name:   "alauda JSON and plaintext",
		format: Alauda, config: `{"users": {"u": "p4ssw0rd"}, "auths": {"u": [{"target": "x", "actions": ["*"]}]}}`,
		rules:   []string{"allow user:u * x"},
		warning: `users["u"]: plaintext password, kept as such; store a bcrypt hash instead`,
	},
}

// TestWarnings checks warningCases.
func TestWarnings(t *testing.T) {
	for _, c := range warningCases {
		t.Run(c.name, func(t *testing.T) {
			cfg, warnings, err := Convert(c.format, []byte(c.config))
			if err != nil {
				t.Fatal(err)
			}
			mustCompile(t, cfg)
			var got []string
			for _, r := range cfg.Rules {
				got = append(got, strings.Join([]string{r.Effect, strings.Join(r.Subjects, ","), strings.Join(r.Actions, ","), strings.Join(r.Resources, ",")}, " "))
			}
			if strings.Join(got, "\n") != strings.Join(c.rules, "\n") {
				t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.rules, "\n"))
			}
			found := c.warning == ""
			for _, w := range warnings {
				found = found || strings.Contains(w, c.warning)
			}
			if !found {
				t.Errorf("no warning contains %q; warnings:\n%s", c.warning, strings.Join(warnings, "\n"))
			}
			checkNoSecret(t, append(secretsOf(cfg), hashAdmin, hashAlice, hashBob, hashCarol), warnings...)
		})
	}
}
