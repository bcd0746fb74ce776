// Package clip shortens text that came from outside (a client's user
// name, a claim of a foreign token, an issuer's document) before it goes
// into a log line or an error message.
package clip

import "unicode/utf8"

// String returns s when it holds at most n bytes, else its first n bytes
// or fewer, never half a character, followed by "…".
func String(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
