package clip

import (
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"alice", 5, "alice"},
		{"alice", 3, "ali…"},
		{"", 0, ""},
		{"héllo", 2, "h…"}, // é is two bytes: never half of it
		{"héllo", 3, "hé…"},
		{"日本語", 4, "日…"},
		{"日本語", 0, "…"},
	} {
		got := String(tc.s, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("String(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
