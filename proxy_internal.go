package registryauth

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/regauth/caddy-registry-auth/token"
)

// internalSubject is the subject of the tokens the proxy mints for its
// own questions to the registry (catalog pages, whether a tag exists).
// Those tokens are never shown to a client.
const internalSubject = "registry_auth_proxy"

// maxInternalAnswer bounds what the proxy reads of an answer to its own
// questions: a catalog or tags page of 1,000 names, a manifest's headers.
const maxInternalAnswer = 4 << 20

// manifestTypes are the manifest media types the proxy accepts when it
// asks about a tag, so that both registry families answer with the
// stored manifest's own digest.
const manifestTypes = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

// answer is the registry's answer to one of the proxy's own questions.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// ask sends a question of the proxy's own to the registry, through the
// same reverse_proxy as clients' requests (its addresses, TLS and load
// balancing), with a token that grants exactly access.
func (h *ProxyHandler) ask(parent *http.Request, method, path string, query url.Values, access []token.Scope) (answer, error) {
	m, err := h.policy.mint(h.policy.Current(), Identity{Name: internalSubject}, h.service, access, time.Now())
	if err != nil {
		return answer{}, err
	}
	req := parent.Clone(parent.Context())
	req.Method = method
	req.URL = &url.URL{Path: path, RawQuery: query.Encode()}
	req.RequestURI = req.URL.RequestURI()
	req.Header = http.Header{"Authorization": {"Bearer " + m.raw}, "Accept": {manifestTypes + ", application/json"}}
	req.Body, req.ContentLength = http.NoBody, 0
	w := &captureWriter{header: http.Header{}}
	noNext := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	if err := h.proxy.ServeHTTP(w, req, noNext); err != nil {
		return answer{}, err
	}
	if w.over {
		return answer{}, fmt.Errorf("the registry's answer to %s %s is larger than %d bytes", method, path, maxInternalAnswer)
	}
	return answer{status: w.status, header: w.header, body: w.body}, nil
}

// captureWriter keeps an answer in memory, up to maxInternalAnswer.
type captureWriter struct {
	header http.Header
	status int
	body   []byte
	over   bool
}

func (c *captureWriter) Header() http.Header { return c.header }

func (c *captureWriter) WriteHeader(status int) {
	if c.status == 0 && status >= 200 {
		c.status = status
	}
}

func (c *captureWriter) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	if len(c.body)+len(p) > maxInternalAnswer {
		c.over = true
		return len(p), nil
	}
	c.body = append(c.body, p...)
	return len(p), nil
}
