package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// rawClient speaks the registry API with plain HTTP requests and sends
// Basic credentials up front on every request, as `curl -u` does: the
// client the proxy must serve without any token dance.
type rawClient struct {
	t        *testing.T
	base     string // http://host:port
	user, pw string
	bearer   string // if set, sent instead of Basic
}

func newRawClient(t *testing.T, host, user string) *rawClient {
	return &rawClient{t: t, base: "http://" + host, user: user, pw: passwords[user]}
}

func (c *rawClient) do(method, target string, body io.Reader, header map[string]string) *http.Response {
	c.t.Helper()
	if !strings.HasPrefix(target, "http") {
		target = c.base + target
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		c.t.Fatal(err)
	}
	switch {
	case c.bearer != "":
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	case c.user != "":
		req.SetBasicAuth(c.user, c.pw)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// expect fails the test unless resp has the status; it returns the body.
func expect(t *testing.T, resp *http.Response, status int, what string) []byte {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, resp.StatusCode, status, body)
	}
	return body
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// startUpload opens an upload session and returns its location.
func (c *rawClient) startUpload(repo, query string) (*http.Response, string) {
	c.t.Helper()
	resp := c.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/"+query, nil, nil)
	return resp, resp.Header.Get("Location")
}

// withQuery adds parameters to an upload location, which may carry its own.
func withQuery(location string, params url.Values) string {
	sep := "?"
	if strings.Contains(location, "?") {
		sep = "&"
	}
	return location + sep + params.Encode()
}

// pushBlob uploads data, monolithically or in PATCH chunks of chunk bytes.
func (c *rawClient) pushBlob(repo string, data []byte, chunk int) string {
	c.t.Helper()
	resp, loc := c.startUpload(repo, "")
	expect(c.t, resp, http.StatusAccepted, "upload start in "+repo)
	digest := sha(data)
	if chunk > 0 {
		for off := 0; off < len(data); off += chunk {
			end := min(off+chunk, len(data))
			resp := c.do(http.MethodPatch, loc, bytes.NewReader(data[off:end]), map[string]string{
				"Content-Type":  "application/octet-stream",
				"Content-Range": fmt.Sprintf("%d-%d", off, end-1),
			})
			expect(c.t, resp, http.StatusAccepted, fmt.Sprintf("PATCH %d-%d", off, end-1))
			loc = resp.Header.Get("Location")
		}
		resp = c.do(http.MethodPut, withQuery(loc, url.Values{"digest": {digest}}), nil, nil)
	} else {
		resp = c.do(http.MethodPut, withQuery(loc, url.Values{"digest": {digest}}), bytes.NewReader(data),
			map[string]string{"Content-Type": "application/octet-stream"})
	}
	expect(c.t, resp, http.StatusCreated, "upload commit in "+repo)
	return digest
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// pushImage pushes a one-layer OCI image and returns the manifest digest
// and the layer.
func (c *rawClient) pushImage(repo, tag string, layer []byte, chunk int) (manifestDigest, layerDigest string) {
	c.t.Helper()
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	configDigest := c.pushBlob(repo, config, 0)
	layerDigest = c.pushBlob(repo, layer, chunk)
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     ociManifest,
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": len(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": len(layer)}},
	})
	resp := c.do(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, bytes.NewReader(m), map[string]string{"Content-Type": ociManifest})
	expect(c.t, resp, http.StatusCreated, "manifest put "+repo+":"+tag)
	return sha(m), layerDigest
}

// getManifest returns the response to a manifest GET.
func (c *rawClient) getManifest(repo, ref string) *http.Response {
	return c.do(http.MethodGet, "/v2/"+repo+"/manifests/"+ref, nil, map[string]string{"Accept": ociManifest})
}

func (c *rawClient) getBlob(repo, digest string) *http.Response {
	return c.do(http.MethodGet, "/v2/"+repo+"/blobs/"+digest, nil, nil)
}
