#!/usr/bin/env bash
# Offline checks of the deployment files, no Docker engine or cluster needed:
#   docker-compose.yml        `docker-compose config` (Debian's docker-compose, installed when missing)
#   monitoring/prometheus     `promtool check config`, `promtool test rules` (alert unit tests)
#   monitoring/grafana        every dashboard query parses as PromQL (promtool)
#   k8s/overlays/{dev,prod}   `kubectl kustomize` renders; every object validates against the
#                             Kubernetes schemas and its references resolve (scripts/validate-k8s.mjs)
# Which metrics the dashboards and alerts may name is checked by test/unit/dashboards.spec.ts.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v promtool >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
	echo "Installing ${need[*]} ..."
	$SUDO apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v kubectl >/dev/null || { echo "kubectl is required (kubectl kustomize renders the overlays)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "== docker-compose.yml"
# The file requires JWT_SECRET (no published default); any value does for checking it.
JWT_SECRET=validate-only-0123456789abcdef0123456789 docker-compose -f docker-compose.yml config -q
if docker-compose -f docker-compose.yml config -q 2>/dev/null; then echo "docker-compose.yml must require JWT_SECRET" >&2; exit 1; fi
echo "✓ valid"

echo "== Prometheus config and alert rules"
promtool check config monitoring/prometheus/prometheus.yml
(cd monitoring/prometheus && promtool test rules alerts.test.yml)

echo "== Grafana dashboards: every query is PromQL that Prometheus parses"
# Grafana's variables become plain values, each query a recording rule for promtool to parse.
node - "$WORK/dashboard-queries.yml" monitoring/grafana/dashboards/*.json <<'EOF'
const fs = require("node:fs");
const [out, ...files] = process.argv.slice(2);
const rules = [];
for (const file of files) {
	const dashboard = JSON.parse(fs.readFileSync(file, "utf8"));
	const panels = (dashboard.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
	for (const target of panels.flatMap((p) => p.targets ?? [])) {
		const expr = target.expr.replace(/\$(__rate_interval|__interval|__range)\b/g, "5m").replace(/\$\{?\w+\}?/g, ".*");
		rules.push({ record: `dashboard:query_${rules.length}`, expr });
	}
}
fs.writeFileSync(out, JSON.stringify({ groups: [{ name: "dashboards", rules }] }, null, 1));
console.log(`${rules.length} queries from ${files.length} dashboards`);
EOF
promtool check rules "$WORK/dashboard-queries.yml"

for overlay in dev prod; do
	echo "== k8s/overlays/$overlay"
	kubectl kustomize "k8s/overlays/$overlay" > "$WORK/$overlay.yaml"
	extra=()
	# prod expects the Secret to come from the cluster's secret store, not from these manifests.
	if [ "$overlay" = prod ]; then extra=(--external Secret/shop-secrets); fi
	node scripts/validate-k8s.mjs "$WORK/$overlay.yaml" "${extra[@]}"
done

echo "All deployment checks passed."
