package token

import (
	"errors"
	"fmt"
)

// MaxNameLength is the longest repository name a registry accepts.
const MaxNameLength = 255

// ValidRepositoryName reports whether name follows the distribution
// reference grammar for repository names: an optional domain (host[:port])
// followed by one or more lowercase path components joined by "/". Names
// are compared byte for byte by registries, so anything else (upper case,
// "..", empty components, percent-encoding) must never be matched against
// a rule: it could alias a name the rule meant to protect.
func ValidRepositoryName(name string) bool {
	if name == "" || len(name) > MaxNameLength {
		return false
	}
	first := true
	for name != "" {
		comp := name
		rest := ""
		for i := 0; i < len(name); i++ {
			if name[i] == '/' {
				comp, rest = name[:i], name[i+1:]
				if rest == "" {
					return false // trailing slash
				}
				break
			}
		}
		ok := validPathComponent(comp)
		if !ok && first && rest != "" {
			ok = validDomain(comp)
		}
		if !ok {
			return false
		}
		first = false
		name = rest
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// validPathComponent checks [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*.
func validPathComponent(s string) bool {
	if s == "" || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); {
		if isLowerAlnum(s[i]) {
			i++
			continue
		}
		// A separator run: ".", "_", "__" or one or more "-".
		j := i
		switch s[i] {
		case '.':
			j++
		case '_':
			j++
			if j < len(s) && s[j] == '_' {
				j++
			}
		case '-':
			for j < len(s) && s[j] == '-' {
				j++
			}
		default:
			return false
		}
		if j >= len(s) || !isLowerAlnum(s[j]) {
			return false
		}
		i = j
	}
	return true
}

// validDomain checks a registry host: dot-separated labels of letters,
// digits and inner hyphens, with an optional numeric port.
func validDomain(s string) bool {
	host, port := s, ""
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			host, port = s[:i], s[i+1:]
			if port == "" {
				return false
			}
			break
		}
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	if host == "" {
		return false
	}
	label := 0
	for i := 0; i <= len(host); i++ {
		if i == len(host) || host[i] == '.' {
			l := host[label:i]
			if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
				return false
			}
			label = i + 1
			continue
		}
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// NameChar reports whether c can appear in a repository name, a registry
// host and port included. Rule patterns take these characters literally.
func NameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '/' || c == ':'
}

// CheckUserName says why name cannot be a user's login name, or returns
// nil. Basic credentials end the name at the first ':', and no control
// character belongs in a name (a line break could forge a log line, a NUL
// cut a directory's filter short). Every source of users, every login and
// every converted configuration is held to this one rule.
func CheckUserName(name string) error {
	if name == "" {
		return errors.New("empty user name")
	}
	for _, c := range name {
		switch {
		case c == ':':
			return fmt.Errorf("user name %q contains ':', where Basic credentials split", name)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("user name %q contains a control character", name)
		}
	}
	return nil
}
