/**
 * A shop metric registered in the broker's registry unless it is there already (several services, or
 * a service started again, on one broker): the one way the services register theirs. Nothing with
 * metrics off. The definitions stay object literals at the call (test/unit/dashboards.spec.ts reads them).
 */
import type { ServiceBroker } from "moleculer";

type MetricSpec = Parameters<ServiceBroker["metrics"]["register"]>[0];

export function defineMetric(broker: ServiceBroker, spec: { name: string; type: string } & Record<string, unknown>): void {
	if (!broker.isMetricsEnabled() || broker.metrics.hasMetric(spec.name)) return;
	broker.metrics.register(spec as unknown as MetricSpec);
}
