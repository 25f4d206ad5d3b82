/**
 * A refund the payment provider accepted and failed later (Stripe's refund.failed: the customer's
 * card account was closed): the money stayed with the shop. The whole shop over HTTP, with the
 * built-in provider and the Stripe webhook signed as Stripe signs it.
 */
import crypto from "node:crypto";
import Stripe from "stripe";
import { startShop, type Shop } from "../helpers/shop";
import { setEnv } from "../helpers/env";
import { addToCart, checkout, createProduct, login, registerCustomer, type Customer } from "../helpers/flows";
import { waitFor } from "../helpers/wait";

const WEBHOOK_SECRET = "whsec_refund_failed_spec";
const ADMIN = { email: "refund-failed-admin@example.com", password: "refund failed admin passphrase" };

describe("a refund that fails at the provider after it was made", () => {
	let shop: Shop;
	let admin: string;
	let restoreEnv: () => void;
	let n = 0;

	beforeAll(async () => {
		restoreEnv = setEnv({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, STRIPE_SECRET_KEY: undefined });
		shop = await startShop();
		admin = await login(shop.http, ADMIN.email, ADMIN.password);
	}, 30_000);
	afterAll(async () => {
		await shop?.stop();
		restoreEnv();
	});

	const payments = () => (shop.broker.getLocalService("payments") as any).db;
	const paymentOf = (orderId: string) => shop.broker.call<any, any>("payments.getByOrder", { orderId });
	const orderOf = (c: Customer, id: string) => shop.http.get(`/api/orders/${id}`, { token: c.token }).then((r) => r.body);
	const outboxed = async (event: string, orderId: string) => (await (shop.broker.getLocalService("payments") as any).outbox.find({ event, "payload.orderId": orderId })).length;
	const messages = async (c: Customer, template: string) => ((await shop.http.get("/api/me/notifications", { token: c.token })).body.rows ?? []).filter((m: any) => m.template === template);

	/** Stripe's event about a refund (or, with `object` in it, a charge), signed; its id new unless given. */
	async function deliver(type: string, refund: Record<string, unknown>, id = `evt_rf_${process.pid}_${++n}`, created = Math.floor(Date.now() / 1000)) {
		const payload = JSON.stringify({ id, object: "event", type, created, data: { object: { object: "refund", ...refund } } });
		const signature = new Stripe("sk_test_signer").webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET });
		return shop.http.request("POST", "/api/payments/webhook", { raw: payload, headers: { "stripe-signature": signature } });
	}

	async function paidOrder(price = 3000, card = "pm_card_visa") {
		const c = await registerCustomer(shop.http);
		const { variantId } = await createProduct(shop.http, admin, { price, stock: 5 });
		await addToCart(shop.http, c.token, variantId);
		const placed = await checkout(shop.http, c, crypto.randomUUID(), card);
		expect(placed.status).toBe(201);
		return { c, order: placed.body };
	}

	/** Revenue of the days around now, as the admin's report gives it once analytics has counted what reached it. */
	const revenueNow = async () => {
		await shop.broker.call("analytics.flush");
		const DAY = 86_400_000;
		const from = new Date(Math.floor(Date.now() / DAY) * DAY - DAY).toISOString();
		const to = new Date(Math.ceil(Date.now() / DAY) * DAY + DAY).toISOString();
		const res = await shop.http.get(`/api/analytics/sales?interval=day&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`, { token: admin });
		expect(res.status).toBe(200);
		return (res.body as Array<{ revenue: number }>).reduce((sum, r) => sum + r.revenue, 0);
	};

	test("of a cancelled order (pm_card_refundFail): the payment and the order count it off, revenue gets it back, the customer is told; refunded again, it fails again", async () => {
		const { c, order } = await paidOrder(3000, "pm_card_refundFail");
		const warn = jest.spyOn((shop.broker.getLocalService("payments") as any).logger, "warn");
		await waitFor(() => messages(c, "order-confirmed"), (m) => m.length === 1);
		const revenueBefore = await waitFor(() => revenueNow(), (r) => r >= order.total);
		const cancelled = await shop.http.post(`/api/orders/${order.id}/cancel`, {}, { token: c.token });
		expect(cancelled.status).toBe(200);
		// Accepted by the provider (pending): counted as refunded until it fails.
		expect(cancelled.body).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: order.total });

		// The built-in provider fails it a moment later, as Stripe's refund.failed would tell it.
		const pay = await waitFor(() => paymentOf(order.id), (p) => p.refunds[0]?.status === "failed");
		expect(pay).toMatchObject({ status: "succeeded", refundedAmount: 0, refunds: [expect.objectContaining({ amount: order.total, failedLater: "expired_or_canceled_card" })] });
		const after = await waitFor(() => orderOf(c, order.id), (o) => o.refundedAmount === 0);
		expect(after).toMatchObject({ status: "cancelled", paymentStatus: "succeeded", refundedAmount: 0 });
		const log = (await shop.http.get(`/api/orders/${order.id}/events`, { token: c.token })).body.rows;
		expect((Array.isArray(log) ? log : log.rows).map((e: any) => e.type)).toEqual(expect.arrayContaining(["refunded", "refund_failed"]));
		await waitFor(() => messages(c, "refund-failed"), (m) => m.length === 1);
		await waitFor(() => revenueNow(), (r) => r === revenueBefore);

		// Stripe's own event of that failure, delivered twice: nothing more.
		const failed = { id: pay.refunds[0].providerRefundId, status: "failed", failure_reason: "expired_or_canceled_card", amount: order.total, payment_intent: pay.providerPaymentId };
		const evtId = `evt_rf_${process.pid}_${++n}`;
		expect((await deliver("refund.failed", failed, evtId)).status).toBe(200);
		expect((await deliver("refund.failed", failed, evtId)).body).toMatchObject({ duplicate: true });
		expect(await outboxed("payment.refund_failed", order.id)).toBe(1);

		// The money can be refunded again (and, the card being closed, that fails too).
		const again = await shop.http.post(`/api/orders/${order.id}/refund`, { reason: "refunded again" }, { token: admin });
		expect(again.status).toBe(200);
		await waitFor(() => outboxed("payment.refund_failed", order.id), (k) => k === 2);
		expect(await paymentOf(order.id)).toMatchObject({ status: "succeeded", refundedAmount: 0 });
		await waitFor(() => orderOf(c, order.id), (o) => o.refundedAmount === 0 && o.paymentStatus === "succeeded");
		await waitFor(() => messages(c, "refund-failed"), (m) => m.length === 2);
		await waitFor(() => revenueNow(), (r) => r === revenueBefore);
		// Each failure is in the log for whoever is on call (the money has to reach the customer another way), once.
		const warned = warn.mock.calls.map((args) => String(args[0])).filter((line) => line.includes("failed at the provider after it was accepted"));
		warn.mockRestore();
		expect(warned).toEqual([expect.stringContaining(`of order ${order.number} (${order.total} USD`), expect.stringContaining(`of order ${order.number} (${order.total} USD`)]);
	}, 20_000);

	test("of part of a confirmed order: back to the other refunds' status; a refund failed by its first answer or still pending changes nothing", async () => {
		const { c, order } = await paidOrder(4000);
		const refund = (amount: number) => shop.http.post(`/api/orders/${order.id}/refund`, { amount, reason: "partial" }, { token: admin });
		expect((await refund(1000)).status).toBe(200);
		expect((await refund(500)).status).toBe(200);
		const pay = await paymentOf(order.id);
		const [first] = pay.refunds;
		// Stripe reports a refund as pending, then failed: only the failure counts.
		expect((await deliver("charge.refund.updated", { id: first.providerRefundId, status: "pending", payment_intent: pay.providerPaymentId })).status).toBe(200);
		expect(await paymentOf(order.id)).toMatchObject({ status: "partially_refunded", refundedAmount: 1500 });
		expect((await deliver("charge.refund.updated", { id: first.providerRefundId, status: "failed", failure_reason: "lost_or_stolen_card", payment_intent: pay.providerPaymentId })).status).toBe(200);
		expect(await paymentOf(order.id)).toMatchObject({ status: "partially_refunded", refundedAmount: 500 });
		// What is left to refund counts the failed refund's amount again.
		expect(await payments().payments.findOne({ orderId: order.id })).toMatchObject({ reservedRefundAmount: 500, countedRefunds: { [pay.refunds[1].id]: 500 } });
		await waitFor(() => orderOf(c, order.id), (o) => o.refundedAmount === 500);
		expect(await orderOf(c, order.id)).toMatchObject({ status: "confirmed", paymentStatus: "partially_refunded" });

		// A refund the provider refused at once was never counted: its later failure event undoes nothing.
		await payments().refunds.updateOne({ id: pay.refunds[1].id }, { $set: { status: "failed" } });
		expect((await deliver("refund.failed", { id: pay.refunds[1].providerRefundId, status: "failed", payment_intent: pay.providerPaymentId })).status).toBe(200);
		expect(await paymentOf(order.id)).toMatchObject({ refundedAmount: 500 });
		expect(await outboxed("payment.refund_failed", order.id)).toBe(1);
		// One Stripe never heard of from us: acknowledged, nothing changed.
		expect((await deliver("refund.failed", { id: "re_unknown", status: "failed", payment_intent: pay.providerPaymentId })).status).toBe(200);
	});

	test("a delivery that died after the payment counted it off: the next finishes it, announcing it once", async () => {
		const { c, order } = await paidOrder(2000);
		expect((await shop.http.post(`/api/orders/${order.id}/refund`, { reason: "damaged" }, { token: admin })).status).toBe(200);
		const pay = await paymentOf(order.id);
		const failed = { id: pay.refunds[0].providerRefundId, status: "failed", failure_reason: "declined", payment_intent: pay.providerPaymentId };
		const died = jest.spyOn(payments().refunds, "updateOne").mockRejectedValueOnce(new Error("process died"));
		expect((await deliver("refund.failed", failed)).status).toBe(500);
		died.mockRestore();
		expect(await paymentOf(order.id)).toMatchObject({ status: "succeeded", refundedAmount: 0, refunds: [expect.objectContaining({ status: "succeeded" })] });
		expect(await outboxed("payment.refund_failed", order.id)).toBe(0);

		// Stripe delivers again (as a new event here: the first one's record would make it wait out its stale window).
		expect((await deliver("refund.failed", failed)).status).toBe(200);
		expect(await paymentOf(order.id)).toMatchObject({ status: "succeeded", refundedAmount: 0, refunds: [expect.objectContaining({ status: "failed" })] });
		expect(await outboxed("payment.refund_failed", order.id)).toBe(1);
		await waitFor(() => orderOf(c, order.id), (o) => o.refundedAmount === 0 && o.paymentStatus === "succeeded");
	});

	test("two deliveries of one failure at once (refund.failed and charge.refund.updated) announce it once", async () => {
		const { order } = await paidOrder(2000);
		expect((await shop.http.post(`/api/orders/${order.id}/refund`, { reason: "damaged" }, { token: admin })).status).toBe(200);
		const pay = await paymentOf(order.id);
		const failed = { id: pay.refunds[0].providerRefundId, status: "failed", failure_reason: "declined", payment_intent: pay.providerPaymentId };
		// The first to mark it failed is slow to announce it: the others come while it is under way.
		const svc = shop.broker.getLocalService("payments") as any;
		const publish = svc.publish;
		const slow = jest.spyOn(svc, "publish").mockImplementation(async (...args: unknown[]) => {
			await new Promise((r) => setTimeout(r, 100));
			return publish.apply(svc, args);
		});
		let answers;
		try {
			answers = await Promise.all([deliver("refund.failed", failed), deliver("charge.refund.updated", failed), deliver("refund.updated", failed)]);
		} finally {
			slow.mockRestore();
		}
		// One applies it; one that finds it being announced answers 503, and Stripe delivers it again.
		for (const a of answers) expect([200, 503]).toContain(a.status);
		expect(await outboxed("payment.refund_failed", order.id)).toBe(1);
		expect((await deliver("refund.failed", failed)).status).toBe(200);
		expect(await outboxed("payment.refund_failed", order.id)).toBe(1);
		expect(await paymentOf(order.id)).toMatchObject({ status: "succeeded", refundedAmount: 0 });
	});

	test("a call that died after marking the refund failed but before announcing it: the next delivery announces it, once its claim ran out", async () => {
		const { order } = await paidOrder(2000);
		expect((await shop.http.post(`/api/orders/${order.id}/refund`, { reason: "damaged" }, { token: admin })).status).toBe(200);
		const pay = await paymentOf(order.id);
		const failed = { id: pay.refunds[0].providerRefundId, status: "failed", failure_reason: "declined", payment_intent: pay.providerPaymentId };
		const svc = shop.broker.getLocalService("payments") as any;
		const died = jest.spyOn(svc, "publish").mockRejectedValueOnce(new Error("process died"));
		expect((await deliver("refund.failed", failed)).status).toBe(500);
		died.mockRestore();
		expect(await outboxed("payment.refund_failed", order.id)).toBe(0);
		// Its claim still runs: another delivery waits.
		expect((await deliver("refund.failed", failed)).status).toBe(503);
		await payments().refunds.updateOne({ id: pay.refunds[0].id }, { $set: { announceUntil: new Date(Date.now() - 1000) } });
		expect((await deliver("refund.failed", failed)).status).toBe(200);
		expect(await outboxed("payment.refund_failed", order.id)).toBe(1);
		expect((await deliver("refund.failed", failed)).status).toBe(200);
		expect(await outboxed("payment.refund_failed", order.id)).toBe(1);
	});

	test("Stripe's charge.refunded of a refund, delivered after that refund failed, does not count it again; a refund made at Stripe after the failure counts", async () => {
		const { c, order } = await paidOrder(3000);
		expect((await shop.http.post(`/api/orders/${order.id}/refund`, { amount: 1000, reason: "damaged" }, { token: admin })).status).toBe(200);
		// Stripe's event of that refund, as of the moment it was made (whole seconds).
		const madeAt = Math.floor(Date.now() / 1000);
		const pay = await paymentOf(order.id);
		const intent = pay.providerPaymentId;
		expect((await deliver("refund.failed", { id: pay.refunds[0].providerRefundId, status: "failed", amount: 1000, payment_intent: intent })).status).toBe(200);
		// The charge as it stood when the refund was made, arriving late (a retried delivery).
		const charge = (amountRefunded: number) => ({ object: "charge", id: `ch_${order.id}`, payment_intent: intent, amount: order.total, amount_refunded: amountRefunded });
		expect((await deliver("charge.refunded", charge(1000), undefined, madeAt)).status).toBe(200);
		expect(await paymentOf(order.id)).toMatchObject({ status: "succeeded", refundedAmount: 0 });
		expect((await paymentOf(order.id)).refunds).toHaveLength(1);
		// Someone refunds 500 in Stripe's dashboard afterwards: Stripe's total no longer holds the failed refund.
		expect((await deliver("charge.refunded", charge(500), undefined, Math.floor(Date.now() / 1000) + 2)).status).toBe(200);
		expect(await paymentOf(order.id)).toMatchObject({ status: "partially_refunded", refundedAmount: 500 });
		await waitFor(() => orderOf(c, order.id), (o) => o.refundedAmount === 500);
	});

	test("a refund made in Stripe's dashboard (recorded from charge.refunded, which no longer names it) that fails later is undone too", async () => {
		const { c, order } = await paidOrder(2000);
		const pay = await paymentOf(order.id);
		const intent = pay.providerPaymentId;
		expect((await deliver("charge.refunded", { object: "charge", id: `ch_${order.id}`, payment_intent: intent, amount: order.total, amount_refunded: 500 })).status).toBe(200);
		expect(await paymentOf(order.id)).toMatchObject({ status: "partially_refunded", refundedAmount: 500, refunds: [expect.objectContaining({ amount: 500, providerRefundId: null })] });
		// Stripe's refund.failed names it by an id the shop has not seen, with its amount.
		expect((await deliver("refund.failed", { id: "re_dashboard_1", status: "failed", failure_reason: "lost_or_stolen_card", amount: 500, payment_intent: intent })).status).toBe(200);
		expect(await paymentOf(order.id)).toMatchObject({ status: "succeeded", refundedAmount: 0, refunds: [expect.objectContaining({ status: "failed", providerRefundId: "re_dashboard_1" })] });
		expect(await outboxed("payment.refund_failed", order.id)).toBe(1);
		await waitFor(() => orderOf(c, order.id), (o) => o.refundedAmount === 0 && o.paymentStatus === "succeeded");
		// Another failure of another amount finds nothing to undo.
		expect((await deliver("refund.failed", { id: "re_dashboard_2", status: "failed", amount: 300, payment_intent: intent })).status).toBe(200);
		expect(await outboxed("payment.refund_failed", order.id)).toBe(1);
	});

	test("a failure reported while the refund is still being recorded is answered 503, for Stripe to deliver it again", async () => {
		const { order } = await paidOrder(2000);
		const pay = await paymentOf(order.id);
		await payments().refunds.insert({
			refundKey: `held-${order.id}`, orderId: order.id, paymentId: pay.id, amount: 100, currency: "USD", reason: "x", status: "processing", reserved: true, providerRefundId: null,
			leaseUntil: new Date(Date.now() + 60_000), createdAt: new Date(), updatedAt: new Date(),
		});
		const res = await deliver("refund.failed", { id: "re_not_recorded_yet", status: "failed", payment_intent: pay.providerPaymentId });
		expect(res.status).toBe(503);
	});
});
