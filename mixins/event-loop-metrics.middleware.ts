/** Event-loop lag gauges (ms) for the broker dashboard: moleculer 0.15 no longer measures it. */
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Middleware, ServiceBroker } from "moleculer";

// The histogram measures whole timer periods: the lag is what exceeds the sampling resolution.
const RESOLUTION_MS = 20;

export function EventLoopMetricsMiddleware(intervalMs = 5000): Middleware {
	let timer: NodeJS.Timeout | undefined;
	const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
	const lagMs = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
	return {
		name: "EventLoopMetrics",
		created(broker: ServiceBroker) {
			if (!broker.isMetricsEnabled()) return;
			broker.metrics.register({ name: "process.eventloop.lag.avg", type: "gauge", unit: "millisecond", description: "Mean event-loop lag" });
			broker.metrics.register({ name: "process.eventloop.lag.max", type: "gauge", unit: "millisecond", description: "Longest event-loop lag" });
			histogram.enable();
			timer = setInterval(() => {
				broker.metrics.set("process.eventloop.lag.avg", lagMs(histogram.mean));
				broker.metrics.set("process.eventloop.lag.max", lagMs(histogram.max));
				histogram.reset();
			}, intervalMs).unref();
		},
		async stopped() {
			if (timer) clearInterval(timer);
			histogram.disable();
		},
	} as Middleware;
}
