/** The shop's Prometheus reporter: Moleculer's, plus each histogram's _sum and _count without in-process quantiles. */
import type { AddressInfo } from "node:net";
import { ServiceBroker } from "moleculer";
import "../../mixins/prometheus-reporter";

test("a histogram is written with its buckets, _sum and _count, once per series; other metrics as Moleculer writes them, without its _rate lines", async () => {
	const broker = new ServiceBroker({
		logger: false,
		metrics: { enabled: true, defaultQuantiles: null as any, reporter: [{ type: "ShopPrometheus" as "Prometheus", options: { port: 0, host: "127.0.0.1", defaultLabels: () => ({ nodeID: "n1" }) } }] },
	});
	await broker.start();
	try {
		const metrics = broker.metrics;
		metrics.register({ name: "checkout.seconds", type: "histogram", labelNames: ["step"], buckets: [1, 5] } as any);
		metrics.register({ name: "orders_total", type: "counter", labelNames: ["status"], rate: true } as any);
		metrics.observe("checkout.seconds", 0.5, { step: "pay" });
		metrics.observe("checkout.seconds", 3, { step: "pay" });
		metrics.observe("checkout.seconds", 7, { step: "stock" });
		metrics.increment("orders_total", { status: "confirmed" }, 2);
		const server = (metrics as any).reporter[0].server;
		const { port } = server.address() as AddressInfo;
		const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
		expect(text).not.toMatch(/_rate[{ ]/);
		const lines = text.split("\n").filter((l) => l.startsWith("checkout_seconds") || l.startsWith("orders_total"));
		expect(lines).toEqual([
			'checkout_seconds_bucket{nodeID="n1",step="pay",le="1"} 1',
			'checkout_seconds_bucket{nodeID="n1",step="pay",le="5"} 2',
			'checkout_seconds_bucket{nodeID="n1",step="pay",le="+Inf"} 2',
			'checkout_seconds_sum{nodeID="n1",step="pay"} 3.5',
			'checkout_seconds_count{nodeID="n1",step="pay"} 2',
			'checkout_seconds_bucket{nodeID="n1",step="stock",le="1"} 0',
			'checkout_seconds_bucket{nodeID="n1",step="stock",le="5"} 0',
			'checkout_seconds_bucket{nodeID="n1",step="stock",le="+Inf"} 1',
			'checkout_seconds_sum{nodeID="n1",step="stock"} 7',
			'checkout_seconds_count{nodeID="n1",step="stock"} 1',
			'orders_total{nodeID="n1",status="confirmed"} 2',
		]);
	} finally {
		await broker.stop();
	}
});
