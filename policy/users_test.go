package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAuthenticate: right password in (with groups), everything else out
// with the same zero answer; every call runs exactly one bcrypt compare so
// that unknown users cost what wrong passwords do (SPEC-NOTES §2).
func TestAuthenticate(t *testing.T) {
	aliceHash := hashOf(t, "alice-pw")
	p, warnings, err := Compile(Config{
		Users: []User{
			{Name: "alice", Password: aliceHash},
			{Name: "plain", Password: "plain-pw", Plaintext: true},
			{Name: "y-prefixed", Password: "$2y$" + hashOf(t, "y-pw")[4:]}, // htpasswd -B style
			{Name: "b-prefixed", Password: "$2b$" + hashOf(t, "b-pw")[4:]},
		},
		Groups: map[string][]string{"devs": {"alice"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "plain") || strings.Contains(warnings[0], "plain-pw") {
		t.Errorf("warnings %q, want one naming the plaintext user (not its password)", warnings)
	}
	tests := []struct {
		name     string
		user, pw string
		ok       bool
		groups   []string
	}{
		{"right password", "alice", "alice-pw", true, []string{"devs"}},
		{"plaintext user", "plain", "plain-pw", true, nil},
		{"$2y$ hash", "y-prefixed", "y-pw", true, nil},
		{"$2b$ hash", "b-prefixed", "b-pw", true, nil},
		{"wrong password", "alice", "wrong", false, nil},
		{"empty password", "alice", "", false, nil},
		{"password with a suffix", "alice", "alice-pw ", false, nil},
		{"password prefix", "alice", "alice-p", false, nil},
		{"unknown user", "mallory", "alice-pw", false, nil},
		{"empty user", "", "alice-pw", false, nil},
		{"user name case differs", "Alice", "alice-pw", false, nil},
		// Regression: comparing the given password with the stored one
		// as strings let a leaked hash log in (pass-the-hash).
		{"stored hash as password", "alice", aliceHash, false, nil},
		{"plaintext user: the hash made at load", "plain", string(p.users.hashes["plain"]), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := p.Users().Compares()
			id, ok := authenticate(p, tt.user, tt.pw)
			if n := p.Users().Compares() - before; n != 1 {
				t.Errorf("%d bcrypt compares, want exactly 1", n)
			}
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				if id.Name != "" || id.Groups != nil {
					t.Errorf("failed login returned identity %+v", id)
				}
				return
			}
			if id.Name != tt.user || fmt.Sprint(id.Groups) != fmt.Sprint(tt.groups) {
				t.Errorf("identity %+v, want %s %v", id, tt.user, tt.groups)
			}
		})
	}
}

// TestAuthenticateUniformCost: the dummy hash unknown users are checked
// against, and the hashes made for plaintext passwords, have the median
// cost of the stored hashes, so an unknown name takes as long as a wrong
// password.
func TestAuthenticateUniformCost(t *testing.T) {
	mk := func(pw string, cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	p, _, err := Compile(Config{Users: []User{
		{Name: "a", Password: mk("a", 4)},
		{Name: "b", Password: mk("b", 6)},
		{Name: "c", Password: mk("c", 5)},
		{Name: "p", Password: "p", Plaintext: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for name, hash := range map[string][]byte{"dummy": p.users.dummy, "plaintext": p.users.hashes["p"]} {
		if cost, err := bcrypt.Cost(hash); err != nil || cost != 5 {
			t.Errorf("%s hash cost %d (%v), want the median 5", name, cost, err)
		}
	}
	// The dummy hash is of no password anyone could guess.
	for _, guess := range []string{"", "password", "dummy"} {
		if _, ok := authenticate(p, "nobody", guess); ok {
			t.Errorf("unknown user logged in with %q", guess)
		}
	}
	if got := typicalCost(nil); got != bcrypt.DefaultCost {
		t.Errorf("typicalCost(nil) = %d", got)
	}
}

// TestCompilesConcurrently: Authenticate is safe for concurrent use and
// counts every compare.
func TestAuthenticateConcurrent(t *testing.T) {
	p := mustCompile(t, Config{Users: []User{{Name: "alice", Password: hashOf(t, "pw")}}})
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw := "pw"
			if i%2 == 1 {
				pw = "wrong"
			}
			if _, ok := authenticate(p, "alice", pw); ok != (i%2 == 0) {
				t.Errorf("goroutine %d: ok = %v", i, ok)
			}
		}()
	}
	wg.Wait()
	if p.Users().Compares() != n {
		t.Errorf("Compares() = %d, want %d", p.Users().Compares(), n)
	}
}

// TestCompileUserErrors: bad users stop the load, the error says where, and
// never echoes a hash or password.
func TestCompileUserErrors(t *testing.T) {
	good := hashOf(t, "pw")
	const secret = "S3cr3tHashText"
	tests := []struct {
		name  string
		users []User
		wants []string
	}{
		{"duplicate user", []User{{Name: "alice", Password: good}, {Name: "alice", Password: good}}, []string{"users[1]", "alice", "twice"}},
		{"duplicate plaintext user", []User{{Name: "alice", Password: "x", Plaintext: true}, {Name: "alice", Password: good}}, []string{"users[1]", "twice"}},
		{"empty name", []User{{Name: "", Password: good}}, []string{"users[0]", "empty"}},
		{"colon in name", []User{{Name: "a:b", Password: good}}, []string{"users[0]"}},
		{"newline in name", []User{{Name: "a\nb", Password: good}}, []string{"users[0]"}},
		{"SHA-1 htpasswd hash", []User{{Name: "alice", Password: "{SHA}" + secret}}, []string{"users[0]", "alice", "bcrypt"}},
		{"apr1 MD5 hash", []User{{Name: "alice", Password: "$apr1$salt$" + secret}}, []string{"users[0]", "bcrypt"}},
		{"sha256-crypt hash", []User{{Name: "alice", Password: "$5$salt$" + secret}}, []string{"users[0]", "bcrypt"}},
		{"sha512-crypt hash", []User{{Name: "alice", Password: "$6$salt$" + secret}}, []string{"users[0]", "bcrypt"}},
		{"$2x$ hash", []User{{Name: "alice", Password: "$2x$" + good[4:]}}, []string{"users[0]", "bcrypt"}},
		{"$2$ hash", []User{{Name: "alice", Password: "$2$" + good[4:]}}, []string{"users[0]", "bcrypt"}},
		{"plain password not marked plaintext", []User{{Name: "alice", Password: secret}}, []string{"users[0]", "plaintext"}},
		{"empty hash", []User{{Name: "alice", Password: ""}}, []string{"users[0]"}},
		{"truncated bcrypt hash", []User{{Name: "alice", Password: good[:40]}}, []string{"users[0]", "malformed"}},
		{"bcrypt cost out of range", []User{{Name: "alice", Password: "$2a$99$" + good[7:]}}, []string{"users[0]"}},
		{"empty plaintext password", []User{{Name: "alice", Password: "", Plaintext: true}}, []string{"users[0]", "empty password"}},
		// bcrypt uses only 72 bytes; a longer password must not be
		// silently truncated.
		{"plaintext password over 72 bytes", []User{{Name: "alice", Password: strings.Repeat("p", 73) + secret, Plaintext: true}}, []string{"alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Compile(Config{Users: tt.users})
			if err == nil {
				t.Fatal("Compile accepted it")
			}
			msg := err.Error()
			for _, w := range tt.wants {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, good[7:]) {
				t.Errorf("error %q echoes the hash or password", msg)
			}
		})
	}
}

// TestCompileMalformedBcryptBody: a hash with a valid "$2a$04$" prefix and
// length but a body that is not bcrypt's base64 passes bcrypt.Cost, so
// checkHash accepts it; yet every compare against it fails ("illegal
// base64 data"), so the user is locked out without a word. Compile is
// strict everywhere else and should refuse it at load.
func TestCompileMalformedBcryptBody(t *testing.T) {
	hash := "$2a$04$" + strings.Repeat("!", 53)
	p, _, err := Compile(Config{Users: []User{{Name: "alice", Password: hash}}})
	if err == nil {
		_, ok := authenticate(p, "alice", "anything")
		t.Errorf("Compile accepted a bcrypt hash whose body is not bcrypt base64 (login possible: %v)", ok)
	}
}

// TestHtpasswdFiles: the registry's own htpasswd format: name:bcrypt
// lines, comments and blank lines skipped, CRLF tolerated; errors name the
// file and line but never the hash.
func TestHtpasswdFiles(t *testing.T) {
	aliceHash := "$2y$" + hashOf(t, "alice-pw")[4:]
	bobHash := hashOf(t, "bob-pw")
	good := writeFile(t, "htpasswd", "# users of the registry\n\n"+
		"alice:"+aliceHash+"\r\n"+
		"   \n"+
		"  # indented comment\n"+
		"  bob:"+bobHash+"  ") // no final newline
	other := writeFile(t, "more", "carol:"+hashOf(t, "carol-pw")+"\n")

	p, _, err := Compile(Config{HtpasswdFiles: []string{good, other}, Users: []User{{Name: "dave", Password: hashOf(t, "dave-pw")}}})
	if err != nil {
		t.Fatal(err)
	}
	for user, pw := range map[string]string{"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"} {
		if _, ok := authenticate(p, user, pw); !ok {
			t.Errorf("%s cannot log in", user)
		}
	}
	if _, ok := authenticate(p, "# users of the registry", ""); ok {
		t.Error("a comment became a user")
	}

	const secret = "W6ph5Mm5Pz8GgiULbPgzG37mj9g="
	tests := []struct {
		name    string
		content string
		wants   []string // besides the path
	}{
		{"SHA-1 hash", "alice:" + aliceHash + "\nbob:{SHA}" + secret + "\n", []string{":2:", "bob", "bcrypt"}},
		{"MD5 hash", "# c\n\nbob:$apr1$abc$" + secret + "\n", []string{":3:", "bob"}},
		{"line without colon", "alice:" + aliceHash + "\n\n" + secret + "\n", []string{":3:", "name:hash"}},
		{"empty name", ":" + bobHash + "\n", []string{":1:", "empty"}},
		{"plain password", "bob:" + secret + "\n", []string{":1:", "bob"}},
		{"duplicate in the file", "alice:" + aliceHash + "\nalice:" + bobHash + "\n", []string{"alice", "twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "htpasswd", tt.content)
			_, _, err := Compile(Config{HtpasswdFiles: []string{path}})
			if err == nil {
				t.Fatal("Compile accepted it")
			}
			msg := err.Error()
			for _, w := range append([]string{"htpasswd_files[0]", path}, tt.wants...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, aliceHash[7:]) || strings.Contains(msg, bobHash[7:]) {
				t.Errorf("error %q echoes a hash", msg)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		_, _, err := Compile(Config{HtpasswdFiles: []string{good, filepath.Join(t.TempDir(), "nope")}})
		if err == nil || !strings.Contains(err.Error(), "htpasswd_files[1]") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("user in a file and inline", func(t *testing.T) {
		_, _, err := Compile(Config{Users: []User{{Name: "bob", Password: bobHash}}, HtpasswdFiles: []string{good}})
		if err == nil || !strings.Contains(err.Error(), "bob") || !strings.Contains(err.Error(), "twice") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("user in two files", func(t *testing.T) {
		_, _, err := Compile(Config{HtpasswdFiles: []string{good, writeFile(t, "dup", "alice:"+bobHash+"\n")}})
		if err == nil || !strings.Contains(err.Error(), "htpasswd_files[1]") || !strings.Contains(err.Error(), "alice") {
			t.Errorf("err = %v", err)
		}
	})
}
