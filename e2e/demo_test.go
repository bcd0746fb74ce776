package e2e

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"
)

// demo is a running demo binary.
type demo struct {
	cmd    *exec.Cmd
	tmp    string      // its TMPDIR
	lines  chan string // its standard output
	stderr *syncBuffer
	done   chan error
}

func startDemo(t *testing.T, addr string) *demo {
	t.Helper()
	d := &demo{tmp: t.TempDir(), lines: make(chan string, 64), stderr: &syncBuffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(buildDemo(t), "-addr", addr)
	d.cmd.Env = append(os.Environ(), "TMPDIR="+d.tmp)
	d.cmd.Stderr = d.stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r := bufio.NewReader(out)
		for {
			l, err := r.ReadString('\n')
			if l != "" {
				d.lines <- l
			}
			if err != nil {
				break
			}
		}
		close(d.lines)
		d.done <- d.cmd.Wait()
	}()
	t.Cleanup(func() { _ = d.cmd.Process.Kill() })
	return d
}

// syncBuffer collects a process's output while tests read it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// wait waits for the demo to exit and returns its error.
func (d *demo) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-d.done:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatalf("the demo did not exit; stderr:\n%s", d.stderr)
		return nil
	}
}

// TestDemoRefusesATakenPort: a port held by another program, with or
// without SO_REUSEPORT (which Caddy sets, and which let a second demo share
// the first one's port), is refused at once with a clear message, and
// leaves no temporary directory behind.
func TestDemoRefusesATakenPort(t *testing.T) {
	reuse := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	for _, c := range []struct {
		name string
		lc   net.ListenConfig
	}{{"plain", net.ListenConfig{}}, {"SO_REUSEPORT", reuse}} {
		t.Run(c.name, func(t *testing.T) {
			l, err := c.lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			addr := l.Addr().String()
			d := startDemo(t, addr)
			err = d.wait(t)
			if err == nil {
				t.Fatal("the demo started on a taken port")
			}
			want := "demo: " + addr + " is already in use"
			if !strings.HasPrefix(d.stderr.String(), want) {
				t.Errorf("stderr %q, want it to start with %q", d.stderr, want)
			}
			if left, _ := os.ReadDir(d.tmp); len(left) > 0 {
				t.Errorf("left behind in TMPDIR: %v", left)
			}
		})
	}
}

// TestDemoBanner starts the demo, runs every command its banner suggests
// (docker and curl, with the image the demo pushed), pulls that image with
// go-containerregistry, checks that a second demo cannot share the port,
// and that Ctrl-C removes the demo's temporary directory.
func TestDemoBanner(t *testing.T) {
	requireDocker(t)
	d := startDemo(t, "127.0.0.1:0")
	banner := d.readBanner(t)
	user := regexp.MustCompile(`User "([^"]+)", password "([^"]+)"`).FindStringSubmatch(banner)
	host := regexp.MustCompile(`running at http://(\S+)`).FindStringSubmatch(banner)
	pulled := regexp.MustCompile(`(?m)^  docker pull (\S+)$`).FindStringSubmatch(banner)
	if user == nil || host == nil || pulled == nil {
		t.Fatalf("the banner lacks the user, the address or a docker pull:\n%s", banner)
	}
	ref, err := name.ParseReference(pulled[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: user[1], Password: user[2]})); err != nil {
		t.Fatalf("pulling %s, which the banner names: %v", ref, err)
	}

	second := startDemo(t, host[1])
	if err := second.wait(t); err == nil || !strings.Contains(second.stderr.String(), "already in use") {
		t.Fatalf("a second demo on %s: %v, stderr %q; want a refusal", host[1], err, second.stderr)
	}

	config := t.TempDir()
	for _, line := range regexp.MustCompile(`(?m)^  ((?:docker|curl) .*)$`).FindAllStringSubmatch(banner, -1) {
		cmd := exec.Command("bash", "-c", line[1])
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+config)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line[1], err, out)
		}
		t.Logf("ran: %s", line[1])
		switch {
		case strings.Contains(line[1], "_catalog") && !strings.Contains(string(out), pulled[1][len(host[1])+1:strings.LastIndex(pulled[1], ":")]):
			t.Errorf("%s: %s, want the pushed repository listed", line[1], out)
		case strings.Contains(line[1], "# 401") && !strings.Contains(string(out), "401 Unauthorized"):
			t.Errorf("%s: %s, want 401", line[1], out)
		}
	}
	for _, img := range regexp.MustCompile(regexp.QuoteMeta(host[1])+`/\S+:latest`).FindAllString(banner, -1) {
		_ = exec.Command("docker", "rmi", "-f", img).Run()
	}

	dirs, _ := filepath.Glob(filepath.Join(d.tmp, "registry-auth-demo-*"))
	if len(dirs) != 1 {
		t.Fatalf("the running demo's temporary directory: %v", dirs)
	}
	if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := d.wait(t); err != nil {
		t.Fatalf("the demo stopped with %v; stderr:\n%s", err, d.stderr)
	}
	if _, err := os.Stat(dirs[0]); !os.IsNotExist(err) {
		t.Errorf("%s is still there after Ctrl-C (%v)", dirs[0], err)
	}
}

// readBanner reads the demo's standard output up to the end of its banner.
func (d *demo) readBanner(t *testing.T) string {
	t.Helper()
	lines := d.lines
	var b strings.Builder
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the demo stopped before its banner:\n%s\nstderr:\n%s", b.String(), d.stderr)
			}
			b.WriteString(l)
			if strings.HasPrefix(l, "Ctrl-C stops it") {
				go func() { // keep reading, so that the demo never blocks on output
					for range lines {
					}
				}()
				return b.String()
			}
		case <-timeout:
			t.Fatalf("no banner within 3 minutes:\n%s\nstderr:\n%s", b.String(), d.stderr)
		}
	}
}
