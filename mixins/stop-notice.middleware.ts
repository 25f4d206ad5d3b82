/**
 * Tells whoever listens on the broker's local bus, at the very start of its stop, that it is
 * stopping (`$shop.stopping`). Moleculer's own hooks come too late for a gateway: before any service's
 * `stopped`, and before the broker-level `stopping` hooks of user middlewares, it waits up to
 * SHUTDOWN_TIMEOUT for the requests in flight, while the gateway still accepts new connections and
 * starts their requests, which that stop may then cut off. Told here, the gateway stops listening at
 * once (services/api.service.ts, stopAccepting).
 */
import type { Middleware, ServiceBroker } from "moleculer";

export const STOPPING_EVENT = "$shop.stopping";

export function StopNoticeMiddleware(): Middleware {
	return {
		name: "StopNotice",
		created(broker: ServiceBroker) {
			const stop = broker.stop.bind(broker);
			broker.stop = () => {
				// Synchronously, so that a new connection arriving now is already refused.
				(broker as unknown as { localBus: { emit(event: string): void } }).localBus.emit(STOPPING_EVENT);
				return stop();
			};
		},
	} as Middleware;
}
