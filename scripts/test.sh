#!/usr/bin/env bash
# Runs every check and test. A skipped test fails the run: the end-to-end
# tests must never pass by not running (a missing registry binary, say).
set -euo pipefail
cd "$(dirname "$0")/.."

# Every tool first, so that nothing fails minutes into the run.
. scripts/tools.sh
missing_tools
missing_services
if [ ${#missing[@]} -gt 0 ] || [ ${#services[@]} -gt 0 ]; then
	if [ ${#missing[@]} -gt 0 ]; then
		echo "make test needs what is missing here: ${missing[*]}" >&2
		line=$(install_line)
		if [ -n "$line" ]; then echo "  $line" >&2; fi
		for u in "${urls[@]}"; do echo "  $u" >&2; done
	fi
	for s in "${services[@]}"; do echo "make test needs, not running here: $s" >&2; done
	exit 1
fi

echo "== gofmt"
bad=$(gofmt -l .)
if [ -n "$bad" ]; then echo "gofmt would change:"; echo "$bad"; exit 1; fi

echo "== go vet"
go vet ./...
(cd e2e && go vet ./...)
(cd bench && go vet ./...)

echo "== staticcheck"
staticcheck ./...
(cd e2e && staticcheck ./...)
(cd bench && staticcheck ./...)

echo "== alert rules: promtool check and the rules' unit tests"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

echo "== the built binary: list-modules, adapt and validate Caddyfile.example"
tmp=$(mktemp -d)
go build -o "$tmp/caddy" ./cmd/caddy
modules=$("$tmp/caddy" list-modules)
for m in registry_auth http.handlers.registry_auth_token http.handlers.registry_auth_proxy admin.api.registry_auth \
	registry_auth.authenticators.static registry_auth.authenticators.ldap registry_auth.authenticators.http \
	registry_auth.authenticators.oidc registry_auth.authorizers.rules registry_auth.authorizers.http; do
	grep -qx "$m" <<<"$modules" || { echo "caddy list-modules does not list $m" >&2; exit 1; }
done
"$tmp/caddy" adapt --config Caddyfile.example >/dev/null
XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config" \
	"$tmp/caddy" validate --config Caddyfile.example 2>&1 | tail -n 1
rm -rf "$tmp"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# run_tests DIR: go test in DIR, the whole output kept in $log, a summary shown.
run_tests() {
	set +e
	(cd "$1" && go test -count=1 -v -timeout 30m ./... 2>&1) | tee -a "$log" |
		grep --line-buffered -E '^(--- FAIL|--- SKIP|FAIL|ok|PASS|panic)|^ +--- (FAIL|SKIP)'
	local status=${PIPESTATUS[0]}
	set -e
	return "$status"
}
status=0
echo "== unit tests"
run_tests . || status=1
echo "== benchmarks, once each, so they keep compiling and running"
go test -run '^$' -bench . -benchtime 1x ./... >/dev/null
echo "== end-to-end tests"
run_tests e2e || status=1

if [ "$status" != 0 ] || grep -E -- '--- FAIL' "$log" >/dev/null; then
	echo "== FAILED: details"
	# A test's messages come before its --- FAIL line; Caddy's and the
	# registries' own log lines are left out.
	grep -vE '^\s*(\{"level"|time=")' "$log" | grep -E -B40 -A5 -- '--- FAIL' | head -400
	exit 1
fi
if grep -E -- '--- SKIP' "$log"; then
	echo "== FAILED: the tests above were skipped; every test must run" >&2
	exit 1
fi
passed=$(grep -cE -- '^\s*--- PASS' "$log" || true)
echo "$passed passed, 0 failed"
