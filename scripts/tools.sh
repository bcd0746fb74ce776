# The tools `make test` needs, and where each comes from. Sourced by
# scripts/test.sh, which checks them before spending minutes building, and
# by .ci/run, which installs what is missing on a fresh machine.
#
# One line per tool: its name, how to find it (cmd:NAME on PATH, or
# file:PATH), and where it comes from (deb:PACKAGE for Debian, go:PATH for
# go install, url:URL for the rest). A new tool is one more line.
REGAUTH_TOOLS='
go              cmd:go                 url:https://go.dev/dl/
staticcheck     cmd:staticcheck        go:honnef.co/go/tools/cmd/staticcheck@v0.8.2
docker-registry cmd:docker-registry    deb:docker-registry
slapd           file:/usr/sbin/slapd   deb:slapd
ldapsearch      cmd:ldapsearch         deb:ldap-utils
docker          cmd:docker             deb:docker.io
ctr             cmd:ctr                deb:containerd
curl            cmd:curl               deb:curl
promtool        cmd:promtool           deb:prometheus
systemd-analyze cmd:systemd-analyze    deb:systemd
docker-compose  cmd:docker-compose     deb:docker-compose
'

# staticcheck and other go-installed tools live in GOPATH/bin.
if command -v go >/dev/null; then
	PATH="$PATH:$(go env GOPATH)/bin"
	export PATH
fi

# missing_tools sets missing (names), debs (Debian packages), gos (go
# install paths) and urls (the rest) for the tools that are absent.
missing_tools() {
	missing=() debs=() gos=() urls=()
	local name find from
	while read -r name find from; do
		[ -n "$name" ] || continue
		case "$find" in
		cmd:*) command -v "${find#cmd:}" >/dev/null && continue ;;
		file:*) [ -x "${find#file:}" ] && continue ;;
		esac
		missing+=("$name")
		case "$from" in
		deb:*) debs+=("${from#deb:}") ;;
		go:*) gos+=("${from#go:}") ;;
		*) urls+=("$name: ${from#url:}") ;;
		esac
	done <<<"$REGAUTH_TOOLS"
}

# install_line prints one command that installs what missing_tools found.
install_line() {
	local line="" g
	if [ ${#debs[@]} -gt 0 ]; then
		line="sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${debs[*]}"
	fi
	for g in "${gos[@]}"; do
		line="${line:+$line && }go install $g"
	done
	echo "$line"
}

# missing_services lists what is installed but not running: the Docker
# engine, and a containerd that ctr can reach (its own, or Docker's).
missing_services() {
	services=()
	if command -v docker >/dev/null && ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
		services+=("the Docker engine (docker version cannot reach it: start it, e.g. sudo systemctl start docker, or join the docker group)")
	fi
	if command -v ctr >/dev/null && ! ctr_reaches /run/containerd/containerd.sock &&
		! ctr_reaches /var/run/docker/containerd/containerd.sock; then
		services+=("containerd (ctr reaches neither /run/containerd/containerd.sock nor Docker's: start it, e.g. sudo systemctl start containerd)")
	fi
}

# ctr_reaches SOCKET: ctr waits 10 s for a socket that is not there.
ctr_reaches() {
	[ -S "$1" ] && ctr --address "$1" version >/dev/null 2>&1
}
