/** Validation of the consumed events, the counters each one moves, and the reports built from them. */
import { combineIncrements, incrementsFor, normaliseEvent, type AnalyticsEvent, type Increment } from "../../lib/analytics-events";
import { funnelReport, salesReport, topProductsReport, type HourlyCounter } from "../../lib/analytics-reports";

const received = new Date("2024-05-08T13:45:00.000Z");
const HOUR = "2024-05-08T13:00:00.000Z";

const confirmed = (over: Record<string, unknown> = {}) => ({
	eventId: "orders:2",
	orderId: "o1",
	number: "1001",
	userId: "u1",
	status: "confirmed",
	items: [
		{ productId: "p1", variantId: "v1", name: "Tee", quantity: 2, unitPrice: 1500, lineTotal: 3000 },
		{ productId: "p2", variantId: "v2", name: "Mug", quantity: 1, unitPrice: 1000, lineTotal: 1000 },
	],
	subtotal: 4000,
	discount: 0,
	shipping: 500,
	total: 4500,
	currency: "usd",
	createdAt: "2024-05-08T12:59:00.000Z",
	...over,
});

function ok(name: string, payload: unknown): AnalyticsEvent {
	const res = normaliseEvent(name, payload, received);
	if (!res.ok) throw new Error(res.reason);
	return res.event;
}

describe("normaliseEvent", () => {
	test("order.confirmed: currency upper-cased, bucket from the time it reached us", () => {
		expect(ok("order.confirmed", confirmed())).toMatchObject({ type: "order.confirmed", eventId: "orders:2", currency: "USD", total: 4500, status: "confirmed", hour: HOUR });
	});

	test("occurredAt, when sent, decides the bucket; order.created and checkout.failed fall back on createdAt", () => {
		expect(ok("order.confirmed", confirmed({ occurredAt: "2024-05-01T08:30:00Z" })).hour).toBe("2024-05-01T08:00:00.000Z");
		expect(ok("order.created", { ...confirmed(), status: "pending" }).hour).toBe("2024-05-08T12:00:00.000Z");
		expect(ok("checkout.failed", { ...confirmed(), status: "cancelled", reason: "payment_declined" }).hour).toBe("2024-05-08T12:00:00.000Z");
		expect(ok("product.viewed", { eventId: "e1", productId: "p1" }).hour).toBe(HOUR);
	});

	test("the status comes from the event name", () => {
		expect(ok("order.cancelled", confirmed({ status: "whatever" }))).toMatchObject({ type: "order.cancelled", status: "cancelled" });
	});

	test.each([
		["order.confirmed", confirmed({ eventId: undefined }), /eventId/],
		["order.confirmed", confirmed({ total: 45.5 }), /total/],
		["order.confirmed", confirmed({ total: "4500" }), /total/],
		["order.confirmed", confirmed({ currency: "dollars" }), /currency/],
		["order.confirmed", confirmed({ items: [{ productId: "p1", quantity: 0, lineTotal: 0 }] }), /items\[0\]\.quantity/],
		["order.confirmed", confirmed({ items: "nope" }), /items/],
		["payment.refunded", { eventId: "e", orderId: "o1", amount: 0, currency: "USD" }, /amount/],
		["product.viewed", { eventId: "e" }, /productId/],
		["checkout.failed", { ...confirmed(), reason: "" }, /reason/],
		["cart.item_added", { eventId: "e", productId: "p", quantity: -1 }, /quantity/],
		["order.shipped", { eventId: "e" }, /not an analytics event/],
		["product.viewed", null, /object/],
	])("%s with a bad payload is rejected (%#)", (name, payload, reason) => {
		const res = normaliseEvent(name as string, payload, received);
		expect(res.ok).toBe(false);
		expect(!res.ok && res.reason).toMatch(reason as RegExp);
	});
});

const byMetric = (incs: Increment[]) => Object.fromEntries(incs.map((i) => [`${i.metric}:${i.key}`, i.value]));

describe("incrementsFor", () => {
	test("a confirmed order: count, revenue with shipping, units and revenue per product, paid step", () => {
		expect(byMetric(incrementsFor(ok("order.confirmed", confirmed())))).toEqual({
			"orders:confirmed|USD": 1,
			"revenue:USD": 4500,
			"funnel:paid": 1,
			"units:p1": 2,
			"units:p2": 1,
			"product_revenue:p1|USD": 3000,
			"product_revenue:p2|USD": 1000,
		});
	});

	test("the order discount is shared over product revenue in whole cents", () => {
		const incs = byMetric(incrementsFor(ok("order.confirmed", confirmed({ discount: 1001, total: 3499 }))));
		expect(incs["product_revenue:p1|USD"] + incs["product_revenue:p2|USD"]).toBe(4000 - 1001);
		expect(incs["product_revenue:p1|USD"]).toBe(3000 - 751);
		expect(incs["revenue:USD"]).toBe(3499);
	});

	test("only a refund lowers revenue; a cancellation counts the order by status", () => {
		// Never confirmed (its payment failed or never completed): a started checkout that did not go through, by its reason.
		expect(byMetric(incrementsFor(ok("order.cancelled", confirmed({ refundedAmount: 0, reason: "payment_failed" }))))).toEqual({ "orders:cancelled|USD": 1, "checkout_failures:payment_failed": 1 });
		expect(byMetric(incrementsFor(ok("order.cancelled", confirmed({ refundedAmount: 0 }))))).toEqual({ "orders:cancelled|USD": 1, "checkout_failures:cancelled": 1 });
		// A cancelled order that had been confirmed takes its goods back from the products, net of the same discount shares.
		expect(byMetric(incrementsFor(ok("order.cancelled", confirmed({ refundedAmount: 4500, wasConfirmed: true, discount: 400 }))))).toEqual({
			"orders:cancelled|USD": 1,
			"units:p1": -2,
			"units:p2": -1,
			"product_revenue:p1|USD": -(3000 - 300),
			"product_revenue:p2|USD": -(1000 - 100),
		});
		expect(byMetric(incrementsFor(ok("payment.refunded", { eventId: "e", orderId: "o1", amount: 1234, currency: "USD", totalRefunded: 1234 })))).toEqual({
			"revenue:USD": -1234,
			"refunds:USD": 1234,
		});
		// A payment that came after its order was cancelled was never revenue: giving it back changes none.
		expect(incrementsFor(ok("payment.refunded", { eventId: "e", orderId: "o1", amount: 1234, currency: "USD", totalRefunded: 1234, sale: false }))).toEqual([]);
	});

	test("a refund the provider failed later puts its money back into revenue and out of refunds (a sale's only)", () => {
		expect(byMetric(incrementsFor(ok("payment.refund_failed", { eventId: "e", orderId: "o1", amount: 1234, currency: "USD", totalRefunded: 0, reason: "declined" })))).toEqual({
			"revenue:USD": 1234,
			"refunds:USD": -1234,
		});
		expect(incrementsFor(ok("payment.refund_failed", { eventId: "e", orderId: "o1", amount: 1234, currency: "USD", sale: false }))).toEqual([]);
		const both = combineIncrements([
			...incrementsFor(ok("payment.refunded", { eventId: "r", orderId: "o1", amount: 900, currency: "USD" })),
			...incrementsFor(ok("payment.refund_failed", { eventId: "f", orderId: "o1", amount: 900, currency: "USD" })),
		]);
		expect(both).toEqual([]);
	});

	test.each([
		["order.created", { eventId: "e", orderId: "o", currency: "EUR", createdAt: received.toISOString() }, { "funnel:checkoutStarted": 1 }],
		["product.viewed", { eventId: "e", productId: "p9" }, { "views:p9": 1, "funnel:views": 1 }],
		["cart.item_added", { eventId: "e", productId: "p9", variantId: "v", cartId: "c", quantity: 3 }, { "funnel:addedToCart": 1 }],
		["payment.failed", { eventId: "e", orderId: "o", amount: 100, currency: "USD", reason: "declined" }, { "payment_failures:USD": 1 }],
		["checkout.failed", { ...confirmed(), status: "cancelled", reason: "insufficient_stock" }, { "funnel:checkoutStarted": 1, "checkout_failures:insufficient_stock": 1, "orders:cancelled|USD": 1 }],
	])("%s", (name, payload, expected) => expect(byMetric(incrementsFor(ok(name, payload)))).toEqual(expected));

	test("combineIncrements sums per counter and drops what nets to zero", () => {
		const incs = [
			...incrementsFor(ok("order.confirmed", confirmed())),
			...incrementsFor(ok("order.confirmed", confirmed({ eventId: "orders:3" }))),
			...incrementsFor(ok("payment.refunded", { eventId: "r", orderId: "o1", amount: 9000, currency: "USD" })),
		];
		const combined = byMetric(combineIncrements(incs));
		expect(combined["orders:confirmed|USD"]).toBe(2);
		expect(combined["units:p1"]).toBe(4);
		expect(combined["refunds:USD"]).toBe(9000);
		expect(combined).not.toHaveProperty("revenue:USD");
	});
});

describe("reports", () => {
	const c = (bucket: string, metric: HourlyCounter["metric"], key: string, value: number, dims: Partial<HourlyCounter> = {}): HourlyCounter => ({ bucket, metric, key, value, ...dims });
	const counters: HourlyCounter[] = [
		c("2024-05-06T10:00:00.000Z", "orders", "confirmed|USD", 2, { status: "confirmed", currency: "USD" }),
		c("2024-05-06T10:00:00.000Z", "revenue", "USD", 9000, { currency: "USD" }),
		c("2024-05-06T15:00:00.000Z", "orders", "cancelled|USD", 1, { status: "cancelled", currency: "USD" }),
		c("2024-05-06T15:00:00.000Z", "revenue", "USD", -4500, { currency: "USD" }),
		c("2024-05-06T15:00:00.000Z", "refunds", "USD", 4500, { currency: "USD" }),
		c("2024-05-08T09:00:00.000Z", "orders", "confirmed|EUR", 1, { status: "confirmed", currency: "EUR" }),
		c("2024-05-08T09:00:00.000Z", "revenue", "EUR", 1999, { currency: "EUR" }),
	];

	test("sales by hour, day and week, per currency, to the cent", () => {
		expect(salesReport(counters, "hour")).toEqual([
			{ bucket: "2024-05-06T10:00:00.000Z", currency: "USD", orders: 2, cancelled: 0, grossRevenue: 9000, refunded: 0, revenue: 9000 },
			{ bucket: "2024-05-06T15:00:00.000Z", currency: "USD", orders: 0, cancelled: 1, grossRevenue: 0, refunded: 4500, revenue: -4500 },
			{ bucket: "2024-05-08T09:00:00.000Z", currency: "EUR", orders: 1, cancelled: 0, grossRevenue: 1999, refunded: 0, revenue: 1999 },
		]);
		expect(salesReport(counters, "day").map((r) => [r.bucket, r.currency, r.orders, r.revenue])).toEqual([
			["2024-05-06T00:00:00.000Z", "USD", 2, 4500],
			["2024-05-08T00:00:00.000Z", "EUR", 1, 1999],
		]);
		expect(salesReport(counters, "week").map((r) => [r.bucket, r.currency, r.orders, r.cancelled, r.grossRevenue, r.refunded, r.revenue])).toEqual([
			["2024-05-06T00:00:00.000Z", "EUR", 1, 0, 1999, 0, 1999],
			["2024-05-06T00:00:00.000Z", "USD", 2, 1, 9000, 4500, 4500],
		]);
	});

	test("top products by units and by revenue, with a limit and stable ties", () => {
		const top = topProductsReport(
			[
				c("h1", "units", "p1", 2, { productId: "p1", name: "Tee" }),
				c("h2", "units", "p1", 1, { productId: "p1", name: "Tee v2" }),
				c("h1", "units", "p2", 3, { productId: "p2" }),
				c("h1", "units", "p3", 1, { productId: "p3" }),
				c("h1", "product_revenue", "p1|USD", 4500, { productId: "p1", currency: "USD", name: "Tee" }),
				c("h1", "product_revenue", "p2|USD", 3000, { productId: "p2", currency: "USD" }),
			],
			2,
		);
		expect(top.byUnits).toEqual([
			{ productId: "p1", name: "Tee v2", units: 3 },
			{ productId: "p2", name: null, units: 3 },
		]);
		expect(top.byRevenue).toEqual([
			{ productId: "p1", name: "Tee", revenue: 4500, currency: "USD" },
			{ productId: "p2", name: null, revenue: 3000, currency: "USD" },
		]);
	});

	test("a product whose sales in the range were all taken back (cancelled) does not rank", () => {
		const top = topProductsReport(
			[
				c("h1", "units", "p1", 2, { productId: "p1" }),
				c("h2", "units", "p1", -2, { productId: "p1" }),
				c("h2", "units", "p2", -1, { productId: "p2" }),
				c("h1", "units", "p3", 1, { productId: "p3" }),
				c("h1", "product_revenue", "p1|USD", 4000, { productId: "p1", currency: "USD" }),
				c("h2", "product_revenue", "p1|USD", -4000, { productId: "p1", currency: "USD" }),
				c("h1", "product_revenue", "p3|USD", 900, { productId: "p3", currency: "USD" }),
			],
			10,
		);
		expect(top.byUnits.map((r) => r.productId)).toEqual(["p3"]);
		expect(top.byRevenue.map((r) => r.productId)).toEqual(["p3"]);
	});

	describe("top products by revenue never ranks one currency against another", () => {
		// ₩50,000 (about $36) is 50000 minor units, $363.99 is 36399, KWD 33.331 is 33331.
		const mixed: HourlyCounter[] = [
			c("h1", "product_revenue", "socks|KRW", 50_000, { productId: "socks", currency: "KRW", name: "Seoul Socks" }),
			c("h1", "product_revenue", "watch|USD", 36_399, { productId: "watch", currency: "USD", name: "Watch" }),
			c("h1", "product_revenue", "tee|USD", 2_499, { productId: "tee", currency: "USD" }),
			c("h2", "product_revenue", "tee|USD", 2_499, { productId: "tee", currency: "USD" }),
			c("h1", "product_revenue", "lamp|KWD", 33_331, { productId: "lamp", currency: "KWD" }),
			c("h1", "product_revenue", "tee|EUR", 1_999, { productId: "tee", currency: "EUR" }),
			c("h1", "product_revenue", "mug|USD", 1_250, { productId: "mug", currency: "USD" }),
			c("h1", "units", "socks", 1, { productId: "socks", name: "Seoul Socks" }),
			c("h1", "units", "watch", 1, { productId: "watch", name: "Watch" }),
		];

		test("without a currency: the top `limit` of each currency, grouped by currency", () => {
			expect(topProductsReport(mixed, 1).byRevenue).toEqual([
				{ productId: "tee", name: null, revenue: 1_999, currency: "EUR" },
				{ productId: "socks", name: "Seoul Socks", revenue: 50_000, currency: "KRW" },
				{ productId: "lamp", name: null, revenue: 33_331, currency: "KWD" },
				{ productId: "watch", name: "Watch", revenue: 36_399, currency: "USD" },
			]);
			expect(topProductsReport(mixed, 2).byRevenue.map((r) => `${r.currency} ${r.productId}`)).toEqual(["EUR tee", "KRW socks", "KWD lamp", "USD watch", "USD tee"]);
		});

		test("with a currency: only its rows, its top `limit`; units are counted whatever the currency", () => {
			const usd = topProductsReport(mixed, 2, "USD");
			expect(usd.byRevenue).toEqual([
				{ productId: "watch", name: "Watch", revenue: 36_399, currency: "USD" },
				{ productId: "tee", name: null, revenue: 4_998, currency: "USD" },
			]);
			expect(usd.byUnits).toEqual(topProductsReport(mixed, 2).byUnits);
			expect(usd.byUnits.map((r) => r.productId)).toEqual(["socks", "watch"]);
			expect(topProductsReport(mixed, 5, "JPY").byRevenue).toEqual([]);
		});
	});

	test("funnel counts and rates; a zero step gives rate 0, not NaN", () => {
		const f = funnelReport([
			c("h", "funnel", "views", 200),
			c("h2", "funnel", "views", 100),
			c("h", "funnel", "addedToCart", 30),
			c("h", "funnel", "checkoutStarted", 10),
			c("h", "funnel", "paid", 7),
			c("h", "checkout_failures", "payment_declined", 2),
			c("h2", "checkout_failures", "payment_declined", 1),
			c("h", "checkout_failures", "insufficient_stock", 1),
		]);
		expect(f).toEqual({ views: 300, addedToCart: 30, checkoutStarted: 10, paid: 7, checkoutFailures: { payment_declined: 3, insufficient_stock: 1 }, rates: { viewToCart: 0.1, cartToCheckout: 0.3333, checkoutToPaid: 0.7, viewToPaid: 0.0233 } });
		expect(funnelReport([]).rates).toEqual({ viewToCart: 0, cartToCheckout: 0, checkoutToPaid: 0, viewToPaid: 0 });
	});
});
