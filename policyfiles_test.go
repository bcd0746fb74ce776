package registryauth

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// usersFile is a native policy file giving each name its name+"-pw" as
// password and pull on name/**.
func usersFile(t *testing.T, names ...string) string {
	t.Helper()
	var users, rules []string
	for _, n := range names {
		h, err := bcrypt.GenerateFromPassword([]byte(n+"-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, fmt.Sprintf(`{"name": %q, "password": %q}`, n, h))
		rules = append(rules, fmt.Sprintf(`{"effect": "allow", "subjects": ["user:%s"], "actions": ["pull"], "resources": ["%s/**"]}`, n, n))
	}
	return fmt.Sprintf(`{"users": [%s], "rules": [%s]}`, strings.Join(users, ","), strings.Join(rules, ","))
}

// kubeVolume lays dir out as the kubelet mounts a Secret: the data in a
// timestamped directory, "..data" a symlink to it, and each key a symlink
// through "..data". update swaps "..data" atomically, as the kubelet does.
type kubeVolume struct {
	t   *testing.T
	dir string
	gen int
}

func (k *kubeVolume) update(files map[string]string) {
	k.t.Helper()
	k.gen++
	ts := filepath.Join(k.dir, fmt.Sprintf("..2026_11_24_%02d", k.gen))
	must(k.t, os.Mkdir(ts, 0o755))
	for name, content := range files {
		must(k.t, os.WriteFile(filepath.Join(ts, name), []byte(content), 0o600))
		link := filepath.Join(k.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			must(k.t, os.Symlink(filepath.Join("..data", name), link))
		}
	}
	tmp := filepath.Join(k.dir, "..data_tmp")
	must(k.t, os.Symlink(filepath.Base(ts), tmp))
	must(k.t, os.Rename(tmp, filepath.Join(k.dir, "..data")))
	if k.gen > 1 {
		must(k.t, os.RemoveAll(filepath.Join(k.dir, fmt.Sprintf("..2026_11_24_%02d", k.gen-1))))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// watchedPolicy provisions a policy from base and files as the app does,
// and watches the files every 10ms until the test ends.
func watchedPolicy(t *testing.T, base policy.Config, files ...PolicyFile) (*Policy, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	p := &Policy{Name: "files", logger: zap.New(core)}
	p.source = &policySource{base: base, files: files}
	rules, digest, _, err := p.source.compile()
	if err != nil {
		t.Fatal(err)
	}
	p.current.Store(rules)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { p.watch(stop, 10*time.Millisecond, digest); close(done) }()
	t.Cleanup(func() { close(stop); <-done })
	return p, logs
}

// eventually waits up to 5s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting until %s", what)
}

func TestPolicyFilesKubernetesSecretSwap(t *testing.T) {
	dir := t.TempDir()
	vol := &kubeVolume{t: t, dir: dir}
	vol.update(map[string]string{"team-a.json": usersFile(t, "amy", "stay"), "team-b.json": usersFile(t, "ben")})
	p, logs := watchedPolicy(t, policy.Config{}, PolicyFile{Path: dir})
	if !p.Current().Users().Knows("amy") || !p.Current().Users().Knows("ben") || !p.Current().Users().Knows("stay") {
		t.Fatal("both keys of the volume are read")
	}

	// Clients keep logging in while the volume changes under them.
	var failures, logins atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				logins.Add(1)
				if _, err := p.login(context.Background(), p.Current(), "", "stay", "stay-pw"); err != nil {
					failures.Add(1)
				}
			}
		}()
	}
	for gen := range 5 {
		vol.update(map[string]string{"team-a.json": usersFile(t, "amy", "stay", fmt.Sprintf("new%d", gen)), "team-b.json": usersFile(t, "ben")})
		eventually(t, fmt.Sprintf("new%d can log in", gen), func() bool { return p.Current().Users().Knows(fmt.Sprintf("new%d", gen)) })
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d logins failed during reloads", failures.Load(), logins.Load())
	}
	if n := logs.FilterMessage("policy files reloaded").Len(); n < 5 {
		t.Fatalf("%d reloads logged, want 5", n)
	}
	id, err := p.login(context.Background(), p.Current(), "", "new4", "new4-pw")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.authorize(context.Background(), p.Current(), id, testService, "", []token.Scope{{Type: "repository", Name: "new4/app", Actions: token.Pull}}); len(got) != 1 {
		t.Fatalf("the new user's rule: got %v", got)
	}
}

func TestPolicyFileAtomicReplaceAndBrokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.json")
	replace := func(content string) {
		tmp := filepath.Join(dir, ".policy.json.tmp")
		must(t, os.WriteFile(tmp, []byte(content), 0o600))
		must(t, os.Rename(tmp, path))
	}
	replace(usersFile(t, "amy"))
	p, logs := watchedPolicy(t, policy.Config{}, PolicyFile{Path: path})

	replace(usersFile(t, "amy", "ben"))
	eventually(t, "ben is added", func() bool { return p.Current().Users().Knows("ben") })

	// A broken file: logged once, and the policy in force stays.
	replace(`{"users": [{"name": "carl", "password": "not-a-hash"}]}`)
	eventually(t, "the failure is logged", func() bool {
		return logs.FilterMessage("policy files not reloaded; the previous policy stays in force").Len() == 1
	})
	time.Sleep(50 * time.Millisecond)
	if n := logs.FilterMessage("policy files not reloaded; the previous policy stays in force").Len(); n != 1 {
		t.Fatalf("the same failure was logged %d times", n)
	}
	if !p.Current().Users().Knows("ben") || p.Current().Users().Knows("carl") {
		t.Fatal("the previous policy must stay in force")
	}
	entry := logs.FilterMessage("policy files not reloaded; the previous policy stays in force").All()[0]
	if msg := fmt.Sprint(entry.ContextMap()["error"]); !strings.Contains(msg, "not a bcrypt hash") || strings.Contains(msg, "not-a-hash") {
		t.Fatalf("the log must say why without the secret: %q", msg)
	}
	// A typo'd key is refused the same way.
	replace(`{"userz": []}`)
	eventually(t, "the typo is logged", func() bool {
		return logs.FilterMessage("policy files not reloaded; the previous policy stays in force").Len() == 2
	})
	// A file that disappears (an editor's non-atomic save) keeps the policy too.
	must(t, os.Remove(path))
	eventually(t, "the missing file is logged", func() bool {
		return logs.FilterMessage("policy files not reloaded; the previous policy stays in force").Len() == 3
	})
	if !p.Current().Users().Knows("ben") {
		t.Fatal("the previous policy must stay in force")
	}
	replace(usersFile(t, "carl"))
	eventually(t, "the fixed file is loaded", func() bool { return p.Current().Users().Knows("carl") && !p.Current().Users().Knows("ben") })
}

// A name defined in two files of a directory names both.
func TestPolicyFilesDuplicateAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.json"), []byte(usersFile(t, "amy")), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "b.json"), []byte(usersFile(t, "amy")), 0o600))
	_, _, _, err := (&policySource{files: []PolicyFile{{Path: dir}}}).compile()
	if err == nil || !strings.Contains(err.Error(), "b.json: user \"amy\" is also defined in "+filepath.Join(dir, "a.json")) {
		t.Fatalf("got %v", err)
	}
}

func TestHtpasswdFileReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	line := func(name string) string {
		h, _ := bcrypt.GenerateFromPassword([]byte(name+"-pw"), bcrypt.MinCost)
		return name + ":" + string(h) + "\n"
	}
	must(t, os.WriteFile(path, []byte(line("amy")), 0o600))
	p, _ := watchedPolicy(t, policy.Config{HtpasswdFiles: []string{path}})
	must(t, os.WriteFile(path, []byte(line("amy")+line("ben")), 0o600))
	eventually(t, "ben from htpasswd", func() bool { return p.Current().Users().Knows("ben") })
	if _, err := p.login(context.Background(), p.Current(), "", "ben", "ben-pw"); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		must(t, os.WriteFile(path, []byte(content), 0o600))
		return path
	}
	for name, tc := range map[string]struct {
		file PolicyFile
		want string
	}{
		"missing":           {PolicyFile{Path: filepath.Join(dir, "nope.json")}, "no such file"},
		"unknown key":       {PolicyFile{Path: write("typo.json", `{"rulez": []}`)}, `unknown field "rulez"`},
		"trailing data":     {PolicyFile{Path: write("two.json", `{} {}`)}, "data after"},
		"bad rule":          {PolicyFile{Path: write("rule.json", `{"rules": [{"effect": "allow", "subjects": ["everyone"], "actions": ["pull"], "resources": ["regexp:("]}]}`)}, "rules[0]"},
		"duplicate user":    {PolicyFile{Path: write("dup.json", usersFile(t, "amy")+"")}, `dup.json: user "amy" is also defined in the policy's own users`},
		"bad hash":          {PolicyFile{Path: write("hash.json", `{"users": [{"name": "bo", "password": "x"}]}`)}, `hash.json: users[0]: user "bo": not a bcrypt hash`},
		"format of the dir": {PolicyFile{Path: write("x.yml", "users: {}"), Format: "nginx"}, "unknown format"},
	} {
		t.Run(name, func(t *testing.T) {
			base := policy.Config{}
			if name == "duplicate user" {
				h, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
				base.Users = []policy.User{{Name: "amy", Password: string(h)}}
			}
			s := &policySource{base: base, files: []PolicyFile{tc.file}}
			_, _, _, err := s.compile()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// alauda merges its configs user by user; one converted file at a time
// could grant more, so a policy reads one.
func TestOneAlaudaConfig(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.yml"), []byte("users: {bob: pw}\nauths:\n  _anonymous: [{target: '.*', useRegexp: true, actions: [pull, push]}]\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "b.yml"), []byte("auths:\n  bob: [{target: x, actions: [pull]}]\n"), 0o600))
	_, _, _, err := (&policySource{files: []PolicyFile{{Path: dir, Format: FormatAlauda}}}).compile()
	if err == nil || !strings.Contains(err.Error(), "a policy reads one alauda config") {
		t.Fatalf("got %v", err)
	}
}
