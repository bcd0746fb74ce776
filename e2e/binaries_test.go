package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// A binary is a program of this repository the tests build once per run.
type binary struct {
	once sync.Once
	path string
	err  error
}

var caddyBinary, staticCaddyBinary, demoBinary binary

// buildCaddy is Caddy with the plugin (./cmd/caddy), as processes of
// their own: a fleet, the README's quick starts.
func buildCaddy(t *testing.T) string {
	return caddyBinary.build(t, "caddy", nil, "github.com/regauth/caddy-registry-auth/cmd/caddy")
}

// staticCaddy is Caddy with the plugin as the image wants it: static,
// stripped.
func staticCaddy(t *testing.T) string {
	return staticCaddyBinary.build(t, "static-caddy", []string{"CGO_ENABLED=0"}, "-ldflags", "-s -w", "github.com/regauth/caddy-registry-auth/cmd/caddy")
}

// buildDemo is `make demo`'s binary.
func buildDemo(t *testing.T) string {
	return demoBinary.build(t, "demo", nil, "./cmd/demo")
}

// build runs `go build -o <the run's directory>/name args...` once, with
// env added to the environment.
func (b *binary) build(t *testing.T, name string, env []string, args ...string) string {
	t.Helper()
	b.once.Do(func() {
		b.path = filepath.Join(shared.dir, name)
		cmd := exec.Command("go", append([]string{"build", "-o", b.path}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building %s: %v\n%s", name, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// startLogged starts cmd with its output in logPath and stops it when the
// test ends, showing the log's last lines if the test failed.
func startLogged(t *testing.T, cmd *exec.Cmd, logPath, what string) {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			if data, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s log:\n%s", what, tail(string(data), 40))
			}
		}
	})
}
