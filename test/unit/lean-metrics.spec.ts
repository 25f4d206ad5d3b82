/**
 * The lean request and event metrics give the series Moleculer's own Metrics middleware gives: the
 * same names, labels, counts, sums and buckets, for the same calls and events (durations fixed by a
 * stubbed clock), and the broker keeps every other internal middleware.
 */
import { Errors, ServiceBroker, type ServiceSchema } from "moleculer";
import { brokerMiddlewares } from "../../mixins/lean-metrics.middleware";

/** Durations (ms) handed out in turn to every measured run, across bucket bounds (Moleculer's default buckets). */
const DURATIONS_MS = [0.4, 1, 1.5, 3, 7.25, 49, 150, 999, 20_000];

const services: ServiceSchema[] = [
	{
		name: "stock",
		actions: {
			get: { params: { n: "number" }, handler: (ctx) => ({ n: ctx.params.n }) },
			fail: () => Promise.reject(new Errors.MoleculerClientError("No such thing", 404, "NOT_FOUND")),
		},
		events: {
			"order.created"() {},
			"order.*": { group: "audit", handler() {} },
		},
	},
	{
		name: "orders",
		version: 2,
		actions: {
			create: {
				async handler(ctx) {
					await ctx.call("stock.get", { n: 1 });
					await ctx.call("stock.get", { n: 2 });
					await ctx.call("stock.fail").catch(() => undefined);
					ctx.emit("order.created", { id: 1 });
					ctx.emit("order.paid", { id: 1 });
					return "ok";
				},
			},
		},
		events: {
			"order.paid"() {
				throw new Error("refused");
			},
		},
	},
];

/** The request and event series of a broker after the same calls and events, without timestamps and rates. */
async function seriesAfterWork(options: Record<string, unknown>, remote = false) {
	let turn = 0;
	const realHrtime = process.hrtime;
	const hrtime = jest.spyOn(process, "hrtime").mockImplementation(((start?: [number, number]) => {
		if (!start) return [0, 0];
		const ns = Math.round(DURATIONS_MS[turn++ % DURATIONS_MS.length] * 1e6);
		return [Math.floor(ns / 1e9), ns % 1e9];
	}) as typeof process.hrtime);
	(process.hrtime as any).bigint = realHrtime.bigint;
	const namespace = `lean-metrics-${++brokers}`;
	const make = (nodeID: string) =>
		new ServiceBroker({ logger: false, nodeID, namespace, transporter: remote ? "Fake" : null, metrics: { enabled: true, defaultQuantiles: null }, ...options } as any);
	// With `remote`, the calls and events come from a second node: its series are the ones compared (type "remote").
	const serving = make("metrics-node");
	const broker = remote ? make("caller-node") : serving;
	for (const s of services) serving.createService(s);
	try {
		await serving.start();
		if (remote) {
			await broker.start();
			await broker.waitForServices(["stock", { name: "orders", version: 2 }]);
		}
		for (let i = 0; i < 3; i++) {
			await broker.call("v2.orders.create");
			await broker.call("stock.get", { n: i });
			await broker.call("stock.get", { n: "not a number" }).catch(() => undefined);
			broker.emit("order.created", { id: i });
			await new Promise((r) => setImmediate(r));
		}
		const list = broker.metrics.list({ includes: ["moleculer.request.**", "moleculer.event.**"] }) as any[];
		return list
			.map((m) => ({
				name: m.name,
				type: m.type,
				labelNames: m.labelNames,
				values: m.values.map(({ timestamp: _timestamp, rate: _rate, ...v }: any) => v).sort((a: any, b: any) => a.key.localeCompare(b.key)),
			}))
			.sort((a, b) => a.name.localeCompare(b.name));
	} finally {
		await broker.stop();
		if (remote) await serving.stop();
		hrtime.mockRestore();
	}
}
let brokers = 0;

describe("lean metrics", () => {
	it("gives the series Moleculer's Metrics middleware gives, for calls, nested calls, errors and events", async () => {
		const moleculers = await seriesAfterWork({});
		const leans = await seriesAfterWork({ internalMiddlewares: false, middlewares: brokerMiddlewares([]) });
		expect(leans).toEqual(moleculers);
		// The comparison covers what it should: callers, levels, errors, events of two groups, the buckets.
		const byName = new Map(moleculers.map((m) => [m.name, m.values]));
		const total = byName.get("moleculer.request.total")!;
		expect(total.map((v: any) => [v.labels.action, v.labels.caller ?? null, v.value])).toEqual(
			expect.arrayContaining([
				["stock.get", "v2.orders", 6],
				["stock.get", null, 6],
				["stock.fail", "v2.orders", 3],
				["v2.orders.create", null, 3],
			]),
		);
		expect(byName.get("moleculer.request.levels")!.map((v: any) => [v.labels.level, v.value])).toEqual(expect.arrayContaining([[1, 9], [2, 9]]));
		expect(byName.get("moleculer.request.error.total")!.map((v: any) => [v.labels.action, v.labels.errorCode, v.value])).toEqual(
			expect.arrayContaining([["stock.fail", 404, 3], ["stock.get", 422, 3]]),
		);
		// Events carry the service's name without its version.
		expect(byName.get("moleculer.event.received.total")!.map((v: any) => [v.labels.service, v.labels.group, v.labels.event, v.labels.caller ?? null, v.value])).toEqual(
			expect.arrayContaining([
				["stock", "stock", "order.created", "v2.orders", 3],
				["stock", "stock", "order.created", null, 3],
				["stock", "audit", "order.paid", "v2.orders", 3],
				["orders", "orders", "order.paid", "v2.orders", 3],
			]),
		);
		expect(byName.get("moleculer.event.received.error.total")!.map((v: any) => [v.labels.event, v.value])).toEqual([["order.paid", 3]]);
		const times = byName.get("moleculer.request.time")!;
		expect(new Set(times.map((v: any) => JSON.stringify(v.buckets))).size).toBeGreaterThan(2);
		expect(times.every((v: any) => v.count > 0 && v.sum > 0)).toBe(true);
		expect(byName.get("moleculer.request.active")!.every((v: any) => v.value === 0)).toBe(true);
	});

	it("gives the same series for calls to another node", async () => {
		const moleculers = await seriesAfterWork({}, true);
		const leans = await seriesAfterWork({ internalMiddlewares: false, middlewares: brokerMiddlewares([]) }, true);
		expect(leans).toEqual(moleculers);
		const total = moleculers.find((m) => m.name === "moleculer.request.total")!.values;
		expect(total.map((v: any) => [v.labels.action, v.labels.type, v.value])).toEqual(expect.arrayContaining([["v2.orders.create", "remote", 3], ["stock.get", "remote", 6]]));
	});

	it("keeps Moleculer's other internal middlewares: validation, timeouts, retries", async () => {
		const broker = new ServiceBroker({ logger: false, internalMiddlewares: false, middlewares: brokerMiddlewares([]), requestTimeout: 100 } as any);
		broker.createService({
			name: "slow",
			actions: {
				typed: { params: { n: "number" }, handler: (ctx) => ctx.params.n },
				wait: () => new Promise((r) => setTimeout(r, 1000)),
			},
		});
		await broker.start();
		try {
			await expect(broker.call("slow.typed", { n: "x" })).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
			await expect(broker.call("slow.wait")).rejects.toMatchObject({ name: "RequestTimeoutError" });
			expect((broker as any).middlewares.list.map((m: any) => m.name)).toEqual(expect.arrayContaining(["Validator", "Bulkhead", "ContextTracker", "CircuitBreaker", "Timeout", "Retry", "Fallback", "ErrorHandler", "Metrics"]));
		} finally {
			await broker.stop();
		}
	});
});
