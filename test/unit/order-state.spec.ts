import { Collection } from "../../mixins/collection";
import {
	sagaEndUpdate,
	announcementEvent,
	announcementOf,
	checkoutDurationMs,
	logIsEmbedded,
	orderEventLog,
	customerEventLog,
	followUpsClaimable,
	FOLLOW_UPS,
	FOLLOW_UPS_AFTER,
	ORDER_STATUSES,
	orderLinesOf,
	orderUpdate,
	OrderStateMachine,
	paymentStatusAfterRefund,
	rebuildOrderState,
	refundOwed,
	type Announcement,
	type FollowUp,
	type Order,
	type OrderChange,
	type OrderStatus,
	type OrderEvent,
} from "../../lib/order-state";

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

	test("a refund the provider failed later is no longer counted", () => {
		const paid = [created, { seq: 2, type: "payment_succeeded", data: { amount: 2599 } }, { seq: 3, type: "confirmed" }];
		const partly = rebuildOrderState([...paid, { seq: 4, type: "refunded", data: { amount: 500 } }, { seq: 5, type: "refunded", data: { amount: 300 } }, { seq: 6, type: "refund_failed", data: { amount: 500 } }]);
		expect(partly).toMatchObject({ status: "confirmed", paymentStatus: "partially_refunded", refundedAmount: 300 });
		const cancelled = rebuildOrderState([...paid, { seq: 4, type: "cancelled", data: { reason: "customer_request" } }, { seq: 5, type: "refunded", data: { amount: 2599 } }, { seq: 6, type: "refund_failed", data: { amount: 2599 } }]);
		expect(cancelled).toMatchObject({ status: "cancelled", paymentStatus: "succeeded", refundedAmount: 0 });
	});

	test("a declined checkout", () => {
		const state = rebuildOrderState([created, { seq: 2, type: "payment_failed", data: { reason: "card_declined" } }, { seq: 3, type: "stock_released" }, { seq: 4, type: "cancelled", data: { reason: "payment_declined" } }]);
		expect(state).toMatchObject({ status: "cancelled", paymentStatus: "failed", cancelReason: "payment_declined", refundedAmount: 0 });
	});

	test("a checkout cancelled before any charge: its payment cancelled, not pending", () => {
		const state = rebuildOrderState([created, { seq: 2, type: "cancelled", data: { reason: "insufficient_stock" } }, { seq: 3, type: "payment_cancelled", data: { reason: "not_charged" } }]);
		expect(state).toMatchObject({ status: "cancelled", paymentStatus: "cancelled", paidAmount: 0, cancelReason: "insufficient_stock" });
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

describe("follow-ups", () => {
	const order = (over: Partial<Order> = {}): Order =>
		({
			id: "o1",
			number: "SH-250101-0001",
			userId: "u1",
			status: "cancelled",
			paymentStatus: "succeeded",
			items: [{ productId: "p1", variantId: "v1", sku: "S", name: "Thing", variantName: "Blue", quantity: 2, unitPrice: 1000, lineTotal: 2000 }],
			subtotal: 2000,
			discount: 0,
			shipping: 599,
			total: 2599,
			currency: "USD",
			promoCode: null,
			paidAmount: 2599,
			refundedAmount: 0,
			trackingNumber: null,
			cancelReason: "customer_request",
			createdAt: new Date("2025-01-01T10:00:00Z"),
			...over,
		}) as Order;

	test.each(Object.entries(FOLLOW_UPS_AFTER))("after %s: known follow-ups, each once, announcements last", (_change, followUps) => {
		const list = [...followUps] as FollowUp[];
		for (const f of list) expect(FOLLOW_UPS).toContain(f);
		expect(new Set(list).size).toBe(list.length);
		const firstAnnouncement = list.findIndex((f) => announcementOf(f));
		if (firstAnnouncement >= 0) expect(list.slice(firstAnnouncement).every((f) => announcementOf(f))).toBe(true);
	});

	test.each([
		["announceConfirmed", "confirmed"],
		["announceCancelled", "cancelled"],
		["announceProcessing", "processing"],
		["announceShipped", "shipped"],
		["announceDelivered", "delivered"],
		["commitStock", null],
		["refund", null],
		["settlePayment", null],
	] as Array<[FollowUp, Announcement | null]>)("announcementOf(%s) = %s", (f, expected) => expect(announcementOf(f)).toBe(expected));

	test.each([
		["confirmed", {}, "order.confirmed", { status: "confirmed" }],
		["cancelled", { refundedAmount: 2599 }, "order.cancelled", { status: "cancelled", reason: "customer_request", refundedAmount: 2599 }],
		["processing", { status: "shipped", trackingNumber: "1Z" }, "order.status_changed", { status: "processing", from: "confirmed", to: "processing", trackingNumber: null }],
		["shipped", { status: "delivered", trackingNumber: "1Z" }, "order.status_changed", { status: "shipped", from: "processing", to: "shipped", trackingNumber: "1Z" }],
		["delivered", { status: "delivered", trackingNumber: "1Z" }, "order.status_changed", { status: "delivered", from: "shipped", to: "delivered", trackingNumber: "1Z" }],
	] as Array<[Announcement, Partial<Order>, string, Record<string, unknown>]>)("announcing %s, even after the order moved on", (what, over, event, fields) => {
		const a = announcementEvent(order(over), what);
		expect(a.event).toBe(event);
		expect(a.payload).toMatchObject({ orderId: "o1", number: "SH-250101-0001", userId: "u1", total: 2599, ...fields });
		// The variant's name too: order messages say which one was bought.
		expect(a.payload.items).toEqual([{ productId: "p1", variantId: "v1", name: "Thing", variantName: "Blue", quantity: 2, unitPrice: 1000, lineTotal: 2000 }]);
	});

	test.each([
		// A confirmed order's money was a sale; a payment that completed after (or while) the order was cancelled never was.
		["refund", { confirmedAt: new Date() }, { refundKey: "o1-cancel", reason: "customer_request", sale: true }],
		["refund", { confirmedAt: new Date(), cancelReason: null }, { refundKey: "o1-cancel", reason: "cancelled", sale: true }],
		["refund", { confirmedAt: new Date(), refundedAmount: 599 }, { refundKey: "o1-cancel", reason: "customer_request", sale: true }],
		["refund", {}, { refundKey: "o1-cancel", reason: "customer_request", sale: false }],
		["refund", { refundedAmount: 2599 }, null],
		["refund", { paidAmount: 0 }, null],
		["refundLatePayment", {}, { refundKey: "o1-late", reason: "order_cancelled", sale: false }],
		["refundLatePayment", { refundedAmount: 2599 }, null],
	] as Array<["refund" | "refundLatePayment", Partial<Order>, unknown]>)("refundOwed(%s, %j) = %j", (f, over, expected) => {
		expect(refundOwed(order(over), f)).toEqual(expected);
	});

	test("checkoutDurationMs: to the confirmation, or to now while unconfirmed", () => {
		const createdAt = new Date("2025-01-01T10:00:00Z");
		expect(checkoutDurationMs({ createdAt, confirmedAt: new Date("2025-01-01T10:00:02.500Z") })).toBe(2500);
		expect(checkoutDurationMs({ createdAt }, new Date("2025-01-01T10:00:01Z"))).toBe(1000);
	});

	test("orderLinesOf prices each line in integer cents", () => {
		expect(orderLinesOf([{ productId: "p", variantId: "v", name: "N", quantity: 3, unitPrice: 333 }])).toEqual([
			{ productId: "p", variantId: "v", sku: undefined, name: "N", variantName: undefined, quantity: 3, unitPrice: 333, lineTotal: 999 },
		]);
	});

	describe("one change, one update", () => {
		const now = new Date("2025-01-01T10:00:00Z");
		test.each([
			["fields only", { set: { status: "shipped" } }, { $set: { status: "shipped", updatedAt: now } }],
			["one entry", { set: { a: 1 }, event: { type: "x" } }, { $set: { a: 1, updatedAt: now }, $push: { events: { $each: [{ type: "x", data: {}, createdAt: now }] } } }],
			[
				"two entries and follow-ups",
				{ inc: { refundedAmount: 5 }, event: [{ type: "a" }, { type: "b" }], followUps: ["commitStock", "announceConfirmed"] },
				{
					$set: { updatedAt: now },
					$inc: { refundedAmount: 5 },
					$push: { events: { $each: [{ type: "a", data: {}, createdAt: now }, { type: "b", data: {}, createdAt: now }] } },
					$addToSet: { pendingActions: { $each: ["commitStock", "announceConfirmed"] } },
				},
			],
			[
				"a follow-up done",
				{ done: "commitStock", event: { type: "stock_committed", data: { n: 1 } } },
				{ $set: { updatedAt: now }, $push: { events: { $each: [{ type: "stock_committed", data: { n: 1 }, createdAt: now }] } }, $pull: { pendingActions: "commitStock" } },
			],
		] as Array<[string, OrderChange, Record<string, unknown>]>)("%s", (_what, change, expected) => {
			expect(orderUpdate(change, now)).toEqual(expected);
		});

		test("recording and completing follow-ups in one update is refused", () => {
			expect(() => orderUpdate({ followUps: ["refund"], done: "refund" }, now)).toThrow();
		});

	});

	test.each([
		["completed, nothing left", ["completed", ["publishOrder"], []], { $set: { "saga.state": "completed" }, $addToSet: { "saga.completed": { $each: ["publishOrder"] } } }],
		[
			"completed waiting for its payment",
			["completed", [], FOLLOW_UPS_AFTER.awaitingPayment],
			{ $set: { "saga.state": "completed" }, $addToSet: { "saga.completed": { $each: [] }, pendingActions: { $each: ["settlePayment"] } } },
		],
		["half undone", ["compensation_failed", ["charge"]], { $set: { "saga.state": "compensation_failed" }, $addToSet: { "saga.completed": { $each: ["charge"] } } }],
		[
			"completed with the log entry of a step that wrote nothing",
			["completed", ["commitStock", "publishOrder"], [], [{ type: "stock_committed" }], new Date(5)],
			{
				$set: { "saga.state": "completed", updatedAt: new Date(5) },
				$addToSet: { "saga.completed": { $each: ["commitStock", "publishOrder"] } },
				$push: { events: { $each: [{ type: "stock_committed", data: {}, createdAt: new Date(5) }] } },
			},
		],
	] as Array<[string, Parameters<typeof sagaEndUpdate>, Record<string, unknown>]>)("sagaEndUpdate: %s", (_what, args, expected) => {
		expect(sagaEndUpdate(...args)).toEqual(expected);
	});

	describe("the event log as the API shows it", () => {
		const t0 = new Date("2025-01-01T10:00:00Z");
		const t1 = new Date("2025-01-01T10:00:01Z");
		const fields = {
			number: "SO-1", userId: "u1", items: [{ variantId: "v", quantity: 1 }], subtotal: 900, discount: 0, shipping: 100, total: 1000,
			currency: "USD", promoCode: null, shippingAddress: { city: "Kyiv" },
		};
		const order = (events: unknown[] | undefined) => ({ id: "o1", status: "confirmed", ...fields, ...(events ? { events } : {}) }) as unknown as Order;

		test("kept on the order: numbered by position, the created entry reads the order's fields", () => {
			const o = order([{ type: "created", data: {}, createdAt: t0 }, { type: "payment_succeeded", data: { amount: 1000 }, createdAt: t1 }, { type: "confirmed", data: {}, createdAt: t1 }]);
			expect(logIsEmbedded(o)).toBe(true);
			expect(orderEventLog(o, [{ seq: 1, type: "ignored" }])).toEqual([
				{ seq: 1, type: "created", data: fields, createdAt: t0 },
				{ seq: 2, type: "payment_succeeded", data: { amount: 1000 }, createdAt: t1 },
				{ seq: 3, type: "confirmed", data: {}, createdAt: t1 },
			]);
			expect(rebuildOrderState(orderEventLog(o))).toMatchObject({ status: "confirmed", paymentStatus: "succeeded", total: 1000, number: "SO-1" });
		});

		test("an older order: its rows first, in seq order, then what was appended on the order since", () => {
			const legacy = [
				{ seq: 2, type: "confirmed", data: {}, createdAt: t0 },
				{ seq: 1, type: "created", data: { number: "SO-1", stored: true }, createdAt: t0 },
			];
			const o = order([{ type: "shipped", data: { trackingNumber: "T1" }, createdAt: t1 }]);
			expect(logIsEmbedded(o)).toBe(false);
			expect(orderEventLog(o, legacy)).toEqual([
				{ seq: 1, type: "created", data: { number: "SO-1", stored: true }, createdAt: t0 },
				{ seq: 2, type: "confirmed", data: {}, createdAt: t0 },
				{ seq: 3, type: "shipped", data: { trackingNumber: "T1" }, createdAt: t1 },
			]);
			expect(orderEventLog(order(undefined), legacy).map((e) => e.seq)).toEqual([1, 2]);
		});
	});

	test("followUpsClaimable: pending follow-ups whose lease is free, missing or expired", async () => {
		const orders = new Collection("claimable", { fields: {} }, {});
		await orders.connect();
		const now = new Date("2025-01-01T10:00:00Z");
		const rows: Array<[string, Record<string, unknown>, boolean]> = [
			["free", { pendingActions: ["refund"], followUpLease: null }, true],
			["no lease field", { pendingActions: ["refund"] }, true],
			["expired", { pendingActions: ["refund"], followUpLease: new Date(now.getTime() - 1) }, true],
			["held", { pendingActions: ["refund"], followUpLease: new Date(now.getTime() + 1) }, false],
			["nothing pending", { pendingActions: [], followUpLease: null }, false],
			["no follow-ups field", { followUpLease: null }, false],
		];
		await orders.insertMany(rows.map(([id, doc]) => ({ id, ...doc })));
		const found = (await orders.find(followUpsClaimable(now))).map((o) => o.id).sort();
		expect(found).toEqual(rows.filter(([, , ok]) => ok).map(([id]) => id).sort());
		await orders.disconnect();
	});
});

describe("the log as the customer sees it", () => {
	test("a refund's reason (the shop's note) is left out; everything else is as stored", () => {
		const at = new Date("2026-11-28T10:00:00Z");
		const log = [
			{ seq: 1, type: "created", data: { total: 1000 }, createdAt: at },
			{ seq: 2, type: "refunded", data: { refundId: "r1", amount: 500, reason: "suspected fraud" }, createdAt: at },
			{ seq: 3, type: "cancelled", data: { reason: "customer_request" }, createdAt: at },
			{ seq: 4, type: "refunded", data: { refundId: "r2", amount: 500 }, createdAt: at },
		];
		expect(customerEventLog(log)).toEqual([log[0], { ...log[1], data: { refundId: "r1", amount: 500 } }, log[2], log[3]]);
		expect(log[1].data).toHaveProperty("reason", "suspected fraud");
	});
});
