package registryauth

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the Caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the second half of the golden Caddyfile files from what the code gives")

// adapt runs the Caddyfile adapter on text and returns indented JSON.
func adapt(t *testing.T, text string) (string, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), nil)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.String(), nil
}

// TestCaddyfileAdapt checks each golden file in testdata/caddyfile_adapt:
// a Caddyfile, a line of dashes, and the JSON it must adapt to.
func TestCaddyfileAdapt(t *testing.T) {
	eachGolden(t, "testdata/caddyfile_adapt", 1, func(t *testing.T, caddyfile string) string {
		got, err := adapt(t, caddyfile)
		if err != nil {
			t.Fatalf("adapting: %v", err)
		}
		return got
	})
}

// eachGolden runs check, in a subtest, on every *.caddyfiletest file in
// dir (at least atLeast of them): a Caddyfile, a line of dashes, and what
// check must return for that Caddyfile. With -update the second half is
// rewritten from what check returned.
func eachGolden(t *testing.T, dir string, atLeast int, check func(t *testing.T, caddyfile string) string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.caddyfiletest"))
	if len(files) < atLeast {
		t.Fatalf("found %d golden files in %s, want at least %d", len(files), dir, atLeast)
	}
	const sep = "\n----------\n"
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
			got := check(t, caddyfile)
			if *update {
				if err := os.WriteFile(f, []byte(caddyfile+sep+got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(got) != strings.TrimSpace(want) {
				t.Errorf("differs from %s\ngot:\n%s\nwant:\n%s", f, got, strings.TrimSpace(want))
			}
		})
	}
}

// TestCaddyfileErrors checks that broken Caddyfiles are refused with a
// message that names the line and the field at fault.
func TestCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		line             int // the line the error must name, 0 for any
	}{
		{"unknown subdirective", "registry_auth {\n\tservice r\n\tallow_all yes\n}", `unknown registry_auth subdirective "allow_all"`, 4},
		{"duplicate issuer", "registry_auth {\n\tissuer a\n\tissuer b\n}", `duplicate subdirective "issuer"`, 4},
		{"duplicate service", "registry_auth {\n\tservice a\n\tservice b\n}", `duplicate subdirective "service"`, 4},
		{"service without name", "registry_auth {\n\tservice\n}", ``, 3},
		{"bad duration", "registry_auth {\n\ttoken_lifetime soon\n}", `token_lifetime: want a positive duration, got "soon"`, 3},
		{"token_lifetime off", "registry_auth {\n\ttoken_lifetime off\n}", `token_lifetime: want a positive duration`, 3},
		{"bad cache duration", "registry_auth {\n\tcredential_cache -5m\n}", `credential_cache: want a positive duration or off`, 3},
		{"bad refresh lifetime", "registry_auth {\n\trefresh_tokens forever\n}", `refresh_tokens: want a positive duration or off`, 3},
		{"bad throttle", "registry_auth {\n\tthrottle many\n}", `throttle: want a positive number of failures`, 3},
		{"bad throttle window", "registry_auth {\n\tthrottle 5 never\n}", `throttle: want a positive window`, 3},
		{"throttle junk", "registry_auth {\n\tthrottle 5 1m x\n}", `want: throttle`, 3},
		{"unknown signer field", "registry_auth {\n\tsigner {\n\t\tkey /k\n\t}\n}", `unknown signer subdirective "key"`, 4},
		{"duplicate signer field", "registry_auth {\n\tsigner {\n\t\tkey_file /a\n\t\tkey_file /b\n\t}\n}", `duplicate signer subdirective "key_file"`, 5},
		{"unknown rotation", "registry_auth {\n\tsigner {\n\t\trotation weekly\n\t}\n}", `rotation: want auto or manual, got "weekly"`, 4},
		{"bad rotate_every", "registry_auth {\n\tsigner {\n\t\trotate_every often\n\t}\n}", `rotate_every: want a positive duration, got "often"`, 4},
		{"sync_interval off", "registry_auth {\n\tsigner {\n\t\tsync_interval off\n\t}\n}", `sync_interval: want a positive duration`, 4},
		{"user without hash", "registry_auth {\n\tuser alice\n}", `want: user <name> <bcrypt-hash>`, 3},
		{"user with junk", "registry_auth {\n\tuser alice secret extra\n}", `want: user`, 3},
		{"group without members", "registry_auth {\n\tgroup devs\n}", `want: group`, 3},
		{"duplicate group", "registry_auth {\n\tgroup devs a\n\tgroup devs b\n}", `group "devs" is defined twice`, 4},
		{"rule too short", "registry_auth {\n\tallow everyone pull\n}", `want: allow`, 3},
		{"unknown action", "registry_auth {\n\tallow everyone pul public/**\n}", `allow: actions[0]: unknown action "pul"`, 3},
		{"unknown subject", "registry_auth {\n\tdeny alice pull **\n}", `deny: subjects[0]: unknown subject "alice"`, 3},
		{"bad regexp", "registry_auth {\n\tallow everyone pull regexp:(\n}", `allow: resources[0]`, 3},
		{"catalog without star", "registry_auth {\n\tallow everyone pull registry:catalog\n}", `allow: resources[0]: registry:catalog is granted with the action * only`, 3},
		{"policy defined twice", "registry_auth {\n\tservice a\n}\nregistry_auth {\n\tservice b\n}", `policy "default" is defined twice`, 5},
		{"oidc unknown subdirective", "registry_auth {\n\tauthenticator oidc {\n\t\tissuer https://i\n\t\tclaim x\n\t}\n}", `unknown oidc authenticator subdirective "claim"`, 5},
		{"oidc username without prefix", "registry_auth {\n\tauthenticator oidc {\n\t\tusername {claims.sub}\n\t}\n}", `username: "{claims.sub}" must start with a literal prefix that holds a '/'`, 4},
		{"oidc broken username", "registry_auth {\n\tauthenticator oidc {\n\t\tusername gh/{claims.repo\n\t}\n}", `without its closing }`, 4},
		{"oidc broken group", "registry_auth {\n\tauthenticator oidc {\n\t\tgroups ok {owner}\n\t}\n}", `groups: template "{owner}"`, 4},
		{"oidc require without value", "registry_auth {\n\tauthenticator oidc {\n\t\trequire repository_owner\n\t}\n}", `want: require <claim> <value>`, 4},
		{"oidc require twice", "registry_auth {\n\tauthenticator oidc {\n\t\trequire a x\n\t\trequire a y\n\t}\n}", `require: claim "a" is required twice`, 5},
		{"oidc broken claim path", "registry_auth {\n\tauthenticator oidc {\n\t\trequire a..b x\n\t}\n}", `require: claim path "a..b" has an empty segment`, 4},
		{"oidc duplicate issuer", "registry_auth {\n\tauthenticator oidc {\n\t\tissuer https://a\n\t\tissuer https://b\n\t}\n}", `duplicate subdirective "issuer"`, 5},
		{"oidc bad duration", "registry_auth {\n\tauthenticator oidc {\n\t\tmax_token_age forever\n\t}\n}", `max_token_age: want a positive duration`, 4},
		{"token directive arg", ":80 {\n\tregistry_auth_token extra\n}", `wrong argument count`, 2},
		{"token unknown subdirective", ":80 {\n\tregistry_auth_token {\n\t\tpolcy x\n\t}\n}", `unknown registry_auth_token subdirective "polcy"`, 3},
		{"token duplicate policy", ":80 {\n\tregistry_auth_token {\n\t\tpolicy x\n\t\tpolicy y\n\t}\n}", `duplicate subdirective "policy"`, 4},
		{"proxy unknown subdirective", ":80 {\n\tregistry_auth_proxy {\n\t\tupstream r:5000\n\t\ttoken_paht /t\n\t}\n}", `unknown registry_auth_proxy subdirective "token_paht"`, 4},
		{"proxy duplicate subdirective", ":80 {\n\tregistry_auth_proxy {\n\t\trealm https://a/t\n\t\trealm https://b/t\n\t}\n}", `duplicate subdirective "realm"`, 4},
		{"proxy without upstream", ":80 {\n\tregistry_auth_proxy {\n\t\tpolicy default\n\t}\n}", `needs an upstream`, 0},
		{"proxy upstream without address", ":80 {\n\tregistry_auth_proxy {\n\t\tupstream\n\t}\n}", `upstream: name the registry's address`, 3},
		{"proxy bad reverse_proxy option", ":80 {\n\tregistry_auth_proxy {\n\t\tupstream r:5000 {\n\t\t\tlb_polcy first\n\t\t}\n\t}\n}", `lb_polcy`, 4},
		{"proxy argument", ":80 {\n\tregistry_auth_proxy r:5000\n}", `wrong argument count`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if strings.HasPrefix(body, "registry_auth") {
				body = "{\n" + body + "\n}\n"
			}
			_, err := adapt(t, body)
			if err == nil {
				t.Fatalf("adapted without error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if at := fmt.Sprintf("Caddyfile:%d", tc.line); tc.line != 0 && !strings.HasSuffix(err.Error(), at) {
				t.Fatalf("error %q does not name %s", err, at)
			}
		})
	}
}
