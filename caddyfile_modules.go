package registryauth

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/regauth/caddy-registry-auth/oidc"
)

// The blocks of the guest modules, as `authenticator <module> {...}` or
// `authorizer <module> {...}` inside registry_auth. Each starts at the
// module's name.

// UnmarshalCaddyfile reads:
//
//	authenticator static {
//		user     <name> <bcrypt-hash>
//		user     <name> plaintext <password>
//		htpasswd <path>
//	}
func (a *StaticAuthenticator) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	var pl policyLines
	return moduleBlock(d, "static authenticator", map[string]subdirective{
		"user":     repeatable(func(d *caddyfile.Dispenser) error { return pl.user(d, &a.Users) }),
		"htpasswd": repeatable(func(d *caddyfile.Dispenser) error { return appendArg(d, &a.HtpasswdFiles) }),
	})
}

// UnmarshalCaddyfile reads:
//
//	authorizer rules {
//		allow <subject[,subject...]> <action[,action...]> <resource...>
//		deny  <subject[,subject...]> <action[,action...]> <resource...>
//	}
func (a *RulesAuthorizer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	var pl policyLines // its subjects may name users of any source
	return moduleBlock(d, "rules authorizer", map[string]subdirective{
		"allow": repeatable(func(d *caddyfile.Dispenser) error { return pl.rule(d, &a.Rules) }),
		"deny":  repeatable(func(d *caddyfile.Dispenser) error { return pl.rule(d, &a.Rules) }),
	})
}

// UnmarshalCaddyfile reads:
//
//	authenticator http {
//		url     <url>
//		timeout <duration>
//		ca_file <path>
//	}
func (a *HTTPAuthenticator) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return moduleBlock(d, "http authenticator", a.HTTPService.subdirectives())
}

// UnmarshalCaddyfile reads:
//
//	authorizer http {
//		url       <url>
//		timeout   <duration>
//		ca_file   <path>
//		cache_ttl <duration>|off
//	}
func (a *HTTPAuthorizer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	subs := a.HTTPService.subdirectives()
	subs["cache_ttl"] = once(func(d *caddyfile.Dispenser) error { return durationOrOffArg(d, &a.CacheTTL) })
	return moduleBlock(d, "http authorizer", subs)
}

// subdirectives are those of every module that asks an HTTP service.
func (s *HTTPService) subdirectives() map[string]subdirective {
	subs := stringFields(map[string]*string{"url": &s.URL, "ca_file": &s.CAFile})
	subs["timeout"] = once(func(d *caddyfile.Dispenser) error { return durationArg(d, &s.Timeout) })
	return subs
}

// UnmarshalCaddyfile reads:
//
//	authenticator ldap {
//		url                  ldaps://<host>[:<port>] | ldap://<host>[:<port>]
//		starttls
//		ca_file              <path>
//		timeout              <duration>
//		pool_size            <n>
//		user_dn              <template with {user}>
//		bind_dn              <dn>
//		bind_password        <password>
//		base_dn              <dn>
//		user_filter          <filter with {user}>
//		user_attribute       <attribute>
//		group_attribute      <attribute>
//		group_base_dn        <dn>
//		group_filter         <filter with {dn} or {user}>
//		group_name_attribute <attribute>
//	}
func (a *LDAPAuthenticator) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	subs := stringFields(map[string]*string{
		"url": &a.URL, "ca_file": &a.CAFile, "user_dn": &a.UserDN,
		"bind_dn": &a.BindDN, "bind_password": &a.BindPassword, "base_dn": &a.BaseDN,
		"user_filter": &a.UserFilter, "user_attribute": &a.UserAttribute, "group_attribute": &a.GroupAttribute,
		"group_base_dn": &a.GroupBaseDN, "group_filter": &a.GroupFilter,
		"group_name_attribute": &a.GroupNameAttribute,
	})
	subs["starttls"] = once(func(d *caddyfile.Dispenser) error {
		a.StartTLS = true
		return noArgs(d)
	})
	subs["timeout"] = once(func(d *caddyfile.Dispenser) error { return durationArg(d, &a.Timeout) })
	subs["pool_size"] = once(func(d *caddyfile.Dispenser) error {
		var n string
		if err := oneArg(d, &n); err != nil {
			return err
		}
		size, err := strconv.Atoi(n)
		if err != nil || size <= 0 {
			return d.Errf("pool_size: want a positive number, got %q", n)
		}
		a.PoolSize = size
		return nil
	})
	return moduleBlock(d, "ldap authenticator", subs)
}

// UnmarshalCaddyfile reads:
//
//	authenticator oidc {
//		issuer                <url>
//		audience              <audience>
//		username              <template, such as gh/{claims.repository}>
//		groups                <template...>
//		require               <claim> <value>
//		jwks_file             <path>
//		ca_file               <path>
//		user_name             <name>
//		max_token_age         <duration>
//		refresh_grace         <duration>
//		jwks_refetch_interval <duration>
//		timeout               <duration>
//	}
//
// Templates and claim paths are checked here, so an error names its line.
func (a *OIDCAuthenticator) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	subs := stringFields(map[string]*string{
		"issuer": &a.Issuer, "audience": &a.Audience, "jwks_file": &a.JWKSFile,
		"ca_file": &a.CAFile, "user_name": &a.UserName,
	})
	subs["username"] = once(func(d *caddyfile.Dispenser) error {
		if err := oneArg(d, &a.Username); err != nil {
			return err
		}
		if _, err := parseUsernameTemplate(a.Username); err != nil {
			return d.Err(err.Error())
		}
		return nil
	})
	subs["groups"] = repeatable(func(d *caddyfile.Dispenser) error {
		var groups []string
		if err := someArgs(d, &groups); err != nil {
			return err
		}
		for _, g := range groups {
			if _, err := oidc.ParseTemplate(g); err != nil {
				return d.Errf("groups: %v", err)
			}
		}
		a.Groups = append(a.Groups, groups...)
		return nil
	})
	subs["require"] = repeatable(func(d *caddyfile.Dispenser) error {
		args := d.RemainingArgs()
		if len(args) != 2 {
			return d.Errf("want: require <claim> <value>")
		}
		if _, err := oidc.ParsePath(args[0]); err != nil {
			return d.Errf("require: %v", err)
		}
		if _, dup := a.Require[args[0]]; dup {
			return d.Errf("require: claim %q is required twice", args[0])
		}
		if a.Require == nil {
			a.Require = map[string]string{}
		}
		a.Require[args[0]] = args[1]
		return nil
	})
	for name, dst := range map[string]*caddy.Duration{
		"max_token_age": &a.MaxTokenAge, "refresh_grace": &a.RefreshGrace,
		"jwks_refetch_interval": &a.JWKSRefetchInterval, "timeout": &a.Timeout,
	} {
		subs[name] = once(func(d *caddyfile.Dispenser) error { return durationArg(d, dst) })
	}
	return moduleBlock(d, "oidc authenticator", subs)
}

// moduleBlock reads a guest module's line, which takes no argument after
// the module's name, and its block.
func moduleBlock(d *caddyfile.Dispenser, name string, subs map[string]subdirective) error {
	d.Next() // the module name
	if err := noArgs(d); err != nil {
		return err
	}
	return block{name: name, subs: subs}.parse(d)
}
