/**
 * The ports a node opens for its operators. When HEALTH_PORT is set, the node answers GET /live
 * (the node has started and runs: a liveness probe) and GET /ready (broker started, not stopping, its
 * store taking writes, and its transporter connected: a readiness probe), on HOST like the gateway. A
 * NATS outage or a full disk fails readiness only, never liveness: restarting a node brings none of
 * them back. A Redis outage fails neither: every node shares the Redis, so it would take every gateway
 * out of the Service at once (the whole shop answering 503), while a gateway goes on serving without it
 * (reads uncached, rate limits counted locally; sign-in and Redis carts answer 503). It is named in the
 * answer's `degraded`.
 *
 * A port that cannot be opened (taken, not allowed) stops the node with a message naming its
 * variable, HEALTH_PORT or METRICS_PORT (Moleculer's Prometheus reporter), instead of an
 * unhandled 'error' event; the probe port is opened before any service starts, so nothing has
 * been seeded or locked yet.
 */
import http from "node:http";
import type { Middleware, ServiceBroker } from "moleculer";
import { redisOutages } from "../adapters/redis-connection";
import { transporterOutages, watchTransporter } from "./transporter-outages";
import { storeOutages } from "./store-outages";
import { readConfig } from "../lib/config";

/** Why a port could not be opened, naming the variable that chose it. */
export function portProblem(variable: string, port: number | string, host: string | undefined, err: NodeJS.ErrnoException): string {
	const where = `${variable} ${port}${host ? ` on ${host}` : ""}`;
	if (err.code === "EADDRINUSE") return `${where} is already in use: set ${variable} to a free port, or stop the process that listens there.`;
	if (err.code === "EACCES") return `${where} is not allowed for this user: set ${variable} to a port above 1023.`;
	return `${where} cannot be opened: ${err.message}`;
}

/** What keeps the node from serving now (empty: ready). */
export function notReadyReasons(broker: ServiceBroker): string[] {
	const reasons: string[] = [];
	if (broker.stopping) reasons.push("stopping");
	else if (!broker.started) reasons.push("starting");
	reasons.push(...storeOutages());
	reasons.push(...transporterOutages(broker));
	return reasons;
}

/** What the node serves without now (the shared Redis), which readiness does not count (see above). */
export function degradedReasons(broker: ServiceBroker): string[] {
	const reasons: string[] = [];
	// Moleculer's Redis cacher: false after a connection error, until it is ready again.
	if ((broker.cacher as { connected?: boolean | null } | null)?.connected === false) reasons.push("redis: cache");
	for (const purpose of redisOutages()) reasons.push(`redis: ${purpose}`);
	return reasons;
}

/** The reporters' own HTTP servers (Prometheus), so that a port they cannot open is reported by name. */
function reporterServers(broker: ServiceBroker): Array<{ server: http.Server; port?: number; host?: string }> {
	const reporters = ((broker.metrics as unknown as { reporter?: unknown[] } | undefined)?.reporter ?? []) as Array<{ server?: unknown; opts?: { port?: number; host?: string } }>;
	return reporters.filter((r) => r.server instanceof http.Server).map((r) => ({ server: r.server as http.Server, port: r.opts?.port, host: r.opts?.host }));
}

export function HealthProbeMiddleware(port: number | undefined, host: string = readConfig().host): Middleware {
	let server: http.Server | undefined;
	return {
		name: "HealthProbe",
		created(broker: ServiceBroker) {
			// The reporter listens from the broker's constructor on, without an 'error' listener of its own.
			for (const reporter of reporterServers(broker)) {
				reporter.server.on("error", (err: NodeJS.ErrnoException) => broker.fatal(portProblem("METRICS_PORT", reporter.port ?? "?", reporter.host, err), err, true));
			}
		},
		starting(broker: ServiceBroker) {
			if (!port) return;
			const probe = http.createServer((req, res) => {
				const path = (req.url ?? "").split("?")[0];
				if (path !== "/live" && path !== "/ready") {
					res.writeHead(404, { "Content-Type": "application/json" });
					res.end(JSON.stringify({ status: "not_found", paths: ["/live", "/ready"] }));
					return;
				}
				const reasons = notReadyReasons(broker);
				// Live once started (as before this listened early): a start that hangs still fails the startup probe.
				const ok = path === "/live" ? broker.started || broker.stopping : reasons.length === 0;
				res.writeHead(ok ? 200 : 503, { "Content-Type": "application/json" });
				res.end(JSON.stringify({ status: ok ? "ok" : "unavailable", nodeID: broker.nodeID, ready: reasons.length === 0, reasons, degraded: degradedReasons(broker) }));
			});
			return new Promise<void>((resolve, reject) => {
				probe.once("error", (err: NodeJS.ErrnoException) => reject(new Error(portProblem("HEALTH_PORT", port, host, err), { cause: err })));
				probe.listen(port, host, () => {
					server = probe;
					probe.removeAllListeners("error");
					probe.on("error", (err) => broker.getLogger("health-probe").warn(`Probe server error: ${err.message}`));
					resolve();
				});
			});
		},
		async started(broker: ServiceBroker) {
			watchTransporter(broker);
		},
		stopped() {
			return new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
		},
	} as Middleware;
}
