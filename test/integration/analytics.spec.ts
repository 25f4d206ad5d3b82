/**
 * Analytics: reports to the cent from the events of checkout, cancellation and refund; replays
 * counted once; events emitted while analytics was down caught up from the outboxes, once; each
 * event counted once in every counter when the process dies (or a write fails) at any point of a
 * batch; a 10,000-event burst fully counted with bounded queues; the business metrics.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { HealthMixin } from "../../mixins/health.mixin";
import AnalyticsService from "../../services/analytics.service";
import "../../mixins/types";
import { waitFor } from "../helpers/wait";
import { sourceWithOutbox, fakeToken, fakeSession } from "../helpers/fakes";
import { withEnv } from "../helpers/env";
import { LIVE_ONLY_EVENTS } from "../../lib/analytics-events";

// Stands in for the users service: every session is active.
const FakeUsers: ServiceSchema = {
	name: "users",
	mixins: [HealthMixin],
	actions: { checkSession: { params: { sid: "string" }, handler: (ctx: Context<{ sid: string }>) => fakeSession(ctx.params.sid) } },
};

const adminToken = () => fakeToken("admin-1", "admin");
const customerToken = () => fakeToken("u1");

const HOUR = 3_600_000;
let seq = 0;

/** Whole hours (reports refuse other bounds) from about two hours before `at` to two hours after it. */
function hoursAround(at: number): string {
	const from = new Date(Math.floor(at / HOUR) * HOUR - 2 * HOUR).toISOString();
	const to = new Date(Math.ceil(at / HOUR) * HOUR + 2 * HOUR).toISOString();
	return `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
}
const nextId = (prefix: string) => `${prefix}:${++seq}`;

/** An order event payload as docs/services.md describes it. */
function orderPayload(orderId: string, lines: Array<{ productId: string; name: string; quantity: number; unitPrice: number }>, extra: Record<string, unknown> = {}) {
	const items = lines.map((l, i) => ({ ...l, variantId: `${l.productId}-v${i}`, lineTotal: l.unitPrice * l.quantity }));
	const subtotal = items.reduce((s, i) => s + i.lineTotal, 0);
	const discount = (extra.discount as number) ?? 0;
	const shipping = (extra.shipping as number) ?? 500;
	return {
		orderId,
		number: `N-${orderId}`,
		userId: "u1",
		status: "confirmed",
		items,
		subtotal,
		discount,
		shipping,
		total: subtotal - discount + shipping,
		currency: "USD",
		promoCode: null,
		createdAt: new Date().toISOString(),
		...extra,
	};
}

describe("analytics from broker events", () => {
	let shop: Shop;
	const sent: Array<[string, Record<string, unknown>]> = [];
	const emit = async (name: string, payload: Record<string, unknown>) => {
		const full = { eventId: nextId(name.split(".")[0]), ...payload };
		sent.push([name, full]);
		await shop.broker.emit(name, full);
	};
	const admin = (path: string) => shop.http.get(path, { token: adminToken() });
	const range = () => hoursAround(Date.now());
	const flush = () => shop.broker.call("analytics.flush");
	/** `n` cart additions of one product at `occurredAt`, all in the pipeline before the flush (which would end the linger early); the stats after it. */
	const addedTogether = async (n: number, productId: string, occurredAt: string) => {
		const { received } = (await flush()) as any;
		await Promise.all(Array.from({ length: n }, (_, i) => emit("cart.item_added", { userId: `u${i}`, cartId: `c${i}`, variantId: `${productId}-v0`, productId, quantity: 1, occurredAt })));
		await waitFor(() => shop.broker.call("analytics.pipelineStats") as Promise<any>, (st) => st.received === received + n);
		return (await flush()) as any;
	};

	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, "analytics"], broker: { metrics: { enabled: true, reporter: [] } } });

		// The story: two products viewed, carted, three paid orders, one cancelled after payment
		// (refunded in full), one refunded in part, and one declined payment.
		for (let i = 0; i < 4; i++) await emit("product.viewed", { productId: "p-tee" });
		await emit("product.viewed", { productId: "p-mug", userId: "u1" });
		await emit("cart.item_added", { userId: "u1", cartId: "c1", variantId: "p-tee-v0", productId: "p-tee", quantity: 2 });
		await emit("cart.item_added", { userId: "u1", cartId: "c1", variantId: "p-mug-v1", productId: "p-mug", quantity: 1 });

		const o1 = orderPayload("o1", [{ productId: "p-tee", name: "Tee", quantity: 2, unitPrice: 1999 }]); // 3998 + 500 = 4498
		const o2 = orderPayload("o2", [{ productId: "p-mug", name: "Mug", quantity: 1, unitPrice: 1250 }, { productId: "p-tee", name: "Tee", quantity: 1, unitPrice: 1999 }], { discount: 325 }); // 3249 - 325 + 500 = 3424
		const o3 = orderPayload("o3", [{ productId: "p-mug", name: "Mug", quantity: 3, unitPrice: 1250 }], { shipping: 0 }); // 3750
		const o4 = orderPayload("o4", [{ productId: "p-mug", name: "Mug", quantity: 1, unitPrice: 1250 }]);
		for (const o of [o1, o2, o3]) {
			await emit("order.created", { ...o, status: "pending" });
			await emit("order.confirmed", { ...o, checkoutDurationMs: 1500 });
		}
		// o2 is cancelled after payment: the orders service refunds it, so both events arrive.
		await emit("order.cancelled", { ...o2, status: "cancelled", reason: "customer_request", refundedAmount: 3424, wasConfirmed: true });
		await emit("payment.refunded", { orderId: "o2", paymentId: "pay2", refundId: "r2", userId: "u1", amount: 3424, currency: "USD", totalRefunded: 3424 });
		await emit("payment.refunded", { orderId: "o3", paymentId: "pay3", refundId: "r3", userId: "u1", amount: 1234, currency: "USD", totalRefunded: 1234 });
		// o4's card is declined: checkout started, never paid, cancelled from pending.
		await emit("order.created", { ...o4, status: "pending" });
		await emit("payment.failed", { orderId: "o4", paymentId: "pay4", userId: "u1", amount: 1750, currency: "USD", reason: "card_declined" });
		await emit("order.cancelled", { ...o4, status: "cancelled", reason: "payment_failed", refundedAmount: 0 });
		// o5 is declined during checkout: no order.created, only checkout.failed (and payments' payment.failed).
		const o5 = orderPayload("o5", [{ productId: "p-tee", name: "Tee", quantity: 1, unitPrice: 1999 }]);
		await emit("checkout.failed", { ...o5, status: "cancelled", reason: "payment_declined" });
		await flush();
	});
	afterAll(() => shop.stop());

	// Cancelled: o2 (after payment), o4 (its pending payment failed) and o5 (declined in its checkout: GET /orders lists it as cancelled too).
	const expectedSales = { orders: 3, cancelled: 3, grossRevenue: 4498 + 3424 + 3750, refunded: 3424 + 1234, revenue: 4498 + 3750 - 1234, currency: "USD" };

	test("sales: paid totals with shipping, net of refunds, to the cent; a cancellation does not subtract twice", async () => {
		for (const interval of ["hour", "day", "week"]) {
			const res = await admin(`/api/analytics/sales?interval=${interval}&${range()}`);
			expect(res.status).toBe(200);
			// Now ± 2 hours may span two hours, days or weeks only when the test runs across a boundary: sum them.
			const total = res.body.reduce(
				(acc: any, r: any) => ({ ...acc, orders: acc.orders + r.orders, cancelled: acc.cancelled + r.cancelled, grossRevenue: acc.grossRevenue + r.grossRevenue, refunded: acc.refunded + r.refunded, revenue: acc.revenue + r.revenue }),
				{ orders: 0, cancelled: 0, grossRevenue: 0, refunded: 0, revenue: 0, currency: "USD" },
			);
			expect(total).toEqual(expectedSales);
			for (const row of res.body) {
				expect(row.currency).toBe("USD");
				expect(new Date(row.bucket).toISOString()).toBe(row.bucket);
				expect(Number.isInteger(row.revenue)).toBe(true);
			}
		}
	});

	test("top products by units and by revenue (line totals net of the order discount)", async () => {
		const res = await admin(`/api/analytics/top-products?${range()}&limit=10`);
		expect(res.status).toBe(200);
		// o2's cancellation takes its goods back (a mug and a tee): only o1's and o3's stay sold.
		expect(res.body.byUnits).toEqual([
			{ productId: "p-mug", name: "Mug", units: 3 },
			{ productId: "p-tee", name: "Tee", units: 2 },
		]);
		// o2's 325 discount was shared 1250:1999 → 125 to the mug, 200 to the tee, and is taken back with them.
		expect(res.body.byRevenue).toEqual([
			{ productId: "p-tee", name: "Tee", revenue: 3998 + (1999 - 200) - (1999 - 200), currency: "USD" },
			{ productId: "p-mug", name: "Mug", revenue: 1250 - 125 + 3750 - (1250 - 125), currency: "USD" },
		]);
		const one = await admin(`/api/analytics/top-products?${range()}&limit=1`);
		expect(one.body.byUnits).toHaveLength(1);
	});

	test("top products carry the catalog's current names; a product it no longer has keeps the name it was sold under", async () => {
		// The catalog renamed the tee since its sales, and knows nothing of the mug.
		const catalog = shop.broker.createService({ name: "products", actions: { getMany: (ctx: any) => ctx.params.ids.filter((id: string) => id === "p-tee").map((id: string) => ({ id, name: "Tee, organic" })) } });
		await shop.broker.waitForServices("products");
		try {
			const res = await admin(`/api/analytics/top-products?${range()}&limit=10`);
			expect(res.body.byUnits.map((r: any) => [r.productId, r.name])).toEqual([["p-mug", "Mug"], ["p-tee", "Tee, organic"]]);
			expect(res.body.byRevenue.map((r: any) => [r.productId, r.name])).toEqual([["p-tee", "Tee, organic"], ["p-mug", "Mug"]]);
		} finally {
			await shop.broker.destroyService(catalog);
		}
	});

	test("funnel: views → cart → checkout → paid with rates", async () => {
		const res = await admin(`/api/analytics/funnel?${range()}`);
		expect(res.status).toBe(200);
		expect(res.body).toEqual({
			views: 5,
			addedToCart: 2,
			checkoutStarted: 5,
			paid: 3,
			// o5 declined in its checkout, o4's payment failed after it: started, not paid.
			checkoutFailures: { payment_declined: 1, payment_failed: 1 },
			rates: { viewToCart: 0.4, cartToCheckout: 2.5, checkoutToPaid: 0.6, viewToPaid: 0.6 },
		});
	});

	test("replaying every event an outbox keeps, also several times at once, changes nothing", async () => {
		const before = await Promise.all([admin(`/api/analytics/sales?interval=day&${range()}`), admin(`/api/analytics/top-products?${range()}`), admin(`/api/analytics/funnel?${range()}`)]);
		const statsBefore: any = await flush();
		// Views and cart additions have no outbox: nothing delivers them again (their ids are not kept once counted).
		const replayable = sent.filter(([name]) => !(LIVE_ONLY_EVENTS as readonly string[]).includes(name));
		expect(replayable.length).toBeGreaterThan(10);
		await Promise.all(replayable.flatMap(([name, payload]) => [shop.broker.emit(name, payload), shop.broker.emit(name, { ...payload })]));
		const statsAfter: any = await flush();
		expect(statsAfter.duplicates - statsBefore.duplicates).toBe(2 * replayable.length);
		expect(statsAfter.counted).toBe(statsBefore.counted);
		const after = await Promise.all([admin(`/api/analytics/sales?interval=day&${range()}`), admin(`/api/analytics/top-products?${range()}`), admin(`/api/analytics/funnel?${range()}`)]);
		expect(after.map((r) => r.body)).toEqual(before.map((r) => r.body));
	});

	test("events that arrive together share one upsert per counter; a counter stored without its id is still found", async () => {
		const hourly = (shop.broker.getLocalService("analytics") as any).db.hourly;
		// As counters were stored before they had their id: a random one.
		await hourly.insert({ bucket: "2024-06-03T10:00:00.000Z", metric: "funnel", key: "addedToCart", value: 5, step: "addedToCart", updatedAt: new Date() });
		const updateOne = jest.spyOn(hourly, "updateOne");
		try {
			await addedTogether(6, "p-x", "2024-06-03T10:20:00Z");
			// One counter moved by six events: one upsert by id (refused as a duplicate of the old counter), then one by its fields.
			expect(updateOne).toHaveBeenCalledTimes(2);
		} finally {
			updateOne.mockRestore();
		}
		const counters = await hourly.find({ bucket: "2024-06-03T10:00:00.000Z", metric: "funnel" });
		expect(counters.map((c: any) => [c.key, c.value])).toEqual([["addedToCart", 11]]);
		// A new counter is stored under its id.
		await emit("cart.item_added", { userId: "u9", cartId: "c9", variantId: "p-x-v0", productId: "p-x", quantity: 1, occurredAt: "2024-06-03T11:05:00Z" });
		await flush();
		expect(await hourly.findById("2024-06-03T11:00:00.000Z|funnel|addedToCart")).toMatchObject({ value: 1 });
	});

	test("a batch is claimed with one insert; one that stopped half-way keeps what it stored as its own", async () => {
		const processed = (shop.broker.getLocalService("analytics") as any).db.processed_events;
		const insertMany = jest.spyOn(processed, "insertMany");
		const insert = jest.spyOn(processed, "insert");
		try {
			let before: any = await flush();
			let after = await addedTogether(5, "p-y", "2024-06-04T10:00:00Z");
			expect([insertMany.mock.calls.length, insert.mock.calls.length]).toEqual([1, 0]);
			expect(after.counted - before.counted).toBe(5);

			// As MongoDB's ordered insert does on a duplicate: what came before it is stored, then the error.
			insertMany.mockImplementationOnce(async (...args: unknown[]) => {
				const rows = args[0] as any[];
				insertMany.mockRestore();
				await processed.insertMany(rows.slice(0, 2));
				throw Object.assign(new Error("Duplicate processed_events entry"), { type: "DUPLICATE", code: 409 });
			});
			before = after;
			after = await addedTogether(4, "p-y", "2024-06-04T10:00:00Z");
			expect(after.counted - before.counted).toBe(4);
			expect(after.duplicates - before.duplicates).toBe(0);
		} finally {
			insertMany.mockRestore();
			insert.mockRestore();
		}
	});

	test("events are bucketed by occurredAt when sent: hour, day and week reports of a past range", async () => {
		const base = orderPayload("o-past", [{ productId: "p-old", name: "Old", quantity: 1, unitPrice: 1000 }], { shipping: 0 });
		await emit("order.confirmed", { ...base, occurredAt: "2024-05-06T10:15:00Z" }); // Monday
		await emit("order.confirmed", { ...base, orderId: "o-past2", currency: "EUR", occurredAt: "2024-05-08T09:00:00Z" }); // Wednesday
		await emit("payment.refunded", { orderId: "o-past", amount: 400, currency: "USD", occurredAt: "2024-05-13T08:00:00Z" }); // next Monday
		await flush();
		const q = "from=2024-05-06T00:00:00Z&to=2024-05-20T00:00:00Z";
		const hours = (await admin(`/api/analytics/sales?interval=hour&${q}`)).body;
		expect(hours.map((r: any) => [r.bucket, r.currency, r.orders, r.revenue])).toEqual([
			["2024-05-06T10:00:00.000Z", "USD", 1, 1000],
			["2024-05-08T09:00:00.000Z", "EUR", 1, 1000],
			["2024-05-13T08:00:00.000Z", "USD", 0, -400],
		]);
		const weeks = (await admin(`/api/analytics/sales?interval=week&${q}`)).body;
		expect(weeks.map((r: any) => [r.bucket, r.currency, r.orders, r.revenue])).toEqual([
			["2024-05-06T00:00:00.000Z", "EUR", 1, 1000],
			["2024-05-06T00:00:00.000Z", "USD", 1, 1000],
			["2024-05-13T00:00:00.000Z", "USD", 0, -400],
		]);
		// `to` is exclusive by hour: the refund's hour is left out.
		const upTo = (await admin(`/api/analytics/sales?interval=day&from=2024-05-06T00:00:00Z&to=2024-05-13T08:00:00Z`)).body;
		expect(upTo.map((r: any) => r.revenue)).toEqual([1000, 1000]);
	});

	test("once counted, a view or a cart addition keeps no processed row (never delivered again); an outboxed event's stays for its replays", async () => {
		await flush();
		const processed = (shop.broker.getLocalService("analytics") as any).db.processed_events;
		const before = await processed.count({ type: "order.created" });
		expect(before).toBeGreaterThan(0);
		await emit("product.viewed", { productId: "p-tee" });
		await emit("cart.item_added", { userId: "u7", cartId: "c7", variantId: "p-tee-v0", productId: "p-tee", quantity: 1 });
		await flush();
		expect(await processed.count({ type: { $in: ["product.viewed", "cart.item_added"] } })).toBe(0);
		expect(await processed.count({ type: "order.created" })).toBe(before);
		expect(await processed.count({ pending: true })).toBe(0);
	});

	test("invalid payloads are rejected and counted, never stored", async () => {
		const before: any = await flush();
		await shop.broker.emit("order.confirmed", { eventId: "bad-1", orderId: "x", items: [], total: 10.5, currency: "USD" });
		await shop.broker.emit("product.viewed", { productId: "p-tee" });
		const after: any = await flush();
		expect(after.rejected - before.rejected).toBe(2);
		expect(after.counted).toBe(before.counted);
	});

	test("admin only; bad parameters are 422 naming the field", async () => {
		expect((await shop.http.get("/api/analytics/sales")).status).toBe(401);
		expect((await shop.http.get("/api/analytics/sales", { token: customerToken() })).status).toBe(403);
		const badInterval = await admin("/api/analytics/sales?interval=month");
		expect(badInterval.status).toBe(422);
		expect(badInterval.body.data[0].field).toBe("interval");
		const backwards = await admin("/api/analytics/funnel?from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z");
		expect(backwards.status).toBe(422);
		expect(backwards.body.data[0].field).toBe("to");
		// Not a date, a day that does not exist (read as December 1st before), another format, a time without its zone.
		for (const from of ["yesterday", "2024-11-31", "March%201,%202024", "2024-05-01%2000:00", "2024-05-01T00:00:00"]) {
			const badDate = await admin(`/api/analytics/top-products?from=${from}&to=2024-05-20T00:00:00Z`);
			expect({ from, status: badDate.status, problem: badDate.body.data?.[0] }).toEqual({ from, status: 422, problem: expect.objectContaining({ field: "from", type: "isoDate" }) });
		}
		expect((await admin("/api/analytics/top-products?limit=0")).status).toBe(422);
	});

	test("business metrics in the broker's registry, counted once per event", () => {
		const metrics = shop.broker.metrics;
		const value = (name: string, labels: Record<string, string> = {}) => (metrics.getMetric(name) as any).get(labels)?.value;
		// The occurredAt test added one USD and one EUR confirmation.
		expect(value("orders_total", { status: "confirmed" })).toBe(5);
		expect(value("orders_total", { status: "pending" })).toBe(4);
		expect(value("orders_total", { status: "cancelled" })).toBe(3);
		expect(value("revenue_cents_total", { currency: "USD" })).toBe(4498 + 3424 + 3750 + 1000);
		expect(value("revenue_cents_total", { currency: "EUR" })).toBe(1000);
		expect(value("refunded_cents_total", { currency: "USD" })).toBe(3424 + 1234 + 400);
		expect(value("payment_failures_total")).toBe(1);
		expect(value("checkout_failures_total", { reason: "payment_declined" })).toBe(1);
		const checkout = (metrics.getMetric("checkout_duration_seconds") as any).get({});
		expect(checkout.count).toBe(3);
		expect(checkout.sum).toBeCloseTo(4.5);
	});
});

describe("analytics report ranges and currencies", () => {
	let shop: Shop;
	const admin = (path: string) => shop.http.get(path, { token: adminToken() });
	const emit = (name: string, payload: Record<string, unknown>) => shop.broker.emit(name, { eventId: nextId(name.split(".")[0]), ...payload });
	const paid = (orderId: string, currency: string, line: { productId: string; name: string; quantity: number; unitPrice: number }, occurredAt: string) =>
		emit("order.confirmed", { ...orderPayload(orderId, [line], { shipping: 0 }), currency, occurredAt });

	beforeAll(async () => {
		shop = await startShop({ services: [FakeUsers, "analytics"] });
		// ₩50,000 (about $36) against $363.99 and $24.99 × 2: 50000 minor units outnumber 36399.
		await paid("r-krw", "KRW", { productId: "p-socks", name: "Seoul Socks", quantity: 1, unitPrice: 50_000 }, "2025-03-03T02:50:00Z");
		await paid("r-usd1", "USD", { productId: "p-watch", name: "Watch", quantity: 1, unitPrice: 36_399 }, "2025-03-03T02:55:00Z");
		await paid("r-usd2", "USD", { productId: "p-tee", name: "Tee", quantity: 2, unitPrice: 2_499 }, "2025-03-03T03:10:00Z");
		await paid("r-kwd", "KWD", { productId: "p-lamp", name: "Lamp", quantity: 1, unitPrice: 33_331 }, "2025-03-03T03:20:00Z");
		await shop.broker.call("analytics.flush");
	});
	afterAll(() => shop.stop());

	const day = "from=2025-03-03&to=2025-03-04";

	test("top products by revenue ranks within a currency: the top `limit` of each, or of the one asked for", async () => {
		const all = await admin(`/api/analytics/top-products?${day}&limit=1`);
		expect(all.status).toBe(200);
		expect(all.body.byRevenue).toEqual([
			{ productId: "p-socks", name: "Seoul Socks", revenue: 50_000, currency: "KRW" },
			{ productId: "p-lamp", name: "Lamp", revenue: 33_331, currency: "KWD" },
			{ productId: "p-watch", name: "Watch", revenue: 36_399, currency: "USD" },
		]);
		// Units are not money: ranked across currencies as before.
		expect(all.body.byUnits).toEqual([{ productId: "p-tee", name: "Tee", units: 2 }]);

		const usd = await admin(`/api/analytics/top-products?${day}&limit=2&currency=USD`);
		expect(usd.status).toBe(200);
		expect(usd.body.byRevenue).toEqual([
			{ productId: "p-watch", name: "Watch", revenue: 36_399, currency: "USD" },
			{ productId: "p-tee", name: "Tee", revenue: 4_998, currency: "USD" },
		]);
		expect((await admin(`/api/analytics/top-products?${day}&currency=EUR`)).body.byRevenue).toEqual([]);
		// In any case, as the product list and search take it.
		expect((await admin(`/api/analytics/top-products?${day}&limit=2&currency=usd`)).body.byRevenue).toEqual(usd.body.byRevenue);
		for (const bad of ["XYZ", "US", "dollar"]) {
			const res = await admin(`/api/analytics/top-products?${day}&currency=${bad}`);
			expect(res.status).toBe(422);
			expect(res.body.data[0].field).toBe("currency");
		}
	});

	const revenueOf = async (query: string) => {
		const res = await admin(`/api/analytics/sales?interval=day&${query}`);
		expect(res.status).toBe(200);
		return res.body.map((r: any) => `${r.currency} ${r.orders} ${r.revenue}`);
	};

	test("a bound inside an hour is refused, naming it: the report would count the whole hour", async () => {
		for (const [query, field] of [
			["from=2025-03-03T02:00:00Z&to=2025-03-03T02:30:00Z", "to"],
			["from=2025-03-03T02:30:00Z&to=2025-03-03T03:00:00Z", "from"],
			["from=2025-03-03T02:30:00Z&to=2025-03-03T02:31:00Z", "from"],
			// Local midnight in India is 18:30 UTC.
			["from=2025-03-03T00:00:00%2B05:30&to=2025-03-04T00:00:00%2B05:30", "from"],
		]) {
			for (const report of ["sales", "top-products", "funnel"]) {
				const res = await admin(`/api/analytics/${report}?${query}`);
				expect({ report, query, status: res.status, field: res.body.data?.[0]?.field }).toEqual({ report, query, status: 422, field });
				expect(res.body.message).toMatch(/whole hour.*counts by the hour/);
			}
		}
	});

	test("whole hours, dates and offsets that land on an hour: adjacent ranges add up to the whole", async () => {
		expect(await revenueOf("from=2025-03-03T02:00:00Z&to=2025-03-03T03:00:00Z")).toEqual(["KRW 1 50000", "USD 1 36399"]);
		expect(await revenueOf("from=2025-03-03T03:00:00Z&to=2025-03-03T04:00:00Z")).toEqual(["KWD 1 33331", "USD 1 4998"]);
		expect(await revenueOf("from=2025-03-03T01:00:00Z&to=2025-03-03T02:00:00Z")).toEqual([]);
		expect(await revenueOf("from=2025-03-03T02:00:00Z&to=2025-03-03T04:00:00Z")).toEqual(["KRW 1 50000", "KWD 1 33331", "USD 2 41397"]);
		expect(await revenueOf(day)).toEqual(["KRW 1 50000", "KWD 1 33331", "USD 2 41397"]);
		// 04:00+01:00 is 03:00Z.
		expect(await revenueOf("from=2025-03-03T04:00:00%2B01:00&to=2025-03-03T04:00:00Z")).toEqual(["KWD 1 33331", "USD 1 4998"]);
	});

	test("a to at the end of year 9999 or later answers up to the last hour there is", async () => {
		const control = await revenueOf("from=2025-03-01&to=9999-12-31");
		expect(control).toEqual(["KRW 1 50000", "KWD 1 33331", "USD 2 41397"]);
		for (const to of ["9999-12-31T23:59:59Z", "%2B010000-01-01T00:00:00Z", "%2B010000-01-01T01:00:00Z", "%2B275760-09-13T00:00:00Z"]) {
			expect({ to, rows: await revenueOf(`from=2025-03-01&to=${to}`) }).toEqual({ to, rows: control });
		}
		const top = await admin("/api/analytics/top-products?from=2025-03-01&to=9999-12-31T23:59:59Z&currency=KRW");
		expect(top.body.byRevenue).toEqual([{ productId: "p-socks", name: "Seoul Socks", revenue: 50_000, currency: "KRW" }]);
	});
});

describe("analytics catches up with the orders and payments outboxes", () => {
	let shop: Shop;
	let svc: any;
	const DAY = 24 * HOUR;
	const twoDaysAgo = new Date(Date.now() - 2 * DAY);
	const admin = (path: string) => shop.http.get(path, { token: adminToken() });
	const sumOf = (rows: any[]) =>
		rows.reduce((acc, r) => ({ orders: acc.orders + r.orders, cancelled: acc.cancelled + r.cancelled, refunded: acc.refunded + r.refunded, revenue: acc.revenue + r.revenue }), { orders: 0, cancelled: 0, refunded: 0, revenue: 0 });
	const salesNow = async () => sumOf((await admin(`/api/analytics/sales?interval=week&${hoursAround(Date.now())}`)).body);
	const salesThen = async () => sumOf((await admin(`/api/analytics/sales?interval=day&${hoursAround(twoDaysAgo.getTime())}`)).body);
	const announce = (source: "orders" | "payments", event: string, payload: Record<string, unknown>, emittedAt?: Date) =>
		shop.broker.call<string, any>(`${source}.announce`, { event, payload, emittedAt });


	beforeAll(async () => {
		// The shop runs without analytics while customers order, cancel and get refunds.
		shop = await startShop({ services: [FakeUsers, sourceWithOutbox("orders"), sourceWithOutbox("payments")] });
		const o1 = orderPayload("c1", [{ productId: "p-tee", name: "Tee", quantity: 2, unitPrice: 1999 }]); // 4498
		const o2 = orderPayload("c2", [{ productId: "p-mug", name: "Mug", quantity: 1, unitPrice: 1250 }]); // 1750
		const o3 = orderPayload("c3", [{ productId: "p-mug", name: "Mug", quantity: 2, unitPrice: 1250 }], { shipping: 0 }); // 2500
		for (const o of [o1, o2]) {
			await announce("orders", "order.created", { ...o, status: "pending" });
			await announce("orders", "order.confirmed", o);
		}
		await announce("orders", "order.status_changed", { ...o1, status: "processing", from: "confirmed", to: "processing" });
		await announce("orders", "order.cancelled", { ...o2, status: "cancelled", reason: "customer", refundedAmount: 1750 });
		await announce("payments", "payment.refunded", { orderId: "c2", paymentId: "pay-c2", refundId: "r-c2", userId: "u1", amount: 1750, currency: "USD", totalRefunded: 1750 });
		await announce("payments", "payment.failed", { orderId: "c9", paymentId: "pay-c9", userId: "u1", amount: 999, currency: "USD", reason: "card_declined" });
		// Two days ago: counted in the hour it was emitted, not when analytics read it.
		await announce("orders", "order.confirmed", o3, twoDaysAgo);

		svc = shop.broker.createService({ name: "analytics", mixins: [AnalyticsService], settings: { catchUpDelayMs: 20, catchUpIntervalMs: 60_000 } } as unknown as ServiceSchema);
		await shop.broker.waitForServices("analytics", 10_000);
	});
	afterAll(() => shop.stop());

	test("events emitted while analytics was down are counted once it starts, each once, in the hour they were emitted", async () => {
		// Both cursors at the end of their outbox (orders: 7 events, of which the status change is not read).
		await waitFor(async () => Object.fromEntries((await svc.outboxCursors.find({})).map((c: any) => [c.id, c.seq])), (c: any) => c.orders === 7 && c.payments === 2);
		await shop.broker.call("analytics.flush");
		expect(await salesNow()).toEqual({ orders: 2, cancelled: 1, refunded: 1750, revenue: 4498 + 1750 - 1750 });
		expect(await salesThen()).toEqual({ orders: 1, cancelled: 0, refunded: 0, revenue: 2500 });
		const stats: any = await shop.broker.call("analytics.flush");
		expect(stats).toMatchObject({ counted: 8, rejected: 0 });
		const funnel = (await admin(`/api/analytics/funnel?${hoursAround(Date.now())}`)).body;
		expect(funnel).toMatchObject({ checkoutStarted: 2, paid: 2 });
	});

	test("replaying the outboxes, twice and from the start, doubles nothing", async () => {
		const before = { now: await salesNow(), then: await salesThen(), stats: (await shop.broker.call("analytics.flush")) as any };
		await svc.outboxCursors.removeMany({});
		await Promise.all([svc.catchUpAll(), svc.catchUpAll()]);
		await svc.catchUpAll();
		const stats: any = await shop.broker.call("analytics.flush");
		expect(stats.counted).toBe(before.stats.counted);
		expect(stats.duplicates - before.stats.duplicates).toBeGreaterThanOrEqual(8);
		expect(await salesNow()).toEqual(before.now);
		expect(await salesThen()).toEqual(before.then);
	});

	test("a live event is counted once: the catch-up moves the cursor past it without handing it over again", async () => {
		const before: any = await shop.broker.call("analytics.flush");
		const o4 = orderPayload("c4", [{ productId: "p-tee", name: "Tee", quantity: 1, unitPrice: 1999 }], { shipping: 0 });
		await announce("orders", "order.confirmed", o4);
		await waitFor(() => svc.outboxCursors.findById("orders"), (c: any) => c?.seq === 8);
		const after: any = await shop.broker.call("analytics.flush");
		expect(after.counted - before.counted).toBe(1);
		expect(after.received - before.received).toBe(1);
		expect(after.duplicates - before.duplicates).toBe(0);
		expect((await salesNow()).orders).toBe(3);
	});
});

describe("analytics pipeline under a burst", () => {
	let shop: Shop;
	const CAPACITY = 64;
	beforeAll(async () => {
		const Analytics = { name: "analytics", mixins: [AnalyticsService], settings: { pipeline: { capacity: CAPACITY } } } as unknown as ServiceSchema;
		shop = await startShop({ services: [FakeUsers, Analytics] });
	});
	afterAll(() => shop.stop());

	test("10,000 events: every one counted, no queue above its bound, the producers slowed down", async () => {
		const TOTAL = 10_000;
		const PRODUCERS = 16;
		let next = 0;
		const producer = async () => {
			for (let i = next++; i < TOTAL; i = next++) {
				const productId = `p${i % 25}`;
				if (i % 10 === 0) await shop.broker.emit("cart.item_added", { eventId: `burst-${i}`, productId, cartId: "c", variantId: "v", quantity: 1 });
				else await shop.broker.emit("product.viewed", { eventId: `burst-${i}`, productId });
			}
		};
		await Promise.all(Array.from({ length: PRODUCERS }, producer));
		const stats: any = await shop.broker.call("analytics.flush");

		expect(stats.received).toBe(TOTAL);
		expect(stats.counted).toBe(TOTAL);
		expect(stats.rejected + stats.duplicates).toBe(0);
		for (const stage of stats.stages) {
			expect(stage.maxQueued).toBeLessThanOrEqual(stage.capacity);
			expect(stage.failed).toBe(0);
		}
		expect(stats.stages[0].capacity).toBe(CAPACITY);
		// The queue filled up and the producers waited instead of piling events up in memory.
		expect(stats.stages[0].maxQueued).toBe(CAPACITY);
		expect(stats.stages[0].blockedPushes).toBeGreaterThan(0);
		expect(stats.stages[0].maxWaiting).toBeLessThanOrEqual(PRODUCERS);

		const funnel = await shop.http.get("/api/analytics/funnel", { token: adminToken() });
		expect(funnel.body.views).toBe(TOTAL * 0.9);
		expect(funnel.body.addedToCart).toBe(TOTAL * 0.1);
	}, 60_000);
});

describe("analytics with the real shop services", () => {
	let shop: Shop;
	const env = { ...process.env };
	beforeAll(async () => {
		process.env.ADMIN_EMAIL = "admin@shop.test";
		process.env.ADMIN_PASSWORD = "admin-password-1";
		shop = await startShop();
	});
	afterAll(async () => {
		await shop?.stop();
		process.env = env;
	});

	test("place, cancel and refund orders through the API; the reports match to the cent", async () => {
		const http = shop.http;
		const adminLogin = await http.post("/api/auth/login", { email: "admin@shop.test", password: "admin-password-1" });
		expect(adminLogin.status).toBe(200);
		const adminTok = adminLogin.body.accessToken;
		const product = await http.post(
			"/api/products",
			{ name: "Analytics Tee", price: 1999, currency: "USD", variants: [{ sku: "AN-TEE-M", name: "M", stock: 100, options: { Size: "M" } }] },
			{ token: adminTok },
		);
		expect(product.status).toBe(201);
		const productId = product.body.id;
		const variantId = product.body.variants[0].id;

		const reg = await http.post("/api/auth/register", { email: "buyer@shop.test", password: "buyer-password-1", firstName: "Bea" });
		expect(reg.status).toBe(201);
		const token = reg.body.accessToken;
		const address = await http.post("/api/me/addresses", { type: "shipping", line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, { token });
		expect(address.status).toBe(201);

		expect((await http.get(`/api/products/${productId}`)).status).toBe(200);

		const placeOrder = async (quantity: number, key: string) => {
			expect((await http.post("/api/cart/items", { variantId, quantity }, { token })).status).toBe(201);
			const res = await http.post(
				"/api/orders",
				{ shippingAddressId: address.body.id, paymentMethod: { type: "card", token: "pm_card_visa" } },
				{ token, headers: { "Idempotency-Key": key } },
			);
			expect(res.status).toBe(201);
			expect(res.body.status).toBe("confirmed");
			return res.body;
		};
		const o1 = await placeOrder(2, "an-o1");
		const o2 = await placeOrder(1, "an-o2");
		const o3 = await placeOrder(3, "an-o3");
		// A declined card: the checkout started (its order was created) and did not go through; the cart stays.
		expect((await http.post("/api/cart/items", { variantId, quantity: 1 }, { token })).status).toBe(201);
		const declined = await http.post(
			"/api/orders",
			{ shippingAddressId: address.body.id, paymentMethod: { type: "card", token: "pm_card_chargeDeclined" } },
			{ token, headers: { "Idempotency-Key": "an-declined" } },
		);
		expect(declined.status).toBe(402);

		const cancelled = await http.post(`/api/orders/${o2.id}/cancel`, {}, { token });
		expect(cancelled.status).toBe(200);
		expect(cancelled.body.status).toBe("cancelled");
		const refund = await http.post(`/api/orders/${o3.id}/refund`, { amount: 1234, reason: "damaged" }, { token: adminTok });
		expect(refund.status).toBeLessThan(300);

		await shop.broker.call("analytics.flush");
		const q = hoursAround(Date.now());
		const sales = await http.get(`/api/analytics/sales?interval=week&${q}`, { token: adminTok });
		expect(sales.status).toBe(200);
		const sum = (field: string) => sales.body.reduce((s: number, r: any) => s + r[field], 0);
		expect(sum("orders")).toBe(3);
		// o2, and the declined checkout's order (listed as cancelled by GET /orders).
		expect(sum("cancelled")).toBe(2);
		expect(sum("revenue")).toBe(o1.total + o3.total - 1234);
		expect(sum("refunded")).toBe(o2.total + 1234);

		const top = await http.get(`/api/analytics/top-products?${q}`, { token: adminTok });
		// o2 (1 unit) was cancelled: only what stayed sold counts.
		expect(top.body.byUnits).toEqual([{ productId, name: expect.any(String), units: 5 }]);

		const funnel = await http.get(`/api/analytics/funnel?${q}`, { token: adminTok });
		expect(funnel.body).toMatchObject({ views: 1, addedToCart: 4, checkoutStarted: 4, paid: 3, checkoutFailures: { payment_declined: 1 } });
	}, 60_000);
});

describe("analytics counts each event once in every counter, wherever a batch is stopped", () => {
	// One story, counted as one batch: two paid orders (one of them cancelled and refunded), a declined checkout.
	const k1 = orderPayload("k1", [{ productId: "p-tee", name: "Tee", quantity: 2, unitPrice: 1999 }, { productId: "p-mug", name: "Mug", quantity: 1, unitPrice: 1250 }], { discount: 300 }); // 5448
	const k2 = orderPayload("k2", [{ productId: "p-mug", name: "Mug", quantity: 2, unitPrice: 1250 }], { shipping: 0 }); // 2500
	const k3 = orderPayload("k3", [{ productId: "p-tee", name: "Tee", quantity: 1, unitPrice: 1999 }]);
	const STORY: Array<["orders" | "payments", string, Record<string, unknown>]> = [
		["orders", "order.created", { ...k1, status: "pending" }],
		["orders", "order.confirmed", k1],
		["orders", "order.created", { ...k2, status: "pending" }],
		["orders", "order.confirmed", k2],
		["orders", "order.cancelled", { ...k2, status: "cancelled", reason: "customer", refundedAmount: 2500, wasConfirmed: true }],
		["orders", "checkout.failed", { ...k3, status: "cancelled", reason: "payment_declined" }],
		["payments", "payment.refunded", { orderId: "k2", paymentId: "pay-k2", refundId: "r-k2", userId: "u1", amount: 2500, currency: "USD", totalRefunded: 2500 }],
		["payments", "payment.failed", { orderId: "k3", paymentId: "pay-k3", userId: "u1", amount: 2499, currency: "USD", reason: "card_declined" }],
	];
	const outboxEnd = { orders: STORY.filter(([s]) => s === "orders").length, payments: STORY.filter(([s]) => s === "payments").length };
	/** The story waits for its last event, then goes as one batch. */
	const oneBatch = { validateBatch: STORY.length, lingerMs: 10_000 };
	const dirs: string[] = [];
	const newDataDir = () => {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "analytics-batch-"));
		dirs.push(dir);
		return dir;
	};
	afterAll(() => {
		for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
	});

	/** The real analytics service on NeDB files under dataDir, so a restart finds what the last run left. */
	async function startAnalytics(shop: Shop, dataDir: string, settings: Record<string, unknown>) {
		const svc: any = withEnv({ NODE_ENV: "development", DATA_DIR: dataDir, MONGO_URI: undefined }, () =>
			shop.broker.createService({ name: "analytics", mixins: [AnalyticsService], settings } as unknown as ServiceSchema),
		);
		await shop.broker.waitForServices("analytics", 10_000, 10);
		return svc;
	}

	/**
	 * The service's store dies at its `dieAt`-th write (1: the claim, then one per counter, then the mark
	 * that the batch is counted): that write and every later one fail, as after a kill -9. With
	 * `partialClaim`, the dying claim insert stores that many rows first (as MongoDB's ordered insert can).
	 */
	function dieAtWrite(svc: any, dieAt: number, partialClaim = 0) {
		const state = { writes: [] as string[], dead: false };
		for (const coll of [svc.db.processed_events, svc.db.hourly, svc.outboxCursors]) {
			for (const method of ["insertMany", "updateOne", "updateMany", "removeOne", "removeMany"]) {
				const original = coll[method].bind(coll);
				coll[method] = async (...args: any[]) => {
					if (state.dead) throw new Error("killed");
					if (state.writes.length + 1 === dieAt) {
						state.dead = true;
						if (partialClaim && method === "insertMany") await original(args[0].slice(0, partialClaim));
						throw new Error("killed");
					}
					state.writes.push(`${coll.name}.${method}`);
					return original(...args);
				};
			}
		}
		return state;
	}

	const announceStory = async (shop: Shop) => {
		for (const [source, event, payload] of STORY) await shop.broker.call(`${source}.announce`, { event, payload });
	};

	/** The three reports, from the actions (the gateway's routes to a restarted service come back after a debounce). */
	async function reports(shop: Shop) {
		const range = { from: new Date(Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR), to: new Date(Math.ceil(Date.now() / HOUR) * HOUR + 2 * HOUR) };
		const rows = await shop.broker.call<any[], any>("analytics.sales", { ...range, interval: "week" });
		// Summed over the rows: the story may straddle the turn of a week.
		const sales = rows.reduce(
			(acc, r) => ({ orders: acc.orders + r.orders, cancelled: acc.cancelled + r.cancelled, grossRevenue: acc.grossRevenue + r.grossRevenue, refunded: acc.refunded + r.refunded, revenue: acc.revenue + r.revenue }),
			{ orders: 0, cancelled: 0, grossRevenue: 0, refunded: 0, revenue: 0 },
		);
		return { sales, top: await shop.broker.call<any, any>("analytics.topProducts", range), funnel: await shop.broker.call<any, any>("analytics.funnel", range) };
	}

	/** The story told to analytics, whose store dies at its `dieAt`-th write (never by default); then analytics starts again on the same files. */
	async function tell(dieAt = Infinity, partialClaim = 0) {
		const dataDir = newDataDir();
		const shop = await startShop({ services: [FakeUsers, sourceWithOutbox("orders"), sourceWithOutbox("payments")] });
		try {
			// No outbox read in the first run: only the live events, as one batch.
			const first = await startAnalytics(shop, dataDir, { catchUpDelayMs: 60_000, catchUpIntervalMs: 600_000, pipeline: oneBatch });
			const run = dieAtWrite(first, dieAt, partialClaim);
			await announceStory(shop);
			await shop.broker.call("analytics.flush");
			expect(run.dead).toBe(dieAt <= run.writes.length + 1);
			await shop.broker.destroyService(first);

			// Started again: what the batch left unfinished is finished, and the outboxes are read from the start.
			const second = await startAnalytics(shop, dataDir, { catchUpDelayMs: 20 });
			await waitFor(async () => Object.fromEntries((await second.outboxCursors.find({})).map((c: any) => [c.id, c.seq])), (c: any) => c.orders === outboxEnd.orders && c.payments === outboxEnd.payments);
			const stats: any = await shop.broker.call("analytics.flush");
			expect(await second.db.processed_events.count({ pending: true })).toBe(0);
			expect(await second.db.processed_events.count({})).toBe(STORY.length);
			return { writes: run.writes, stats, reports: await reports(shop) };
		} finally {
			await shop.stop();
		}
	}

	let reference: Awaited<ReturnType<typeof tell>>;
	beforeAll(async () => {
		reference = await tell();
	}, 30_000);

	test("without a crash: one claim insert, one upsert per counter, one update marking the batch counted", () => {
		const counters = 12;
		expect(reference.writes).toEqual(["processed_events.insertMany", ...Array(counters).fill("hourly.updateOne"), "processed_events.updateMany"]);
		expect(reference.reports.sales).toEqual({ orders: 2, cancelled: 2, grossRevenue: 5448 + 2500, refunded: 2500, revenue: 5448 });
		expect(reference.reports.funnel).toMatchObject({ checkoutStarted: 3, paid: 2, checkoutFailures: { payment_declined: 1 } });
		expect(reference.reports.top.byUnits).toEqual([
			{ productId: "p-tee", name: "Tee", units: 2 },
			{ productId: "p-mug", name: "Mug", units: 1 },
		]);
		// The restart's outbox read finds every event counted already.
		expect(reference.stats).toMatchObject({ counted: 0, duplicates: STORY.length, recovered: 0 });
	});

	test("killed at each write of the batch, from its claim to the mark that it is counted: the reports are the same to the cent", async () => {
		for (let dieAt = 1; dieAt <= reference.writes.length; dieAt++) {
			const crashed = await tell(dieAt);
			expect({ dieAt, ...crashed.reports }).toEqual({ dieAt, ...reference.reports });
			// Killed at the claim, every event comes again from its outbox; after it, the batch is finished from its claim rows.
			expect({ dieAt, recovered: crashed.stats.recovered, counted: crashed.stats.counted }).toEqual({ dieAt, recovered: dieAt === 1 ? 0 : STORY.length, counted: STORY.length });
		}
	}, 60_000);

	test("killed while its claim insert had stored part of the batch: those events are finished, the others counted from the outbox", async () => {
		const crashed = await tell(1, 3);
		expect(crashed.reports).toEqual(reference.reports);
		expect(crashed.stats).toMatchObject({ recovered: 3, counted: STORY.length, duplicates: 3 });
	}, 30_000);

	test("an event delivered twice whose copies fall into one count batch (from two validate batches) is counted once", async () => {
		const shop = await startShop({ services: [FakeUsers, sourceWithOutbox("orders"), sourceWithOutbox("payments")] });
		try {
			const svc = await startAnalytics(shop, newDataDir(), { catchUpDelayMs: 60_000, catchUpIntervalMs: 600_000 });
			const raw = { name: "order.confirmed", payload: { ...k1, eventId: "orders:twice-1" }, receivedAt: new Date() };
			// Each validate batch drops only its own duplicates; the count stage takes what waited, both of them.
			const waiting = [...svc.validate([raw]), ...svc.validate([{ ...raw }])];
			expect(waiting).toHaveLength(2);
			await svc.count(waiting);
			const { sales, top } = await reports(shop);
			expect(sales).toMatchObject({ orders: 1, grossRevenue: 5448 });
			expect(top.byUnits).toEqual([expect.objectContaining({ productId: "p-tee", units: 2 }), expect.objectContaining({ productId: "p-mug", units: 1 })]);
			expect(await svc.db.processed_events.count({})).toBe(1);
			expect(svc.stats()).toMatchObject({ counted: 1, duplicates: 1 });
		} finally {
			await shop.stop();
		}
	}, 30_000);

	test("a counter write that keeps failing: the same run finishes the batch before its next one, counting each event once", async () => {
		const shop = await startShop({ services: [FakeUsers, sourceWithOutbox("orders"), sourceWithOutbox("payments")] });
		try {
			// Only the redelivery by the outbox read (not the sweep) brings the next batch.
			const svc = await startAnalytics(shop, newDataDir(), { catchUpDelayMs: 20, catchUpIntervalMs: 200, recoverBatchesEveryMs: 600_000, pipeline: oneBatch });
			const updateOne = svc.db.hourly.updateOne.bind(svc.db.hourly);
			let refused = 0;
			// The revenue counter's write fails on each of its tries in the first batch.
			svc.db.hourly.updateOne = async (query: any, ...rest: any[]) => {
				if (query.metric === "revenue" && refused < 3) {
					refused++;
					throw new Error("store unavailable");
				}
				return updateOne(query, ...rest);
			};
			await announceStory(shop);
			const stats = await waitFor(() => shop.broker.call("analytics.flush") as Promise<any>, (st) => st.recovered > 0, 10_000);
			expect(refused).toBe(3);
			expect(stats).toMatchObject({ counted: STORY.length, recovered: STORY.length });
			expect(await svc.db.processed_events.count({ pending: true })).toBe(0);
			expect(await reports(shop)).toEqual(reference.reports);
		} finally {
			await shop.stop();
		}
	}, 30_000);
});
