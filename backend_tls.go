package registryauth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// The transport rules of every service an authenticator or authorizer
// talks to (an HTTP service, a directory): certificates are always
// verified, and plain text goes to the loopback interface only.

// tlsConfigFor verifies serverName's certificate against caFile, or the
// system's roots when caFile is empty.
func tlsConfigFor(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	caFile = expand(caFile)
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

// checkHTTPTransport: https, or plain http to a loopback address only.
func checkHTTPTransport(u *url.URL) error {
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return fmt.Errorf("plain http is allowed to a loopback address only; use https")
	default:
		return fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
