package registryauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// HTTPService is an external HTTP service that an authenticator or
// authorizer asks.
type HTTPService struct {
	// URL the questions are POSTed to: https, or http to a loopback
	// address only (passwords and identities never cross a network in
	// clear).
	URL string `json:"url"`
	// Timeout bounds each exchange, connecting included. Default 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// CAFile is a PEM file of the certificates to trust for the service
	// instead of the system's. The certificate is always verified.
	CAFile string `json:"ca_file,omitempty"`

	client  *http.Client
	timeout time.Duration
	// where names the service in errors and logs: the URL without
	// credentials or query, which may hold secrets.
	where string
}

// DefaultBackendTimeout bounds each exchange with an external service.
const DefaultBackendTimeout = 5 * time.Second

// maxBackendAnswer bounds what is read of a service's answer.
const maxBackendAnswer = 1 << 20

func (s *HTTPService) provision() error {
	s.URL = caddy.NewReplacer().ReplaceKnown(s.URL, "")
	u, err := url.Parse(s.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("url: want an absolute http(s) URL, got %q", s.URL)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return fmt.Errorf("url: plain http is allowed to a loopback address only; use https")
	default:
		return fmt.Errorf("url: scheme %q is not http or https", u.Scheme)
	}
	s.where = u.Scheme + "://" + u.Host + u.Path
	s.timeout = time.Duration(s.Timeout)
	if s.timeout == 0 {
		s.timeout = DefaultBackendTimeout
	}
	if s.timeout < 0 {
		return fmt.Errorf("timeout: negative")
	}
	tlsConfig, err := tlsConfigFor(s.CAFile, u.Hostname())
	if err != nil {
		return err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	s.client = &http.Client{
		Transport: transport,
		Timeout:   s.timeout,
		// A redirect is an answer we do not expect: it fails the exchange.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return nil
}

// post sends body (JSON) with the given Authorization header and returns
// the status and at most maxBackendAnswer bytes of the answer.
func (s *HTTPService) post(ctx context.Context, authorization string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// Not err itself: a url.Error repeats the whole URL.
		if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
			return 0, nil, fmt.Errorf("%s did not answer within %s", s.where, s.timeout)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return 0, nil, fmt.Errorf("%s: %v", s.where, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBackendAnswer+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s: reading the answer: %v", s.where, err)
	}
	if len(data) > maxBackendAnswer {
		return resp.StatusCode, nil, fmt.Errorf("%s: the answer is larger than %d bytes", s.where, maxBackendAnswer)
	}
	return resp.StatusCode, data, nil
}

// cleanup closes the idle connections to the service.
func (s *HTTPService) cleanup() {
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
}

// unmarshalBlock reads a module's block: the fields HTTPService has, and
// others through more, which reports whether it knew the subdirective.
func (s *HTTPService) unmarshalBlock(d *caddyfile.Dispenser, module string, more func(*caddyfile.Dispenser) (bool, error)) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		if seen[d.Val()] {
			return d.Errf("duplicate subdirective %q", d.Val())
		}
		seen[d.Val()] = true
		ok, err := s.unmarshalField(d)
		if !ok && err == nil && more != nil {
			ok, err = more(d)
		}
		if err != nil {
			return err
		}
		if !ok {
			return d.Errf("unknown %s subdirective %q", module, d.Val())
		}
	}
	return nil
}

// unmarshalField reads one of the fields HTTPService has, reporting
// whether d's current token was one.
func (s *HTTPService) unmarshalField(d *caddyfile.Dispenser) (bool, error) {
	switch d.Val() {
	case "url":
		return true, oneArg(d, &s.URL)
	case "ca_file":
		return true, oneArg(d, &s.CAFile)
	case "timeout":
		dur, _, err := durationArg(d, false)
		s.Timeout = dur
		return true, err
	}
	return false, nil
}

// tlsConfigFor verifies serverName's certificate against caFile, or the
// system's roots when caFile is empty.
func tlsConfigFor(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	caFile = caddy.NewReplacer().ReplaceKnown(caFile, "")
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %v", err)
	}
	cfg.RootCAs = x509.NewCertPool()
	if !cfg.RootCAs.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", caFile)
	}
	return cfg, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// oneArg reads a subdirective's single argument into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.AllArgs(dst) {
		return d.ArgErr()
	}
	return nil
}
