/**
 * Moleculer warns "Service 'orders.list' is not available." (or "not registered") once per call that
 * finds no node for its action: while a service's nodes are away, one WARN line per request, without
 * the request's id (the gateway's answer line has it), flooding the log at the rate of the traffic.
 * Here each such line is written once a minute per action, with how many were left out since.
 */
import type { Middleware, ServiceBroker } from "moleculer";
import { SampledLog } from "../lib/sampled-log";

const NO_NODE = /^Service '[^']+' is not (?:available|registered)\.$/;

export function ThrottledWarningsMiddleware(intervalMs = 60_000): Middleware {
	return {
		name: "ThrottledWarnings",
		created(broker: ServiceBroker) {
			const logger = broker.logger as { warn: (...args: unknown[]) => void };
			const warn = logger.warn.bind(logger);
			// One key per action that ever had no node: bounded by the actions there are.
			const sampled = new SampledLog(intervalMs);
			logger.warn = (...args: unknown[]) => {
				const line = args[0];
				if (args.length !== 1 || typeof line !== "string" || !NO_NODE.test(line)) return warn(...args);
				const passed = sampled.pass(line);
				if (!passed) return;
				warn(passed.heldBack ? `${line} (${passed.heldBack} more like it in the last ${Math.round(passed.sinceMs / 1000)} s)` : line);
			};
		},
	};
}
