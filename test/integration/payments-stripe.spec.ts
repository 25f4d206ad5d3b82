/**
 * The Stripe provider (real stripe-node SDK) against a local fake Stripe server, and the Stripe
 * webhook over HTTP through the gateway, signed with `stripe.webhooks.generateTestHeaderString`.
 */
import Stripe from "stripe";
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { startFakeStripe, type FakeStripe } from "../helpers/fake-stripe";
import { NEVER_CHARGED } from "../../lib/payment-records";
import { AMOUNT_REFUSED } from "../../adapters/payments/provider";

const WEBHOOK_SECRET = "whsec_test_payments_spec";
const ENV_KEYS = ["STRIPE_SECRET_KEY", "STRIPE_API_BASE", "STRIPE_WEBHOOK_SECRET"] as const;

interface RecordedEvent {
	name: string;
	payload: any;
}

let seq = 0;
const newOrderId = () => `order-${process.pid}-s${++seq}`;

describe("payments with Stripe (fake Stripe server)", () => {
	let fake: FakeStripe;
	let shop: Shop;
	let svc: any;
	const events: RecordedEvent[] = [];
	const recorder: ServiceSchema = {
		name: "payment-events-recorder",
		events: {
			"payment.*"(ctx: Context) {
				events.push({ name: ctx.eventName!, payload: ctx.params });
			},
		},
	};
	const savedEnv: Record<string, string | undefined> = {};
	// Only used to sign test payloads, as Stripe does; it never sends a request.
	const signer = new Stripe("sk_test_signer");

	const charge = (orderId: string, token = "pm_card_visa", amount = 1999) =>
		shop.broker.call<any, any>("payments.charge", { orderId, userId: "user-7", amount, currency: "EUR", paymentMethod: { type: "card", token } });
	const refund = (orderId: string, refundKey: string, amount?: number) =>
		shop.broker.call<any, any>("payments.refund", { orderId, refundKey, reason: "requested_by_customer", ...(amount === undefined ? {} : { amount }) });
	const getByOrder = (orderId: string) => shop.broker.call<any, any>("payments.getByOrder", { orderId });
	const eventsFor = (orderId: string, name?: string) => events.filter((e) => e.payload.orderId === orderId && (!name || e.name === name));
	const intentsOf = (orderId: string) => [...fake.intents.values()].filter((pi) => pi.metadata.orderId === orderId);
	/** Runs `fn` while Stripe answers every request with a 500, as during an outage. */
	async function whileStripeDown(fn: () => Promise<unknown>) {
		fake.failNext(1000);
		try {
			await fn();
		} finally {
			fake.failNext(0);
		}
	}

	beforeAll(async () => {
		fake = await startFakeStripe();
		for (const k of ENV_KEYS) savedEnv[k] = process.env[k];
		process.env.STRIPE_SECRET_KEY = "sk_test_payments_spec";
		process.env.STRIPE_API_BASE = fake.url;
		process.env.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET;
		shop = await startShop({ services: ["payments", recorder] });
		svc = shop.broker.getLocalService("payments");
	});
	afterAll(async () => {
		await shop?.stop();
		await fake?.stop();
		for (const k of ENV_KEYS) {
			if (savedEnv[k] === undefined) delete process.env[k];
			else process.env[k] = savedEnv[k];
		}
	});

	test("STRIPE_SECRET_KEY selects the Stripe provider", () => {
		expect(svc.provider.name).toBe("stripe");
	});

	describe("Stripe provider", () => {
		test("a charge creates a confirmed PaymentIntent with an idempotency key and the amount in cents", async () => {
			const orderId = newOrderId();
			const result = await charge(orderId, "pm_card_visa", 1999);
			expect(result).toMatchObject({ orderId, status: "succeeded", amount: 1999, currency: "EUR", cardBrand: "visa", cardLast4: "4242" });

			const [req, ...more] = fake.requestsTo("/v1/payment_intents").filter((r) => r.form["metadata[orderId]"] === orderId);
			expect(more).toHaveLength(0);
			expect(req.idempotencyKey).toBe(`order-${orderId}-charge`);
			expect(req.authorization).toBe("Bearer sk_test_payments_spec");
			expect(req.form).toMatchObject({ amount: "1999", currency: "eur", payment_method: "pm_card_visa", confirm: "true", "metadata[userId]": "user-7" });

			const [intent] = intentsOf(orderId);
			expect(await getByOrder(orderId)).toMatchObject({ provider: "stripe", providerPaymentId: intent.id, status: "succeeded" });
			expect(eventsFor(orderId, "payment.succeeded")).toHaveLength(1);
		});

		test("charging the same order again sends nothing to Stripe", async () => {
			const orderId = newOrderId();
			const first = await charge(orderId, "pm_card_mastercard");
			const before = fake.requests.length;
			expect(await charge(orderId, "pm_card_mastercard")).toEqual(first);
			expect(fake.requests.length).toBe(before);
			expect(first).toMatchObject({ cardBrand: "mastercard", cardLast4: "4444" });
		});

		test("Stripe replays a repeated idempotency key: a lost answer retried charges once", async () => {
			const input = { amount: 700, currency: "EUR", token: "pm_card_visa", idempotencyKey: `retry-${process.pid}`, metadata: { orderId: "retry-order" } };
			const first = await svc.provider.createPayment(input);
			const second = await svc.provider.createPayment(input);
			expect(second).toEqual(first);
			const sent = fake.requestsTo("/v1/payment_intents", { includeReplays: true }).filter((r) => r.idempotencyKey === input.idempotencyKey);
			expect(sent.map((r) => r.replayed)).toEqual([false, true]);
			expect(intentsOf("retry-order")).toHaveLength(1);
		});

		test.each([
			["pm_card_chargeDeclined", "Your card was declined."],
			["pm_card_chargeDeclinedInsufficientFunds", "Your card has insufficient funds."],
		])("a decline (StripeCardError) for %s → 402, payment failed with Stripe's reason", async (token, reason) => {
			const orderId = newOrderId();
			await expect(charge(orderId, token)).rejects.toMatchObject({ code: 402, type: "PAYMENT_DECLINED", message: reason });
			const [intent] = intentsOf(orderId);
			expect(await getByOrder(orderId)).toMatchObject({ status: "failed", failureReason: reason, providerPaymentId: intent.id });
			expect(eventsFor(orderId, "payment.failed")).toEqual([expect.objectContaining({ payload: expect.objectContaining({ reason }) })]);
		});

		test("an unknown payment method → 402 invalid payment method", async () => {
			const orderId = newOrderId();
			await expect(charge(orderId, "pm_card_bogus")).rejects.toMatchObject({ code: 402, message: "invalid payment method" });
			expect(await getByOrder(orderId)).toMatchObject({ status: "failed", providerPaymentId: null });
		});

		test("an amount above what Stripe takes in one payment → 402, not an outage (nothing left pending to look up)", async () => {
			const orderId = newOrderId();
			await expect(charge(orderId, "pm_card_visa", 100_000_000)).rejects.toMatchObject({ code: 402, message: AMOUNT_REFUSED });
			expect(await getByOrder(orderId)).toMatchObject({ status: "failed", providerPaymentId: null, failureReason: AMOUNT_REFUSED });
		});

		test("Stripe down: 503 and the payment stays pending; once it is back, one PaymentIntent under the same key", async () => {
			const orderId = newOrderId();
			await whileStripeDown(() => expect(charge(orderId)).rejects.toMatchObject({ code: 503 }));
			expect(await getByOrder(orderId)).toMatchObject({ status: "pending" });
			expect(await charge(orderId)).toMatchObject({ status: "succeeded" });
			const sent = fake.requestsTo("/v1/payment_intents").filter((r) => r.form["metadata[orderId]"] === orderId);
			expect(sent.length).toBeGreaterThan(1);
			expect(new Set(sent.map((r) => r.idempotencyKey))).toEqual(new Set([`order-${orderId}-charge`]));
			expect(intentsOf(orderId)).toHaveLength(1);
		});

		test("refunds are created at Stripe with idempotency keys, partial then the rest", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 5000);
			const [intent] = intentsOf(orderId);

			const partial = await refund(orderId, `${orderId}-admin-1`, 2000);
			const rest = await refund(orderId, `${orderId}-cancel`);
			expect(partial).toMatchObject({ amount: 2000, status: "succeeded", providerRefundId: expect.stringMatching(/^re_/) });
			expect(rest).toMatchObject({ amount: 3000, status: "succeeded" });
			// Repeating a refund key sends nothing more.
			expect(await refund(orderId, `${orderId}-cancel`)).toEqual(rest);

			const sent = fake.requestsTo("/v1/refunds").filter((r) => r.form.payment_intent === intent.id);
			expect(sent.map((r) => [r.idempotencyKey, r.form.amount])).toEqual([
				[`refund-${orderId}-admin-1`, "2000"],
				[`refund-${orderId}-cancel`, "3000"],
			]);
			expect(intent.amountRefunded).toBe(5000);
			expect(await getByOrder(orderId)).toMatchObject({ status: "refunded", refundedAmount: 5000 });
			await expect(refund(orderId, `${orderId}-more`, 1)).rejects.toMatchObject({ code: 409 });
		});
	});

	describe("cancel (an order cancelled before its 3-D Secure completed)", () => {
		const cancel = (orderId: string) => shop.broker.call<any, any>("payments.cancel", { orderId });

		test("a payment waiting for 3-D Secure: its PaymentIntent is canceled at Stripe and the payment fails, without news", async () => {
			const orderId = newOrderId();
			// Waiting for the customer: the charge carries the intent's client secret for Stripe.js, the admin's view does not.
			expect(await charge(orderId, "pm_card_authenticationRequired")).toMatchObject({ status: "pending", clientSecret: expect.stringMatching(/_secret_/) });
			expect((await getByOrder(orderId)).clientSecret).toBeUndefined();
			const [intent] = intentsOf(orderId);
			expect(await cancel(orderId)).toMatchObject({ status: "failed", failureReason: expect.stringMatching(/^Canceled/) });
			expect(intent.status).toBe("canceled");
			expect(fake.requestsTo(`/v1/payment_intents/${intent.id}/cancel`)).toHaveLength(1);
			// Done: again, nothing more is sent.
			expect(await cancel(orderId)).toMatchObject({ status: "failed" });
			expect(fake.requestsTo(`/v1/payment_intents/${intent.id}/cancel`)).toHaveLength(1);
			expect(eventsFor(orderId)).toEqual([]);
		});

		test("completed at Stripe before the cancel: Stripe refuses it, the payment is recorded as succeeded and announced (the order refunds it)", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_authenticationRequired", 2500);
			const [intent] = intentsOf(orderId);
			intent.status = "succeeded";
			expect(await cancel(orderId)).toMatchObject({ status: "succeeded", amount: 2500 });
			expect(eventsFor(orderId, "payment.succeeded")).toHaveLength(1);
			expect(await refund(orderId, `${orderId}-late`)).toMatchObject({ amount: 2500, status: "succeeded" });
		});

		test("an intent Stripe does not know (made under other keys) counts as canceled, so the cancel does not retry forever", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_authenticationRequired");
			await svc.db.payments.updateOne({ orderId }, { $set: { providerPaymentId: "pi_from_other_keys" } });
			expect(await cancel(orderId)).toMatchObject({ status: "failed" });
		});

		test("a settled payment, or an order without one, sends nothing to Stripe; Stripe down is a 503 and the payment stays pending", async () => {
			const paid = newOrderId();
			await charge(paid);
			const before = fake.requests.length;
			expect(await cancel(paid)).toMatchObject({ status: "succeeded" });
			expect(await cancel(newOrderId())).toBeNull();
			expect(fake.requests.length).toBe(before);

			const waiting = newOrderId();
			await charge(waiting, "pm_card_authenticationRequired");
			await whileStripeDown(() => expect(cancel(waiting)).rejects.toMatchObject({ code: 503 }));
			expect(await getByOrder(waiting)).toMatchObject({ status: "pending" });
			expect(await cancel(waiting)).toMatchObject({ status: "failed" });
		});
	});

	describe("webhook POST /api/payments/webhook", () => {
		const event = (id: string, type: string, object: Record<string, unknown>) => ({ id, object: "event", type, created: Math.floor(Date.now() / 1000), data: { object } });
		const post = (payload: string, signature?: string) =>
			shop.http.request("POST", "/api/payments/webhook", { raw: payload, headers: signature === undefined ? {} : { "stripe-signature": signature } });
		const send = (evt: unknown, opts: { secret?: string; timestamp?: number } = {}) => {
			const payload = JSON.stringify(evt);
			return post(payload, signer.webhooks.generateTestHeaderString({ payload, secret: opts.secret ?? WEBHOOK_SECRET, timestamp: opts.timestamp }));
		};
		const evtId = () => `evt_${process.pid}_${++seq}`;
		/** An order paid by card, and its PaymentIntent at the fake. */
		async function paidOrder(amount: number) {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", amount);
			return { orderId, intent: intentsOf(orderId)[0] };
		}
		/** Stripe's charge.refunded for an intent: its charge with the total refunded so far. */
		const chargeRefunded = (intent: { id: string; chargeId: string | null }, orderId: string, amount: number, refunded: number) =>
			event(evtId(), "charge.refunded", { id: intent.chargeId, object: "charge", payment_intent: intent.id, amount, amount_refunded: refunded, metadata: { orderId } });

		/** A payment left pending by 3-D Secure, waiting for Stripe's webhook. */
		async function pendingPayment() {
			const orderId = newOrderId();
			expect(await charge(orderId, "pm_card_authenticationRequired", 1500)).toMatchObject({ status: "pending" });
			const [intent] = intentsOf(orderId);
			return { orderId, intentId: intent.id };
		}

		test("valid: payment_intent.succeeded settles a pending payment once and publishes payment.succeeded", async () => {
			const { orderId, intentId } = await pendingPayment();
			const res = await send(event(evtId(), "payment_intent.succeeded", { id: intentId, object: "payment_intent", status: "succeeded", amount: 1500, metadata: { orderId } }));
			expect(res.status).toBe(200);
			expect(res.body).toEqual({ received: true });
			const payment = await getByOrder(orderId);
			expect(payment).toMatchObject({ status: "succeeded", providerPaymentId: intentId });
			expect(eventsFor(orderId)).toEqual([
				{ name: "payment.succeeded", payload: { orderId, paymentId: payment.id, userId: "user-7", amount: 1500, currency: "EUR", eventId: expect.any(String) } },
			]);
		});

		test("valid: matched by metadata.orderId when the provider id is not known yet", async () => {
			const { orderId, intentId } = await pendingPayment();
			await svc.db.payments.updateOne({ orderId }, { $set: { providerPaymentId: null } });
			expect((await send(event(evtId(), "payment_intent.succeeded", { id: intentId, metadata: { orderId } }))).status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", providerPaymentId: intentId });
		});

		test("valid: payment_intent.payment_failed fails a pending payment with Stripe's reason", async () => {
			const { orderId, intentId } = await pendingPayment();
			const res = await send(event(evtId(), "payment_intent.payment_failed", { id: intentId, metadata: { orderId }, last_payment_error: { message: "Authentication failed." } }));
			expect(res.status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "failed", failureReason: "Authentication failed." });
			expect(eventsFor(orderId, "payment.failed")).toEqual([expect.objectContaining({ payload: expect.objectContaining({ reason: "Authentication failed." }) })]);
			// Its order is cancelled, so is the intent: the client secret the browser holds can no longer pay it.
			expect(fake.intents.get(intentId)!.status).toBe("canceled");
		});

		test("payment_failed whose cancel of the intent fails: 503, and the redelivery cancels it, announcing the failure once", async () => {
			const { orderId, intentId } = await pendingPayment();
			const evt = event(evtId(), "payment_intent.payment_failed", { id: intentId, metadata: { orderId }, last_payment_error: { message: "Authentication failed." } });
			fake.failNext(1);
			expect((await send(evt)).status).toBe(503);
			expect(fake.intents.get(intentId)!.status).not.toBe("canceled");
			expect((await send(evt)).status).toBe(200);
			expect(fake.intents.get(intentId)!.status).toBe("canceled");
			expect(await getByOrder(orderId)).toMatchObject({ status: "failed" });
			expect(eventsFor(orderId, "payment.failed")).toHaveLength(1);
		});

		test("signed but not an event (null, an array, no id, an id that is not a string) → 400, nothing filed", async () => {
			for (const payload of ["null", "[]", "{}", JSON.stringify({ type: "charge.refunded", data: { object: {} } }), JSON.stringify({ id: { $gt: "" }, type: "charge.refunded", data: { object: {} } })]) {
				const res = await post(payload, signer.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET }));
				expect(res.status).toBe(400);
				expect(res.body).toMatchObject({ code: 400, type: "INVALID_EVENT" });
			}
			// Nothing was filed under an empty id: a genuine event still applies.
			const { orderId, intentId } = await pendingPayment();
			expect((await send(event(evtId(), "payment_intent.succeeded", { id: intentId, metadata: { orderId } }))).body).toEqual({ received: true });
		});

		test("forged: another secret, a tampered body, a missing or garbled header → 400, nothing changed", async () => {
			const { orderId, intentId } = await pendingPayment();
			const evt = event(evtId(), "payment_intent.succeeded", { id: intentId, metadata: { orderId } });
			svc.refusedWebhooks = undefined;
			const warn = jest.spyOn(svc.logger, "warn");
			const forged = await send(evt, { secret: "whsec_attacker" });
			expect(forged.status).toBe(400);
			expect(forged.body).toMatchObject({ code: 400, type: "INVALID_SIGNATURE" });

			const genuine = JSON.stringify(event(evtId(), "payment_intent.payment_failed", { id: intentId, metadata: { orderId } }));
			const signature = signer.webhooks.generateTestHeaderString({ payload: genuine, secret: WEBHOOK_SECRET });
			expect((await post(JSON.stringify(evt), signature)).status).toBe(400);
			expect((await post(JSON.stringify(evt))).status).toBe(400);
			expect((await post(JSON.stringify(evt), "t=1,v1=deadbeef")).status).toBe(400);
			// Signed but not JSON: the body is what is wrong, not the secret.
			expect((await post("not json", signer.webhooks.generateTestHeaderString({ payload: "not json", secret: WEBHOOK_SECRET }))).body).toMatchObject({ code: 400, type: "INVALID_EVENT" });

			expect(await getByOrder(orderId)).toMatchObject({ status: "pending" });
			expect(eventsFor(orderId)).toHaveLength(0);
			// A wrong STRIPE_WEBHOOK_SECRET refuses every event: said in the log, once a minute at most, not once per delivery.
			const warned = warn.mock.calls.map((args) => String(args[0])).filter((line) => line.includes("webhook"));
			warn.mockRestore();
			expect(warned).toEqual([expect.stringMatching(/^Refused 1 Stripe webhook delivery .*STRIPE_WEBHOOK_SECRET/)]);
			// None of them used up the event id: the genuine delivery still applies.
			expect((await send(evt)).body).toEqual({ received: true });
			expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded" });
		});

		test("stale: a signature from 10 minutes ago → 400, nothing changed", async () => {
			const { orderId, intentId } = await pendingPayment();
			const evt = event(evtId(), "payment_intent.succeeded", { id: intentId, metadata: { orderId } });
			const stale = await send(evt, { timestamp: Math.floor(Date.now() / 1000) - 600 });
			expect(stale.status).toBe(400);
			expect(await getByOrder(orderId)).toMatchObject({ status: "pending" });
			expect(eventsFor(orderId)).toHaveLength(0);
		});

		test("replayed: the same event id is acknowledged with 200 and applied once", async () => {
			const { orderId, intentId } = await pendingPayment();
			const evt = event(evtId(), "payment_intent.succeeded", { id: intentId, metadata: { orderId } });
			expect((await send(evt)).body).toEqual({ received: true });
			const replays = await Promise.all([send(evt), send(evt), send(evt)]);
			for (const r of replays) {
				expect(r.status).toBe(200);
				expect(r.body).toEqual({ received: true, duplicate: true });
			}
			expect(eventsFor(orderId, "payment.succeeded")).toHaveLength(1);
		});

		test("a delivery that died while applying its event: the next delivery applies it (at once once stale, 503 before), announcing the outcome once", async () => {
			const { orderId, intentId } = await pendingPayment();
			const evt = event(evtId(), "payment_intent.succeeded", { id: intentId, metadata: { orderId } });
			// Filed and the payment settled, then the process died: not marked applied, nothing announced.
			await svc.db.webhook_events.insert({ eventId: evt.id, type: evt.type, receivedAt: new Date(), applied: false });
			await svc.db.payments.updateOne({ orderId }, { $set: { status: "succeeded", providerPaymentId: intentId } });
			const early = await send(evt);
			expect(early.status).toBe(503);
			await svc.db.webhook_events.updateOne({ eventId: evt.id }, { $set: { receivedAt: new Date(Date.now() - 120_000) } });
			expect((await send(evt)).body).toEqual({ received: true });
			expect(eventsFor(orderId, "payment.succeeded")).toHaveLength(1);
			// Applied now: later deliveries are duplicates, announced nothing more.
			expect((await send(evt)).body).toEqual({ received: true, duplicate: true });
			expect(eventsFor(orderId, "payment.succeeded")).toHaveLength(1);
		});

		test("out of order: payment_failed after succeeded changes nothing", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 1200);
			const [intent] = intentsOf(orderId);
			const late = await send(event(evtId(), "payment_intent.payment_failed", { id: intent.id, metadata: { orderId }, last_payment_error: { message: "Your card was declined." } }));
			expect(late.status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", failureReason: null });
			expect(eventsFor(orderId, "payment.failed")).toHaveLength(0);
			// And a late succeeded for an already succeeded payment publishes nothing again.
			await send(event(evtId(), "payment_intent.succeeded", { id: intent.id, metadata: { orderId } }));
			expect(eventsFor(orderId, "payment.succeeded")).toHaveLength(1);
		});

		test("succeeded after a decline (the intent confirmed again with its client secret): the money is recorded, announced and given back once", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_chargeDeclined").catch(() => undefined);
			const [intent] = intentsOf(orderId);
			expect(await getByOrder(orderId)).toMatchObject({ status: "failed" });
			const paid = event(evtId(), "payment_intent.succeeded", { id: intent.id, metadata: { orderId } });
			// Paid on Stripe's side after all.
			intent.status = "succeeded";
			expect((await send(paid)).status).toBe(200);
			expect((await send(event(evtId(), "payment_intent.succeeded", { id: intent.id, metadata: { orderId } }))).status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "refunded", paidAfterFailure: true });
			expect(eventsFor(orderId, "payment.succeeded")).toHaveLength(1);
			expect(eventsFor(orderId, "payment.refunded")).toEqual([expect.objectContaining({ payload: expect.objectContaining({ sale: false }) })]);
			expect(fake.requestsTo("/v1/refunds").filter((r) => r.form.payment_intent === intent.id)).toHaveLength(1);
		});

		test("charge.refunded records a refund made at Stripe, and not one we already recorded", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 3000);
			const [intent] = intentsOf(orderId);
			const ours = await refund(orderId, `${orderId}-admin`, 1000);
			const charge1 = { id: intent.chargeId, object: "charge", payment_intent: intent.id, amount: 3000, amount_refunded: 1000, metadata: { orderId } };
			expect((await send(event(evtId(), "charge.refunded", charge1))).status).toBe(200);
			expect((await getByOrder(orderId)).refunds).toHaveLength(1);

			// Someone refunds the rest in Stripe's dashboard.
			const dashboard = fake.refundAtDashboard(intent.id, 2000);
			const charge2 = { ...charge1, amount_refunded: 3000 };
			expect((await send(event(evtId(), "charge.refunded", charge2))).status).toBe(200);
			// Delivered again (or the first event late): nothing more.
			expect((await send(event(evtId(), "charge.refunded", charge2))).status).toBe(200);
			const payment = await getByOrder(orderId);
			expect(payment).toMatchObject({ status: "refunded", refundedAmount: 3000 });
			expect(payment.refunds.map((r: any) => [r.id === ours.id, r.amount, r.providerRefundId])).toEqual([
				[true, 1000, ours.providerRefundId],
				[false, 2000, dashboard.id],
			]);
			expect(eventsFor(orderId, "payment.refunded").map((e) => [e.payload.amount, e.payload.totalRefunded])).toEqual([
				[1000, 1000],
				[2000, 3000],
			]);
			// Nothing is left to refund through us either.
			await expect(refund(orderId, `${orderId}-late`, 1)).rejects.toMatchObject({ code: 409 });
		});

		test("charge.refunded whose delivery died after counting the refund: the redelivery records and announces it once, counting nothing more", async () => {
			const orderId = newOrderId();
			await charge(orderId, "pm_card_visa", 2000);
			const [intent] = intentsOf(orderId);
			fake.refundAtDashboard(intent.id, 500);
			const evt = event(evtId(), "charge.refunded", { id: intent.chargeId, object: "charge", payment_intent: intent.id, amount: 2000, amount_refunded: 500, metadata: { orderId } });
			const died = jest.spyOn(svc.db.refunds, "insert").mockRejectedValueOnce(new Error("process died"));
			expect((await send(evt)).status).toBe(500);
			died.mockRestore();
			expect(await getByOrder(orderId)).toMatchObject({ refundedAmount: 500, refunds: [] });

			expect((await send(evt)).status).toBe(200);
			const payment = await getByOrder(orderId);
			expect(payment).toMatchObject({ status: "partially_refunded", refundedAmount: 500 });
			expect(payment.refunds.map((r: any) => r.amount)).toEqual([500]);
			expect(eventsFor(orderId, "payment.refunded").map((e) => e.payload.amount)).toEqual([500]);
		});

		test("a refund whose answer was lost, recorded from its webhook, then asked again under its key: counted once", async () => {
			const { orderId, intent } = await paidOrder(1599);
			fake.loseRefundAnswers(1);
			await expect(refund(orderId, `${orderId}-lost`, 500)).rejects.toMatchObject({ code: 503 });
			expect(fake.refunds.size).toBeGreaterThan(0);
			// Stripe made it, and says so.
			expect((await send(chargeRefunded(intent, orderId, 1599, 500))).status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 500 });
			// The admin's retry with the same key: Stripe answers with that same refund.
			const again = await refund(orderId, `${orderId}-lost`, 500);
			const payment = await getByOrder(orderId);
			expect(payment).toMatchObject({ status: "partially_refunded", refundedAmount: 500 });
			expect(payment.refunds.map((r: any) => r.id)).toContain(again.id);
			expect(eventsFor(orderId, "payment.refunded").map((e) => e.payload.amount)).toEqual([500]);
			// And once more: the same answer.
			expect((await refund(orderId, `${orderId}-lost`, 500)).id).toBe(again.id);
			expect((await getByOrder(orderId)).refunds.map((r: any) => r.amount)).toEqual([500]);
			// Another refund of the same amount, in the dashboard: a refund of its own, not taken for the retried one.
			fake.refundAtDashboard(intent.id, 500);
			expect((await send(chargeRefunded(intent, orderId, 1599, 1000))).status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 1000 });
			expect((await getByOrder(orderId)).refunds.map((r: any) => r.amount)).toEqual([500, 500]);
			// What is left can still be refunded, and no more.
			expect(await refund(orderId, `${orderId}-rest`, 599)).toMatchObject({ status: "succeeded", amount: 599 });
			expect(await getByOrder(orderId)).toMatchObject({ status: "refunded", refundedAmount: 1599 });
		});

		test("a refund made at Stripe that is pending is recorded once it succeeded; one that fails meanwhile never is", async () => {
			const { orderId, intent } = await paidOrder(2000);
			const failing = fake.refundAtDashboard(intent.id, 400, "pending");
			expect((await send(chargeRefunded(intent, orderId, 2000, 400))).status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", refundedAmount: 0 });
			fake.failRefund(failing.id);
			expect((await send(event(evtId(), "refund.failed", { id: failing.id, object: "refund", payment_intent: intent.id, amount: 400, status: "failed", failure_reason: "lost_or_stolen_card" }))).status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", refundedAmount: 0, refunds: [] });
			expect(eventsFor(orderId, "payment.refunded")).toHaveLength(0);

			const going = fake.refundAtDashboard(intent.id, 300, "pending");
			expect((await send(chargeRefunded(intent, orderId, 2000, 300))).status).toBe(200);
			going.status = "succeeded";
			expect((await send(event(evtId(), "charge.refund.updated", { id: going.id, object: "refund", payment_intent: intent.id, amount: 300, status: "succeeded" }))).status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 300 });
			expect(eventsFor(orderId, "payment.refunded").map((e) => e.payload.amount)).toEqual([300]);
		});

		test("charge.refunded before the payment is recorded paid (its succeeded event comes later): delivered again (503), then counted", async () => {
			const { orderId, intentId } = await pendingPayment();
			const intent = fake.intents.get(intentId)!;
			// At Stripe: the customer completes 3-D Secure, and 400 is refunded in the dashboard.
			intent.status = "succeeded";
			intent.chargeId ??= "ch_early";
			fake.refundAtDashboard(intentId, 400);
			const refunded = chargeRefunded(intent, orderId, 1500, 400);
			expect((await send(refunded)).status).toBe(503);
			expect((await send(event(evtId(), "payment_intent.succeeded", { id: intentId, metadata: { orderId } }))).status).toBe(200);
			expect((await send(refunded)).status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 400 });
		});

		test("charge.refunded while a refund of ours is being made: delivered again later (503), so a refund made at Stripe is not lost when ours fails", async () => {
			const { orderId, intent } = await paidOrder(1599);
			fake.refundAtDashboard(intent.id, 300);
			const evt = chargeRefunded(intent, orderId, 1599, 300);
			// Our refund's answer is slow, and then an error; the webhook's own questions are answered at once.
			fake.delayAnswers(400);
			fake.failNext(1);
			const ours = refund(orderId, `${orderId}-ours`, 500).catch((err) => err);
			await new Promise((resolve) => setTimeout(resolve, 150));
			fake.delayAnswers(0);
			expect((await send(evt)).status).toBe(503);
			expect(await ours).toMatchObject({ code: 503 });
			expect((await send(evt)).status).toBe(200);
			expect(await getByOrder(orderId)).toMatchObject({ status: "partially_refunded", refundedAmount: 300 });
		});

		test("a refund Stripe refuses (more than is left on the charge): failed at once with Stripe's reason, nothing counted, not an outage", async () => {
			const { orderId, intent } = await paidOrder(1599);
			// Refunded in the dashboard, without a webhook to tell the shop.
			fake.refundAtDashboard(intent.id, 1599);
			const refused = await refund(orderId, `${orderId}-all`, 1599);
			expect(refused).toMatchObject({ status: "failed", amount: 1599, failureReason: expect.stringContaining("greater than unrefunded amount") });
			expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", refundedAmount: 0 });
			expect(eventsFor(orderId, "payment.refunded")).toHaveLength(0);
		});

		test("events of other types or of unknown payments are acknowledged and ignored", async () => {
			expect((await send(event(evtId(), "customer.created", { id: "cus_1" }))).body).toEqual({ received: true });
			expect((await send(event(evtId(), "payment_intent.succeeded", { id: "pi_unknown", metadata: { orderId: "nope" } }))).body).toEqual({ received: true });
		});

		describe("a charge whose answer was never recorded", () => {
			afterEach(() => {
				fake.searchLag(0);
				fake.loseCreatedAnswers(0);
			});

			test("findPayment finds the order's PaymentIntent through Stripe's search, with its card; an order Stripe has none of is null", async () => {
				const orderId = `${newOrderId()}-it's`;
				await charge(orderId, "pm_card_mastercard", 1300);
				const [intent] = intentsOf(orderId);
				expect(await svc.provider.findPayment({ idempotencyKey: `order-${orderId}-charge`, orderId })).toEqual({
					providerId: intent.id, status: "succeeded", cardBrand: "mastercard", cardLast4: "4444", failureReason: null,
				});
				const [search] = fake.requestsTo("/v1/payment_intents/search").slice(-1);
				expect(search.form.query).toBe(`metadata['orderId']:'${orderId.replace("'", "\\'")}'`);
				expect(await svc.provider.findPayment({ idempotencyKey: "order-none-charge", orderId: newOrderId() })).toBeNull();
				expect(svc.provider.lookupLagMs).toBe(10 * 60_000);
			});

			test("Stripe charged but the answer was lost: getByOrder finds the intent and records it succeeded, announced once", async () => {
				const orderId = newOrderId();
				fake.loseCreatedAnswers(1);
				await expect(charge(orderId, "pm_card_visa", 2100)).rejects.toMatchObject({ code: 503 });
				const [intent] = intentsOf(orderId);
				expect(intent.status).toBe("succeeded");
				expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", providerPaymentId: intent.id, cardBrand: "visa", cardLast4: "4242" });
				expect(eventsFor(orderId).map((e) => e.name)).toEqual(["payment.succeeded"]);
			});

			test("recorded failed as never charged (the search lagged past the grace period), then the webhook says it succeeded: recorded, announced and refunded at Stripe once", async () => {
				const orderId = newOrderId();
				fake.searchLag(60 * 60_000);
				fake.loseCreatedAnswers(1);
				await expect(charge(orderId, "pm_card_visa", 2700)).rejects.toMatchObject({ code: 503 });
				await svc.db.payments.updateOne({ orderId }, { $set: { chargeStartedAt: new Date(Date.now() - 11 * 60_000) } });
				expect(await getByOrder(orderId)).toMatchObject({ status: "failed", failureReason: NEVER_CHARGED });
				const [intent] = intentsOf(orderId);

				const evt = event(evtId(), "payment_intent.succeeded", { id: intent.id, object: "payment_intent", status: "succeeded", amount: 2700, metadata: { orderId } });
				expect((await send(evt)).body).toEqual({ received: true });
				expect(await getByOrder(orderId)).toMatchObject({ status: "refunded", providerPaymentId: intent.id, refundedAmount: 2700, paidAfterFailure: true });
				expect(fake.requestsTo("/v1/refunds").filter((r) => r.form.payment_intent === intent.id)).toHaveLength(1);
				expect(intent.amountRefunded).toBe(2700);
				expect(eventsFor(orderId).map((e) => [e.name, e.payload.sale])).toEqual([
					["payment.failed", undefined],
					["payment.succeeded", undefined],
					["payment.refunded", false],
				]);
				// Delivered again, or another event about it: nothing more.
				expect((await send(evt)).body).toEqual({ received: true, duplicate: true });
				await send(event(evtId(), "payment_intent.succeeded", { id: intent.id, metadata: { orderId } }));
				expect(fake.requestsTo("/v1/refunds").filter((r) => r.form.payment_intent === intent.id)).toHaveLength(1);
			});

			test("paid after failing, the refund at Stripe failed: the webhook answers an error and its redelivery refunds", async () => {
				const orderId = newOrderId();
				fake.searchLag(60 * 60_000);
				fake.loseCreatedAnswers(1);
				await expect(charge(orderId, "pm_card_visa", 900)).rejects.toMatchObject({ code: 503 });
				await svc.db.payments.updateOne({ orderId }, { $set: { chargeStartedAt: new Date(Date.now() - 11 * 60_000) } });
				expect(await getByOrder(orderId)).toMatchObject({ status: "failed" });
				const [intent] = intentsOf(orderId);
				const evt = event(evtId(), "payment_intent.succeeded", { id: intent.id, metadata: { orderId } });
				await whileStripeDown(async () => expect((await send(evt)).status).toBe(503));
				expect(await getByOrder(orderId)).toMatchObject({ status: "succeeded", paidAfterFailure: true });
				expect((await send(evt)).body).toEqual({ received: true });
				expect(await getByOrder(orderId)).toMatchObject({ status: "refunded", refundedAmount: 900 });
				expect(intent.amountRefunded).toBe(900);
				expect(eventsFor(orderId, "payment.succeeded")).toHaveLength(1);
			});
		});
	});
});
