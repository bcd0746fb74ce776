package e2e

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A reload in Caddy binds the new config's sockets beside the old ones
// (SO_REUSEPORT) and returns once the old servers have begun shutting down,
// not once their listeners are closed. Until then the kernel may hand a new
// connection to an old server, and Go's server closes a connection whose
// first request it reads after shutdown began: the client sees EOF. Real
// clients retry such a connection; the tests instead wait, after every
// reload, until each of Caddy's ports has one listening socket again.

// caddyPorts are the ports a Caddyfile makes Caddy listen on, the admin
// endpoint's included. Upstream ports match too; they have one socket each.
var caddyPortPattern = regexp.MustCompile(`(?:localhost:|http_port )(\d+)`)

func caddyPorts(caddyfile string) map[int]bool {
	ports := map[int]bool{}
	for _, m := range caddyPortPattern.FindAllStringSubmatch(caddyfile, -1) {
		if p, err := strconv.Atoi(m[1]); err == nil {
			ports[p] = true
		}
	}
	return ports
}

// waitReloadSettled waits until no port in ports has more than one
// listening socket, i.e. the servers of the config a reload replaced have
// closed their listeners.
func waitReloadSettled(t *testing.T, ports map[int]bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		doubled, err := doubledListeners(ports)
		if err != nil {
			t.Fatalf("reading the listening sockets: %v", err)
		}
		if len(doubled) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after a reload, ports %v still have the old config's listeners", doubled)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// doubledListeners returns the ports in ports that more than one socket
// listens on, from the kernel's tables of TCP sockets.
func doubledListeners(ports map[int]bool) ([]int, error) {
	count := map[int]int{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := countListeners(table, ports, count); err != nil {
			return nil, err
		}
	}
	var doubled []int
	for port, n := range count {
		if n > 1 {
			doubled = append(doubled, port)
		}
	}
	return doubled, nil
}

// countListeners adds the sockets in LISTEN state (0A) of one table to
// count, for the ports asked about. A line reads
// "sl local_address rem_address st ...", the address as hex "IP:PORT".
func countListeners(table string, ports map[int]bool, count map[int]int) error {
	f, err := os.Open(table)
	if os.IsNotExist(err) {
		return nil // no IPv6 on this machine
	}
	if err != nil {
		return err
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	lines.Scan() // the header
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) < 4 || fields[3] != "0A" {
			continue
		}
		i := strings.LastIndexByte(fields[1], ':')
		port, err := strconv.ParseUint(fields[1][i+1:], 16, 16)
		if i < 0 || err != nil {
			return fmt.Errorf("%s: unreadable local address %q", table, fields[1])
		}
		if ports[int(port)] {
			count[int(port)]++
		}
	}
	return lines.Err()
}
