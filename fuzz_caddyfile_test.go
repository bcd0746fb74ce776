package registryauth

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/regauth/caddy-registry-auth/oidc"
	"github.com/regauth/caddy-registry-auth/policy"
)

// FuzzCaddyfile feeds arbitrary text, through the real Caddyfile adapter, as
// the body of the registry_auth global option and of the
// registry_auth_token and registry_auth_proxy directives. It must never
// panic, and whatever it adapts without error must be JSON the modules
// accept: apps.registry_auth unmarshals strictly (no unknown fields) into
// App and every rule compiles, and each registry_auth_token or
// registry_auth_proxy handler (and the proxy's reverse_proxy upstream)
// unmarshals strictly into its type, as Caddy's module loader does.
func FuzzCaddyfile(f *testing.F) {
	for _, body := range []string{
		// README: token mode in five lines.
		"service registry.example.com\nuser alice $2a$14$abcdefghijklmnopqrstuu\nallow user:alice pull,push alice/**\nallow everyone pull public/**",
		// Caddyfile.example, comments and all.
		`service registry.example.com
issuer caddy-registry-auth
token_lifetime 5m
signer {
	bundle_file ./token-certs.pem
}
# a comment
user admin $2a$14$VzsAMrWFE.ZY0VP6XZ067uhSnS.4xH5yPXCuY5jruwt/X64oWT5z2
user ci plaintext {env.REGISTRY_CI_PASSWORD}
group developers alice bob
allow user:admin * ** registry:catalog
allow group:developers pull,push team/**
allow authenticated pull,push {user}/**
allow user:ci pull,push ci/**
allow everyone pull public/**
deny user:ci delete **`,
		// README: the rules section.
		"allow user:admin * ** registry:catalog\nallow group:devs pull,push team/**\nallow authenticated pull,push {user}/**\nallow user:ci pull,push regexp:ci-[0-9]+/.*\nallow everyone pull public/**\ndeny user:ci delete **",
		// Every signer field, and the other scalar options.
		"service a b c\nsigner {\n\tkey_file /k.pem\n\tcert_file /c.pem\n\talgorithm ES384\n\theader kid\n\tkey_id my-key\n\tbundle_file /b.pem\n\tjwks_file /j.json\n}\ncredential_cache off\nthrottle 5 1m\ntoken_lifetime 1h\nrefresh_tokens 720h",
		// Rotation: staged key files, automatic rotation of generated keys.
		"signer {\n\tkey_file /k.pem\n\tcert_file /c.pem\n\tnext_key_file /n.pem\n\tnext_cert_file /m.pem\n\trotation manual\n\tsync_interval 5s\n}",
		"signer {\n\trotation auto\n\trotate_every 90d\n\tstage_period 14d\n}",
		"signer {\n\trotation weekly\n\trotate_every off\n\tsync_interval 0\n}",
		"throttle off\ncredential_cache 30s\nrefresh_tokens off\nhtpasswd /etc/registry/htpasswd\nuser \"bob\" plaintext \"p w\"\nallow anonymous,everyone pull,push,delete \"a b\" regexp:^x$ localhost:5000/*",
		// The directives' bodies (README, proxy_mode golden file).
		"policy default",
		"policy default\nservice registry.example.com\ntoken_path /token\nrealm https://registry.example.com/token\nupstream 10.0.0.5:5000 10.0.0.6:5000 {\n\tlb_policy first\n\thealth_uri /v2/\n\theader_up X-Real-IP {remote_host}\n}",
		"upstream 10.0.0.5:5000 {\n\thealth_uri /v2/\n}",
		// Policy files, authenticators and authorizers.
		"policy_file /etc/policy.d\npolicy_file /etc/docker_auth.yml docker_auth\nreload_interval 10s\nauthenticator ldap {\n\turl ldaps://l\n\tstarttls\n\tca_file /ca.pem\n\ttimeout 2s\n\tpool_size 3\n\tbind_dn cn=a\n\tbind_password {env.P}\n\tbase_dn dc=x\n\tuser_filter \"(uid={user})\"\n\tuser_attribute uid\n\tgroup_attribute memberOf\n\tgroup_base_dn dc=g\n\tgroup_filter \"(member={dn})\"\n\tgroup_name_attribute cn\n}\nauthenticator http {\n\turl https://a/b\n\ttimeout 1s\n}\nauthorizer http {\n\turl https://a/c\n\tcache_ttl off\n}",
		"reload_interval off\nauthenticator nosuch {\n}\nauthorizer http {\n\turl https://a\n\turl https://b\n}\npolicy_file /x nginx",
		// The oidc authenticator: the block, and a Kubernetes one.
		"authenticator oidc {\n\tissuer https://token.actions.githubusercontent.com # exact iss\n\taudience registry.example.com\n\tusername gh/{claims.repository}\n\tgroups {claims.repository_owner} {claims.environment}\n\trequire repository_owner acme\n\tjwks_file /etc/k8s-jwks.json\n\tca_file /etc/ca.pem\n\tuser_name ci\n}\nallow user:gh/acme/app pull,push acme/app/**",
		"authenticator oidc {\n\tissuer https://k\n\taudience r\n\tusername k8s/{claims.kubernetes\\.io.namespace}/{claims.kubernetes\\.io.serviceaccount.name}\n\tgroups k8s-{claims.a}\n\tgroups {claims.b}\n\trequire kubernetes\\.io.namespace ci\n\tmax_token_age 1h\n\trefresh_grace 30m\n\tjwks_refetch_interval 30s\n\ttimeout 3s\n}",
		"authenticator oidc {\n\tusername {claims.sub}\n\trequire a\n\tgroups {x}\n}",
		// Broken ones.
		"allow everyone pul public/**",
		"allow everyone pull regexp:(",
		"allow everyone pull registry:catalog",
		"allow everyone pull **/{user}",
		"signer {\n\tkey_file /a\n\tkey_file /b\n}",
		"throttle 0 -1s\ntoken_lifetime soon\ncredential_cache 0",
		"refresh_tokens 0\nrefresh_tokens off",
		"upstream\npolicy x\npolicy y",
		// Leaving the block: a second policy, or another directive.
		"service a\n}\nregistry_auth other {\n\tservice b\n\tallow user:x,group:y * **",
		"}\nrespond /x 200\nregistry_auth_token {\n\tpolicy p",
		"group devs a b\nallow group:devs,user:x pull,push,delete team/* regexp:^x$ {\n}",
	} {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		// import reads files at parse time, and {$VAR:default} can spell
		// it; neither is this plugin's parsing.
		if strings.Contains(body, "import") || strings.Contains(body, "{$") {
			t.Skip()
		}
		for _, text := range []string{
			"{\n\tregistry_auth {\n" + body + "\n\t}\n}\n",
			":80 {\n\tregistry_auth_token {\n" + body + "\n\t}\n}\n",
			":80 {\n\tregistry_auth_proxy {\n" + body + "\n\t}\n}\n",
		} {
			out, err := adapt(t, text)
			if err != nil {
				continue
			}
			checkAdaptedConfig(t, text, []byte(out))
		}
	})
}

// checkAdaptedConfig checks what the adapter made of text: the parts this
// plugin produced must load without unknown fields.
func checkAdaptedConfig(t *testing.T, text string, out []byte) {
	t.Helper()
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("adapted config is not a JSON object: %v\n%s", err, out)
	}
	if raw, ok := cfg.Apps[AppName]; ok {
		var app App
		if err := caddy.StrictUnmarshalJSON(raw, &app); err != nil {
			t.Fatalf("apps.%s refused: %v\nCaddyfile:\n%s\nJSON:\n%s", AppName, err, text, raw)
		}
		for name, pc := range app.Policies {
			if pc == nil {
				t.Fatalf("policy %q is null\nCaddyfile:\n%s", name, text)
			}
			for i, r := range pc.Rules {
				if err := policy.CheckRule(r); err != nil {
					t.Fatalf("policy %q rule %d %+v does not compile: %v\nCaddyfile:\n%s", name, i, r, err, text)
				}
			}
			for _, raw := range pc.AuthenticatorsRaw {
				checkAdaptedOIDC(t, text, raw)
			}
		}
	}
	// Numbers stay json.Number, so that they are written back verbatim.
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		t.Fatal(err)
	}
	walkHandlers(tree, func(h map[string]any) {
		var dst any
		switch h["handler"] {
		case "registry_auth_token":
			dst = new(TokenHandler)
		case "registry_auth_proxy":
			dst = new(ProxyHandler)
		default:
			return
		}
		fields := map[string]any{}
		for k, v := range h {
			if k != "handler" {
				fields[k] = v
			}
		}
		raw, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		if err := caddy.StrictUnmarshalJSON(raw, dst); err != nil {
			t.Fatalf("handler %v refused: %v\nCaddyfile:\n%s\nJSON:\n%s", h["handler"], err, text, raw)
		}
		if ph, ok := dst.(*ProxyHandler); ok {
			if len(ph.Upstream) == 0 {
				t.Fatalf("registry_auth_proxy without upstream adapted\nCaddyfile:\n%s", text)
			}
			if err := caddy.StrictUnmarshalJSON(ph.Upstream, new(reverseproxy.Handler)); err != nil {
				t.Fatalf("upstream refused by reverse_proxy: %v\nCaddyfile:\n%s\nJSON:\n%s", err, text, ph.Upstream)
			}
		}
	})
}

// checkAdaptedOIDC: an oidc authenticator the Caddyfile accepted loads
// without unknown fields, and its templates and claim paths compile as
// provisioning will compile them.
func checkAdaptedOIDC(t *testing.T, text string, raw json.RawMessage) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || string(fields["authenticator"]) != `"oidc"` {
		return
	}
	delete(fields, "authenticator")
	rest, _ := json.Marshal(fields)
	var a OIDCAuthenticator
	if err := caddy.StrictUnmarshalJSON(rest, &a); err != nil {
		t.Fatalf("oidc authenticator refused: %v\nCaddyfile:\n%s\nJSON:\n%s", err, text, rest)
	}
	if a.Username != "" {
		if _, err := parseUsernameTemplate(a.Username); err != nil {
			t.Fatalf("username accepted by the Caddyfile, refused at provisioning: %v\nCaddyfile:\n%s", err, text)
		}
	}
	for _, g := range a.Groups {
		if _, err := oidc.ParseTemplate(g); err != nil {
			t.Fatalf("group accepted by the Caddyfile, refused at provisioning: %v\nCaddyfile:\n%s", err, text)
		}
	}
	for claim := range a.Require {
		if _, err := oidc.ParsePath(claim); err != nil {
			t.Fatalf("claim accepted by the Caddyfile, refused at provisioning: %v\nCaddyfile:\n%s", err, text)
		}
	}
}

// walkHandlers calls fn on every JSON object in v that has a "handler"
// key, at any depth (subroutes nest handlers).
func walkHandlers(v any, fn func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["handler"].(string); ok {
			fn(v)
		}
		for _, e := range v {
			walkHandlers(e, fn)
		}
	case []any:
		for _, e := range v {
			walkHandlers(e, fn)
		}
	}
}
