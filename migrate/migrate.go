// Package migrate converts the users and access rules of other registry
// token servers' configurations into a policy.Config.
//
// The converted policy grants exactly what the original granted wherever
// our rules can say it: docker_auth's first match (firstmatch.go), regexes
// found anywhere in a name, alauda's fallback to _anonymous. Where they
// cannot, it grants less, never more, with a warning naming the place and
// the rule to add; what cannot be translated even so is an error naming
// the place.
package migrate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// Formats.
const (
	// DockerAuth is the YAML configuration of cesanta/docker_auth: its
	// users and acl sections.
	DockerAuth = "docker_auth"
	// Alauda is the configuration file of alauda/registry-auth (YAML or
	// JSON): its users and auths sections.
	Alauda = "alauda"
)

// CheckFormat refuses a format Convert cannot read.
func CheckFormat(format string) error {
	if format == DockerAuth || format == Alauda {
		return nil
	}
	return fmt.Errorf("unknown format %q (want %s or %s)", format, DockerAuth, Alauda)
}

// Convert reads the users and access rules of a config in the given format and returns our equivalent.
// Warnings name each construct whose meaning changes (always towards granting LESS, with the rule to add)
// and give advice (a regex that probably grants more than meant, in the original too); err is returned for
// anything that cannot be translated safely. Messages name the place (e.g. `acl[3].match.ip`, `users["bob"]`) and never contain a password or hash.
func Convert(format string, data []byte) (cfg policy.Config, warnings []string, err error) {
	var ws []warning
	switch format {
	case DockerAuth:
		cfg, ws, err = convertDockerAuth(data)
	case Alauda:
		cfg, ws, err = convertAlauda(data)
	default:
		return policy.Config{}, nil, CheckFormat(format)
	}
	if err != nil {
		return policy.Config{}, nil, fmt.Errorf("%s: %w", format, err)
	}
	if err := checkRules(cfg.Rules); err != nil {
		return policy.Config{}, nil, fmt.Errorf("%s: %w", format, err)
	}
	for _, w := range ws {
		warnings = append(warnings, w.msg)
	}
	return cfg, warnings, nil
}

// warning is one message of Convert. narrows marks the ones after which
// the converted policy may grant less than the original even to the users
// defined in the file; others those after which only users of other
// sources (an LDAP directory, say) may get less; the rest only inform (a
// construct dropped that changed nothing, advice).
type warning struct {
	msg             string
	narrows, others bool
}

// notes collects warnings in the order they arise, once each.
type notes struct {
	list []warning
	seen map[string]bool
}

func (n *notes) add(w warning, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if n.seen[msg] {
		return
	}
	if n.seen == nil {
		n.seen = map[string]bool{}
	}
	n.seen[msg] = true
	w.msg = msg
	n.list = append(n.list, w)
}

// info adds a warning that changes nothing.
func (n *notes) info(format string, args ...any) { n.add(warning{}, format, args...) }

// narrow adds a warning after which the file's users may get less.
func (n *notes) narrow(format string, args ...any) { n.add(warning{narrows: true}, format, args...) }

// narrowOthers adds a warning after which users of other sources may get
// less.
func (n *notes) narrowOthers(format string, args ...any) {
	n.add(warning{others: true}, format, args...)
}

// checkRules compiles every rule: a rule our engine refuses is a bug of
// this package, reported rather than handed to the caller.
func checkRules(rules []policy.Rule) error {
	for i, r := range rules {
		if err := policy.CheckRule(r); err != nil {
			return fmt.Errorf("internal error: converted rules[%d] does not compile: %v", i, err)
		}
	}
	return nil
}

// decodeStrict decodes a single YAML (or JSON) document into v, refusing
// keys that v does not know. Errors never quote the document's values.
func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("empty document")
		}
		return fmt.Errorf("%s", quietYAMLError(err))
	}
	var rest yaml.Node
	if err := dec.Decode(&rest); !errors.Is(err, io.EOF) {
		return fmt.Errorf("more than one YAML document")
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s", quietYAMLError(err))
	}
	return plainYAML(&doc, "", false)
}

// plainYAML refuses what the YAML libraries of docker_auth (yaml.v2) and
// alauda (yaml.v2 through sigs.k8s.io/yaml) read differently from this
// one, so that a file cannot mean one thing there and another here: merge
// keys ("<<") and keys that are not strings (null, numbers, booleans)
// anywhere, and in the policy sections (users, acl, auths) unquoted
// numbers and booleans where a string is expected (alauda rewrites 0123
// as 83 and yes as true). Only useRegexp takes a boolean.
func plainYAML(n *yaml.Node, key string, policySection bool) error {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if err := plainYAML(c, key, policySection); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		top := n.Line > 0 && key == "" && !policySection
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch {
			case k.Tag == "!!merge":
				return fmt.Errorf("line %d: merge keys (<<) are not read here, since YAML libraries apply them differently: write the keys out", k.Line)
			case k.Kind != yaml.ScalarNode || k.Tag != "!!str":
				return fmt.Errorf("line %d: a key that is not a string (%s): quote it", k.Line, strings.TrimPrefix(k.Tag, "!!"))
			}
			section := policySection || (top && (k.Value == "users" || k.Value == "acl" || k.Value == "auths"))
			if err := plainYAML(v, k.Value, section); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		switch {
		case !policySection, n.Tag == "!!null":
		case n.Tag == "!!str" && n.Style == 0 && yaml11Typed(n.Value):
			return fmt.Errorf("line %d: an unquoted %q where a string is expected, which YAML 1.1 libraries read as a boolean or number: quote it", n.Line, n.Value)
		case n.Tag == "!!str":
		case key == "useRegexp" && n.Tag == "!!bool":
		default:
			return fmt.Errorf("line %d: an unquoted %s where a string is expected, which YAML libraries read differently: quote it", n.Line, strings.TrimPrefix(n.Tag, "!!"))
		}
	}
	return nil
}

// yaml11Typed reports whether a plain scalar that YAML 1.2 reads as a
// string is a boolean or a number to YAML 1.1 (yaml.v2): yes, off, 1_000,
// 1:20 and the like.
func yaml11Typed(v string) bool {
	switch strings.ToLower(v) {
	case "y", "yes", "n", "no", "on", "off":
		return true
	}
	return yaml11Number.MatchString(v)
}

var yaml11Number = regexp.MustCompile(`^[-+]?(\.[0-9]|[0-9])[0-9_:.]*$|^[-+]?0[bx][0-9a-fA-F_]+$`)

// quietYAMLError drops the values yaml quotes in type errors ("cannot
// unmarshal !!str `$2y$05$...` into ..."), and unknown keys that do not
// look like a key (a password written without its "password:"): they may
// be passwords or hashes.
func quietYAMLError(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		start := strings.Index(l, " `")
		end := strings.LastIndex(l, " into ")
		if strings.Contains(l, "cannot unmarshal") && start >= 0 && end > start {
			lines[i] = l[:start] + l[end:]
		}
		if m := unknownField.FindStringSubmatchIndex(l); m != nil && !keyLike.MatchString(l[m[2]:m[3]]) {
			lines[i] = l[:m[2]] + "(a key not shown)" + l[m[3]:]
		}
		lines[i] = strings.TrimSpace(typeNames.Replace(lines[i]))
	}
	return strings.Join(lines, " ")
}

// typeNames says in the format's words what yaml names by Go type.
var typeNames = strings.NewReplacer(
	"type migrate.daFile", "the configuration", "migrate.daFile", "the configuration",
	"type migrate.daUser", "a user", "migrate.daUser", "a user",
	"type migrate.daEntry", "an acl entry", "migrate.daEntry", "an acl entry",
	"type migrate.daMatchCond", "a match", "migrate.daMatchCond", "a match",
	"type migrate.alaudaFile", "the configuration", "migrate.alaudaFile", "the configuration",
	"type migrate.alaudaRule", "a rule", "migrate.alaudaRule", "a rule",
)

var (
	unknownField = regexp.MustCompile(`field (.*) not found in type \S+$`)
	keyLike      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,39}$`)
)

// Repository actions as bits; the catalog is handled apart because it is
// granted with "*" only.
const repoActions = token.Pull | token.Push | token.Delete

// actionWords lists actions for a rule: "*" for token.Every, else the
// named actions.
func actionWords(a token.Actions) []string {
	if a == token.Every {
		return []string{"*"}
	}
	return (a &^ token.All).Strings()
}

// describe names actions for a message: "push, delete".
func describe(a token.Actions) string { return strings.Join(a.Strings(), ", ") }

// listNames shortens a list of names for a message.
func listNames(names []string) string {
	const max = 8
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
	}
	return strings.Join(names, ", ")
}
