/**
 * Moleculer's metrics took ~6% of a checkout's main thread: each action call increments, times and
 * decrements its request metrics and the bulkhead sets its gauges, and every one of these builds the
 * label key with an array and a join (`hashingLabels`), a gauge's increment or decrement twice (its
 * `get`, then its `set`). Here the key is built as one string, and an increment or decrement builds it
 * once and hands it to the `set` it calls. Same keys, same values, same notifications.
 */
import { MetricTypes } from "moleculer";

const { Base: BaseMetric, Gauge: GaugeMetric } = MetricTypes as unknown as Record<"Base" | "Gauge", { prototype: Record<string, unknown> }>;

interface Metric {
	labelNames: string[];
	values: Map<string, { value: number }>;
	set(value: number, labels: unknown, timestamp?: number): unknown;
	/** The labels whose key this metric's running increment or decrement has built, and the key. */
	keyedLabels?: object | null;
	keyedAs?: string;
}

/** `BaseMetric.hashingLabels`, same results: label values in the metric's label order, joined by `|`. */
export function labelKey(this: Metric, labels: unknown): string {
	if (labels === this.keyedLabels && labels) return this.keyedAs!;
	const names = this.labelNames;
	if (names.length == 0 || labels == null || typeof labels !== "object") return "";
	let key = "";
	for (let i = 0; i < names.length; i++) {
		if (i > 0) key += "|";
		const v = (labels as Record<string, unknown>)[names[i]];
		if (typeof v == "number") key += v;
		else if (typeof v === "string") key += '"' + v + '"';
		else if (typeof v === "boolean") key += v ? "true" : "false";
	}
	return key;
}

function addToGauge(metric: Metric, labels: unknown, delta: number, timestamp?: number) {
	const key = labelKey.call(metric, labels);
	const item = metric.values.get(key);
	metric.keyedLabels = labels as object;
	metric.keyedAs = key;
	try {
		return metric.set((item ? item.value : 0) + delta, labels, timestamp);
	} finally {
		metric.keyedLabels = null;
	}
}

let installed = false;

export function installLeanMetrics(): void {
	if (installed) return;
	installed = true;
	BaseMetric.prototype.hashingLabels = labelKey;
	GaugeMetric.prototype.increment = function increment(this: Metric, labels: unknown, value?: number, timestamp?: number) {
		return addToGauge(this, labels, value == null ? 1 : value, timestamp);
	};
	// CounterMetric overrides decrement (it refuses): only gauges get this one.
	GaugeMetric.prototype.decrement = function decrement(this: Metric, labels: unknown, value?: number, timestamp?: number) {
		return addToGauge(this, labels, -(value == null ? 1 : value), timestamp);
	};
}
