/**
 * Tells whoever listens on the broker's local bus, at the very start of its stop, that it is
 * stopping (`$shop.stopping`). Moleculer's own hooks come too late for a gateway: before any service's
 * `stopped`, and before the broker-level `stopping` hooks of user middlewares, it waits up to
 * SHUTDOWN_TIMEOUT for the requests in flight, while the gateway still accepts new connections and
 * starts their requests, which that stop may then cut off. Told here, the gateway stops listening at
 * once (services/api.service.ts, stopAccepting).
 *
 * While the stop waits for requests, it names them every few seconds: Moleculer only counts them
 * ("Waiting for 3 running context(s)"), which leaves an operator whose pods take their whole grace
 * period to stop nothing to go on.
 */
import type { Middleware, ServiceBroker } from "moleculer";

export const STOPPING_EVENT = "$shop.stopping";

/** How often a stop that is still waiting says for what. */
export const STOP_REPORT_MS = 2000;

interface TrackedContext {
	action?: { name?: string };
	eventName?: string;
	nodeID?: string;
	startHrTime?: [number, number] | null;
}

/** The requests this node's stop waits for (Moleculer's context tracking): action, node when another, and age when known. */
export function runningRequests(broker: ServiceBroker): string[] {
	const b = broker as unknown as { _trackedContexts?: TrackedContext[]; services: Array<{ _trackedContexts?: TrackedContext[] }> };
	const tracked = [...(b._trackedContexts ?? []), ...b.services.flatMap((s) => s._trackedContexts ?? [])];
	return tracked.map((ctx) => {
		const where = ctx.nodeID && ctx.nodeID !== broker.nodeID ? ` on ${ctx.nodeID}` : "";
		const [s, ns] = ctx.startHrTime ? process.hrtime(ctx.startHrTime) : [0, 0];
		const age = ctx.startHrTime ? ` for ${Math.round(s * 1000 + ns / 1e6)} ms` : "";
		return `${ctx.action?.name ?? ctx.eventName ?? "?"}${where}${age}`;
	});
}

export function StopNoticeMiddleware(): Middleware {
	return {
		name: "StopNotice",
		created(broker: ServiceBroker) {
			const stop = broker.stop.bind(broker);
			broker.stop = () => {
				// Synchronously, so that a new connection arriving now is already refused.
				(broker as unknown as { localBus: { emit(event: string): void } }).localBus.emit(STOPPING_EVENT);
				const report = setInterval(() => {
					const running = runningRequests(broker);
					if (running.length) broker.logger.warn(`Stopping: still waiting for ${running.length} request(s): ${running.slice(0, 10).join(", ")}${running.length > 10 ? ", ..." : ""}`);
				}, STOP_REPORT_MS);
				report.unref();
				return stop().finally(() => clearInterval(report));
			};
		},
	} as Middleware;
}
