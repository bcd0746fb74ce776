package registryauth

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// Immutable tags (policy.ImmutableTags) are enforced here, on the
// requests that could move or remove a tag: a manifest PUT to a tag, and
// a manifest DELETE by tag or by digest. The proxy asks the registry what
// the tag points at, with a token it mints for itself.

// maxManifest bounds the manifest body the proxy reads to compare it with
// what an immutable tag points at (distribution refuses larger ones).
const maxManifest = 4 << 20

// maxTagPages bounds the tags pages read to learn whether a manifest
// deleted by digest carries an immutable tag.
const maxTagPages = 100

// tagLocks serialise the check and the PUT of one tag within this
// process, so that two first pushes of a new immutable tag cannot both
// see it missing. (Instances of a fleet do not share them.)
type tagLocks [64]sync.Mutex

func (l *tagLocks) lock(repo, tag string) func() {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s\x00%s", repo, tag)
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}

// errImmutable is a refusal of a request that would move or remove an
// immutable tag; its message is the client's, its rule the audit line's.
type errImmutable struct{ msg, rule string }

func (e errImmutable) Error() string { return e.msg }

// errManifestUnread: the client's manifest body could not be read (it
// went away, or sent a broken body). The client's fault, not the
// registry's: 400, not 503.
type errManifestUnread struct{ err error }

func (e errManifestUnread) Error() string { return "reading the manifest: " + e.err.Error() }

// guardTags checks a manifest PUT or DELETE against the immutable tags.
// It returns errImmutable to refuse (403), errManifestUnread for a body
// that could not be read (400), another error when the registry could not
// say (503: never guess), or nil with a func to call
// once the request was forwarded.
func (h *ProxyHandler) guardTags(r *http.Request, snap *policy.Compiled, route token.Route) (done func(), err error) {
	repo, ref := route.Scope.Name, route.Manifest
	if ref == "" || (r.Method != http.MethodPut && r.Method != http.MethodDelete) || !snap.ProtectsRepository(repo) {
		return func() {}, nil
	}
	if isDigest(ref) {
		if r.Method == http.MethodDelete {
			return func() {}, h.guardDigestDelete(r, snap, repo, ref)
		}
		return func() {}, nil
	}
	rule, ok := snap.ImmutableTag(repo, ref)
	if !ok {
		return func() {}, nil
	}
	if r.Method == http.MethodDelete {
		return nil, errImmutable{fmt.Sprintf("tag %s of %s is immutable: it may not be deleted", ref, repo), rule}
	}
	unlock := h.tags.lock(repo, ref)
	if err := h.guardTagPut(r, repo, ref, rule); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// guardTagPut lets the first push of an immutable tag through, and a push
// of the very manifest it points at already; anything else would move it.
func (h *ProxyHandler) guardTagPut(r *http.Request, repo, tag, rule string) error {
	existing, err := h.tagDigest(r, repo, tag)
	if err != nil || existing == "" {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
	if err != nil {
		return errManifestUnread{err}
	}
	if len(body) > maxManifest {
		return errImmutable{fmt.Sprintf("the manifest for immutable tag %s of %s is larger than %d bytes", tag, repo, maxManifest), rule}
	}
	if digestOf(existing, body) != existing {
		return errImmutable{fmt.Sprintf("tag %s of %s is immutable: it points at %s and may not be moved", tag, repo, existing), rule}
	}
	// The same manifest again: an idempotent push, not an overwrite.
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	return nil
}

// guardDigestDelete refuses to delete a manifest an immutable tag points at.
func (h *ProxyHandler) guardDigestDelete(r *http.Request, snap *policy.Compiled, repo, digest string) error {
	tags, err := h.allTags(r, repo)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		rule, ok := snap.ImmutableTag(repo, tag)
		if !ok {
			continue
		}
		d, err := h.tagDigest(r, repo, tag)
		if err != nil {
			return err
		}
		if d == digest {
			return errImmutable{fmt.Sprintf("manifest %s of %s is tagged %s, an immutable tag: it may not be deleted", digest, repo, tag), rule}
		}
	}
	return nil
}

// tagDigest asks the registry what a tag points at; "" when it does not
// exist.
func (h *ProxyHandler) tagDigest(r *http.Request, repo, tag string) (string, error) {
	pull := []token.Scope{{Type: token.TypeRepository, Name: repo, Actions: token.Pull}}
	a, err := h.ask(r, http.MethodHead, "/v2/"+repo+"/manifests/"+tag, nil, pull)
	switch {
	case err != nil:
		return "", err
	case a.status == http.StatusNotFound:
		return "", nil
	case a.status != http.StatusOK || !isDigest(a.header.Get("Docker-Content-Digest")):
		return "", fmt.Errorf("the registry answered %d without a digest about tag %s of %s", a.status, tag, repo)
	}
	return a.header.Get("Docker-Content-Digest"), nil
}

// allTags lists a repository's tags, page by page.
func (h *ProxyHandler) allTags(r *http.Request, repo string) ([]string, error) {
	var tags []string
	q := url.Values{"n": {"1000"}}
	pull := []token.Scope{{Type: token.TypeRepository, Name: repo, Actions: token.Pull}}
	for range maxTagPages {
		a, err := h.ask(r, http.MethodGet, "/v2/"+repo+"/tags/list", q, pull)
		if err != nil {
			return nil, err
		}
		if a.status == http.StatusNotFound {
			return tags, nil
		}
		var page struct{ Tags []string }
		if a.status != http.StatusOK || json.Unmarshal(a.body, &page) != nil {
			return nil, fmt.Errorf("the registry answered %d to the tags list of %s", a.status, repo)
		}
		tags = append(tags, page.Tags...)
		if !strings.Contains(a.header.Get("Link"), `rel="next"`) || len(page.Tags) == 0 {
			return tags, nil
		}
		q.Set("last", page.Tags[len(page.Tags)-1])
	}
	return nil, errors.New("too many tags to check for immutable ones")
}

// isDigest tells a digest reference from a tag: tags never hold ':'.
func isDigest(ref string) bool { return strings.Contains(ref, ":") }

// digestOf is the digest of body in the algorithm of like.
func digestOf(like string, body []byte) string {
	alg, _, _ := strings.Cut(like, ":")
	var h hash.Hash
	switch alg {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return ""
	}
	h.Write(body)
	return alg + ":" + hex.EncodeToString(h.Sum(nil))
}
