package registryauth

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/internal/bounded"
	"github.com/regauth/caddy-registry-auth/migrate"
	"github.com/regauth/caddy-registry-auth/policy"
)

// PolicyFile is a file, or a directory of files, holding users, groups and
// rules that join those stated in the policy itself. Files are checked for
// changes every reload_interval and reloaded when they change.
type PolicyFile struct {
	// Path of a file or a directory. Of a directory every regular file
	// whose name does not start with "." is read, in name order, and
	// symbolic links are followed: a Kubernetes Secret or projected volume
	// mounted there works as it is (its "..data" entries are skipped).
	Path string `json:"path"`
	// Format of the files: "native" (default: JSON with the users,
	// htpasswd_files, groups, rules and immutable_tags fields of a
	// policy), "docker_auth"
	// (the users and acl of a cesanta/docker_auth config) or "alauda" (the
	// users and auths of an alauda/registry-auth config), YAML or JSON.
	Format string `json:"format,omitempty"`
}

// Policy file formats.
const (
	FormatNative     = "native"
	FormatDockerAuth = migrate.DockerAuth
	FormatAlauda     = migrate.Alauda
)

// checkFormat refuses a policy file format this plugin cannot read: its
// own, or one that migrate converts.
func checkFormat(format string) error {
	if format == "" || format == FormatNative || migrate.CheckFormat(format) == nil {
		return nil
	}
	return fmt.Errorf("unknown format %q (want %s, %s or %s)", format, FormatNative, FormatDockerAuth, FormatAlauda)
}

// How often policy and htpasswd files are checked for changes.
const (
	DefaultReloadInterval = 5 * time.Second
	MinReloadInterval     = 100 * time.Millisecond
)

// maxPolicyFileSize bounds what one policy file may hold.
const maxPolicyFileSize = 16 << 20

// policySource makes a policy's compiled users, groups and rules from its
// configuration and its files, at load and again whenever the files
// change.
type policySource struct {
	base  policy.Config // the policy's own, placeholders expanded
	files []PolicyFile
}

// newPolicySource expands the placeholders of a policy's users and file
// paths and checks the files' formats.
func newPolicySource(pc *PolicyConfig) (*policySource, error) {
	s := &policySource{base: expandUsers(pc.Config), files: make([]PolicyFile, len(pc.Files))}
	for i, f := range pc.Files {
		f.Path = expand(f.Path)
		if f.Path == "" {
			return nil, fmt.Errorf("files[%d]: path: empty", i)
		}
		if err := checkFormat(f.Format); err != nil {
			return nil, fmt.Errorf("files[%d]: format: %v", i, err)
		}
		s.files[i] = f
	}
	return s, nil
}

// reloadEvery is how often the policy's files are checked: 0 when there
// are none or checking is off.
func (pc *PolicyConfig) reloadEvery(watched bool) (time.Duration, error) {
	every := time.Duration(pc.ReloadInterval)
	switch {
	case !watched || every < 0:
		return 0, nil
	case every == 0:
		return DefaultReloadInterval, nil
	case every < MinReloadInterval:
		return 0, fmt.Errorf("reload_interval: %s is less than %s", every, MinReloadInterval)
	}
	return every, nil
}

// read reads every file the policy depends on: the policy files, and the
// htpasswd files named by the policy or by them. The digest changes when
// any of their contents does.
func (s *policySource) read() (cfg policy.Config, digest [sha256.Size]byte, warnings []string, err error) {
	sum := sha256.New()
	m := &merger{cfg: clonePolicy(s.base), definedIn: map[string]string{}}
	for _, u := range s.base.Users {
		m.definedIn[u.Name] = "the policy's own users"
	}
	for i, f := range s.files {
		paths, err := policyFilePaths(f.Path)
		if err == nil && f.Format == FormatAlauda {
			err = m.oneAlauda(paths)
		}
		if err != nil {
			return cfg, digest, nil, fmt.Errorf("files[%d]: %v", i, err)
		}
		for _, path := range paths {
			data, err := readBounded(path)
			if err == nil {
				fmt.Fprintf(sum, "%s\x00%d\x00", path, len(data))
				sum.Write(data)
				err = m.add(path, f.Format, data)
			}
			if err != nil {
				return cfg, digest, nil, fmt.Errorf("files[%d]: %v", i, err)
			}
		}
	}
	for _, path := range m.cfg.HtpasswdFiles {
		// Read here only to notice changes; policy.Compile parses them.
		data, err := readBounded(path)
		if err != nil {
			return cfg, digest, nil, err
		}
		fmt.Fprintf(sum, "%s\x00%d\x00", path, len(data))
		sum.Write(data)
	}
	sum.Sum(digest[:0])
	return m.cfg, digest, m.warnings, nil
}

// merger joins policy files to a policy, one by one.
type merger struct {
	cfg      policy.Config
	warnings []string
	// definedIn says where each user is defined, so that a name defined
	// twice is an error naming both places.
	definedIn map[string]string
	alauda    string // the one alauda config, once read
}

// oneAlauda refuses a second alauda config: alauda merges several configs
// user by user (a user's rules in one replace those in another, and its
// _anonymous fallback depends on them all), so converting them one by one
// and joining the results would grant more.
func (m *merger) oneAlauda(paths []string) error {
	for _, path := range paths {
		if m.alauda != "" {
			return fmt.Errorf("%s: a policy reads one alauda config; %s is another: merge them into one file", path, m.alauda)
		}
		m.alauda = path
	}
	return nil
}

// add checks one file on its own and joins it, its rules named by where
// they were written.
func (m *merger) add(path, format string, data []byte) error {
	part, warns, err := parsePolicyFile(format, data)
	if err == nil {
		err = policy.Check(part)
	}
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	for _, u := range part.Users {
		if other, dup := m.definedIn[u.Name]; dup {
			return fmt.Errorf("%s: user %q is also defined in %s", path, u.Name, other)
		}
		m.definedIn[u.Name] = path
	}
	for _, w := range warns {
		m.warnings = append(m.warnings, path+": "+w)
	}
	for j := range part.Rules {
		part.Rules[j].Origin = cmp.Or(part.Rules[j].Origin, fmt.Sprintf("%s rules[%d]", path, j))
	}
	for j := range part.ImmutableTags {
		part.ImmutableTags[j].Origin = cmp.Or(part.ImmutableTags[j].Origin, fmt.Sprintf("%s immutable_tags[%d]", path, j))
	}
	c := &m.cfg
	c.Users = append(c.Users, part.Users...)
	c.HtpasswdFiles = append(c.HtpasswdFiles, part.HtpasswdFiles...)
	c.Rules = append(c.Rules, part.Rules...)
	c.ImmutableTags = append(c.ImmutableTags, part.ImmutableTags...)
	for g, members := range part.Groups {
		c.Groups[g] = append(c.Groups[g], members...)
	}
	return nil
}

// clonePolicy copies a policy's lists, so that merging into the copy
// leaves the original as it was.
func clonePolicy(base policy.Config) policy.Config {
	cfg := base
	cfg.Users = slices.Clone(base.Users)
	cfg.HtpasswdFiles = slices.Clone(base.HtpasswdFiles)
	cfg.Rules = slices.Clone(base.Rules)
	cfg.ImmutableTags = slices.Clone(base.ImmutableTags)
	cfg.Groups = map[string][]string{}
	for g, members := range base.Groups {
		cfg.Groups[g] = slices.Clone(members)
	}
	return cfg
}

// compile reads the files and compiles the whole policy.
func (s *policySource) compile() (*policy.Compiled, [sha256.Size]byte, []string, error) {
	cfg, digest, warnings, err := s.read()
	if err != nil {
		return nil, digest, nil, err
	}
	p, more, err := policy.Compile(cfg)
	return p, digest, append(warnings, more...), err
}

// watched reports whether the policy depends on any file.
func (s *policySource) watched() bool {
	return len(s.files) > 0 || len(s.base.HtpasswdFiles) > 0
}

// policyFilePaths lists the files a policy file path stands for.
func policyFilePaths(path string) ([]string, error) {
	info, err := os.Stat(path) // follows symbolic links
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		full := filepath.Join(path, e.Name())
		if info, err := os.Stat(full); err != nil {
			return nil, err
		} else if info.Mode().IsRegular() {
			paths = append(paths, full)
		}
	}
	sort.Strings(paths)
	return paths, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllBounded(f, path)
}

// readAllBounded reads what a policy file may hold from r, named name in
// the error.
func readAllBounded(r io.Reader, name string) ([]byte, error) {
	data, err := bounded.Read(r, maxPolicyFileSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return data, nil
}

// parsePolicyFile reads one file of a format.
func parsePolicyFile(format string, data []byte) (policy.Config, []string, error) {
	switch format {
	case "", FormatNative:
		var cfg policy.Config
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return cfg, nil, fmt.Errorf("not a policy file: %v", err)
		}
		if dec.More() {
			return cfg, nil, fmt.Errorf("not a policy file: data after the JSON object")
		}
		return cfg, nil, nil
	}
	return migrate.Convert(format, data)
}

// watch reloads the policy whenever its files change, until stop is
// closed. Contents that fail to compile leave the policy in force and are
// reported once (and not compiled again); a file that cannot be read is
// reported once per distinct error.
func (p *Policy) watch(stop <-chan struct{}, interval time.Duration, last [sha256.Size]byte) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var failed [sha256.Size]byte
	var readErr string
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		cfg, digest, warnings, err := p.source.read()
		if err != nil {
			if err.Error() != readErr {
				readErr = err.Error()
				p.reloadFailed(err)
			}
			continue
		}
		readErr = ""
		if digest == last || digest == failed {
			continue
		}
		compiled, more, err := policy.Compile(cfg)
		if err == nil {
			err = p.servable(compiled)
		}
		if err != nil {
			failed = digest
			p.reloadFailed(err)
			continue
		}
		last, failed = digest, [sha256.Size]byte{}
		for _, w := range append(warnings, more...) {
			p.logger.Warn(w, zap.String("policy", p.Name))
		}
		p.current.Store(compiled)
		count(metrics.reloads, "ok")
		p.logger.Info("policy files reloaded", zap.String("policy", p.Name))
	}
}

func (p *Policy) reloadFailed(err error) {
	count(metrics.reloads, "failed")
	p.logger.Error("policy files not reloaded; the previous policy stays in force", zap.String("policy", p.Name), zap.Error(err))
}
