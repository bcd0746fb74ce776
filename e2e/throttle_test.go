package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fromAddress is an HTTP client whose connections leave from a loopback
// address of its own, so Caddy sees a client at that address.
func fromAddress(ip string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}}
}

// throttleSite loads a policy with the default throttle and a token site
// for it, and returns the site's token endpoint.
func throttleSite(t *testing.T, users ...string) string {
	t.Helper()
	var lines strings.Builder
	for _, u := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(u+"-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&lines, "\t\tuser %s %s\n", u, h)
	}
	policy := fmt.Sprintf("\tregistry_auth throttled {\n\t\tservice %s\n\t\tissuer %s\n%s\t\tallow authenticated pull **\n\t}\n", service, issuer, lines.String())
	port := FreePort()
	site := fmt.Sprintf("\nhttp://localhost:%d {\n\tregistry_auth_token {\n\t\tpolicy throttled\n\t}\n}\n", port)
	cf := strings.Replace(shared.caddyfile(site), "\tregistry_auth {\n", policy+"\tregistry_auth {\n", 1)
	if status, body := loadCaddyfile(t, cf); status != http.StatusOK {
		t.Fatalf("loading the throttled policy: %d %s", status, body)
	}
	t.Cleanup(func() { loadCaddyfile(t, shared.caddyfile("")) })
	realm := fmt.Sprintf("http://localhost:%d/token", port)
	if err := WaitHTTP(realm+"?service="+service, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	return realm
}

// tokenFrom asks realm for a pull token as user from the loopback address
// ip and returns the status and Retry-After.
func tokenFrom(t *testing.T, realm, ip, user, password string) (int, string) {
	t.Helper()
	q := url.Values{"service": {service}, "scope": {"repository:team/app:pull"}}
	req, _ := http.NewRequest(http.MethodGet, realm+"?"+q.Encode(), nil)
	req.SetBasicAuth(user, password)
	resp, err := fromAddress(ip).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// Defects 1 and 2 of the throttle, through Caddy with the default
// `throttle 5 15m`: a bot failing behind a NAT address never shuts out the
// other users there, and guesses at a victim from 14 addresses never shut
// her out of a new one. Before, both answered 429.
func TestThrottleSparesTheInnocent(t *testing.T) {
	realm := throttleSite(t, "ci-bot", "puller", "victim")
	t.Run("a stale bot's neighbours behind its address", func(t *testing.T) {
		const nat = "127.0.0.10"
		for i := range 15 {
			if status, _ := tokenFrom(t, realm, nat, "ci-bot", "old-password"); status != http.StatusUnauthorized {
				t.Fatalf("the bot's stale password, try %d: %d", i+1, status)
			}
		}
		// Worse: the bot cycles through distinct wrong passwords.
		status := 0
		for i := 0; i < 12 && status != http.StatusTooManyRequests; i++ {
			status, _ = tokenFrom(t, realm, nat, "ci-bot", fmt.Sprintf("old-%d", i))
		}
		if status != http.StatusTooManyRequests {
			t.Fatalf("12 distinct wrong passwords for ci-bot from one address were never throttled (last %d)", status)
		}
		if status, retry := tokenFrom(t, realm, nat, "puller", "puller-pw"); status != http.StatusOK {
			t.Fatalf("puller, never logged in, from the bot's address: %d (Retry-After %q)", status, retry)
		}
		if status, _ := tokenFrom(t, realm, "127.0.0.11", "ci-bot", "ci-bot-pw"); status != http.StatusOK {
			t.Fatalf("ci-bot's right password from another address: %d", status)
		}
	})
	t.Run("a victim guessed at from 14 addresses", func(t *testing.T) {
		for i := range 14 {
			ip := fmt.Sprintf("127.0.0.%d", 21+i)
			if status, _ := tokenFrom(t, realm, ip, "victim", fmt.Sprintf("guess-%d", i)); status != http.StatusUnauthorized {
				t.Fatalf("guess %d: %d", i+1, status)
			}
		}
		start := time.Now()
		if status, retry := tokenFrom(t, realm, "127.0.0.50", "victim", "victim-pw"); status != http.StatusOK {
			t.Fatalf("the victim's right password from a new address: %d (Retry-After %q)", status, retry)
		}
		t.Logf("the victim's login took %s", time.Since(start))
	})
}
