package registryauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/regauth/caddy-registry-auth/internal/bounded"
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
	s.URL = expand(s.URL)
	u, err := url.Parse(s.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("url: want an absolute http(s) URL, got %q", s.URL)
	}
	if err := checkHTTPTransport(u); err != nil {
		return fmt.Errorf("url: %v", err)
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
	data, err := bounded.Read(resp.Body, maxBackendAnswer)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s: reading the answer: %v", s.where, err)
	}
	return resp.StatusCode, data, nil
}

// Cleanup closes the idle connections to the service.
func (s *HTTPService) Cleanup() error {
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	return nil
}
