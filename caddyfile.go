package registryauth

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// All Caddyfile parsing lives here and in caddyfile_modules.go (the guest
// modules' blocks), with the helpers every block shares.

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
//			key_file       <path>
//			cert_file      <path>
//			next_key_file  <path>
//			next_cert_file <path>
//			algorithm      ES256|ES384|ES512|RS256|RS384|RS512
//			header         x5c|kid
//			key_id         <id>
//			bundle_file    <path>
//			jwks_file      <path>
//			rotation       auto|manual
//			rotate_every   <duration>
//			stage_period   <duration>
//			sync_interval  <duration>
//		}
//		user     <name> <bcrypt-hash>
//		user     <name> plaintext <password>
//		htpasswd <path>
//		group    <name> <member...>
//		allow    <subject[,subject...]> <action[,action...]> <resource...>
//		deny     <subject[,subject...]> <action[,action...]> <resource...>
//		immutable_tags  <repository-glob> <tag-glob...>
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
	start := *d
	var pl policyLines
	elsewhere := func(read func(*caddyfile.Dispenser) error) func(*caddyfile.Dispenser) error {
		return func(d *caddyfile.Dispenser) error { pl.elsewhere = true; return read(d) }
	}
	err := block{name: "registry_auth", subs: map[string]subdirective{
		"issuer":  once(func(d *caddyfile.Dispenser) error { return oneArg(d, &pc.Issuer) }),
		"service": once(func(d *caddyfile.Dispenser) error { return someArgs(d, &pc.Services) }),
		"token_lifetime": once(func(d *caddyfile.Dispenser) error {
			if err := durationArg(d, &pc.TokenLifetime); err != nil {
				return err
			}
			return checkTokenLifetime(d, time.Duration(pc.TokenLifetime))
		}),
		"credential_cache": once(func(d *caddyfile.Dispenser) error {
			return durationOrOffArg(d, &pc.CredentialCacheTTL)
		}),
		"reload_interval": once(func(d *caddyfile.Dispenser) error {
			return durationOrOffArg(d, &pc.ReloadInterval)
		}),
		"refresh_tokens": once(func(d *caddyfile.Dispenser) error {
			pc.RefreshTokens = new(RefreshConfig)
			err := durationOrOffArg(d, &pc.RefreshTokens.Lifetime)
			if pc.RefreshTokens.Lifetime < 0 {
				pc.RefreshTokens.Disabled, pc.RefreshTokens.Lifetime = true, 0
			}
			return err
		}),
		"throttle": once(func(d *caddyfile.Dispenser) (err error) {
			pc.Throttle, err = throttleArgs(d)
			return err
		}),
		"signer": once(func(d *caddyfile.Dispenser) error {
			pc.Signer = new(SignerConfig)
			return pc.Signer.unmarshalCaddyfile(d)
		}),
		"user":           repeatable(func(d *caddyfile.Dispenser) error { return pl.user(d, &pc.Users) }),
		"htpasswd":       repeatable(elsewhere(func(d *caddyfile.Dispenser) error { return appendArg(d, &pc.HtpasswdFiles) })),
		"group":          repeatable(func(d *caddyfile.Dispenser) error { return pl.group(d, &pc.Groups) }),
		"allow":          repeatable(func(d *caddyfile.Dispenser) error { return pl.rule(d, &pc.Rules) }),
		"deny":           repeatable(func(d *caddyfile.Dispenser) error { return pl.rule(d, &pc.Rules) }),
		"immutable_tags": repeatable(func(d *caddyfile.Dispenser) error { return immutableTagsLine(d, &pc.ImmutableTags) }),
		"policy_file":    repeatable(elsewhere(func(d *caddyfile.Dispenser) error { return policyFileLine(d, &pc.Files) })),
		"authenticator": repeatable(elsewhere(func(d *caddyfile.Dispenser) error {
			return appendGuest(d, "authenticator", &pc.AuthenticatorsRaw)
		})),
		"authorizer": repeatable(func(d *caddyfile.Dispenser) error {
			return appendGuest(d, "authorizer", &pc.AuthorizersRaw)
		}),
	}}.parse(d)
	if err != nil {
		return err
	}
	return checkPolicyBlock(&start, pc, &pl)
}

// immutableTagsLine reads `immutable_tags <repository-glob> <tag-glob...>`.
func immutableTagsLine(d *caddyfile.Dispenser, list *[]policy.ImmutableTags) error {
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Errf("want: immutable_tags <repository-glob> <tag-glob...>")
	}
	it := policy.ImmutableTags{Repositories: args[0], Tags: args[1:], Origin: origin(d)}
	if err := policy.CheckImmutableTags([]policy.ImmutableTags{it}); err != nil {
		return d.Errf("immutable_tags: %v", strings.TrimPrefix(err.Error(), "immutable_tags[0]: "))
	}
	*list = append(*list, it)
	return nil
}

// policyFileLine reads `policy_file <path> [native|docker_auth|alauda]`.
func policyFileLine(d *caddyfile.Dispenser, list *[]PolicyFile) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.Errf("want: policy_file <path> [native|docker_auth|alauda]")
	}
	f := PolicyFile{Path: args[0]}
	if len(args) == 2 {
		f.Format = args[1]
		if err := checkFormat(f.Format); err != nil {
			return d.Errf("policy_file: %v", err)
		}
	}
	*list = append(*list, f)
	return nil
}

// throttleArgs reads `throttle <failures> [<window>]` or `throttle off`.
func throttleArgs(d *caddyfile.Dispenser) (*ThrottleConfig, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		return &ThrottleConfig{Failures: -1}, nil
	case len(args) == 1 || len(args) == 2:
		n, err := strconv.Atoi(args[0])
		if err != nil || n <= 0 {
			return nil, d.Errf("throttle: want a positive number of failures, got %q", args[0])
		}
		tc := &ThrottleConfig{Failures: n}
		if len(args) == 2 {
			dur, err := caddy.ParseDuration(args[1])
			if err != nil || dur <= 0 {
				return nil, d.Errf("throttle: want a positive window, got %q", args[1])
			}
			tc.Window = caddy.Duration(dur)
		}
		return tc, nil
	}
	return nil, d.Errf("want: throttle <failures> [<window>], or throttle off")
}

func (sc *SignerConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := noArgs(d); err != nil {
		return err
	}
	subs := stringFields(map[string]*string{
		"key_file":       &sc.KeyFile,
		"cert_file":      &sc.CertFile,
		"next_key_file":  &sc.NextKeyFile,
		"next_cert_file": &sc.NextCertFile,
		"key_id":         &sc.KeyID,
		"bundle_file":    &sc.BundleFile,
		"jwks_file":      &sc.JWKSFile,
	})
	subs["algorithm"] = once(func(d *caddyfile.Dispenser) error {
		if err := oneArg(d, &sc.Algorithm); err != nil {
			return err
		}
		if err := token.CheckAlgorithm(sc.Algorithm); err != nil {
			return d.Errf("algorithm: %v", err)
		}
		return nil
	})
	subs["header"] = once(func(d *caddyfile.Dispenser) error {
		if err := oneArg(d, &sc.Header); err != nil {
			return err
		}
		if err := token.CheckHeader(sc.Header); err != nil {
			return d.Err(err.Error())
		}
		return nil
	})
	subs["rotation"] = once(func(d *caddyfile.Dispenser) error {
		if err := oneArg(d, &sc.Rotation); err != nil {
			return err
		}
		if sc.Rotation != rotationAuto && sc.Rotation != rotationManual {
			return d.Errf("rotation: want auto or manual, got %q", sc.Rotation)
		}
		return nil
	})
	for name, dst := range map[string]*caddy.Duration{"rotate_every": &sc.RotateEvery, "stage_period": &sc.StagePeriod, "sync_interval": &sc.SyncInterval} {
		subs[name] = once(func(d *caddyfile.Dispenser) error { return durationArg(d, dst) })
	}
	start := *d
	if err := (block{name: "signer", inner: true, subs: subs}).parse(d); err != nil {
		return err
	}
	if err := sc.validate(); err != nil {
		return start.Errf("signer: %v", err)
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
	if err := noArgs(d); err != nil {
		return err
	}
	return block{name: "registry_auth_token", subs: stringFields(map[string]*string{"policy": &h.Policy})}.parse(d)
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
	if err := noArgs(h.Dispenser); err != nil {
		return nil, err
	}
	subs := stringFields(map[string]*string{
		"policy": &ph.Policy, "service": &ph.Service, "token_path": &ph.TokenPath, "realm": &ph.Realm,
	})
	subs["upstream"] = once(func(d *caddyfile.Dispenser) error {
		// The block is reverse_proxy's own, parsed by reverse_proxy.
		rp := new(reverseproxy.Handler)
		if err := rp.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
			return err
		}
		if err := rp.FinalizeUnmarshalCaddyfile(h); err != nil {
			return err
		}
		if len(rp.Upstreams) == 0 && rp.DynamicUpstreamsRaw == nil {
			return d.Errf("upstream: name the registry's address")
		}
		ph.Upstream = caddyconfig.JSON(rp, nil)
		return nil
	})
	if err := (block{name: "registry_auth_proxy", subs: subs}).parse(h.Dispenser); err != nil {
		return nil, err
	}
	if ph.Upstream == nil {
		return nil, h.Err("registry_auth_proxy needs an upstream (the registry's address)")
	}
	return ph, nil
}

// A block is the subdirectives a directive, option or module takes, each
// read by its own function. Its parse refuses unknown subdirectives and
// the second of one that may appear once, naming the line.
type block struct {
	name string // for messages: "registry_auth", "ldap authenticator"
	// inner marks a block inside another's subdirective (signer {...}):
	// its messages name it even for duplicates.
	inner bool
	subs  map[string]subdirective
}

// A subdirective reads its own arguments (and block, if any).
type subdirective struct {
	read       func(*caddyfile.Dispenser) error
	repeatable bool
}

// once is a subdirective that may appear once in its block.
func once(read func(*caddyfile.Dispenser) error) subdirective { return subdirective{read: read} }

// repeatable is a subdirective that may appear any number of times.
func repeatable(read func(*caddyfile.Dispenser) error) subdirective {
	return subdirective{read: read, repeatable: true}
}

func (b block) parse(d *caddyfile.Dispenser) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		sub, ok := b.subs[name]
		switch {
		case !ok:
			return d.Errf("unknown %s subdirective %q", b.name, name)
		case seen[name] && !sub.repeatable && b.inner:
			return d.Errf("duplicate %s subdirective %q", b.name, name)
		case seen[name] && !sub.repeatable:
			return d.Errf("duplicate subdirective %q", name)
		}
		seen[name] = true
		if err := sub.read(d); err != nil {
			return err
		}
	}
	return nil
}

// stringFields are subdirectives that each set one string, once.
func stringFields(fields map[string]*string) map[string]subdirective {
	subs := make(map[string]subdirective, len(fields))
	for name, dst := range fields {
		subs[name] = once(func(d *caddyfile.Dispenser) error { return oneArg(d, dst) })
	}
	return subs
}

// noArgs refuses arguments where a block's opening line takes none.
func noArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// oneArg reads a subdirective's single argument into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.AllArgs(dst) {
		return d.ArgErr()
	}
	return nil
}

// someArgs reads a subdirective's arguments, at least one.
func someArgs(d *caddyfile.Dispenser, dst *[]string) error {
	if *dst = d.RemainingArgs(); len(*dst) == 0 {
		return d.ArgErr()
	}
	return nil
}

// appendArg reads a subdirective's single argument onto a list.
func appendArg(d *caddyfile.Dispenser, list *[]string) error {
	var v string
	if err := oneArg(d, &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// durationArg reads a subdirective's one argument, a positive duration.
func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	return readDuration(d, dst, false)
}

// durationOrOffArg reads a positive duration, or "off", which is -1: what
// every duration field of this plugin takes to mean "never".
func durationOrOffArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	return readDuration(d, dst, true)
}

func readDuration(d *caddyfile.Dispenser, dst *caddy.Duration, allowOff bool) error {
	sub := d.Val()
	var v string
	if err := oneArg(d, &v); err != nil {
		return err
	}
	if allowOff && v == "off" {
		*dst = -1
		return nil
	}
	parsed, err := caddy.ParseDuration(v)
	if err != nil || parsed <= 0 {
		want := "a positive duration"
		if allowOff {
			want += " or off"
		}
		return d.Errf("%s: want %s, got %q", sub, want, v)
	}
	*dst = caddy.Duration(parsed)
	return nil
}

// appendGuest reads `authenticator <module> [{...}]` (or authorizer): the
// module's own UnmarshalCaddyfile reads the block.
func appendGuest(d *caddyfile.Dispenser, kind string, list *[]json.RawMessage) error {
	if !d.NextArg() {
		return d.Errf("want: %s <module> [{...}]", kind)
	}
	name := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "registry_auth."+kind+"s."+name)
	if err != nil {
		return err
	}
	*list = append(*list, caddyconfig.JSONModuleObject(unm, kind, name, nil))
	return nil
}

// Interface guards.
var _ caddyfile.Unmarshaler = (*TokenHandler)(nil)
