# The two commands of the README: `make demo` and `make test`.
GO ?= go

.PHONY: demo test fuzz bench caddy

## demo: an authenticated registry on localhost (Caddy in front of registry v3)
demo:
	cd e2e && $(GO) run ./cmd/demo

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
