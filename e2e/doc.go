// Package e2e holds the end-to-end tests of caddy-registry-auth: Caddy
// started in-process from a Caddyfile, real registries (distribution v3 in
// process, the Debian docker-registry 2.8 binary as a subprocess) and a real
// client library (go-containerregistry). It is a module of its own so that
// the plugin's go.mod stays lean.
package e2e
