package registryauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// The filtered catalog: a caller who may not list the whole catalog gets
// the repositories it may pull, page by page, read from the registry's own
// catalog with a token the proxy mints for itself.
const (
	// defaultCatalogPage is a page's length when the client names none.
	defaultCatalogPage = 100
	// maxCatalogPage is the longest page a client may ask for.
	maxCatalogPage = 1000
	// upstreamCatalogPage is how many names the proxy asks the registry
	// for at once, and maxUpstreamPages how many such pages one request
	// may read: a registry of 100,000 repositories is never read whole
	// for one request. A page may then be short, even empty, with a Link
	// to go on from where the reading stopped.
	upstreamCatalogPage = 1000
	maxUpstreamPages    = 10
)

// catalogPage is what one filtered catalog request found.
type catalogPage struct {
	names []string
	// next is where the following page starts (the last name read),
	// "" when the catalog has no more.
	next string
}

// serveCatalog answers a catalog request of id, who may not list the
// whole catalog: 200 with the repositories id may pull, 403 when the
// whole catalog was read and id may pull none.
func (h *ProxyHandler) serveCatalog(w http.ResponseWriter, r *http.Request, snap *policy.Compiled, id Identity, route token.Route) error {
	n, after, err := h.catalogParams(r.URL.Query())
	if err != nil {
		return h.refuse(w, r, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", err.Error(), "", nil)
	}
	page, err := h.visibleRepositories(r, snap, id, n, after)
	if err != nil {
		return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("reading the registry's catalog: %v", err))
	}
	if len(page.names) == 0 && page.next == "" && after == "" {
		return h.refuse(w, r, http.StatusForbidden, "DENIED", "requested access to the resource is denied: the catalog", "", &route)
	}
	if page.next != "" {
		q := url.Values{"n": {strconv.Itoa(n)}, "last": {h.sealCursor(page.next)}}
		w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?%s>; rel="next"`, q.Encode()))
	}
	setUser(r, id.Name)
	count(metrics.proxyRequests, "forwarded")
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	if page.names == nil {
		page.names = []string{}
	}
	return writeJSON(w, http.StatusOK, struct {
		Repositories []string `json:"repositories"`
	}{page.names})
}

// catalogParams reads n and last. last is a cursor of ours, or a name
// the client chose itself.
func (h *ProxyHandler) catalogParams(q url.Values) (n int, after string, err error) {
	n = defaultCatalogPage
	if v := q.Get("n"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			return 0, "", fmt.Errorf("n: want a positive number, got %q", v)
		}
		n = min(n, maxCatalogPage)
	}
	after = q.Get("last")
	if strings.HasPrefix(after, cursorPrefix) {
		if after, err = h.openCursor(after); err != nil {
			return 0, "", fmt.Errorf("last: not a cursor of this proxy")
		}
	}
	return n, after, nil
}

// visibleRepositories reads the registry's catalog after `after` and
// keeps what id may pull, until n names or maxUpstreamPages pages.
func (h *ProxyHandler) visibleRepositories(r *http.Request, snap *policy.Compiled, id Identity, n int, after string) (catalogPage, error) {
	var page catalogPage
	for range maxUpstreamPages {
		names, more, err := h.registryCatalog(r, after)
		if err != nil {
			return page, err
		}
		wanted := make([]token.Scope, len(names))
		for i, name := range names {
			wanted[i] = token.Scope{Type: token.TypeRepository, Name: name, Actions: token.Pull}
		}
		visible := map[string]bool{}
		for _, g := range h.policy.authorize(r.Context(), snap, id, h.service, clientIP(r), wanted) {
			visible[g.Name] = true
		}
		for i, name := range names {
			if !visible[name] {
				continue
			}
			page.names = append(page.names, name)
			if len(page.names) == n {
				if i < len(names)-1 || more {
					page.next = name
				}
				return page, nil
			}
		}
		if !more || len(names) == 0 {
			page.next = ""
			return page, nil
		}
		after = names[len(names)-1]
		page.next = after
	}
	return page, nil
}

// registryCatalog reads one page of the registry's catalog after `after`,
// and whether it has more.
func (h *ProxyHandler) registryCatalog(r *http.Request, after string) ([]string, bool, error) {
	q := url.Values{"n": {strconv.Itoa(upstreamCatalogPage)}}
	if after != "" {
		q.Set("last", after)
	}
	catalog := token.Scope{Type: token.TypeRegistry, Name: token.CatalogName, Actions: token.All}
	a, err := h.ask(r, http.MethodGet, "/v2/_catalog", q, []token.Scope{catalog})
	if err != nil {
		return nil, false, err
	}
	if a.status != http.StatusOK {
		return nil, false, fmt.Errorf("the registry answered %d", a.status)
	}
	var body struct {
		Repositories []string `json:"repositories"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil {
		return nil, false, fmt.Errorf("the registry's catalog is not JSON: %v", err)
	}
	return body.Repositories, strings.Contains(a.header.Get("Link"), `rel="next"`), nil
}

// cursorPrefix starts our catalog cursors; no repository name has it.
const cursorPrefix = "~"

// sealCursor makes the name the next page starts after into an opaque
// cursor: it may be a name the caller may not see.
func (h *ProxyHandler) sealCursor(name string) string {
	aead := h.cursorAEAD()
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return cursorPrefix + base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(name), nil))
}

// openCursor returns the name a cursor of ours holds.
func (h *ProxyHandler) openCursor(cursor string) (string, error) {
	sealed, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(cursor, cursorPrefix))
	aead := h.cursorAEAD()
	if err != nil || len(sealed) < aead.NonceSize() {
		return "", errors.New("malformed cursor")
	}
	name, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	return string(name), err
}

// cursorAEAD seals cursors with a key derived from the policy's secret,
// so that every instance sharing the signing key reads the others'.
func (h *ProxyHandler) cursorAEAD() cipher.AEAD {
	m := hmac.New(sha256.New, h.policy.Signer.Secret())
	m.Write([]byte("catalog cursor"))
	block, _ := aes.NewCipher(m.Sum(nil)) // a 32-byte key never fails
	aead, _ := cipher.NewGCM(block)
	return aead
}
