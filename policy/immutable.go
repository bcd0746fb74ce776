package policy

import (
	"fmt"
	"regexp"
	"strings"
)

// ImmutableTags protect tags of matching repositories: once such a tag
// exists it may not point at another manifest, and neither it nor the
// manifest it points at may be deleted. Nobody is exempt, admins
// included; an operator who must remove one edits the rule. Only
// registry_auth_proxy can enforce them (a registry checks tokens, and a
// token can only say "push").
type ImmutableTags struct {
	// Repositories is a repository glob, as in rules ("**", "team/*",
	// "regexp:<expr>"), without {user}: the protection is everyone's.
	Repositories string `json:"repositories"`
	// Tags are tag globs: "*" matches any run of characters ("v*",
	// "release-*", "latest").
	Tags []string `json:"tags"`
	// Origin says where the rule was written (see Rule.Origin).
	Origin string `json:"origin,omitempty"`
}

type compiledImmutable struct {
	origin string
	repos  pattern
	globs  []string
	tags   *regexp.Regexp
}

// tagGlobChars are the characters of a tag, and "*".
const tagGlobChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-*"

// compileImmutable checks one rule and prepares its matchers.
func compileImmutable(it ImmutableTags) (compiledImmutable, error) {
	c := compiledImmutable{origin: it.Origin, globs: it.Tags}
	if strings.Contains(it.Repositories, UserPlaceholder) {
		return c, fmt.Errorf("repositories: %s is not allowed: immutable tags protect everyone's tags", UserPlaceholder)
	}
	p, err := compilePattern(it.Repositories)
	if err != nil {
		return c, fmt.Errorf("repositories: %q: %v", it.Repositories, err)
	}
	c.repos = p
	if len(it.Tags) == 0 {
		return c, fmt.Errorf("tags: none given")
	}
	alts := make([]string, len(it.Tags))
	for i, t := range it.Tags {
		if t == "" || strings.Trim(t, tagGlobChars) != "" || len(t) > 128 {
			return c, fmt.Errorf("tags[%d]: %q is not a tag glob (letters, digits, '_', '.', '-' and '*', at most 128)", i, t)
		}
		alts[i] = strings.ReplaceAll(regexp.QuoteMeta(t), `\*`, `.*`)
	}
	c.tags = regexp.MustCompile(`^(?:` + strings.Join(alts, "|") + `)$`)
	return c, nil
}

// compileAllImmutable compiles a policy's immutable tag rules.
func compileAllImmutable(list []ImmutableTags) ([]compiledImmutable, error) {
	var out []compiledImmutable
	for i, it := range list {
		c, err := compileImmutable(it)
		if err != nil {
			return nil, fmt.Errorf("immutable_tags[%d]: %v", i, err)
		}
		if c.origin == "" {
			c.origin = fmt.Sprintf("immutable_tags[%d]", i)
		}
		out = append(out, c)
	}
	return out, nil
}

// CheckImmutableTags checks immutable tag rules on their own, for callers
// that check a policy's parts before merging them.
func CheckImmutableTags(list []ImmutableTags) error {
	_, err := compileAllImmutable(list)
	return err
}

// HasImmutableTags reports whether the policy protects any tag.
func (c *Compiled) HasImmutableTags() bool { return len(c.immutable) > 0 }

// ImmutableTag says whether tag in repo is immutable, and by which rule.
func (c *Compiled) ImmutableTag(repo, tag string) (origin string, ok bool) {
	for _, it := range c.immutable {
		if it.repos.match(repo, "") && it.tags.MatchString(tag) {
			return it.origin, true
		}
	}
	return "", false
}

// ProtectsRepository reports whether any tag of repo may be immutable.
func (c *Compiled) ProtectsRepository(repo string) bool {
	for _, it := range c.immutable {
		if it.repos.match(repo, "") {
			return true
		}
	}
	return false
}

// ImmutableRules describes the immutable tag rules that apply to repo, for
// explanations: "v*, release-* (Caddyfile:12)".
func (c *Compiled) ImmutableRules(repo string) []string {
	var out []string
	for _, it := range c.immutable {
		if it.repos.match(repo, "") {
			out = append(out, fmt.Sprintf("%s (%s)", strings.Join(it.globs, ", "), it.origin))
		}
	}
	return out
}
