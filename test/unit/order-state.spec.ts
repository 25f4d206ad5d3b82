import { ORDER_STATUSES, OrderStateMachine, paymentStatusAfterRefund, rebuildOrderState, type OrderStatus, type OrderEvent } from "../../lib/order-state";

const allowed: Array<[OrderStatus, OrderStatus]> = [
	["pending", "confirmed"],
	["pending", "cancelled"],
	["confirmed", "processing"],
	["confirmed", "cancelled"],
	["processing", "shipped"],
	["processing", "cancelled"],
	["shipped", "delivered"],
];

describe("OrderStateMachine", () => {
	const pairs = ORDER_STATUSES.flatMap((from) => ORDER_STATUSES.map((to) => [from, to] as [OrderStatus, OrderStatus]));

	test.each(pairs)("%s → %s", (from, to) => {
		const expected = allowed.some(([f, t]) => f === from && t === to);
		expect(OrderStateMachine.canTransition(from, to)).toBe(expected);
		if (expected) expect(() => OrderStateMachine.assert(from, to, { trackingNumber: "1Z999" })).not.toThrow();
		else expect(() => OrderStateMachine.assert(from, to, { trackingNumber: "1Z999" })).toThrow(expect.objectContaining({ code: 409, type: "INVALID_TRANSITION" }));
	});

	test.each([undefined, null, "", "   "])("shipping without a tracking number (%p) is a 422 on trackingNumber", (trackingNumber) => {
		expect(OrderStateMachine.check("processing", "shipped", { trackingNumber })).toEqual({ ok: false, reason: "tracking_required" });
		expect(() => OrderStateMachine.assert("processing", "shipped", { trackingNumber })).toThrow(
			expect.objectContaining({ code: 422, data: [expect.objectContaining({ field: "trackingNumber" })] }),
		);
	});

	test("an illegal transition is 409 even without tracking", () => {
		expect(OrderStateMachine.check("pending", "shipped")).toEqual({ ok: false, reason: "illegal" });
	});

	test.each([
		["cancelled", ["pending", "confirmed", "processing"]],
		["confirmed", ["pending"]],
		["shipped", ["processing"]],
		["delivered", ["shipped"]],
		["pending", []],
	] as Array<[OrderStatus, OrderStatus[]]>)("sourcesOf(%s)", (to, sources) => {
		expect(OrderStateMachine.sourcesOf(to)).toEqual(sources);
	});

	test.each([
		["pending", true],
		["confirmed", true],
		["processing", true],
		["shipped", false],
		["delivered", false],
		["cancelled", false],
	] as Array<[OrderStatus, boolean]>)("isCancellable(%s) = %s", (status, expected) => expect(OrderStateMachine.isCancellable(status)).toBe(expected));
});

describe("paymentStatusAfterRefund", () => {
	test.each([
		[1000, 0, "succeeded"],
		[1000, 1, "partially_refunded"],
		[1000, 999, "partially_refunded"],
		[1000, 1000, "refunded"],
	])("paid %i, refunded %i → %s", (paid, refunded, expected) => expect(paymentStatusAfterRefund(paid, refunded)).toBe(expected));
});

describe("rebuildOrderState", () => {
	const created: OrderEvent = {
		seq: 1,
		type: "created",
		data: { number: "SH-250101-0001", userId: "u1", items: [{ variantId: "v1", quantity: 2, unitPrice: 1000, lineTotal: 2000 }], subtotal: 2000, discount: 0, shipping: 599, total: 2599, currency: "USD", promoCode: null },
	};

	test("a delivered, partially refunded order", () => {
		const state = rebuildOrderState([
			created,
			{ seq: 2, type: "stock_reserved", data: {} },
			{ seq: 3, type: "payment_succeeded", data: { amount: 2599 } },
			{ seq: 4, type: "confirmed" },
			{ seq: 6, type: "shipped", data: { trackingNumber: "1Z999" } },
			{ seq: 5, type: "processing" },
			{ seq: 7, type: "delivered" },
			{ seq: 8, type: "refunded", data: { amount: 599 } },
		]);
		expect(state).toMatchObject({ status: "delivered", paymentStatus: "partially_refunded", trackingNumber: "1Z999", refundedAmount: 599, paidAmount: 2599, total: 2599, number: "SH-250101-0001" });
	});

	test("a declined checkout", () => {
		const state = rebuildOrderState([created, { seq: 2, type: "payment_failed", data: { reason: "card_declined" } }, { seq: 3, type: "stock_released" }, { seq: 4, type: "cancelled", data: { reason: "payment_declined" } }]);
		expect(state).toMatchObject({ status: "cancelled", paymentStatus: "failed", cancelReason: "payment_declined", refundedAmount: 0 });
	});

	test("a cancelled and fully refunded order", () => {
		const state = rebuildOrderState([created, { seq: 2, type: "payment_succeeded", data: { amount: 2599 } }, { seq: 3, type: "confirmed" }, { seq: 4, type: "cancelled", data: { reason: "customer_request" } }, { seq: 5, type: "refunded", data: { amount: 2599 } }]);
		expect(state).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: 2599 });
	});

	test.each([
		["no created event", [{ seq: 1, type: "confirmed" }]],
		["an impossible history", [created, { seq: 2, type: "shipped", data: { trackingNumber: "x" } }]],
		["two created events", [created, { ...created, seq: 2 }]],
	] as Array<[string, OrderEvent[]]>)("refuses a log with %s", (_what, events) => {
		expect(() => rebuildOrderState(events)).toThrow();
	});
});
