#!/usr/bin/env bash
# Infrastructure tests against real servers: installs nats-server and redis-server with apt-get when
# they are missing, starts them on free ports, builds the shop (cluster nodes run from dist/), and
# runs the jest "infra" project with NATS_URL and REDIS_URL pointing at them.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nats-server >/dev/null || need+=(nats-server)
command -v redis-server >/dev/null || need+=(redis-server)
command -v prometheus >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
	echo "Installing ${need[*]} ..."
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's packages may start their own instances; ours run on private ports.

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
NATS_PORT=$(free_port)
REDIS_PORT=$(free_port)
WORK=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/js" >"$WORK/nats.log" 2>&1 &
pids+=($!)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
pids+=($!)

for i in $(seq 1 50); do
	if (echo > /dev/tcp/127.0.0.1/"$NATS_PORT") 2>/dev/null && (echo > /dev/tcp/127.0.0.1/"$REDIS_PORT") 2>/dev/null; then break; fi
	sleep 0.2
done

npm run build --silent

export NATS_URL="nats://127.0.0.1:$NATS_PORT"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export PROMETHEUS_BIN="$(command -v prometheus || true)"
echo "nats-server on $NATS_PORT, redis-server on $REDIS_PORT"
npx jest --selectProjects infra --runInBand "$@"
