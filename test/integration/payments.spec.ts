/**
 * The payments service with the built-in test provider: charges decided by Stripe's test tokens,
 * idempotency per order (also under concurrency), refund limits, recorded events.
 */
import { startShop, type Shop } from "../helpers/shop";
import { PaymentProviderError } from "../../adapters/payments/provider";
import { TestPaymentProvider } from "../../adapters/payments/test-provider";
import { eventRecorder } from "../helpers/fakes";
import { waitFor } from "../helpers/wait";
import { NEVER_CHARGED } from "../../lib/payment-records";

let seq = 0;
const newOrderId = () => `order-${process.pid}-${++seq}`;

describe("payments (built-in test provider)", () => {
	let shop: Shop;
	let provider: TestPaymentProvider;
	let svc: any;
	const recorder = eventRecorder("payment-events-recorder", ["payment.*"]);
	const saved = { secret: process.env.STRIPE_SECRET_KEY, webhook: process.env.STRIPE_WEBHOOK_SECRET };

	const charge = (orderId: string, token = "pm_card_visa", amount = 2500, extra: Record<string, unknown> = {}) =>
		shop.broker.call<any, any>("payments.charge", { orderId, userId: "user-1", amount, currency: "USD", paymentMethod: { type: "card", token }, ...extra });
	const refund = (orderId: string, refundKey: string, amount?: number) =>
		shop.broker.call<any, any>("payments.refund", { orderId, refundKey, reason: "customer request", ...(amount === undefined ? {} : { amount }) });
	const getByOrder = (orderId: string) => shop.broker.call<any, any>("payments.getByOrder", { orderId });
	const eventsFor = (orderId: string, name?: string) => recorder.events.filter((e) => e.payload.orderId === orderId && (!name || e.name === name));

	beforeAll(async () => {
		delete process.env.STRIPE_SECRET_KEY;
		delete process.env.STRIPE_WEBHOOK_SECRET;
		shop = await startShop({ services: ["payments", recorder.schema] });
		svc = shop.broker.getLocalService("payments");
		provider = svc.provider;
	});
	afterAll(async () => {
		await shop.stop();
		if (saved.secret !== undefined) process.env.STRIPE_SECRET_KEY = saved.secret;
		if (saved.webhook !== undefined) process.env.STRIPE_WEBHOOK_SECRET = saved.webhook;
	});
	afterEach(() => jest.restoreAllMocks());

	test("without Stripe keys the built-in test provider is used", () => {
		expect(provider.name).toBe("test");
	});

	describe("charge", () => {
		test("pm_card_visa succeeds: payment recorded with card brand and last 4, payment.succeeded published", async () => {
			const orderId = newOrderId();
			const result = await charge(orderId, "pm_card_visa", 2599);
			expect(result).toEqual({ id: expect.any(String), orderId, status: "succeeded", amount: 2599, currency: "USD", cardBrand: "visa", cardLast4: "4242" });

			const recorded = await getByOrder(orderId);
			expect(recorded).toMatchObject({ id: result.id, orderId, userId: "user-1", status: "succeeded", amount: 2599, currency: "USD", refundedAmount: 0, provider: "test", failureReason: null, refunds: [] });
			expect(recorded.providerPaymentId).toMatch(/^pi_test_/);
			// Only brand and last 4 are kept: never the payment method token.
			const stored = await svc.db.payments.findOne({ orderId });
			expect(JSON.stringify(stored)).not.toContain("pm_card_visa");

			expect(eventsFor(orderId)).toEqual([
				{ name: "payment.succeeded", payload: { orderId, paymentId: result.id, userId: "user-1", amount: 2599, currency: "USD", eventId: expect.stringMatching(/^payments:\d+$/) } },
			]);
		});

		test("pm_card_mastercard and pm_card_amex succeed", async () => {
			expect(await charge(newOrderId(), "pm_card_mastercard")).toMatchObject({ status: "succeeded", cardBrand: "mastercard", cardLast4: "4444" });
			expect(await charge(newOrderId(), "pm_card_amex")).toMatchObject({ status: "succeeded", cardBrand: "amex", cardLast4: "8431" });
		});

		test.each([
			["pm_card_chargeDeclined", "Your card was declined."],
			["pm_card_chargeDeclinedInsufficientFunds", "Your card has insufficient funds."],
			["pm_card_chargeDeclinedExpiredCard", "Your card has expired."],
			["pm_card_chargeDeclinedIncorrectCvc", "Your card's security code is incorrect."],
			["pm_card_doesNotExist", "invalid payment method"],
		])("%s is declined: 402, payment recorded failed with the reason, payment.failed published", async (token, reason) => {
			const orderId = newOrderId();
			const err = await charge(orderId, token).catch((e) => e);
			expect(err).toMatchObject({ name: "PaymentDeclinedError", code: 402, type: "PAYMENT_DECLINED", message: reason, data: { orderId, reason } });

			const recorded = await getByOrder(orderId);
			expect(recorded).toMatchObject({ status: "failed", failureReason: reason, amount: 2500 });
			expect(eventsFor(orderId)).toEqual([
				{ name: "payment.failed", payload: { orderId, paymentId: recorded.id, userId: "user-1", amount: 2500, currency: "USD", reason, eventId: expect.any(String) } },
			]);
		});

		test("a second charge of the same order returns the recorded payment without calling the provider", async () => {
			const orderId = newOrderId();
			const first = await charge(orderId);
			const spy = jest.spyOn(provider, "createPayment");
			expect(await charge(orderId)).toEqual(first);
			expect(spy).not.toHaveBeenCalled();
			expect(eventsFor(orderId, "payment.succeeded")).toHaveLength(1);
		});

		test("a second charge of a declined order returns the recorded decline (402) without calling the provider", async () => {
			const orderId = newOrderId();
			await expect(charge(orderId, "pm_card_chargeDeclined")).rejects.toMatchObject({ code: 402 });
			const spy = jest.spyOn(provider, "createPayment");
			await expect(charge(orderId, "pm_card_chargeDeclined")).rejects.toMatchObject({ code: 402, message: "Your card was declined." });
			expect(spy).not.toHaveBeenCalled();
			expect(eventsFor(orderId, "payment.failed")).toHaveLength(1);
		});

		test("10 concurrent charges of one order: one provider call, one payment, identical answers", async () => {
			const orderId = newOrderId();
			const spy = jest.spyOn(provider, "createPayment");
			const charged = provider.chargesCreated;
			const results = await Promise.all(Array.from({ length: 10 }, () => charge(orderId)));
			expect(spy).toHaveBeenCalledTimes(1);
			expect(spy.mock.calls[0][0]).toMatchObject({ idempotencyKey: `order-${orderId}-charge`, amount: 2500, currency: "USD", token: "pm_card_visa", metadata: { orderId } });
			expect(provider.chargesCreated - charged).toBe(1);
			expect(await svc.db.payments.count({ orderId })).toBe(1);
			for (const r of results) expect(r).toEqual(results[0]);
			expect(eventsFor(orderId, "payment.succeeded")).toHaveLength(1);
		});

		test("10 concurrent declined charges of one order: one provider call, all 402", async () => {
			const orderId = newOrderId();
			const spy = jest.spyOn(provider, "createPayment");
			const results = await Promise.allSettled(Array.from({ length: 10 }, () => charge(orderId, "pm_card_chargeDeclined")));
			expect(results.every((r) => r.status === "rejected" && (r.reason as any).code === 402)).toBe(true);
			expect(spy).toHaveBeenCalledTimes(1);
			expect(eventsFor(orderId, "payment.failed")).toHaveLength(1);
		});

		test("the same order with another amount is a conflict, not a second charge", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 1000);
			await expect(charge(orderId, "pm_card_visa", 2000)).rejects.toMatchObject({ code: 409, type: "PAYMENT_MISMATCH" });
			expect((await getByOrder(orderId)).amount).toBe(1000);
		});

		test("provider outage: 503, payment left pending; a retry charges once under the same key", async () => {
			const orderId = newOrderId();
			const charged = provider.chargesCreated;
			const spy = jest.spyOn(provider, "createPayment").mockRejectedValue(new PaymentProviderError("connection refused"));
			await expect(charge(orderId)).rejects.toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE" });
			// As stored (getByOrder would settle it: see "a charge whose answer was never recorded").
			expect(await svc.db.payments.findOne({ orderId })).toMatchObject({ status: "pending", providerPaymentId: null });
			expect(eventsFor(orderId)).toHaveLength(0);

			spy.mockRestore();
			const retried = jest.spyOn(provider, "createPayment");
			expect(await charge(orderId)).toMatchObject({ status: "succeeded" });
			expect(retried).toHaveBeenCalledTimes(1);
			expect(retried.mock.calls[0][0].idempotencyKey).toBe(`order-${orderId}-charge`);
			expect(spy.mock.calls.every((c) => c[0].idempotencyKey === `order-${orderId}-charge`)).toBe(true);
			expect(provider.chargesCreated - charged).toBe(1);
			expect(await svc.db.payments.count({ orderId })).toBe(1);
		});

		test("a charge abandoned mid-way (its lease expired) is taken over by the next call, under the same key", async () => {
			const orderId = newOrderId();
			const now = new Date();
			await svc.db.payments.insert({
				orderId, userId: "user-1", amount: 2500, currency: "USD", status: "pending", provider: "test", providerPaymentId: null, cardBrand: null, cardLast4: null,
				failureReason: null, refundedAmount: 0, reservedRefundAmount: 0, chargeLeaseUntil: new Date(now.getTime() - 1000), createdAt: now, updatedAt: now,
			});
			const spy = jest.spyOn(provider, "createPayment");
			expect(await charge(orderId)).toMatchObject({ status: "succeeded" });
			expect(spy).toHaveBeenCalledTimes(1);
			expect(spy.mock.calls[0][0].idempotencyKey).toBe(`order-${orderId}-charge`);
			expect(await svc.db.payments.count({ orderId })).toBe(1);
		});

		test("a 3-D Secure card leaves the payment pending (settled later by a webhook)", async () => {
			const orderId = newOrderId();
			expect(await charge(orderId, "pm_card_authenticationRequired")).toMatchObject({ status: "pending", cardLast4: "3184" });
			const spy = jest.spyOn(provider, "createPayment");
			expect(await charge(orderId, "pm_card_authenticationRequired")).toMatchObject({ status: "pending" });
			expect(spy).not.toHaveBeenCalled();
			expect(eventsFor(orderId)).toHaveLength(0);
		});

		test.each([
			["fractional amount", { amount: 10.5 }, "amount"],
			["zero amount", { amount: 0 }, "amount"],
			["bad currency", { currency: "dollars" }, "currency"],
			["no token", { paymentMethod: { type: "card" } }, "paymentMethod.token"],
			["not a card", { paymentMethod: { type: "iban", token: "pm_card_visa" } }, "paymentMethod.type"],
		])("%s → 422 naming the field", async (_name, override, field) => {
			const err = await charge(newOrderId(), "pm_card_visa", 2500, override).catch((e) => e);
			expect(err).toMatchObject({ code: 422 });
			expect(err.data.map((d: any) => d.field)).toContain(field);
		});

		test("unknown fields are dropped: a caller cannot set the status or the provider id", async () => {
			const orderId = newOrderId();
			await expect(charge(orderId, "pm_card_chargeDeclined", 2500, { status: "succeeded", providerPaymentId: "pi_forged" })).rejects.toMatchObject({ code: 402 });
			expect(await getByOrder(orderId)).toMatchObject({ status: "failed" });
			expect((await getByOrder(orderId)).providerPaymentId).not.toBe("pi_forged");
		});

		test("getByOrder of an unknown order is null", async () => {
			expect(await getByOrder("no-such-order")).toBeNull();
		});
	});

	describe("cancel with ifNone: an undone checkout whose charge may still be on its way", () => {
		const cancelIfNone = (orderId: string, amount = 2500) => shop.broker.call<any, any>("payments.cancel", { orderId, ifNone: { userId: "user-1", amount, currency: "usd" } });

		test("no payment yet: one is recorded failed and voided, never charged and not announced; a charge arriving later is refused without asking the provider", async () => {
			const orderId = newOrderId();
			const creates = jest.spyOn(provider, "createPayment");
			const voided = await cancelIfNone(orderId);
			expect(voided).toMatchObject({ orderId, userId: "user-1", amount: 2500, currency: "USD", status: "failed", voided: true, providerPaymentId: null, refundedAmount: 0 });
			// Asked again (a redone follow-up): the same payment.
			expect(await cancelIfNone(orderId)).toMatchObject({ id: voided.id, status: "failed", voided: true });
			await expect(charge(orderId)).rejects.toMatchObject({ code: 402, message: voided.failureReason });
			expect(creates).not.toHaveBeenCalled();
			expect(await svc.db.payments.count({ orderId })).toBe(1);
			// Nothing was paid or failed at the provider: no news for orders or analytics.
			expect(eventsFor(orderId)).toEqual([]);
		});

		test("a charge that came first keeps its payment: paid, it is returned as it is, to be refunded by the order", async () => {
			const orderId = newOrderId();
			const paid = await charge(orderId);
			expect(await cancelIfNone(orderId)).toMatchObject({ id: paid.id, status: "succeeded", amount: 2500 });
			expect((await getByOrder(orderId)).voided).toBeUndefined();
		});

		test("without ifNone, an order with no payment is left without one (null)", async () => {
			const orderId = newOrderId();
			expect(await shop.broker.call("payments.cancel", { orderId })).toBeNull();
			expect(await svc.db.payments.count({ orderId })).toBe(0);
		});

		test("ifNone is validated: a negative amount is a 422 naming it, and nothing is recorded", async () => {
			const orderId = newOrderId();
			const err = await cancelIfNone(orderId, -5).catch((e) => e);
			expect(err).toMatchObject({ code: 422 });
			expect(err.data.map((d: any) => d.field)).toContain("ifNone.amount");
			expect(await svc.db.payments.count({ orderId })).toBe(0);
		});
	});

	describe("a charge whose answer was never recorded", () => {
		const cancel = (orderId: string) => shop.broker.call<any, any>("payments.cancel", { orderId });
		/** The pending payment a charge call leaves until the provider's answer is recorded; its lease ends `leaseMs` from now. */
		const leftPending = (orderId: string, leaseMs: number, amount = 2500) => {
			const now = new Date();
			return svc.db.payments.insert({
				orderId, userId: "user-1", amount, currency: "USD", status: "pending", provider: "test", providerPaymentId: null, cardBrand: null, cardLast4: null, failureReason: null,
				refundedAmount: 0, reservedRefundAmount: 0, chargeLeaseUntil: new Date(now.getTime() + leaseMs), chargeStartedAt: new Date(now.getTime() - 60_000), createdAt: now, updatedAt: now,
			});
		};

		test("left by a previous run (the provider, restarted, has none): getByOrder settles it failed as never charged, announced once; a retry is that decline", async () => {
			const orderId = newOrderId();
			const left = await leftPending(orderId, -1000);
			const lookups = jest.spyOn(provider, "findPayment");
			const settled = await getByOrder(orderId);
			expect(settled).toMatchObject({ id: left.id, status: "failed", failureReason: NEVER_CHARGED, providerPaymentId: null, refunds: [] });
			expect(lookups).toHaveBeenCalledWith({ idempotencyKey: `order-${orderId}-charge`, orderId });
			expect(eventsFor(orderId)).toEqual([
				{ name: "payment.failed", payload: { orderId, paymentId: left.id, userId: "user-1", amount: 2500, currency: "USD", reason: NEVER_CHARGED, eventId: expect.any(String) } },
			]);
			// Settled: not asked again, and a retried charge answers the decline without charging.
			const creates = jest.spyOn(provider, "createPayment");
			expect(await getByOrder(orderId)).toMatchObject({ status: "failed" });
			await expect(charge(orderId)).rejects.toMatchObject({ code: 402, message: NEVER_CHARGED });
			expect(lookups).toHaveBeenCalledTimes(1);
			expect(creates).not.toHaveBeenCalled();
			expect(eventsFor(orderId)).toHaveLength(1);
		});

		test("after an outage the payment is settled on the next look: the built-in provider charged nothing", async () => {
			const orderId = newOrderId();
			jest.spyOn(provider, "createPayment").mockRejectedValueOnce(new PaymentProviderError("connection reset"));
			await expect(charge(orderId)).rejects.toMatchObject({ code: 503 });
			expect(await getByOrder(orderId)).toMatchObject({ status: "failed", failureReason: NEVER_CHARGED });
		});

		test("made at the provider, its answer lost: found by its key and applied as the answer would have been, announced once", async () => {
			const orderId = newOrderId();
			const made = await provider.createPayment({ amount: 2500, currency: "USD", token: "pm_card_mastercard", idempotencyKey: `order-${orderId}-charge`, metadata: { orderId } });
			const left = await leftPending(orderId, -1000);
			expect(await getByOrder(orderId)).toMatchObject({ id: left.id, status: "succeeded", providerPaymentId: made.providerId, cardBrand: "mastercard", cardLast4: "4444", failureReason: null });
			expect(eventsFor(orderId).map((e) => e.name)).toEqual(["payment.succeeded"]);
			// Money taken: refundable like any payment.
			expect(await refund(orderId, `${orderId}-late`)).toMatchObject({ amount: 2500, status: "succeeded" });
		});

		test("a charge whose call may still be talking to the provider (lease live) is left alone: nothing asked, by reads or by the sweep", async () => {
			const orderId = newOrderId();
			await leftPending(orderId, 30_000);
			const lookups = jest.spyOn(provider, "findPayment");
			expect(await getByOrder(orderId)).toMatchObject({ status: "pending" });
			expect(await cancel(orderId)).toMatchObject({ status: "pending" });
			await svc.settleUnrecordedCharges();
			expect(lookups).not.toHaveBeenCalled();
			expect(await svc.db.payments.findOne({ orderId })).toMatchObject({ status: "pending" });
		});

		test("the sweep settles the ones nobody asks about, and a single process's start does at once", async () => {
			const swept = newOrderId();
			const atStart = newOrderId();
			await leftPending(swept, -1000);
			await svc.settleUnrecordedCharges();
			expect(await svc.db.payments.findOne({ orderId: swept })).toMatchObject({ status: "failed", failureReason: NEVER_CHARGED });
			expect(eventsFor(swept, "payment.failed")).toHaveLength(1);

			await leftPending(atStart, -1000);
			// What the broker of a restarted single process announces once its services have started.
			shop.broker.broadcastLocal("$broker.started");
			await waitFor(() => svc.db.payments.findOne({ orderId: atStart }), (p: any) => p.status === "failed");
			expect(eventsFor(atStart, "payment.failed")).toHaveLength(1);
		});

		test("cancel (an order cancelled meanwhile) settles it the same way", async () => {
			const orderId = newOrderId();
			await leftPending(orderId, -1000);
			expect(await cancel(orderId)).toMatchObject({ status: "failed", failureReason: NEVER_CHARGED });
		});

		test("the provider cannot be asked: left pending, no error for the reader, and asked again on the next look", async () => {
			const orderId = newOrderId();
			await leftPending(orderId, -1000);
			const lookups = jest.spyOn(provider, "findPayment").mockRejectedValueOnce(new PaymentProviderError("timeout"));
			expect(await getByOrder(orderId)).toMatchObject({ status: "pending" });
			expect(eventsFor(orderId)).toHaveLength(0);
			expect(await getByOrder(orderId)).toMatchObject({ status: "failed" });
			expect(lookups).toHaveBeenCalledTimes(2);
		});

		test("settled by someone else while the provider was being asked (a webhook): the look-up's answer overwrites nothing", async () => {
			const orderId = newOrderId();
			await leftPending(orderId, -1000);
			jest.spyOn(provider, "findPayment").mockImplementationOnce(async () => {
				await svc.db.payments.updateOne({ orderId }, { $set: { status: "succeeded", providerPaymentId: "pi_test_from_webhook", chargeLeaseUntil: null } });
				return null;
			});
			expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", providerPaymentId: "pi_test_from_webhook" });
			expect(eventsFor(orderId, "payment.failed")).toHaveLength(0);
		});

		test("a charge retried while the provider is being asked waits for the look-up's outcome instead of charging", async () => {
			const orderId = newOrderId();
			await leftPending(orderId, -1000);
			let answer!: () => void;
			jest.spyOn(provider, "findPayment").mockImplementationOnce(() => new Promise((resolve) => (answer = () => resolve(null))));
			const creates = jest.spyOn(provider, "createPayment");
			const looking = getByOrder(orderId);
			await waitFor(() => answer, (a) => !!a);
			const retried = charge(orderId).catch((e) => e);
			await new Promise((r) => setTimeout(r, 100));
			answer();
			expect(await looking).toMatchObject({ status: "failed" });
			expect(await retried).toMatchObject({ code: 402, message: NEVER_CHARGED });
			expect(creates).not.toHaveBeenCalled();
		});
	});

	describe("refund", () => {
		/** A refund claim as a call that died left it: its lease `leaseMs` from now, its amount reserved on the payment or not. */
		const claim = async (orderId: string, paymentId: string, refundKey: string, amount: number, o: { reservedOnPayment: boolean; leaseMs: number }) => {
			const now = new Date();
			const c = await svc.db.refunds.insert({
				refundKey, orderId, paymentId, amount, currency: "USD", reason: "admin refund", status: "processing", reserved: false,
				providerRefundId: null, leaseUntil: new Date(now.getTime() + o.leaseMs), createdAt: now, updatedAt: now,
			});
			if (o.reservedOnPayment) await svc.db.payments.updateOne({ orderId }, { $inc: { reservedRefundAmount: amount }, $set: { [`reservedRefunds.${c.id}`]: amount } });
			return c;
		};

		test("full refund without an amount: refund recorded, payment refunded, payment.refunded published", async () => {
			const orderId = newOrderId();
			const paid = await charge(orderId, "pm_card_visa", 4000);
			const r = await refund(orderId, `${orderId}-cancel`);
			expect(r).toMatchObject({ id: expect.any(String), orderId, paymentId: paid.id, amount: 4000, currency: "USD", status: "succeeded", reason: "customer request" });
			expect(r.providerRefundId).toMatch(/^re_test_/);
			const recorded = await getByOrder(orderId);
			expect(recorded).toMatchObject({ status: "refunded", refundedAmount: 4000 });
			expect(recorded.refunds).toEqual([expect.objectContaining({ id: r.id, amount: 4000, status: "succeeded" })]);
			expect(eventsFor(orderId, "payment.refunded")).toEqual([
				{ name: "payment.refunded", payload: { orderId, paymentId: paid.id, refundId: r.id, userId: "user-1", amount: 4000, currency: "USD", totalRefunded: 4000, reason: "customer request", refundKey: `${orderId}-cancel`, eventId: expect.any(String) } },
			]);
			await expect(refund(orderId, `${orderId}-again`)).rejects.toMatchObject({ code: 409, type: "ALREADY_REFUNDED" });
		});

		test("after a restart (the built-in provider starts empty) payments made before it are refunded and a waiting one canceled", async () => {
			const paidOrder = newOrderId();
			const waitingOrder = newOrderId();
			await charge(paidOrder, "pm_card_visa", 3000);
			await charge(waitingOrder, "pm_card_authenticationRequired", 1500);
			svc.provider = new TestPaymentProvider();
			try {
				expect(await refund(paidOrder, `${paidOrder}-part`, 1000)).toMatchObject({ amount: 1000, status: "succeeded" });
				// The shop's own record still bounds a refund.
				await expect(refund(paidOrder, `${paidOrder}-more`, 2001)).rejects.toMatchObject({ code: 422 });
				expect(await refund(paidOrder, `${paidOrder}-rest`)).toMatchObject({ amount: 2000, status: "succeeded" });
				expect(await getByOrder(paidOrder)).toMatchObject({ status: "refunded", refundedAmount: 3000 });
				expect(await shop.broker.call<any, any>("payments.cancel", { orderId: waitingOrder })).toMatchObject({ status: "failed" });
				await expect(svc.provider.refund({ providerPaymentId: "pi_elsewhere", amount: 1, idempotencyKey: "k" })).rejects.toThrow(/No such payment/);
			} finally {
				svc.provider = provider;
			}
		});

		test("a charge made with its order's number announces its refunds with it, for the customer's email", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 3000, { orderNumber: "SH-261128-00AB" });
			await refund(orderId, `${orderId}-part`, 1000);
			expect(eventsFor(orderId, "payment.refunded")[0].payload).toMatchObject({ number: "SH-261128-00AB", amount: 1000, totalRefunded: 1000 });
		});

		test("partial refunds: the status follows, the total never exceeds what was paid", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 1000);
			expect(await refund(orderId, "p1", 300)).toMatchObject({ amount: 300, status: "succeeded" });
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 300 });

			const spy = jest.spyOn(provider, "refund");
			const above = await refund(orderId, "p2", 701).catch((e) => e);
			expect(above).toMatchObject({ code: 422, data: [{ field: "amount", message: expect.stringContaining("700") }] });
			expect(spy).not.toHaveBeenCalled();

			expect(await refund(orderId, "p3", 200)).toMatchObject({ amount: 200 });
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 500 });
			// Without an amount: whatever is left.
			expect(await refund(orderId, "p4")).toMatchObject({ amount: 500 });
			const recorded = await getByOrder(orderId);
			expect(recorded).toMatchObject({ status: "refunded", refundedAmount: 1000 });
			expect(recorded.refunds.map((x: any) => x.amount)).toEqual([300, 200, 500]);
			expect(eventsFor(orderId, "payment.refunded").map((e) => e.payload.totalRefunded)).toEqual([300, 500, 1000]);
		});

		test("above what was paid → 422, nothing refunded", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 1000);
			await expect(refund(orderId, "big", 1001)).rejects.toMatchObject({ code: 422, data: [{ field: "amount" }] });
			expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", refundedAmount: 0, refunds: [] });
			// The refused key was not used up.
			expect(await refund(orderId, "big", 1000)).toMatchObject({ amount: 1000 });
		});

		test("a repeated refundKey refunds once, also concurrently", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 1000);
			const spy = jest.spyOn(provider, "refund");
			const results = await Promise.all(Array.from({ length: 10 }, () => refund(orderId, `${orderId}-saga`, 400)));
			expect(spy).toHaveBeenCalledTimes(1);
			expect(spy.mock.calls[0][0]).toMatchObject({ amount: 400, idempotencyKey: `refund-${orderId}-saga` });
			for (const r of results) expect(r).toEqual(results[0]);
			expect(await refund(orderId, `${orderId}-saga`, 400)).toEqual(results[0]);
			expect(await refund(orderId, `${orderId}-saga`)).toEqual(results[0]);
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 400 });
			expect(eventsFor(orderId, "payment.refunded")).toHaveLength(1);
			// The same key for another amount is not silently a different refund.
			await expect(refund(orderId, `${orderId}-saga`, 100)).rejects.toMatchObject({ code: 409 });
		});

		test("concurrent refunds with different keys never add up to more than was paid", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 1000);
			const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => refund(orderId, `c${i}`, 300)));
			const ok = results.filter((r) => r.status === "fulfilled");
			const refused = results.filter((r) => r.status === "rejected");
			expect(ok).toHaveLength(3);
			expect(refused.every((r) => (r as PromiseRejectedResult).reason.code === 422)).toBe(true);
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 900 });
		});

		test("nothing to refund: unknown order 404, declined or pending payment 409", async () => {
			await expect(refund("no-such-order", "k1")).rejects.toMatchObject({ code: 404 });
			const declined = newOrderId();
			await charge(declined, "pm_card_chargeDeclined").catch(() => undefined);
			await expect(refund(declined, "k2")).rejects.toMatchObject({ code: 409, type: "NOT_REFUNDABLE" });
			const pending = newOrderId();
			await charge(pending, "pm_card_authenticationRequired");
			await expect(refund(pending, "k3")).rejects.toMatchObject({ code: 409, type: "NOT_REFUNDABLE" });
		});

		test("provider outage during a refund: 503, nothing counted; a retry refunds once", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 1000);
			const spy = jest.spyOn(provider, "refund").mockRejectedValue(new PaymentProviderError("timeout"));
			await expect(refund(orderId, "outage", 1000)).rejects.toMatchObject({ code: 503 });
			expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", refundedAmount: 0, refunds: [] });
			spy.mockRestore();
			expect(await refund(orderId, "outage", 1000)).toMatchObject({ amount: 1000, status: "succeeded" });
			expect(await getByOrder(orderId)).toMatchObject({ status: "refunded", refundedAmount: 1000 });
		});

		test("a refund abandoned after reserving its amount is finished by the next call with its key", async () => {
			const orderId = newOrderId();
			const paid = await charge(orderId, "pm_card_visa", 1000);
			const now = new Date();
			await svc.db.payments.updateOne({ orderId }, { $inc: { reservedRefundAmount: 400 } });
			await svc.db.refunds.insert({
				refundKey: "abandoned", orderId, paymentId: paid.id, amount: 400, currency: "USD", reason: "r", status: "processing", reserved: true,
				providerRefundId: null, leaseUntil: new Date(now.getTime() - 1000), createdAt: now, updatedAt: now,
			});
			expect(await refund(orderId, "abandoned")).toMatchObject({ amount: 400, status: "succeeded" });
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 400 });
			// The reservation was not taken twice: the rest is still refundable.
			expect(await refund(orderId, "rest")).toMatchObject({ amount: 600 });
		});

		test("a refund settled before payments kept per-refund records, replayed with its key, is not counted or announced again", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 1000);
			await refund(orderId, "legacy", 300);
			await svc.db.payments.updateOne({ orderId }, { $unset: { reservedRefunds: true, countedRefunds: true } });
			expect(await refund(orderId, "legacy", 300)).toMatchObject({ amount: 300, status: "succeeded" });
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 300 });
			expect(eventsFor(orderId, "payment.refunded")).toHaveLength(1);
		});

		test("two calls with one refund key at once: one refund, counted and announced once", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 1000);
			// The announcement is slow (a busy outbox): the second call must not announce it as well meanwhile.
			const publish = svc.publish.bind(svc);
			const slow = jest.spyOn(svc, "publish").mockImplementation(async (...args: any[]) => {
				await new Promise((r) => setTimeout(r, 150));
				return publish(...args);
			});
			try {
				const [a, b] = await Promise.all([refund(orderId, "twice", 400), refund(orderId, "twice", 400)]);
				expect(a.id).toBe(b.id);
			} finally {
				slow.mockRestore();
			}
			expect(await getByOrder(orderId)).toMatchObject({ refundedAmount: 400 });
			expect(eventsFor(orderId, "payment.refunded")).toHaveLength(1);
		});

		test("a refund whose process died after reserving, before its claim recorded that, is finished by the next call (not refused as refunded already)", async () => {
			const orderId = newOrderId();
			const paid = await charge(orderId, "pm_card_visa", 1000);
			await claim(orderId, paid.id, "half-claimed", 1000, { reservedOnPayment: true, leaseMs: -1000 });
			expect(await refund(orderId, "half-claimed")).toMatchObject({ amount: 1000, status: "succeeded" });
			expect(await getByOrder(orderId)).toMatchObject({ status: "refunded", refundedAmount: 1000 });
		});

		test("a refund the provider accepted but the payment never counted (the process died) is counted and announced once by the next call", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 1000);
			const died = jest.spyOn(svc, "addRefunded").mockRejectedValueOnce(new Error("process died"));
			await expect(refund(orderId, "uncounted")).rejects.toThrow("process died");
			died.mockRestore();
			expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", refundedAmount: 0 });
			expect(eventsFor(orderId, "payment.refunded")).toHaveLength(0);
			// Still "processing" under the dead call's lease; once that runs out, the next call takes it over.
			expect((await svc.db.refunds.findOne({ refundKey: "uncounted" })).status).toBe("processing");
			await svc.db.refunds.updateOne({ refundKey: "uncounted" }, { $set: { leaseUntil: new Date(Date.now() - 1000) } });

			expect(await refund(orderId, "uncounted")).toMatchObject({ amount: 1000, status: "succeeded" });
			expect(await getByOrder(orderId)).toMatchObject({ status: "refunded", refundedAmount: 1000 });
			expect(await refund(orderId, "uncounted")).toMatchObject({ amount: 1000 });
			expect(await getByOrder(orderId)).toMatchObject({ refundedAmount: 1000 });
			expect(eventsFor(orderId, "payment.refunded")).toHaveLength(1);
		});

		describe("refunds left by a call that died, that no retry asks for again (resumeAbandonedRefunds)", () => {
			test("a reserved one is refunded, counted and announced once; a repeat sweep does nothing more", async () => {
				const orderId = newOrderId();
				const paid = await charge(orderId, "pm_card_visa", 1000);
				const c = await claim(orderId, paid.id, `${orderId}-admin-random`, 700, { reservedOnPayment: true, leaseMs: -1000 });
				const refunds = jest.spyOn(provider, "refund");
				await svc.resumeAbandonedRefunds();
				expect(refunds).toHaveBeenCalledWith(expect.objectContaining({ amount: 700, idempotencyKey: `refund-${orderId}-admin-random` }));
				expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 700, refunds: [expect.objectContaining({ id: c.id, amount: 700, status: "succeeded" })] });
				await svc.resumeAbandonedRefunds();
				expect(refunds).toHaveBeenCalledTimes(1);
				expect(eventsFor(orderId, "payment.refunded")).toEqual([expect.objectContaining({ payload: expect.objectContaining({ refundId: c.id, amount: 700, totalRefunded: 700 }) })]);
				// Its reservation was used, not taken twice: the rest is still refundable.
				expect(await refund(orderId, `${orderId}-rest`)).toMatchObject({ amount: 300 });
			});

			test("one that died before reserving is dropped: nothing refunded, the whole amount still refundable", async () => {
				const orderId = newOrderId();
				const paid = await charge(orderId, "pm_card_visa", 1000);
				await claim(orderId, paid.id, `${orderId}-admin-unreserved`, 1000, { reservedOnPayment: false, leaseMs: -1000 });
				const refunds = jest.spyOn(provider, "refund");
				await svc.resumeAbandonedRefunds();
				expect(refunds).not.toHaveBeenCalled();
				expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", refundedAmount: 0, refunds: [] });
				expect(await refund(orderId, `${orderId}-after-drop`)).toMatchObject({ amount: 1000, status: "succeeded" });
			});

			test("one whose call still holds its lease is left alone", async () => {
				const orderId = newOrderId();
				const paid = await charge(orderId, "pm_card_visa", 1000);
				await claim(orderId, paid.id, `${orderId}-admin-live`, 400, { reservedOnPayment: true, leaseMs: 60_000 });
				const refunds = jest.spyOn(provider, "refund");
				await svc.resumeAbandonedRefunds();
				expect(refunds).not.toHaveBeenCalled();
				expect((await svc.db.refunds.findOne({ refundKey: `${orderId}-admin-live` })).status).toBe("processing");
			});

			test("the provider unreachable: the claim keeps its amount (the call that died may have refunded), and the next sweep refunds once", async () => {
				const orderId = newOrderId();
				const paid = await charge(orderId, "pm_card_visa", 1000);
				const c = await claim(orderId, paid.id, `${orderId}-admin-outage`, 1000, { reservedOnPayment: true, leaseMs: -1000 });
				const refunds = jest.spyOn(provider, "refund").mockRejectedValueOnce(new PaymentProviderError("timeout"));
				await svc.resumeAbandonedRefunds();
				expect(await svc.db.refunds.findOne({ refundKey: `${orderId}-admin-outage` })).toMatchObject({ status: "processing" });
				// Still reserved: another refund cannot take the same money meanwhile.
				await expect(refund(orderId, `${orderId}-second`)).rejects.toMatchObject({ type: "ALREADY_REFUNDED" });
				await svc.resumeAbandonedRefunds();
				expect(refunds).toHaveBeenCalledTimes(2);
				expect(refunds.mock.calls.map((call: any[]) => call[0].idempotencyKey)).toEqual([`refund-${orderId}-admin-outage`, `refund-${orderId}-admin-outage`]);
				expect(await getByOrder(orderId)).toMatchObject({ status: "refunded", refundedAmount: 1000, refunds: [expect.objectContaining({ id: c.id, status: "succeeded" })] });
			});
		});

		test.each([
			["negative amount", { amount: -5 }, "amount"],
			["fractional amount", { amount: 1.5 }, "amount"],
			["no reason", { reason: undefined }, "reason"],
			["no refund key", { refundKey: undefined }, "refundKey"],
		])("%s → 422 naming the field", async (_name, override, field) => {
			const err = await shop.broker.call<any, any>("payments.refund", { orderId: "x", refundKey: "k", reason: "r", ...override }).catch((e: any) => e);
			expect(err).toMatchObject({ code: 422 });
			expect(err.data.map((d: any) => d.field)).toContain(field);
		});
	});

	describe("webhook", () => {
		test("404 when STRIPE_WEBHOOK_SECRET is not set", async () => {
			const res = await shop.http.request("POST", "/api/payments/webhook", { raw: JSON.stringify({ id: "evt_1", type: "payment_intent.succeeded" }), headers: { "stripe-signature": "t=1,v1=abc" } });
			expect(res.status).toBe(404);
		});

		test("internal actions are not reachable over HTTP", async () => {
			expect((await shop.http.post("/api/payments/charge", { orderId: "x" })).status).toBe(404);
			expect((await shop.http.post("/api/payments.charge", { orderId: "x" })).status).toBe(404);
		});
	});
});
