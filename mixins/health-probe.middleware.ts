/**
 * Liveness/readiness for nodes without the gateway (Kubernetes probes): when HEALTH_PORT is set,
 * the node answers GET /live (process up) and GET /ready (broker started, not stopping).
 */
import http from "node:http";
import type { Middleware, ServiceBroker } from "moleculer";

export function HealthProbeMiddleware(port: number | undefined): Middleware {
	let server: http.Server | undefined;
	return {
		name: "HealthProbe",
		started(broker: ServiceBroker) {
			if (!port) return;
			server = http.createServer((req, res) => {
				const ready = broker.started && !broker.stopping;
				const ok = req.url === "/live" || (req.url === "/ready" && ready);
				const known = req.url === "/live" || req.url === "/ready";
				res.writeHead(known ? (ok ? 200 : 503) : 404, { "Content-Type": "application/json" });
				res.end(JSON.stringify({ status: ok ? "ok" : "unavailable", nodeID: broker.nodeID, ready }));
			});
			return new Promise<void>((resolve) => server!.listen(port, resolve));
		},
		stopped() {
			return new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
		},
	} as Middleware;
}
