# The two commands of the README: `make demo` and `make test`.
GO ?= go

.PHONY: demo test fuzz bench caddy

## demo: an authenticated registry on localhost (Caddy in front of registry v3)
demo:
	@echo "== building the demo: Caddy with this plugin and a distribution v3 registry (the first build downloads and compiles for a few minutes)"
	cd e2e && $(GO) build -o "$${TMPDIR:-/tmp}/registry-auth-demo" ./cmd/demo
	@echo "== starting"
	"$${TMPDIR:-/tmp}/registry-auth-demo"

## test: formatting, vet, staticcheck, unit tests and end-to-end tests
test:
	./scripts/test.sh

## fuzz: run every fuzz target for FUZZTIME each (default 30s)
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

## bench: the load benchmark of BENCHMARKS.md (needs the docker-registry package)
bench:
	cd bench && $(GO) run .

## caddy: build ./caddy with the plugin (what xcaddy build --with would make)
caddy:
	$(GO) build -o caddy ./cmd/caddy
