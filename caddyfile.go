package registryauth

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/regauth/caddy-registry-auth/policy"
)

func init() {
	httpcaddyfile.RegisterGlobalOption(AppName, parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("registry_auth_token", parseTokenDirective)
	// Before respond, and so before reverse_proxy: a site can serve the
	// token endpoint on one path and proxy the registry on the rest.
	httpcaddyfile.RegisterDirectiveOrder("registry_auth_token", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("registry_auth_proxy", parseProxyDirective)
	httpcaddyfile.RegisterDirectiveOrder("registry_auth_proxy", httpcaddyfile.Before, "reverse_proxy")
}

// parseGlobalOption parses the registry_auth global option. It may appear
// several times, once per policy name:
//
//	registry_auth [<name>] {
//		issuer         <issuer>
//		service        <name> [<name>...]
//		token_lifetime <duration>
//		credential_cache <duration>|off
//		throttle       <failures> [<window>] | off
//		refresh_tokens <lifetime>|off
//		signer {
//			key_file    <path>
//			cert_file   <path>
//			algorithm   ES256|ES384|ES512|RS256|RS384|RS512
//			header      x5c|kid
//			key_id      <id>
//			bundle_file <path>
//			jwks_file   <path>
//		}
//		user     <name> <bcrypt-hash>
//		user     <name> plaintext <password>
//		htpasswd <path>
//		group    <name> <member...>
//		allow    <subject[,subject...]> <action[,action...]> <resource...>
//		deny     <subject[,subject...]> <action[,action...]> <resource...>
//		policy_file     <path> [native|docker_auth|alauda]
//		reload_interval <duration>|off
//		authenticator   <module> [{...}]
//		authorizer      <module> [{...}]
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if prev, ok := existing.(httpcaddyfile.App); ok {
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, err
		}
	}
	if app.Policies == nil {
		app.Policies = map[string]*PolicyConfig{}
	}
	d.Next() // the option name
	name := DefaultPolicy
	if d.NextArg() {
		name = d.Val()
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	if _, dup := app.Policies[name]; dup {
		return nil, d.Errf("registry_auth policy %q is defined twice", name)
	}
	pc := new(PolicyConfig)
	if err := pc.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	app.Policies[name] = pc
	return httpcaddyfile.App{Name: AppName, Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile reads the block of a registry_auth global option.
func (pc *PolicyConfig) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	seen := map[string]bool{}
	once := func() error {
		if seen[d.Val()] {
			return d.Errf("duplicate subdirective %q", d.Val())
		}
		seen[d.Val()] = true
		return nil
	}
	for d.NextBlock(0) {
		switch sub := d.Val(); sub {
		case "issuer":
			if err := once(); err != nil {
				return err
			}
			if !d.AllArgs(&pc.Issuer) {
				return d.ArgErr()
			}
		case "service":
			if err := once(); err != nil {
				return err
			}
			pc.Services = d.RemainingArgs()
			if len(pc.Services) == 0 {
				return d.ArgErr()
			}
		case "token_lifetime":
			if err := once(); err != nil {
				return err
			}
			dur, _, err := durationArg(d, false)
			if err != nil {
				return err
			}
			pc.TokenLifetime = dur
		case "credential_cache":
			if err := once(); err != nil {
				return err
			}
			dur, off, err := durationArg(d, true)
			if err != nil {
				return err
			}
			pc.CredentialCacheTTL = dur
			if off {
				pc.CredentialCacheTTL = -1
			}
		case "refresh_tokens":
			if err := once(); err != nil {
				return err
			}
			dur, off, err := durationArg(d, true)
			if err != nil {
				return err
			}
			pc.RefreshTokens = &RefreshConfig{Disabled: off, Lifetime: dur}
		case "throttle":
			if err := once(); err != nil {
				return err
			}
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && args[0] == "off":
				pc.Throttle = &ThrottleConfig{Failures: -1}
			case len(args) == 1 || len(args) == 2:
				n, err := strconv.Atoi(args[0])
				if err != nil || n <= 0 {
					return d.Errf("throttle: want a positive number of failures, got %q", args[0])
				}
				pc.Throttle = &ThrottleConfig{Failures: n}
				if len(args) == 2 {
					dur, err := caddy.ParseDuration(args[1])
					if err != nil || dur <= 0 {
						return d.Errf("throttle: want a positive window, got %q", args[1])
					}
					pc.Throttle.Window = caddy.Duration(dur)
				}
			default:
				return d.Errf("want: throttle <failures> [<window>], or throttle off")
			}
		case "signer":
			if err := once(); err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			pc.Signer = new(SignerConfig)
			if err := pc.Signer.unmarshalCaddyfile(d); err != nil {
				return err
			}
		case "user":
			u, err := userLine(d)
			if err != nil {
				return err
			}
			pc.Users = append(pc.Users, u)
		case "htpasswd":
			var path string
			if !d.AllArgs(&path) {
				return d.ArgErr()
			}
			pc.HtpasswdFiles = append(pc.HtpasswdFiles, path)
		case "group":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("want: group <name> <member...>")
			}
			if pc.Groups == nil {
				pc.Groups = map[string][]string{}
			}
			if _, dup := pc.Groups[args[0]]; dup {
				return d.Errf("group %q is defined twice", args[0])
			}
			pc.Groups[args[0]] = args[1:]
		case "allow", "deny":
			rule, err := ruleLine(d)
			if err != nil {
				return err
			}
			pc.Rules = append(pc.Rules, rule)
		case "policy_file":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Errf("want: policy_file <path> [native|docker_auth|alauda]")
			}
			f := PolicyFile{Path: args[0]}
			if len(args) == 2 {
				f.Format = args[1]
				switch f.Format {
				case FormatNative, FormatDockerAuth, FormatAlauda:
				default:
					return d.Errf("policy_file: unknown format %q (want native, docker_auth or alauda)", f.Format)
				}
			}
			pc.Files = append(pc.Files, f)
		case "reload_interval":
			if err := once(); err != nil {
				return err
			}
			dur, off, err := durationArg(d, true)
			if err != nil {
				return err
			}
			pc.ReloadInterval = dur
			if off {
				pc.ReloadInterval = -1
			}
		case "authenticator", "authorizer":
			if !d.NextArg() {
				return d.Errf("want: %s <module> [{...}]", sub)
			}
			name := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "registry_auth."+sub+"s."+name)
			if err != nil {
				return err
			}
			raw := caddyconfig.JSONModuleObject(unm, sub, name, nil)
			if sub == "authenticator" {
				pc.AuthenticatorsRaw = append(pc.AuthenticatorsRaw, raw)
			} else {
				pc.AuthorizersRaw = append(pc.AuthorizersRaw, raw)
			}
		default:
			return d.Errf("unknown registry_auth subdirective %q", sub)
		}
	}
	return nil
}

// userLine reads `user <name> <bcrypt-hash>` or `user <name> plaintext
// <password>`.
func userLine(d *caddyfile.Dispenser) (policy.User, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 2:
		return policy.User{Name: args[0], Password: args[1]}, nil
	case len(args) == 3 && args[1] == "plaintext":
		return policy.User{Name: args[0], Password: args[2], Plaintext: true}, nil
	}
	return policy.User{}, d.Errf("want: user <name> <bcrypt-hash>, or user <name> plaintext <password>")
}

// ruleLine reads an allow or deny line and checks the rule at once, so
// that an error names the line.
func ruleLine(d *caddyfile.Dispenser) (policy.Rule, error) {
	effect := d.Val()
	args := d.RemainingArgs()
	if len(args) < 3 {
		return policy.Rule{}, d.Errf("want: %s <subject[,subject...]> <action[,action...]> <resource...>", effect)
	}
	rule := policy.Rule{
		Effect:    effect,
		Subjects:  strings.Split(args[0], ","),
		Actions:   strings.Split(args[1], ","),
		Resources: args[2:],
	}
	if _, err := policy.CompileRule(rule); err != nil {
		return rule, d.Errf("%s: %v", effect, err)
	}
	return rule, nil
}

// durationArg reads a subdirective's one argument: a positive duration,
// or, when allowed, "off".
func durationArg(d *caddyfile.Dispenser, allowOff bool) (dur caddy.Duration, off bool, err error) {
	sub := d.Val()
	var v string
	if !d.AllArgs(&v) {
		return 0, false, d.ArgErr()
	}
	if allowOff && v == "off" {
		return 0, true, nil
	}
	parsed, err := caddy.ParseDuration(v)
	if err != nil || parsed <= 0 {
		want := "a positive duration"
		if allowOff {
			want += " or off"
		}
		return 0, false, d.Errf("%s: want %s, got %q", sub, want, v)
	}
	return caddy.Duration(parsed), false, nil
}

func (sc *SignerConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	fields := map[string]*string{
		"key_file":    &sc.KeyFile,
		"cert_file":   &sc.CertFile,
		"algorithm":   &sc.Algorithm,
		"header":      &sc.Header,
		"key_id":      &sc.KeyID,
		"bundle_file": &sc.BundleFile,
		"jwks_file":   &sc.JWKSFile,
	}
	seen := map[string]bool{}
	for d.NextBlock(1) {
		dst, ok := fields[d.Val()]
		if !ok {
			return d.Errf("unknown signer subdirective %q", d.Val())
		}
		if seen[d.Val()] {
			return d.Errf("duplicate signer subdirective %q", d.Val())
		}
		seen[d.Val()] = true
		if !d.AllArgs(dst) {
			return d.ArgErr()
		}
	}
	return nil
}

// parseTokenDirective parses the registry_auth_token directive:
//
//	registry_auth_token [<matcher>] {
//		policy <name>
//	}
func parseTokenDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	th := new(TokenHandler)
	err := th.UnmarshalCaddyfile(h.Dispenser)
	return th, err
}

// UnmarshalCaddyfile reads the registry_auth_token directive.
func (h *TokenHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "policy":
			if h.Policy != "" {
				return d.Errf("duplicate subdirective \"policy\"")
			}
			if !d.AllArgs(&h.Policy) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown registry_auth_token subdirective %q", d.Val())
		}
	}
	return nil
}

// parseProxyDirective parses the registry_auth_proxy directive:
//
//	registry_auth_proxy [<matcher>] {
//		policy     <name>
//		service    <name>
//		token_path <path>
//		realm      <url>
//		upstream   <address...> {
//			<any reverse_proxy subdirective>
//		}
//	}
func parseProxyDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	ph := new(ProxyHandler)
	h.Next() // the directive name
	if h.NextArg() {
		return nil, h.ArgErr()
	}
	seen := map[string]bool{}
	for h.NextBlock(0) {
		sub := h.Val()
		if seen[sub] {
			return nil, h.Errf("duplicate subdirective %q", sub)
		}
		seen[sub] = true
		var dst *string
		switch sub {
		case "policy":
			dst = &ph.Policy
		case "service":
			dst = &ph.Service
		case "token_path":
			dst = &ph.TokenPath
		case "realm":
			dst = &ph.Realm
		case "upstream":
			// The block is reverse_proxy's own, parsed by reverse_proxy.
			rp := new(reverseproxy.Handler)
			if err := rp.UnmarshalCaddyfile(h.NewFromNextSegment()); err != nil {
				return nil, err
			}
			if err := rp.FinalizeUnmarshalCaddyfile(h); err != nil {
				return nil, err
			}
			if len(rp.Upstreams) == 0 && rp.DynamicUpstreamsRaw == nil {
				return nil, h.Errf("upstream: name the registry's address")
			}
			ph.Upstream = caddyconfig.JSON(rp, nil)
			continue
		default:
			return nil, h.Errf("unknown registry_auth_proxy subdirective %q", sub)
		}
		if !h.AllArgs(dst) {
			return nil, h.ArgErr()
		}
	}
	if ph.Upstream == nil {
		return nil, h.Err("registry_auth_proxy needs an upstream (the registry's address)")
	}
	return ph, nil
}

// Interface guards.
var _ caddyfile.Unmarshaler = (*TokenHandler)(nil)
