#!/usr/bin/env bash
# Starts the shop as a local cluster, as the infrastructure tests do: nats-server and redis-server
# (installed with apt-get when missing), then nodes from the built dist/ with SERVICES subsets:
# two gateways (:3000, :3001), two search nodes, and the stateful services each on one node.
# Ctrl-C stops everything. Data goes to ./data/cluster/<node>.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nats-server >/dev/null || need+=(nats-server)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

NATS_PORT=${NATS_PORT:-4222}
REDIS_PORT=${REDIS_PORT:-6379}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

nats-server -a 127.0.0.1 -p "$NATS_PORT" >/dev/null 2>&1 & pids+=($!)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --daemonize no >/dev/null 2>&1 & pids+=($!)
npm run build --silent

export TRANSPORTER="nats://127.0.0.1:$NATS_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export SERVICEDIR=dist/services NAMESPACE=${NAMESPACE:-local} JWT_SECRET=${JWT_SECRET:-local-cluster-secret}
metrics=3030
node_start() { # nodeID services [extra env...]
	local id=$1 services=$2; shift 2
	mkdir -p "data/cluster/$id"
	env NODEID="$id" SERVICES="$services" DATA_DIR="data/cluster/$id" METRICS_PORT=$metrics "$@" \
		node node_modules/moleculer/bin/moleculer-runner.js --config dist/moleculer.config.js 2>&1 | sed "s/^/[$id] /" &
	pids+=($!)
	metrics=$((metrics + 1))
}

node_start products-1 products
node_start users-1 users
node_start checkout-1 orders,payments,cart
node_start consumers-1 notifications,analytics,reviews
node_start search-1 search
node_start search-2 search
node_start gw-1 api PORT=3000
node_start gw-2 api PORT=3001

echo "Cluster starting: gateways on http://localhost:3000 and :3001, metrics on :3030-:$((metrics - 1))."
echo "REPL: TRANSPORTER=$TRANSPORTER NAMESPACE=$NAMESPACE JWT_SECRET=$JWT_SECRET npm run repl"
wait
