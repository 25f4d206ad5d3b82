/**
 * Orders after checkout, with the real services behind the gateway: lists, access to other users'
 * orders (BOLA), the admin state machine, cancel, refunds, the event log (and rebuilding the order
 * from it), the late confirmation of a pending payment by Stripe's webhook, the payment news that
 * arrived while orders was down, applied when it starts and only once, and the follow-ups of a change
 * (stock, promo, refund, announcement) that a node dying half-way leaves for a replay or the recovery
 * timer to finish, each once.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Stripe from "stripe";
import type { ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { orderEventLog, rebuildOrderState } from "../../lib/order-state";
import { ServiceUnavailableError } from "../../lib/errors";
import OrdersService from "../../services/orders.service";
import { waitFor } from "../helpers/wait";
import { setEnv, withEnv } from "../helpers/env";
import { eventRecorder } from "../helpers/fakes";

const ADMIN = { email: "orders-admin@example.com", password: "Admin-Passw0rd-42!" };
const WEBHOOK_SECRET = "whsec_orders_spec";

// Each test drives several real services through HTTP on a shared, small machine.
jest.setTimeout(30_000);

describe("orders", () => {
	let shop: Shop;
	let admin: string;
	const { schema: recorder, events } = eventRecorder("orders-event-recorder", ["order.*", "payment.refunded"]);
	let restoreEnv: () => void;
	let n = 0;

	async function customer() {
		const reg = await shop.http.post("/api/auth/register", { email: `orders-${process.pid}-${++n}@example.com`, password: "Corr3ct-Horse-Battery" });
		expect(reg.status).toBe(201);
		const token: string = reg.body.accessToken;
		const addr = await shop.http.post("/api/me/addresses", { type: "shipping", line1: "2 Side St", city: "Shelbyville", postalCode: "54321", country: "US" }, { token });
		expect(addr.status).toBe(201);
		return { token, userId: reg.body.user.id as string, addressId: addr.body.id as string };
	}

	async function variant(price: number, stock: number) {
		const res = await shop.http.post("/api/products", { name: `Item ${++n}`, price, currency: "USD", variants: [{ sku: `OS-${process.pid}-${n}`, name: "Default", stock }] }, { token: admin });
		expect(res.status).toBe(201);
		return { productId: res.body.id as string, variantId: res.body.variants[0].id as string };
	}

	const stockOf = async (variantId: string) => (await shop.broker.call<any[], any>("products.getVariants", { ids: [variantId] }))[0].stock as number;
	const payment = (orderId: string) => shop.broker.call<any, any>("payments.getByOrder", { orderId });
	/** The built-in test provider the payments service charges through. */
	const provider = () => (shop.broker.getLocalService("payments") as any).provider;

	/** An order of `quantity` × a fresh product, placed through the real checkout. */
	async function placeOrder(c: Awaited<ReturnType<typeof customer>>, opts: { price?: number; quantity?: number; stock?: number; card?: string; promo?: string } = {}) {
		const v = await variant(opts.price ?? 3000, opts.stock ?? 10);
		expect((await shop.http.post("/api/cart/items", { variantId: v.variantId, quantity: opts.quantity ?? 1 }, { token: c.token })).status).toBe(201);
		if (opts.promo) expect((await shop.http.post("/api/cart/promo", { code: opts.promo }, { token: c.token })).status).toBe(200);
		const res = await shop.http.post(
			"/api/orders",
			{ shippingAddressId: c.addressId, paymentMethod: { type: "card", token: opts.card ?? "pm_card_visa" } },
			{ token: c.token, headers: { "Idempotency-Key": crypto.randomUUID() } },
		);
		expect(res.status).toBe(201);
		return { order: res.body, ...v };
	}

	const cartOf = async (c: { token: string }) => (await shop.http.get("/api/cart", { token: c.token })).body;
	const stored = (id: string) => (shop.broker.getLocalService("orders") as any).db.orders.findById(id);

	/** A new code worth 500 off, usable once. */
	async function oneUseCode(prefix: string) {
		const code = `${prefix}${process.pid}${++n}`;
		expect((await shop.http.post("/api/promotions", { code, type: "fixed", value: 500, maxUses: 1 }, { token: admin })).status).toBe(201);
		return code;
	}

	const setStatus = (id: string, body: Record<string, unknown>, token = admin) => shop.http.patch(`/api/orders/${id}/status`, body, { token });

	/** Stripe's signed webhook about the order's payment, as the provider would send it. */
	async function webhook(type: string, order: { id: string; total: number }) {
		const pay = await payment(order.id);
		const object =
			type === "payment_intent.succeeded"
				? { id: pay.providerPaymentId, object: "payment_intent", amount: order.total, metadata: { orderId: order.id } }
				: { id: pay.providerPaymentId, object: "payment_intent", last_payment_error: { message: "Authentication failed" }, metadata: { orderId: order.id } };
		const payload = JSON.stringify({ id: `evt_fu_${process.pid}_${++n}`, object: "event", type, created: Math.floor(Date.now() / 1000), data: { object } });
		const signature = new Stripe("sk_test_signer").webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET });
		expect((await shop.http.request("POST", "/api/payments/webhook", { raw: payload, headers: { "stripe-signature": signature } })).status).toBe(200);
	}

	beforeAll(async () => {
		restoreEnv = setEnv({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, STRIPE_SECRET_KEY: undefined });
		shop = await startShop({ services: ["users", "products", "cart", "orders", "payments", recorder] });
		const login = await shop.http.post("/api/auth/login", ADMIN);
		expect(login.status).toBe(200);
		admin = login.body.accessToken;
	}, 30_000);
	afterAll(async () => {
		await shop?.stop();
		restoreEnv();
	});

	test("a customer lists their own orders newest first; an admin sees all and filters by userId", async () => {
		const a = await customer();
		const b = await customer();
		const first = (await placeOrder(a)).order;
		const second = (await placeOrder(a)).order;
		const other = (await placeOrder(b)).order;

		const mine = await shop.http.get("/api/orders", { token: a.token });
		expect(mine.status).toBe(200);
		expect(mine.body).toMatchObject({ total: 2, page: 1, totalPages: 1 });
		expect(mine.body.rows.map((o: any) => o.id)).toEqual([second.id, first.id]);
		// A customer's userId filter never widens the list.
		const sneaky = await shop.http.get(`/api/orders?userId=${b.userId}`, { token: a.token });
		expect(sneaky.body.rows.map((o: any) => o.id)).toEqual([second.id, first.id]);

		const all = await shop.http.get("/api/orders?pageSize=100", { token: admin });
		expect(all.body.rows.map((o: any) => o.id)).toEqual(expect.arrayContaining([first.id, second.id, other.id]));
		const onlyB = await shop.http.get(`/api/orders?userId=${b.userId}`, { token: admin });
		expect(onlyB.body.rows.map((o: any) => o.id)).toEqual([other.id]);
		expect((await shop.http.get(`/api/orders/${other.id}`, { token: admin })).status).toBe(200);
	});

	test("BOLA: another customer gets 404 on the order, its events, cancel and refund; customers get 403 on admin routes", async () => {
		const a = await customer();
		const b = await customer();
		const { order } = await placeOrder(a);

		expect((await shop.http.get(`/api/orders/${order.id}`, { token: b.token })).status).toBe(404);
		expect((await shop.http.get(`/api/orders/${order.id}/events`, { token: b.token })).status).toBe(404);
		expect((await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: b.token })).status).toBe(404);
		expect((await shop.http.post(`/api/orders/${order.id}/refund`, { reason: "mine now" }, { token: b.token })).status).toBe(404);
		// The same answer as for an order that does not exist at all.
		expect((await shop.http.get("/api/orders/no-such-order", { token: b.token })).body).toEqual((await shop.http.get(`/api/orders/${order.id}`, { token: b.token })).body);

		expect((await setStatus(order.id, { status: "processing" }, a.token)).status).toBe(403);
		expect((await shop.http.post(`/api/orders/${order.id}/refund`, { reason: "please" }, { token: a.token })).status).toBe(403);
		expect((await shop.http.get(`/api/orders/${order.id}`)).status).toBe(401);

		const still = await shop.http.get(`/api/orders/${order.id}`, { token: a.token });
		expect(still.body).toMatchObject({ status: "confirmed", paymentStatus: "succeeded", refundedAmount: 0 });
		expect((await payment(order.id)).refunds).toEqual([]);
	});

	test("the admin moves an order along the state machine only; shipping needs a tracking number", async () => {
		const a = await customer();
		const { order, productId } = await placeOrder(a);
		const id = order.id;

		expect((await setStatus(id, { status: "shipped", trackingNumber: "1Z999" })).status).toBe(409);
		expect((await setStatus(id, { status: "cancelled" })).status).toBe(422);
		expect((await setStatus(id, { status: "processing" })).body.status).toBe("processing");
		const noTracking = await setStatus(id, { status: "shipped" });
		expect(noTracking.status).toBe(422);
		expect(noTracking.body.data).toEqual([expect.objectContaining({ field: "trackingNumber" })]);
		// Shown in email, SMS and push: one line, no bidirectional override (a disguised link read reversed).
		for (const trackingNumber of ["1Z\u202Emoc.live//:sptth\u202C", "1Z999\nCall +1 555 0100"]) {
			expect((await setStatus(id, { status: "shipped", trackingNumber })).body).toMatchObject({ code: 422, data: [expect.objectContaining({ field: "trackingNumber" })] });
		}
		expect(await shop.broker.call("orders.hasDeliveredProduct", { userId: a.userId, productId })).toEqual({ delivered: false });

		const shipped = await setStatus(id, { status: "shipped", trackingNumber: "1Z999AA10123456784" });
		expect(shipped.status).toBe(200);
		expect(shipped.body).toMatchObject({ status: "shipped", trackingNumber: "1Z999AA10123456784" });
		const cancel = await shop.http.post(`/api/orders/${id}/cancel`, {}, { token: a.token });
		expect(cancel.status).toBe(409);

		// Another tracking number with delivered would be dropped: a 422. The stored one again is no change.
		expect((await setStatus(id, { status: "delivered", trackingNumber: "OTHER-1" })).body).toMatchObject({ code: 422, data: [expect.objectContaining({ field: "trackingNumber" })] });
		expect((await setStatus(id, { status: "delivered", trackingNumber: "1Z999AA10123456784" })).body).toMatchObject({ status: "delivered", trackingNumber: "1Z999AA10123456784" });
		expect((await setStatus(id, { status: "processing" })).status).toBe(409);
		expect(await shop.broker.call("orders.hasDeliveredProduct", { userId: a.userId, productId })).toEqual({ delivered: true });
		expect(await shop.broker.call("orders.hasDeliveredProduct", { userId: "someone-else", productId })).toEqual({ delivered: false });

		const changes = events.filter((e) => e.name === "order.status_changed" && e.payload.orderId === id).map((e) => [e.payload.from, e.payload.to, e.payload.trackingNumber]);
		expect(changes).toEqual([
			["confirmed", "processing", null],
			["processing", "shipped", "1Z999AA10123456784"],
			["shipped", "delivered", "1Z999AA10123456784"],
		]);
		const log = (await shop.http.get(`/api/orders/${id}/events`, { token: a.token })).body.rows;
		expect(log.map((e: any) => e.type)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed", "processing", "shipped", "delivered"]);
		expect(log.map((e: any) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
		expect(log[6]).toMatchObject({ type: "shipped", data: { trackingNumber: "1Z999AA10123456784" }, createdAt: expect.any(String) });
		// A list in the contract's list shape, in pages like every other.
		const second = (await shop.http.get(`/api/orders/${id}/events?page=2&pageSize=3`, { token: a.token })).body;
		expect(second).toMatchObject({ total: 8, page: 2, pageSize: 3, totalPages: 3 });
		expect(second.rows.map((e: any) => e.seq)).toEqual([4, 5, 6]);
		expect((await shop.http.get(`/api/orders/${id}/events?pageSize=101`, { token: a.token })).status).toBe(422);
		const placed = (await shop.http.get(`/api/orders/${id}`, { token: a.token })).body;
		const { number, userId, items, subtotal, discount, shipping, total, currency, promoCode, shippingAddress } = placed;
		expect(log[0].data).toEqual({ number, userId, items, subtotal, discount, shipping, total, currency, promoCode, shippingAddress });
		// The log lives on the order, written by the same update as each change.
		const service = shop.broker.getLocalService("orders") as any;
		expect(await service.db.order_events.count({ orderId: id })).toBe(0);
		expect((await service.db.orders.findById(id)).events).toHaveLength(8);
	});

	test("an order stored before the log moved onto it: its old rows come first, then what was appended since", async () => {
		const a = await customer();
		const { order } = await placeOrder(a);
		const service = shop.broker.getLocalService("orders") as any;
		// As an older version stored it: the log in order_events, none on the order.
		const embedded = (await service.db.orders.findById(order.id)).events as Array<{ type: string; data: object; createdAt: Date }>;
		const createdData = (await shop.http.get(`/api/orders/${order.id}/events`, { token: a.token })).body.rows[0].data;
		await service.db.order_events.insertMany(embedded.map((e, i) => ({ orderId: order.id, seq: i + 1, type: e.type, data: i === 0 ? createdData : e.data, createdAt: e.createdAt })));
		await service.db.orders.updateOne({ id: order.id }, { $unset: { events: true } });

		expect((await setStatus(order.id, { status: "processing" })).status).toBe(200);
		const log = (await shop.http.get(`/api/orders/${order.id}/events`, { token: a.token })).body.rows;
		expect(log.map((e: any) => e.type)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed", "processing"]);
		expect(log.map((e: any) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
		expect(log[0].data).toEqual(createdData);
	});

	test("concurrent transitions: of a ship and a cancel racing, exactly one applies", async () => {
		const a = await customer();
		const { order, variantId } = await placeOrder(a, { stock: 3 });
		expect((await setStatus(order.id, { status: "processing" })).status).toBe(200);
		const [ship, cancel] = await Promise.all([setStatus(order.id, { status: "shipped", trackingNumber: "TRK-1" }), shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token })]);
		expect([ship.status, cancel.status].sort()).toEqual([200, 409]);
		const final = (await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body;
		if (ship.status === 200) {
			expect(final).toMatchObject({ status: "shipped", paymentStatus: "succeeded" });
			expect(await stockOf(variantId)).toBe(2);
		} else {
			expect(final).toMatchObject({ status: "cancelled", paymentStatus: "refunded" });
			expect(await stockOf(variantId)).toBe(3);
		}
	});

	test("the customer cancels a confirmed order: stock back, full refund, order.cancelled; once only", async () => {
		const a = await customer();
		const { order, variantId } = await placeOrder(a, { price: 2500, quantity: 2, stock: 5 });
		expect(await stockOf(variantId)).toBe(3);

		const results = await Promise.all(Array.from({ length: 5 }, () => shop.http.post(`/api/orders/${order.id}/cancel`, { reason: "changed my mind" }, { token: a.token })));
		const statuses = results.map((r) => r.status);
		expect(statuses).toContain(200);
		for (const s of statuses) expect([200, 409]).toContain(s);
		const done = results.find((r) => r.status === 200)!.body;
		expect(done).toMatchObject({ status: "cancelled", cancelReason: "customer_request" });

		const final = (await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body;
		expect(final).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: 5000 });
		expect(await stockOf(variantId)).toBe(5);
		const pay = await payment(order.id);
		expect(pay).toMatchObject({ status: "refunded", refundedAmount: 5000 });
		expect(pay.refunds).toHaveLength(1);
		const cancelled = events.filter((e) => e.name === "order.cancelled" && e.payload.orderId === order.id);
		expect(cancelled).toHaveLength(1);
		expect(cancelled[0].payload).toMatchObject({ status: "cancelled", reason: "customer_request", refundedAmount: 5000, total: 5000, userId: a.userId });

		// Asked again (a retry of an answer it lost): the cancelled order, and nothing done twice.
		const again = await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token });
		expect({ status: again.status, order: again.body.status, refunded: again.body.refundedAmount }).toEqual({ status: 200, order: "cancelled", refunded: 5000 });
		expect((await payment(order.id)).refunds).toHaveLength(1);
		expect(await stockOf(variantId)).toBe(5);
		expect(events.filter((e) => e.name === "order.cancelled" && e.payload.orderId === order.id)).toHaveLength(1);
	});

	test("a cancel interrupted by a refund failure resumes: retried by the customer, refunded once, announced once", async () => {
		const a = await customer();
		const { order, variantId } = await placeOrder(a, { price: 6000, stock: 2 });
		const payments = shop.broker.getLocalService("payments") as any;
		const down = jest.spyOn(payments, "refundOnce").mockRejectedValue(new ServiceUnavailableError("provider down"));
		const first = await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token });
		down.mockRestore();
		expect(first.status).toBe(503);
		// Cancelled and restocked already; only the money is still owed.
		expect((await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body).toMatchObject({ status: "cancelled", paymentStatus: "succeeded" });
		expect(await stockOf(variantId)).toBe(2);
		expect(events.some((e) => e.name === "order.cancelled" && e.payload.orderId === order.id)).toBe(false);

		const retry = await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token });
		expect(retry.status).toBe(200);
		expect(retry.body).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: 6000 });
		expect((await payment(order.id)).refunds).toHaveLength(1);
		expect(await stockOf(variantId)).toBe(2);
		expect(events.filter((e) => e.name === "order.cancelled" && e.payload.orderId === order.id)).toHaveLength(1);
		// A confirmed order's money was a sale: its refund is announced as one (revenue gives it back).
		const refunded = events.filter((e) => e.name === "payment.refunded" && e.payload.orderId === order.id);
		expect(refunded).toHaveLength(1);
		expect(refunded[0].payload).not.toHaveProperty("sale");
		expect((await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token })).status).toBe(200);
		expect((await payment(order.id)).refunds).toHaveLength(1);
	});

	test("an admin refund retried with its Idempotency-Key (any valid one, up to 255 characters) refunds once; an unusable key is a 400", async () => {
		const a = await customer();
		const { order } = await placeOrder(a, { price: 6000 });
		const refund = (key: string) => shop.http.post(`/api/orders/${order.id}/refund`, { amount: 1000, reason: "late delivery" }, { token: admin, headers: { "Idempotency-Key": key } });
		for (const key of ["x".repeat(300), "has space", "tab\there"]) {
			expect((await refund(key)).body).toMatchObject({ code: 400, type: "IDEMPOTENCY_KEY_INVALID" });
		}
		for (const key of ["short-key", "k".repeat(255)]) {
			const first = await refund(key);
			expect(first).toMatchObject({ status: 200, body: { amount: 1000, status: "succeeded" } });
			expect((await refund(key)).body).toMatchObject({ id: first.body.id, amount: 1000 });
		}
		expect(await payment(order.id)).toMatchObject({ refundedAmount: 2000 });
	});

	test("a retried refund whose first answer was lost gets that refund (200), also once nothing is left to refund", async () => {
		const a = await customer();
		const { order } = await placeOrder(a, { price: 6000 });
		const refund = (key: string, body: Record<string, unknown>) => shop.http.post(`/api/orders/${order.id}/refund`, body, { token: admin, headers: { "Idempotency-Key": key } });
		const total = order.total as number;
		// The rest but 1000, then the last 1000 under another key: the order is fully refunded.
		const most = await refund("most", { amount: total - 1000, reason: "damaged" });
		expect(most).toMatchObject({ status: 200, body: { amount: total - 1000 } });
		const last = await refund("last", { reason: "the rest" });
		expect(last).toMatchObject({ status: 200, body: { amount: 1000 } });

		// Both retried: each gets its own refund, not "nothing to refund" or "at most 0".
		expect(await refund("most", { amount: total - 1000, reason: "damaged" })).toMatchObject({ status: 200, body: { id: most.body.id, amount: total - 1000 } });
		expect(await refund("last", { reason: "the rest" })).toMatchObject({ status: 200, body: { id: last.body.id, amount: 1000 } });
		// A new key has nothing left to refund; a used key with another amount is another refund.
		expect((await refund("new", { amount: 1, reason: "more" })).status).toBe(409);
		expect((await refund("last", { amount: 5, reason: "the rest" })).body).toMatchObject({ code: 409, type: "IDEMPOTENCY_KEY_REUSED" });
		expect(await payment(order.id)).toMatchObject({ refundedAmount: total, refunds: [expect.anything(), expect.anything()] });
		expect((await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body).toMatchObject({ paymentStatus: "refunded", refundedAmount: total });
	});

	test("an admin's cancel note is the shop's: admins see it in the log, the customer does not; a customer's own note is theirs", async () => {
		const a = await customer();
		const byShop = (await placeOrder(a)).order;
		expect((await shop.http.post(`/api/orders/${byShop.id}/cancel`, { reason: "suspected fraud" }, { token: admin })).status).toBe(200);
		const cancelledEntry = async (id: string, token: string) => (await shop.http.get(`/api/orders/${id}/events`, { token })).body.rows.find((e: any) => e.type === "cancelled").data;
		expect(await cancelledEntry(byShop.id, admin)).toEqual({ reason: "cancelled_by_shop", note: "suspected fraud", by: "admin" });
		expect(await cancelledEntry(byShop.id, a.token)).toEqual({ reason: "cancelled_by_shop", by: "admin" });

		const byCustomer = (await placeOrder(a)).order;
		expect((await shop.http.post(`/api/orders/${byCustomer.id}/cancel`, { reason: "ordered twice" }, { token: a.token })).status).toBe(200);
		expect(await cancelledEntry(byCustomer.id, a.token)).toEqual({ reason: "customer_request", note: "ordered twice", by: "customer" });
	});

	test("admin refunds: partial then the rest, never above what was paid; payment status follows; the log rebuilds the order", async () => {
		const a = await customer();
		const { order } = await placeOrder(a, { price: 6000 });
		const refund = (body: Record<string, unknown>) => shop.http.post(`/api/orders/${order.id}/refund`, body, { token: admin });

		const partial = await refund({ amount: 1500, reason: "scratched box" });
		expect(partial.status).toBe(200);
		expect(partial.body).toMatchObject({ orderId: order.id, amount: 1500, status: "succeeded" });
		let current = (await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body;
		expect(current).toMatchObject({ status: "confirmed", paymentStatus: "partially_refunded", refundedAmount: 1500 });

		const tooMuch = await refund({ amount: 4501, reason: "oops" });
		expect(tooMuch.status).toBe(422);
		expect(tooMuch.body.data).toEqual([expect.objectContaining({ field: "amount" })]);
		expect((await refund({ amount: 100 })).status).toBe(422);

		const rest = await refund({ reason: "returned" });
		expect(rest.body).toMatchObject({ amount: 4500, status: "succeeded" });
		current = (await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body;
		expect(current).toMatchObject({ paymentStatus: "refunded", refundedAmount: 6000 });
		expect((await refund({ amount: 1, reason: "more" })).status).toBe(409);
		expect(await payment(order.id)).toMatchObject({ status: "refunded", refundedAmount: 6000 });

		const log = (await shop.http.get(`/api/orders/${order.id}/events`, { token: a.token })).body.rows;
		expect(log.filter((e: any) => e.type === "refunded").map((e: any) => e.data.amount)).toEqual([1500, 4500]);
		// Whichever records a refund first (the action, or the payment.refunded event), the reason given is
		// kept. It is the shop's note: its admins see it in the log, the customer does not.
		const adminLog = (await shop.http.get(`/api/orders/${order.id}/events`, { token: admin })).body.rows;
		expect(adminLog.filter((e: any) => e.type === "refunded").map((e: any) => e.data.reason)).toEqual(["scratched box", "returned"]);
		expect(log.filter((e: any) => e.type === "refunded").map((e: any) => Object.keys(e.data).sort())).toEqual([["amount", "refundId"], ["amount", "refundId"]]);
		const rebuilt = rebuildOrderState(log);
		const stored = current;
		expect(rebuilt).toMatchObject({
			number: stored.number,
			userId: stored.userId,
			status: stored.status,
			paymentStatus: stored.paymentStatus,
			items: stored.items,
			subtotal: stored.subtotal,
			discount: stored.discount,
			shipping: stored.shipping,
			total: stored.total,
			currency: stored.currency,
			promoCode: stored.promoCode,
			refundedAmount: stored.refundedAmount,
			trackingNumber: stored.trackingNumber,
			cancelReason: stored.cancelReason,
		});
	});

	test("a payment left pending at checkout is confirmed by Stripe's webhook", async () => {
		const a = await customer();
		const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", stock: 4 });
		expect(order).toMatchObject({ status: "pending", paymentStatus: "pending" });
		expect(await stockOf(variantId)).toBe(3);
		expect(events.some((e) => e.name === "order.confirmed" && e.payload.orderId === order.id)).toBe(false);

		await webhook("payment_intent.succeeded", order);

		const confirmed = (await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body;
		expect(confirmed).toMatchObject({ status: "confirmed", paymentStatus: "succeeded" });
		expect(events.filter((e) => e.name === "order.confirmed" && e.payload.orderId === order.id)).toHaveLength(1);
		const log = (await shop.http.get(`/api/orders/${order.id}/events`, { token: a.token })).body.rows;
		expect(log.map((e: any) => e.type)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed"]);
		expect(rebuildOrderState(log)).toMatchObject({ status: "confirmed", paymentStatus: "succeeded", paidAmount: order.total });
	});

	test("a payment never completed: past its time the order is cancelled, its stock freed and its payment stopped at the provider", async () => {
		const orders = shop.broker.getLocalService("orders") as any;
		const a = await customer();
		const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", stock: 4 });
		expect(await stockOf(variantId)).toBe(3);
		// Younger than the limit: kept.
		expect(await orders.expireUnpaid(60_000)).toBe(0);
		expect((await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body.status).toBe("pending");

		expect(await orders.expireUnpaid(0)).toBeGreaterThanOrEqual(1);
		const expired = (await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body;
		expect(expired).toMatchObject({ status: "cancelled", cancelReason: "payment_timeout", paymentStatus: "cancelled", refundedAmount: 0 });
		expect(await stockOf(variantId)).toBe(4);
		// Stopped at the provider: completing 3-D Secure now takes no money, and nothing is owed back.
		const pay = await payment(order.id);
		expect(pay).toMatchObject({ status: "failed", voided: true, failureReason: expect.stringMatching(/^Canceled/) });
		expect(provider().charges.get(pay.providerPaymentId).status).toBe("canceled");
		expect(events.filter((e) => e.name === "order.cancelled" && e.payload.orderId === order.id)).toHaveLength(1);
		const log = (await shop.http.get(`/api/orders/${order.id}/events`, { token: a.token })).body.rows;
		expect(rebuildOrderState(log)).toMatchObject({ status: "cancelled", paymentStatus: "cancelled" });
		// Done once: a second sweep finds nothing of it.
		await orders.expireUnpaid(0);
		expect(events.filter((e) => e.name === "order.cancelled" && e.payload.orderId === order.id)).toHaveLength(1);
	});

	test("a customer who completes 3-D Secure just before the order expires is refunded: the provider refuses the cancel, the money goes back once", async () => {
		const orders = shop.broker.getLocalService("orders") as any;
		const a = await customer();
		const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", stock: 4 });
		// Paid at the provider; its webhook is still on its way.
		provider().completeAuthentication((await payment(order.id)).providerPaymentId);

		expect(await orders.expireUnpaid(0)).toBeGreaterThanOrEqual(1);
		const after = await waitFor(async () => (await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body, (o: any) => o.paymentStatus === "refunded");
		expect(after).toMatchObject({ status: "cancelled", cancelReason: "payment_timeout", refundedAmount: order.total });
		expect(await stockOf(variantId)).toBe(4);
		// The webhook arrives late: nothing more happens.
		await webhook("payment_intent.succeeded", order);
		expect((await payment(order.id)).refunds).toHaveLength(1);
		expect((await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body).toMatchObject({ paymentStatus: "refunded", refundedAmount: order.total });
	});

	test("the customer's cancel of an order waiting for 3-D Secure stops its payment too", async () => {
		const a = await customer();
		const { order } = await placeOrder(a, { card: "pm_card_authenticationRequired" });
		const res = await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token });
		expect(res.status).toBe(200);
		// Before: "failed", though nothing failed: the payment was stopped with the order, and took nothing.
		expect(res.body).toMatchObject({ status: "cancelled", paymentStatus: "cancelled", refundedAmount: 0 });
		expect(provider().charges.get((await payment(order.id)).providerPaymentId).status).toBe("canceled");
		// The customer chose to cancel: nothing comes back into the cart.
		expect((await cartOf(a)).items).toEqual([]);
	});

	describe("a cancel's follow-ups nobody drives any more are driven within seconds, not after the stale window", () => {
		const orders = () => shop.broker.getLocalService("orders") as any;
		/** As if the order last moved `ms` ago. */
		const idle = (id: string, ms: number) => orders().db.orders.updateOne({ id }, { $set: { updatedAt: new Date(Date.now() - ms) } });

		test("its request failed (the refund's provider was down): the next scan refunds once the order has been still for a few seconds", async () => {
			const payments = shop.broker.getLocalService("payments") as any;
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { stock: 3 });
			const down = jest.spyOn(payments, "refundOnce").mockRejectedValue(new ServiceUnavailableError("provider down"));
			try {
				expect((await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token })).status).toBe(503);
			} finally {
				down.mockRestore();
			}
			expect(await stored(order.id)).toMatchObject({ status: "cancelled", pendingActions: ["refund", "announceCancelled"], followUpLease: null });
			// Just failed: the customer's own retry may come; the scan waits a few seconds.
			await orders().driveAbandonedFollowUps();
			expect((await stored(order.id)).pendingActions).toEqual(["refund", "announceCancelled"]);
			await idle(order.id, 6000);
			// Still down at the scan: it backs off rather than asking the provider again every 5 s.
			const stillDown = jest.spyOn(payments, "refundOnce").mockRejectedValue(new ServiceUnavailableError("provider down"));
			await orders().driveAbandonedFollowUps();
			await orders().driveAbandonedFollowUps();
			expect(stillDown).toHaveBeenCalledTimes(1);
			stillDown.mockRestore();
			expect(orders().followUpBackoff.get(order.id)).toMatchObject({ tries: 1 });
			orders().followUpBackoff.get(order.id).nextAt = 0;
			await orders().driveAbandonedFollowUps();
			expect(await stored(order.id)).toMatchObject({ paymentStatus: "refunded", refundedAmount: order.total, pendingActions: [] });
			expect(orders().followUpBackoff.has(order.id)).toBe(false);
			expect((await payment(order.id)).refunds).toHaveLength(1);
			expect(await stockOf(variantId)).toBe(3);
		});

		test("its node died holding them: the lease of an earlier run of this node is let go and the follow-ups driven; a live run's is left alone", async () => {
			const svc = orders();
			const a = await customer();
			const { order } = await placeOrder(a);
			// The state a kill right after the cancel claimed its follow-ups leaves (lease for two minutes).
			const lease = new Date(Date.now() + 120_000);
			const cancelled = await svc.changeOrder(order.id, { when: { status: "confirmed" }, set: { status: "cancelled", cancelReason: "customer_request", cancelledAt: new Date() }, event: { type: "cancelled", data: { reason: "customer_request" } }, followUps: ["releaseStock", "releasePromo", "cancelPayment", "refund", "announceCancelled"] });
			expect(cancelled).toBeTruthy();
			await svc.db.orders.updateOne({ id: order.id }, { $set: { followUpLease: lease, followUpRunner: { nodeID: shop.broker.nodeID, instanceID: shop.broker.instanceID } } });
			await svc.driveAbandonedFollowUps();
			expect((await stored(order.id)).pendingActions).toHaveLength(5);
			await svc.db.orders.updateOne({ id: order.id }, { $set: { followUpRunner: { nodeID: shop.broker.nodeID, instanceID: "an-earlier-run" } } });
			await svc.driveAbandonedFollowUps();
			expect(await stored(order.id)).toMatchObject({ paymentStatus: "refunded", refundedAmount: order.total, pendingActions: [], followUpLease: null });
		});

		test("a cancel whose request ran out of time mid-way still does every follow-up (its calls outlive the deadline)", async () => {
			const products = shop.broker.getLocalService("products") as any;
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { stock: 3 });
			const release = products.releaseStock.bind(products);
			const slow = jest.spyOn(products, "releaseStock").mockImplementation(async (...args: unknown[]) => {
				await new Promise((r) => setTimeout(r, 300));
				return release(...args);
			});
			try {
				const user = { id: a.userId, role: "customer" };
				await expect(shop.broker.call("orders.cancel", { id: order.id }, { meta: { user }, timeout: 100, retries: 0 })).rejects.toMatchObject({ name: "RequestTimeoutError" });
				const after = await waitFor(() => stored(order.id), (o: any) => o.pendingActions.length === 0, 5000);
				expect(after).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: order.total });
				expect(await stockOf(variantId)).toBe(3);
			} finally {
				slow.mockRestore();
			}
		});
	});

	describe("the customer completes 3-D Secure with the order's client secret", () => {
		const authenticate = (c: { token: string }, clientSecret: unknown, outcome?: string) =>
			shop.http.post("/api/payments/test-authentication", { clientSecret, ...(outcome ? { outcome } : {}) }, { token: c.token });

		test("the checkout and the order show the secret while the payment waits; passed, the order is confirmed and a retry of the key answers it as it is now", async () => {
			const a = await customer();
			const v = await variant(2500, 4);
			expect((await shop.http.post("/api/cart/items", { variantId: v.variantId, quantity: 1 }, { token: a.token })).status).toBe(201);
			const key = crypto.randomUUID();
			const body = { shippingAddressId: a.addressId, paymentMethod: { type: "card", token: "pm_card_authenticationRequired" } };
			const placed = await shop.http.post("/api/orders", body, { token: a.token, headers: { "Idempotency-Key": key } });
			expect(placed.status).toBe(201);
			const clientSecret = placed.body.payment.clientSecret;
			expect(placed.body).toMatchObject({ status: "pending", paymentStatus: "pending", payment: { cardLast4: "3184", clientSecret: expect.stringMatching(/^pi_test_\w+_secret_\w+$/) } });
			expect((await shop.http.get(`/api/orders/${placed.body.id}`, { token: a.token })).body.payment.clientSecret).toBe(clientSecret);
			// Only the customer's: with it, anyone could complete the payment.
			expect((await shop.http.get(`/api/orders/${placed.body.id}`, { token: admin })).body.payment).not.toHaveProperty("clientSecret");
			expect((await shop.http.get(`/api/orders?userId=${a.userId}`, { token: admin })).body.rows[0].payment).not.toHaveProperty("clientSecret");
			expect((await shop.http.get("/api/orders", { token: a.token })).body.rows[0].payment.clientSecret).toBe(clientSecret);
			// Someone else's secret, or a made-up one, is no payment of theirs.
			const b = await customer();
			expect((await authenticate(b, clientSecret)).status).toBe(404);
			expect((await authenticate(a, `${clientSecret}x`)).status).toBe(404);
			expect((await authenticate(a, 42)).status).toBe(422);

			const done = await authenticate(a, clientSecret);
			expect(done.status).toBe(200);
			expect(done.body).toMatchObject({ status: "succeeded", orderId: placed.body.id });
			expect(done.body.clientSecret).toBeUndefined();
			const order = await waitFor(async () => (await shop.http.get(`/api/orders/${placed.body.id}`, { token: a.token })).body, (o: any) => o.status === "confirmed");
			expect(order).toMatchObject({ paymentStatus: "succeeded", payment: { cardLast4: "3184" } });
			expect(order.payment.clientSecret).toBeUndefined();
			expect(await stockOf(v.variantId)).toBe(3);
			// Done once: the same secret again is a 409.
			expect((await authenticate(a, clientSecret)).body).toMatchObject({ code: 409, type: "PAYMENT_NOT_WAITING" });
			// A client that lost the first answer retries the key: the order as it is now, not the pending one.
			const replay = await shop.http.post("/api/orders", body, { token: a.token, headers: { "Idempotency-Key": key } });
			expect(replay.status).toBe(200);
			expect(replay.body).toMatchObject({ id: placed.body.id, status: "confirmed", paymentStatus: "succeeded" });
		});

		test("failed: the order is cancelled and its cart given back, as by the webhook; a cancelled order's payment no longer waits", async () => {
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", stock: 4 });
			expect((await authenticate(a, order.payment.clientSecret, "failed")).body).toMatchObject({ status: "failed" });
			const cancelled = await waitFor(async () => (await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body, (o: any) => o.status === "cancelled");
			expect(cancelled).toMatchObject({ cancelReason: "payment_failed", paymentStatus: "failed" });
			await waitFor(() => cartOf(a), (c: any) => c.items.length === 1);
			expect(await stockOf(variantId)).toBe(4);

			const c = await customer();
			const other = await placeOrder(c, { card: "pm_card_authenticationRequired" });
			expect((await shop.http.post(`/api/orders/${other.order.id}/cancel`, {}, { token: c.token })).status).toBe(200);
			expect((await authenticate(c, other.order.payment.clientSecret)).status).toBe(409);
			expect((await payment(other.order.id)).status).toBe("failed");
		});
	});

	describe("a 3-D Secure payment that fails or runs out of time gives the cart back", () => {
		test("refused: the order is cancelled, its lines and code are back in the cart, and paying again works; a repeated restore changes nothing", async () => {
			const code = await oneUseCode("BACK");
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", quantity: 2, stock: 5, promo: code });
			expect(order).toMatchObject({ status: "pending", discount: 500 });
			expect((await cartOf(a)).items).toEqual([]);

			await webhook("payment_intent.payment_failed", order);
			const cart = await waitFor(() => cartOf(a), (c: any) => c.items.length > 0);
			expect(cart.items).toEqual([expect.objectContaining({ variantId, quantity: 2 })]);
			// The code's only use was given back first, so it applies again.
			expect(cart).toMatchObject({ promoCode: code, promoProblem: null, discount: 500 });
			expect(await stored(order.id)).toMatchObject({ status: "cancelled", cancelReason: "payment_failed", pendingActions: [] });

			// A follow-up may run twice (a node dying between the restore and recording it): no line doubles.
			await shop.broker.call("cart.restore", { userId: a.userId, items: [{ variantId, quantity: 2 }], promoCode: code });
			expect((await cartOf(a)).items).toEqual([expect.objectContaining({ variantId, quantity: 2 })]);

			const again = await shop.http.post("/api/orders", { shippingAddressId: a.addressId, paymentMethod: { type: "card", token: "pm_card_visa" } }, { token: a.token, headers: { "Idempotency-Key": crypto.randomUUID() } });
			expect(again.status).toBe(201);
			expect(again.body).toMatchObject({ status: "confirmed", paymentStatus: "succeeded", total: order.total });
			expect(await stockOf(variantId)).toBe(3);
		});

		test("run out of time: the lines come back within the stock left, unless the customer has checked out since", async () => {
			const orders = shop.broker.getLocalService("orders") as any;
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", quantity: 3, stock: 5 });
			// Units the customer put back meanwhile are not doubled.
			expect((await shop.http.post("/api/cart/items", { variantId, quantity: 1 }, { token: a.token })).status).toBe(201);
			const b = await customer();
			const { order: moved } = await placeOrder(b, { card: "pm_card_authenticationRequired" });
			await placeOrder(b);

			expect(await orders.expireUnpaid(0)).toBeGreaterThanOrEqual(2);
			expect(await stored(order.id)).toMatchObject({ status: "cancelled", cancelReason: "payment_timeout", pendingActions: [] });
			expect(await stored(moved.id)).toMatchObject({ status: "cancelled", cancelReason: "payment_timeout", pendingActions: [] });
			expect((await cartOf(a)).items).toEqual([expect.objectContaining({ variantId, quantity: 3 })]);
			expect((await cartOf(b)).items).toEqual([]);
		});

		test("cart.restore: each line up to what was bought within the stock now, archived products left out, a code chosen meanwhile kept", async () => {
			const a = await customer();
			const few = await variant(1000, 2);
			const gone = await variant(1000, 9);
			expect((await shop.http.delete(`/api/products/${gone.productId}`, { token: admin })).status).toBeLessThan(300);
			const code = `MINE${process.pid}${++n}`;
			expect((await shop.http.post("/api/promotions", { code, type: "fixed", value: 100 }, { token: admin })).status).toBe(201);
			expect((await shop.http.post("/api/cart/items", { variantId: few.variantId, quantity: 1 }, { token: a.token })).status).toBe(201);
			expect((await shop.http.post("/api/cart/promo", { code }, { token: a.token })).status).toBe(200);

			const res = await shop.broker.call<any, any>("cart.restore", { userId: a.userId, items: [{ variantId: few.variantId, quantity: 5 }, { variantId: gone.variantId, quantity: 1 }], promoCode: "OTHER" });
			expect(res).toEqual({ restored: 1, promoCode: false });
			const cart = await cartOf(a);
			expect(cart.items).toEqual([expect.objectContaining({ variantId: few.variantId, quantity: 2 })]);
			expect(cart.promoCode).toBe(code);
			await expect(shop.broker.call("cart.restore", { userId: a.userId, items: [] })).rejects.toMatchObject({ code: 422 });
		});

		test("cart.restore at the prices the order was placed at: a price changed since is flagged in the cart", async () => {
			const a = await customer();
			const v = await variant(1500, 5);
			await shop.broker.call("cart.restore", { userId: a.userId, items: [{ variantId: v.variantId, quantity: 1, unitPrice: 1000 }], currency: "USD" });
			expect((await cartOf(a)).items).toEqual([expect.objectContaining({ variantId: v.variantId, unitPrice: 1500, priceChanged: true, previousUnitPrice: 1000 })]);
		});
	});

	test("cancelled while the customer was completing 3-D Secure: the payment went through, is refunded once, and is announced as no sale", async () => {
		const a = await customer();
		const { order } = await placeOrder(a, { card: "pm_card_authenticationRequired" });
		const charge = provider().charges.get((await payment(order.id)).providerPaymentId);
		// The customer completed it a moment before: the provider can no longer stop it.
		jest.spyOn(provider(), "cancelPayment").mockImplementationOnce(async () => {
			charge.status = "succeeded";
			return { status: "succeeded" };
		});
		expect((await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token })).status).toBe(200);
		const settled = await waitFor(async () => (await shop.http.get(`/api/orders/${order.id}`, { token: a.token })).body, (o: any) => o.paymentStatus === "refunded");
		expect(settled).toMatchObject({ status: "cancelled", refundedAmount: order.total });
		const refunded = events.filter((e) => e.name === "payment.refunded" && e.payload.orderId === order.id);
		expect(refunded).toHaveLength(1);
		expect(refunded[0].payload).toMatchObject({ amount: order.total, sale: false });
	});

	test("three orders waiting for payment at most per customer: a fourth checkout is a 409 until one is settled or cancelled", async () => {
		const a = await customer();
		const waiting = [];
		for (let i = 0; i < 3; i++) waiting.push((await placeOrder(a, { card: "pm_card_authenticationRequired" })).order);
		const v = await variant(3000, 10);
		expect((await shop.http.post("/api/cart/items", { variantId: v.variantId, quantity: 1 }, { token: a.token })).status).toBe(201);
		const fourth = () =>
			shop.http.post("/api/orders", { shippingAddressId: a.addressId, paymentMethod: { type: "card", token: "pm_card_authenticationRequired" } }, { token: a.token, headers: { "Idempotency-Key": crypto.randomUUID() } });
		const refused = await fourth();
		expect(refused.status).toBe(409);
		expect(refused.body.type).toBe("TOO_MANY_UNPAID_ORDERS");
		expect(await stockOf(v.variantId)).toBe(10);
		// Another customer is not affected; and once one of the three is cancelled, the fourth goes through.
		expect((await placeOrder(await customer(), { card: "pm_card_authenticationRequired" })).order.status).toBe("pending");
		expect((await shop.http.post(`/api/orders/${waiting[0].id}/cancel`, {}, { token: a.token })).status).toBe(200);
		expect((await fourth()).status).toBe(201);
	});

	test("validation: unknown status values and bad refund amounts are 422", async () => {
		const a = await customer();
		const { order } = await placeOrder(a);
		expect((await setStatus(order.id, { status: "teleported" })).status).toBe(422);
		// A tracking number goes with the shipment only: with another status it is not silently dropped.
		const misplaced = await setStatus(order.id, { status: "processing", trackingNumber: "1Z999" });
		expect(misplaced.status).toBe(422);
		expect(misplaced.body.data).toEqual([expect.objectContaining({ field: "trackingNumber" })]);
		expect((await shop.http.get(`/api/orders/${order.id}`, { token: admin })).body.status).toBe("confirmed");
		expect((await shop.http.post(`/api/orders/${order.id}/refund`, { amount: 10.5, reason: "x" }, { token: admin })).status).toBe(422);
		expect((await shop.http.post(`/api/orders/${order.id}/refund`, { amount: -5, reason: "x" }, { token: admin })).status).toBe(422);
		expect((await setStatus("no-such-order", { status: "processing" })).status).toBe(404);
	});

	describe("a node dying half-way through a change: the follow-ups are finished once by a replay or the recovery timer", () => {
		const orders = () => shop.broker.getLocalService("orders") as any;
		const eventTypes = async (id: string) => orderEventLog(await stored(id)).map((e) => e.type);
		const announced = (name: string, orderId: string) => events.filter((e) => e.name === name && e.payload.orderId === orderId);
		const history = async (variantId: string) => (await shop.http.get(`/api/inventory/${variantId}/history?pageSize=100`, { token: admin })).body.rows as any[];
		const promoAvailable = (code: string) => shop.broker.call<any, any>("cart.quotePromo", { code, subtotal: 100_000 }).then(() => true, () => false);
		let spies: jest.SpyInstance[] = [];
		afterEach(() => {
			for (const s of spies) s.mockRestore();
			spies = [];
		});

		/** The node dies just before the follow-up `name`: it stays pending (every attempt fails) until `revive()`. */
		function dieBefore(name: string) {
			const svc = orders();
			const original = svc.runFollowUp;
			const spy = jest.spyOn(svc, "runFollowUp").mockImplementation((...args: any[]) => (args[2] === name ? Promise.reject(new ServiceUnavailableError("node died")) : original(...args)));
			spies.push(spy);
			return { spy, original, revive: () => spy.mockRestore() };
		}

		/** The node dies right after `event` reached the outbox (and the subscribers); it stays dead until `revive()`. */
		function dieAfterPublishing(event: string, followUp: string) {
			const svc = orders();
			const publishAll = svc.publishAll;
			let died = false;
			const crash = jest.spyOn(svc, "publishAll").mockImplementation(async (...args: any[]) => {
				const id = await publishAll(...args);
				if (!args[1].some((a: { event: string }) => a.event === event) || died) return id;
				died = true;
				throw new ServiceUnavailableError("node died");
			});
			const node = dieBefore(followUp);
			const dead = node.spy.getMockImplementation()!;
			// The first attempt gets as far as publishing; once dead, every attempt fails.
			node.spy.mockImplementation((...args: any[]) => (died ? dead(...args) : node.original(...args)));
			spies.push(crash);
			return {
				died: () => died,
				revive: () => {
					node.revive();
					crash.mockRestore();
				},
			};
		}

		/** Every payment event so far went through the outbox catch-up too (a read it started runs to its end). */
		async function catchUpSettled() {
			await orders().catchUpAll();
			await orders().catchUpAll();
		}

		/** The payments event about the order, handled again as the outbox catch-up does. */
		async function replay(event: string, orderId: string) {
			const { events: all } = await shop.broker.call<any, any>("payments.outboxSince", { after: 0, limit: 1000, events: [event] });
			const found = all.filter((e: any) => e.payload.orderId === orderId);
			expect(found).toHaveLength(1);
			await orders().onPaymentEvent(event, found[0].payload, null);
		}

		/** Everything a repeated recovery or replay must leave alone. */
		async function snapshot(order: { id: string }, variantId: string) {
			const { updatedAt: _u, ...doc } = await stored(order.id);
			return {
				doc,
				log: await eventTypes(order.id),
				stock: await stockOf(variantId),
				history: (await history(variantId)).map((r) => r.type),
				payment: await payment(order.id),
				announced: events.filter((e) => e.payload.orderId === order.id).map((e) => e.name),
			};
		}

		test("1. confirmed by the webhook, died before committing stock: a replay leaves a dead node's lease alone, recovery commits and announces once", async () => {
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", stock: 4 });
			const node = dieBefore("commitStock");

			await webhook("payment_intent.succeeded", order);
			await catchUpSettled();
			// The confirmation and what it owes are one update: the order says what is left to do.
			expect(await stored(order.id)).toMatchObject({ status: "confirmed", paymentStatus: "succeeded", pendingActions: ["commitStock", "announceConfirmed"] });
			expect(await eventTypes(order.id)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed"]);
			expect((await history(variantId)).filter((r) => r.type === "sale")).toHaveLength(0);
			expect(announced("order.confirmed", order.id)).toHaveLength(0);

			// A node that died while driving the follow-ups: until its lease runs out nobody else takes them.
			await orders().db.orders.updateOne({ id: order.id }, { $set: { followUpLease: new Date(Date.now() + 60_000) } });
			node.revive();
			await replay("payment.succeeded", order.id);
			expect((await stored(order.id)).pendingActions).toEqual(["commitStock", "announceConfirmed"]);

			await orders().db.orders.updateOne({ id: order.id }, { $set: { followUpLease: new Date(Date.now() - 1) } });
			await orders().recoverInterrupted(0);
			expect(await stored(order.id)).toMatchObject({ status: "confirmed", pendingActions: [], followUpLease: null });
			expect(await eventTypes(order.id)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed"]);
			expect((await history(variantId)).filter((r) => r.type === "sale")).toHaveLength(1);
			expect(await stockOf(variantId)).toBe(3);
			expect(announced("order.confirmed", order.id)).toHaveLength(1);
			expect(announced("order.confirmed", order.id)[0].payload).toMatchObject({ status: "confirmed", total: order.total, eventId: expect.any(String) });

			const once = await snapshot(order, variantId);
			await orders().recoverInterrupted(0);
			await replay("payment.succeeded", order.id);
			expect(await snapshot(order, variantId)).toEqual(once);
		});

		test("1b. died right after announcing order.confirmed: the replay finds it in the outbox and does not announce again", async () => {
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", stock: 4 });
			const node = dieAfterPublishing("order.confirmed", "announceConfirmed");

			await webhook("payment_intent.succeeded", order);
			await catchUpSettled();
			expect(node.died()).toBe(true);
			expect(announced("order.confirmed", order.id)).toHaveLength(1);
			expect((await stored(order.id)).pendingActions).toEqual(["announceConfirmed"]);

			node.revive();
			await replay("payment.succeeded", order.id);
			expect((await stored(order.id)).pendingActions).toEqual([]);
			expect(announced("order.confirmed", order.id)).toHaveLength(1);
			expect(await orders().outbox.find({ event: "order.confirmed", "payload.orderId": order.id })).toHaveLength(1);

			const once = await snapshot(order, variantId);
			await orders().recoverInterrupted(0);
			expect(await snapshot(order, variantId)).toEqual(once);
		});

		test("2. paid after it was cancelled, died before refunding: recovery refunds once", async () => {
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", price: 4000, stock: 4 });
			// The provider could not stop the payment (it was processing), and it went through later.
			jest.spyOn(provider(), "cancelPayment").mockResolvedValueOnce({ status: "pending" });
			const cancel = await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token });
			expect(cancel.body).toMatchObject({ status: "cancelled", paymentStatus: "pending" });
			expect(await stockOf(variantId)).toBe(4);
			const node = dieBefore("refundLatePayment");

			await webhook("payment_intent.succeeded", order);
			expect(await stored(order.id)).toMatchObject({ status: "cancelled", paymentStatus: "succeeded", paidAmount: order.total, refundedAmount: 0, pendingActions: ["refundLatePayment"] });
			await catchUpSettled();
			expect((await payment(order.id)).refunds).toEqual([]);
			expect((await stored(order.id)).pendingActions).toEqual(["refundLatePayment"]);

			node.revive();
			await orders().recoverInterrupted(0);
			expect(await stored(order.id)).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: order.total, pendingActions: [] });
			const pay = await payment(order.id);
			expect(pay.refunds).toHaveLength(1);
			expect(pay.refunds[0]).toMatchObject({ amount: order.total, status: "succeeded" });
			expect((await eventTypes(order.id)).filter((t: string) => t === "refunded")).toHaveLength(1);
			expect(announced("order.cancelled", order.id)).toHaveLength(1);
			// Never a sale (it was cancelled before the money came): analytics leaves revenue as it was.
			expect(announced("payment.refunded", order.id)).toEqual([expect.objectContaining({ payload: expect.objectContaining({ amount: order.total, sale: false }) })]);

			const once = await snapshot(order, variantId);
			await orders().recoverInterrupted(0);
			await replay("payment.succeeded", order.id);
			expect(await snapshot(order, variantId)).toEqual(once);
		});

		test("3. the payment failed: failing and cancelling are one update; died before releasing: the replay returns stock and promo once, announces once", async () => {
			const code = await oneUseCode("FU");
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", price: 4000, stock: 5, promo: code });
			expect(order).toMatchObject({ status: "pending", discount: 500 });
			expect(await promoAvailable(code)).toBe(false);
			const node = dieBefore("releaseStock");

			await webhook("payment_intent.payment_failed", order);
			await catchUpSettled();
			expect(await stored(order.id)).toMatchObject({
				status: "cancelled",
				paymentStatus: "failed",
				cancelReason: "payment_failed",
				pendingActions: ["releaseStock", "releasePromo", "cancelPayment", "refund", "restoreCart", "announceCancelled"],
			});
			expect(await stockOf(variantId)).toBe(4);
			expect(await promoAvailable(code)).toBe(false);
			expect(announced("order.cancelled", order.id)).toHaveLength(0);

			node.revive();
			await replay("payment.failed", order.id);
			expect((await stored(order.id)).pendingActions).toEqual([]);
			expect(await stockOf(variantId)).toBe(5);
			expect(await promoAvailable(code)).toBe(true);
			expect(await eventTypes(order.id)).toEqual(["created", "stock_reserved", "promo_consumed", "payment_failed", "cancelled", "stock_released", "promo_released"]);
			expect((await history(variantId)).filter((r) => r.type === "release")).toHaveLength(1);
			expect(announced("order.cancelled", order.id)).toHaveLength(1);
			expect(announced("order.cancelled", order.id)[0].payload).toMatchObject({ reason: "payment_failed", refundedAmount: 0 });
			expect(rebuildOrderState(orderEventLog(await stored(order.id)))).toMatchObject({ status: "cancelled", paymentStatus: "failed" });

			const once = await snapshot(order, variantId);
			await orders().recoverInterrupted(0);
			await replay("payment.failed", order.id);
			expect(await snapshot(order, variantId)).toEqual(once);
			expect(await promoAvailable(code)).toBe(true);
		});

		test("the customer's cancel: died after the refund, before announcing: 503, then recovery announces once with the refund", async () => {
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { price: 3500, stock: 3 });
			const node = dieBefore("announceCancelled");
			const first = await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token });
			expect(first.status).toBe(503);
			await catchUpSettled();
			expect(await stored(order.id)).toMatchObject({ status: "cancelled", paymentStatus: "refunded", pendingActions: ["announceCancelled"] });
			expect(announced("order.cancelled", order.id)).toHaveLength(0);

			node.revive();
			await orders().recoverInterrupted(0);
			expect(announced("order.cancelled", order.id)).toHaveLength(1);
			expect(announced("order.cancelled", order.id)[0].payload).toMatchObject({ reason: "customer_request", refundedAmount: order.total });
			expect((await payment(order.id)).refunds).toHaveLength(1);
			expect(await stockOf(variantId)).toBe(3);

			const once = await snapshot(order, variantId);
			await orders().recoverInterrupted(0);
			expect(await snapshot(order, variantId)).toEqual(once);
			expect((await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: a.token })).status).toBe(200);
			expect(await snapshot(order, variantId)).toEqual(once);
		});

		test("an admin status change whose announcement failed: 200, and recovery announces it once", async () => {
			const a = await customer();
			const { order, variantId } = await placeOrder(a);
			const node = dieBefore("announceProcessing");
			const res = await setStatus(order.id, { status: "processing" });
			expect(res.status).toBe(200);
			expect(res.body.status).toBe("processing");
			await catchUpSettled();
			expect(announced("order.status_changed", order.id)).toHaveLength(0);
			expect((await stored(order.id)).pendingActions).toEqual(["announceProcessing"]);

			node.revive();
			await orders().recoverInterrupted(0);
			expect(announced("order.status_changed", order.id).map((e) => [e.payload.from, e.payload.to, e.payload.trackingNumber])).toEqual([["confirmed", "processing", null]]);
			const once = await snapshot(order, variantId);
			await orders().recoverInterrupted(0);
			expect(await snapshot(order, variantId)).toEqual(once);
		});

		test("a payment settled while its checkout was interrupted: recovery finishes the checkout without announcing it twice, then confirms the order", async () => {
			const a = await customer();
			const { order, variantId } = await placeOrder(a, { card: "pm_card_authenticationRequired", stock: 4 });
			expect(announced("order.created", order.id)).toHaveLength(1);
			// The node died after publishing the order but before its journal said so.
			await orders().db.orders.updateOne({ id: order.id }, { $set: { "saga.state": "running" }, $pull: { "saga.completed": "publishOrder" } });
			// The payment news comes while the checkout looks unfinished: it cannot be applied yet.
			await webhook("payment_intent.succeeded", order);
			await catchUpSettled();
			expect(await stored(order.id)).toMatchObject({ status: "pending", paymentStatus: "pending" });

			await orders().recoverInterrupted(0);
			expect(await stored(order.id)).toMatchObject({ status: "confirmed", paymentStatus: "succeeded", pendingActions: [], saga: { state: "completed" } });
			expect(announced("order.created", order.id)).toHaveLength(1);
			expect(announced("order.confirmed", order.id)).toHaveLength(1);
			expect(await eventTypes(order.id)).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed"]);
			expect(await stockOf(variantId)).toBe(3);

			const once = await snapshot(order, variantId);
			await orders().recoverInterrupted(0);
			expect(await snapshot(order, variantId)).toEqual(once);
		});
	});
});

describe("orders catches up with the payment events it missed while it was down", () => {
	let shop: Shop;
	let dataDir: string;
	let admin: string;
	let orders: any;
	const { schema: recorder, events } = eventRecorder("orders-catch-up-recorder", ["order.*"]);
	let restoreEnv: () => void;
	let n = 0;

	/** The real orders service on files under dataDir, so a restart keeps its orders (other services stay in memory). */
	async function startOrders() {
		// Collections and config are read when the service is created.
		orders = withEnv({ NODE_ENV: "development", DATA_DIR: dataDir, MONGO_URI: undefined }, () =>
			shop.broker.createService({ name: "orders", mixins: [OrdersService as unknown as Partial<ServiceSchema>], settings: { catchUpDelayMs: 20 } }),
		);
		await shop.broker.waitForServices("orders", 10_000);
	}


	const stockOf = async (variantId: string) => (await shop.broker.call<any[], any>("products.getVariants", { ids: [variantId] }))[0].stock as number;
	const eventTypes = async (orderId: string) => orderEventLog(await orders.db.orders.findById(orderId)).map((e) => e.type);
	const announced = (name: string, orderId: string) => events.filter((e) => e.name === name && e.payload.orderId === orderId).length;

	/** A checkout through the orders action itself (the gateway's routes to a restarted service come back after a debounce). */
	async function checkout(card: string) {
		const reg = await shop.http.post("/api/auth/register", { email: `catch-up-${process.pid}-${++n}@example.com`, password: "Corr3ct-Horse-Battery" });
		const token: string = reg.body.accessToken;
		const addr = await shop.http.post("/api/me/addresses", { type: "shipping", line1: "3 Back St", city: "Ogdenville", postalCode: "11111", country: "US" }, { token });
		const product = await shop.http.post("/api/products", { name: `Catch-up ${n}`, price: 2500, currency: "USD", variants: [{ sku: `CU-${process.pid}-${n}`, name: "Default", stock: 5 }] }, { token: admin });
		const variantId: string = product.body.variants[0].id;
		expect((await shop.http.post("/api/cart/items", { variantId, quantity: 2 }, { token })).status).toBe(201);
		const order: any = await shop.broker.call(
			"orders.checkout",
			{ shippingAddressId: addr.body.id, paymentMethod: { type: "card", token: card } },
			{ meta: { user: { id: reg.body.user.id, role: "customer", sid: "s" }, idempotencyKey: crypto.randomUUID() } },
		);
		return { order, variantId };
	}

	async function webhook(type: string, object: Record<string, unknown>) {
		const payload = JSON.stringify({ id: `evt_cu_${process.pid}_${++n}`, object: "event", type, created: Math.floor(Date.now() / 1000), data: { object } });
		const signature = new Stripe("sk_test_signer").webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET });
		const hook = await shop.http.request("POST", "/api/payments/webhook", { raw: payload, headers: { "stripe-signature": signature } });
		expect(hook.status).toBe(200);
	}

	beforeAll(async () => {
		restoreEnv = setEnv({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, STRIPE_SECRET_KEY: undefined });
		dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "orders-catch-up-"));
		shop = await startShop({ services: ["users", "products", "cart", "payments", recorder] });
		admin = (await shop.http.post("/api/auth/login", ADMIN)).body.accessToken;
		await startOrders();
	}, 30_000);
	afterAll(async () => {
		await shop?.stop();
		fs.rmSync(dataDir, { recursive: true, force: true });
		restoreEnv();
	});

	test("a 3-D Secure success and failure and a refund made at Stripe while orders was down are applied when it starts; a replay changes nothing", async () => {
		const paid = await checkout("pm_card_authenticationRequired");
		const failed = await checkout("pm_card_authenticationRequired");
		const refunded = await checkout("pm_card_visa");
		expect([paid.order.status, failed.order.status, refunded.order.status]).toEqual(["pending", "pending", "confirmed"]);
		const payments = await Promise.all([paid, failed, refunded].map((x) => shop.broker.call<any, any>("payments.getByOrder", { orderId: x.order.id })));

		// orders goes down; the provider settles both 3-D Secure payments and refunds 1000 at Stripe.
		await shop.broker.destroyService(orders);
		await webhook("payment_intent.succeeded", { id: payments[0].providerPaymentId, object: "payment_intent", amount: paid.order.total, metadata: { orderId: paid.order.id } });
		await webhook("payment_intent.payment_failed", { id: payments[1].providerPaymentId, object: "payment_intent", last_payment_error: { message: "Authentication failed" }, metadata: { orderId: failed.order.id } });
		await webhook("charge.refunded", { id: "ch_cu", object: "charge", payment_intent: payments[2].providerPaymentId, amount_refunded: 1000, metadata: { orderId: refunded.order.id }, refunds: { data: [{ id: "re_cu" }] } });
		expect(events.filter((e) => e.name === "order.confirmed" || e.name === "order.cancelled").map((e) => e.payload.orderId)).toEqual([refunded.order.id]);

		await startOrders();
		const orderOf = (id: string) => orders.db.orders.findById(id);
		await waitFor(() => orderOf(paid.order.id), (o: any) => o.status === "confirmed");
		await waitFor(() => orderOf(failed.order.id), (o: any) => o.status === "cancelled" && o.pendingActions.length === 0);
		await waitFor(() => orderOf(refunded.order.id), (o: any) => o.refundedAmount === 1000);
		expect(await orderOf(paid.order.id)).toMatchObject({ paymentStatus: "succeeded", paidAmount: paid.order.total });
		expect(await orderOf(failed.order.id)).toMatchObject({ paymentStatus: "failed", cancelReason: "payment_failed" });
		expect(await orderOf(refunded.order.id)).toMatchObject({ status: "confirmed", paymentStatus: "partially_refunded" });
		expect(await stockOf(failed.variantId)).toBe(5);

		const snapshot = async () => ({
			logs: await Promise.all([paid, failed, refunded].map((x) => eventTypes(x.order.id))),
			orders: await Promise.all([paid, failed, refunded].map((x) => orderOf(x.order.id).then((o: any) => [o.status, o.paymentStatus, o.paidAmount, o.refundedAmount]))),
			stock: await Promise.all([paid, failed, refunded].map((x) => stockOf(x.variantId))),
			announced: [announced("order.confirmed", paid.order.id), announced("order.cancelled", failed.order.id), announced("order.confirmed", refunded.order.id)],
		});
		const once = await snapshot();
		expect(once.logs[0]).toEqual(["created", "stock_reserved", "payment_succeeded", "confirmed", "stock_committed"]);
		expect(once.logs[1]).toEqual(["created", "stock_reserved", "payment_failed", "cancelled", "stock_released"]);
		expect(once.logs[2].filter((t: string) => t === "refunded")).toHaveLength(1);
		expect(once.announced).toEqual([1, 1, 1]);

		// The whole payments outbox again, twice at once and once more, and a live redelivery: nothing changes.
		const [succeeded] = (await shop.broker.call<any, any>("payments.outboxSince", { after: 0, events: ["payment.succeeded"] })).events.filter((e: any) => e.payload.orderId === paid.order.id);
		await shop.broker.emit("payment.succeeded", succeeded.payload);
		await orders.outboxCursors.removeMany({});
		await Promise.all([orders.catchUpAll(), orders.catchUpAll()]);
		await orders.catchUpAll();
		expect(await snapshot()).toEqual(once);
	});
});
