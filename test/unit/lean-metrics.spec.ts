/** The lean metric keys and gauge steps give Moleculer's own values. */
import { ServiceBroker } from "moleculer";
import { installLeanMetrics } from "../../mixins/lean-metrics";

function exercise() {
	const broker = new ServiceBroker({ logger: false, metrics: { enabled: true, reporter: [], defaultQuantiles: null as any } });
	const m = broker.metrics;
	m.register({ name: "t.gauge", type: "gauge", labelNames: ["service", "n", "flag", "none"] });
	m.register({ name: "t.counter", type: "counter", labelNames: ["action", "code"] });
	m.register({ name: "t.histogram", type: "histogram", labelNames: ["action", "type"], buckets: [1, 5, 10] });
	m.register({ name: "t.plain", type: "gauge" });
	const labelSets = [
		{ service: "orders", n: 1, flag: true },
		{ service: "orders", n: 1, flag: false },
		{ service: "orders|x", n: -0, flag: true, none: null },
		{ service: 'q"uote', n: 2.5 },
		{ n: NaN, flag: undefined, none: {} },
		{},
	];
	const changes: unknown[] = [];
	m.reporter = [{ metricChanged: (metric: { name: string }, value: unknown) => changes.push([metric.name, value]) }] as any;
	for (let round = 0; round < 3; round++) {
		for (const [i, labels] of labelSets.entries()) {
			m.increment("t.gauge", { ...labels });
			m.increment("t.gauge", { ...labels }, i + 2);
			m.decrement("t.gauge", { ...labels });
			m.decrement("t.gauge", { ...labels }, 0.5);
			m.set("t.gauge", i * 10 + round, { ...labels });
			m.increment("t.counter", { action: labels.service, code: labels.n });
			m.observe("t.histogram", i + round, { action: labels.service, type: labels.flag });
			m.increment("t.plain");
			m.increment("t.plain", undefined, 2);
			m.decrement("t.plain", undefined, 3);
		}
	}
	expect(() => m.decrement("t.counter", { action: "orders" })).toThrow("Counter can't be decreased.");
	const values = ["t.gauge", "t.counter", "t.histogram", "t.plain"].map((name) => {
		const metric = m.getMetric(name)!;
		return [name, [...(metric as any).values.entries()].map(([key, item]: [string, any]) => [key, { ...item, timestamp: undefined, rate: undefined }])];
	});
	return { values, changes };
}

test("metric keys, gauge values and change notifications are Moleculer's", () => {
	const theirs = exercise();
	installLeanMetrics();
	const ours = exercise();
	expect(ours).toEqual(theirs);
	// The run did exercise keys of every label kind.
	expect((theirs.values[0][1] as unknown[]).length).toBe(6);
});
