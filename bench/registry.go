package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// clientTLS is what the benchmark's clients use: the https sites use
// Caddy's internal CA, made for this run, which they accept without
// installing it anywhere; and HTTP/1.1 on both sides of a comparison.
// Each transport gets its own copy (a transport configuring HTTP/2 would
// change a shared one).
func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
}

func init() { http.DefaultTransport.(*http.Transport).TLSClientConfig = clientTLS() }

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// auth is how a request authenticates: Basic credentials or a bearer token.
type auth struct {
	basic  bool
	bearer string
}

func (a auth) apply(r *http.Request) {
	switch {
	case a.basic:
		r.SetBasicAuth(user, password)
	case a.bearer != "":
		r.Header.Set("Authorization", "Bearer "+a.bearer)
	}
}

// pushImage puts a one-layer OCI image straight into the registry.
func pushImage(base, repo, tag string, layer []byte) {
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	for _, b := range [][]byte{config, layer} {
		d := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
		loc := startUpload(base, repo, auth{})
		put(loc+sep(loc)+"digest="+d, bytes.NewReader(b), int64(len(b)), auth{})
	}
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": ociManifest,
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": fmt.Sprintf("sha256:%x", sha256.Sum256(config)), "size": len(config)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": fmt.Sprintf("sha256:%x", sha256.Sum256(layer)), "size": len(layer)}},
	})
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(m))
	req.Header.Set("Content-Type", ociManifest)
	expectStatus(req, http.StatusCreated)
}

func sep(loc string) string {
	if strings.Contains(loc, "?") {
		return "&"
	}
	return "?"
}

func startUpload(base, repo string, a auth) string {
	req, _ := http.NewRequest(http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
	a.apply(req)
	resp := expectStatus(req, http.StatusAccepted)
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = base + loc
	}
	return loc
}

func put(url string, body io.Reader, size int64, a auth) {
	req, _ := http.NewRequest(http.MethodPut, url, body)
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	a.apply(req)
	expectStatus(req, http.StatusCreated)
}

// blobReader is the big blob: a fixed pseudo-random stream, made again
// for every transfer instead of being held in memory.
func blobReader(size int64) io.Reader {
	return io.LimitReader(mrand.NewChaCha8([32]byte{42}), size)
}

func blobDigest(size int64) string {
	h := sha256.New()
	_, err := io.Copy(h, blobReader(size))
	check(err)
	return fmt.Sprintf("sha256:%x", h.Sum(nil))
}

func pushBlob(base, repo string, size int64, digest string, a auth) {
	loc := startUpload(base, repo, a)
	put(loc+sep(loc)+"digest="+digest, blobReader(size), size, a)
}

func pullBlob(base, repo, digest string, size int64, a auth) {
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/"+repo+"/blobs/"+digest, nil)
	a.apply(req)
	resp, err := http.DefaultClient.Do(req)
	check(err)
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	check(err)
	if resp.StatusCode != http.StatusOK || n != size || fmt.Sprintf("sha256:%x", h.Sum(nil)) != digest {
		fatalf("pull of %s: status %d, %d bytes, digest mismatch or short", repo, resp.StatusCode, n)
	}
}

func expectStatus(req *http.Request, status int) *http.Response {
	resp, err := http.DefaultClient.Do(req)
	check(err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status {
		fatalf("%s %s: %d, want %d: %s", req.Method, req.URL, resp.StatusCode, status, body)
	}
	return resp
}

func fetchToken(url string) string {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	check(err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		fatalf("%s: %d %s", req.URL, resp.StatusCode, body)
	}
	var t struct{ Token string }
	check(json.Unmarshal(body, &t))
	return t.Token
}

func timeIt(f func()) time.Duration {
	t := time.Now()
	f()
	return time.Since(t)
}

// rssSampler follows a process's resident memory from /proc.
type rssSampler struct {
	pid  int
	peak atomic.Int64
}

func (s *rssSampler) now() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	check(err)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (s *rssSampler) start() (stop func() int64) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if v := s.now(); v > s.peak.Load() {
				s.peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(done); <-finished; return s.peak.Load() }
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func startRegistry(dir string, port int) *exec.Cmd {
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		fatalf("the registry 2.8 binary is missing: apt-get install docker-registry")
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s/registry\nhttp:\n  addr: 127.0.0.1:%d\n  secret: bench\n", dir, port)
	path := filepath.Join(dir, "registry.yml")
	check(os.WriteFile(path, []byte(cfg), 0o600))
	cmd := exec.Command(bin, "serve", path)
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	children = append(children, cmd)
	return cmd
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
	}
}

func waitFor(url string, status int) {
	for range 300 {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	fatalf("%s never answered %d", url, status)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	check(cmd.Run())
}

// children are the processes the benchmark started, stopped on a fatal
// error too: a registry left running would keep its port (and any lock
// the benchmark was started under).
var children []*exec.Cmd

// fatalf stops the children and exits.
func fatalf(format string, args ...any) {
	for _, c := range children {
		stop(c)
	}
	log.Fatalf(format, args...)
}

func check(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}
