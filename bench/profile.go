package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// profiled runs f while, with -profile set, Caddy's CPU profile is taken
// through its admin endpoint; the profile is written to the -profile
// directory and its top entries go to stderr.
func profiled(name string, adminPort int, f func()) {
	if *profile == "" {
		f()
		return
	}
	seconds := int((*duration * time.Duration(*runs) * 2).Seconds())
	done := make(chan string)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", adminPort, seconds))
		check(err)
		defer resp.Body.Close()
		path := filepath.Join(*profile, name+".pprof")
		out, err := os.Create(path)
		check(err)
		_, err = io.Copy(out, resp.Body)
		check(err)
		check(out.Close())
		done <- path
	}()
	f()
	path := <-done
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", path).CombinedOutput()
	if err != nil {
		log.Printf("pprof: %v", err)
	}
	log.Printf("CPU profile of Caddy during %q (%s):\n%s", name, path, top)
}
