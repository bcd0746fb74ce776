# The two commands of the README: `make demo` and `make test`.
GO ?= go

.PHONY: demo test fuzz bench caddy

## demo: an authenticated registry on 127.0.0.1:5000 (Caddy in front of registry v3);
## DEMOFLAGS="-addr 127.0.0.1:5001" for another address (go run ./cmd/demo -h in e2e/)
DEMOFLAGS ?=
demo:
	@echo "== building the demo: Caddy with this plugin and a distribution v3 registry (the first build downloads and compiles for a few minutes)"
	cd e2e && $(GO) build -o "$${TMPDIR:-/tmp}/registry-auth-demo" ./cmd/demo
	@echo "== starting"
	"$${TMPDIR:-/tmp}/registry-auth-demo" $(DEMOFLAGS)

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
