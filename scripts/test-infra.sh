#!/usr/bin/env bash
# Infrastructure tests against real servers: installs nats-server and redis-server with apt-get when
# they are missing, starts them on free ports, builds the shop (cluster nodes run from dist/), and
# runs the jest "infra" project with NATS_URL and REDIS_URL pointing at them.
set -euo pipefail
cd "$(dirname "$0")/.."

# NATS_URL / REDIS_URL already set (e.g. CI service containers): use those servers.
need=()
[ -n "${NATS_URL:-}" ] || command -v nats-server >/dev/null || need+=(nats-server)
[ -n "${REDIS_URL:-}" ] || command -v redis-server >/dev/null || need+=(redis-server)
command -v prometheus >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
	echo "Installing ${need[*]} ..."
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -qq >/dev/null
	$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's packages may start their own instances; ours run on private ports.

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
WORK=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { for _ in $(seq 1 50); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; echo "port $1 did not open" >&2; return 1; }

if [ -z "${NATS_URL:-}" ]; then
	NATS_PORT=$(free_port)
	nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/js" >"$WORK/nats.log" 2>&1 &
	pids+=($!)
	wait_port "$NATS_PORT"
	export NATS_URL="nats://127.0.0.1:$NATS_PORT"
fi
if [ -z "${REDIS_URL:-}" ]; then
	REDIS_PORT=$(free_port)
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
	pids+=($!)
	wait_port "$REDIS_PORT"
	export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
fi

npm run build --silent

export PROMETHEUS_BIN="$(command -v prometheus || true)"
echo "NATS at $NATS_URL, Redis at $REDIS_URL"
paths=0; for a in "$@"; do case "$a" in -*) ;; *) paths=1 ;; esac; done
if [ "$paths" -eq 1 ]; then
	# A test path was given, e.g. `npm run test:infra test/infra/cluster.spec.ts`: that alone.
	npx jest --selectProjects infra --runInBand "$@"
	exit
fi
# The single-process crash test's two halves side by side (each case mostly waits for a shop process
# to start), then the cluster suites one at a time: their timings assume the machine to themselves.
npx jest --selectProjects infra --maxWorkers=2 "$@" -- test/infra/checkout-crash-
npx jest --selectProjects infra --runInBand --testPathIgnorePatterns checkout-crash "$@"
# The cart-store unit suite also runs its Redis half when REDIS_URL is set.
npx jest --runInBand --ci --selectProjects unit -- test/unit/cart-store.spec.ts
