/**
 * Payments through a provider (built-in test provider or Stripe), webhooks; refunds are in
 * mixins/payment-refunds.mixin.ts.
 * One payment per order (unique `orderId`): the pending payment is inserted before the provider is
 * called, so concurrent charges of one order make one provider call; the provider's idempotency key
 * is derived from the order, so a retry after a lost answer never charges twice either.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Context, Service, ServiceSchema } from "moleculer";
import type { Collection } from "../mixins/collection";
import { DbMixin, aloneOnItsStore } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import { PaymentRefundsMixin, type PaymentHostMethods, type PaymentRefundMethods } from "../mixins/payment-refunds.mixin";
import { PaymentLookupsMixin, type PaymentLookupMethods } from "../mixins/payment-lookups.mixin";
import { chargeKey, isUnrecordedCharge, refundView, LEASE_MS, POLL_MS, WAIT_FOR_OUTCOME_MS, type Payment, type Refund } from "../lib/payment-records";
import type { ShopMeta } from "../mixins/types";
import { BadRequestError, ConflictError, NotFoundError, PaymentDeclinedError, ServiceUnavailableError, isDuplicate } from "../lib/errors";
import { canOverturnFailure, statusesLeadingTo, type PaymentStatus } from "../lib/payment-state";
import { readPaymentsConfig } from "../adapters/payments/config";
import { processStartedAt, readConfig } from "../lib/config";
import { SampledLog } from "../lib/sampled-log";
import { createPaymentProvider, providerWarning, PaymentProviderError, type CreatePaymentResult, type PaymentProvider } from "../adapters/payments/provider";
import { createWebhookVerifier } from "../adapters/payments/stripe-provider";
import { TestPaymentProvider } from "../adapters/payments/test-provider";

/** Stripe retries a webhook for up to three days; ids are kept longer than that. */
const WEBHOOK_EVENT_TTL_SECONDS = 30 * 24 * 3600;
/** A delivery still unapplied after this died while applying it: a redelivery applies it again. */
const WEBHOOK_APPLY_STALE_MS = 60_000;
/** A refund failure the built-in provider tells before its refund is recorded is tried again, as Stripe redelivers. */
const REFUND_FAILURE_TRIES = 20;
const REFUND_FAILURE_RETRY_MS = 500;

interface ChargeParams {
	orderId: string;
	/** The order's number, for what the customer is told about this payment (refund emails). */
	orderNumber?: string;
	userId: string;
	amount: number;
	currency: string;
	paymentMethod: { type: "card"; token: string };
}
interface StripeWebhookEvent {
	id: string;
	type: string;
	/** When Stripe created the event (Unix seconds): what its object says is as of then. */
	created?: number;
	data: { object: Record<string, any> };
}

/** Signed, yet only an event with an id (to file it once by) and a type can be applied. */
function isStripeEvent(event: unknown): event is StripeWebhookEvent {
	const e = event as StripeWebhookEvent | null;
	return typeof e === "object" && e !== null && typeof e.id === "string" && e.id !== "" && typeof e.type === "string" && typeof e.data?.object === "object" && e.data.object !== null;
}

interface PaymentsVars {
	db: { payments: Collection<Payment>; refunds: Collection<Refund>; webhook_events: Collection };
	provider: PaymentProvider;
	/** Null when STRIPE_WEBHOOK_SECRET is unset: the webhook then does not exist (404). */
	verifyWebhook: ((rawBody: string | Buffer, signature: string) => StripeWebhookEvent) | null;
	/** The warning of webhook deliveries refused for their signature, once a minute (webhookRefused). */
	refusedWebhooks: SampledLog;
}
interface PaymentsMethods extends PaymentRefundMethods, PaymentHostMethods, PaymentLookupMethods {
	publish(ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<string>;
	published(event: string, about: Record<string, unknown>, since: Date): Promise<boolean>;
	chargeOnce(params: ChargeParams, ctx: Context): Promise<Payment>;
	claimCharge(params: ChargeParams): Promise<{ payment: Payment; mine: boolean }>;
	voidPayment(orderId: string, order: { userId: string; amount: number; currency: string }): Promise<Payment | null>;
	applyChargeOutcome(ctx: Context | null, payment: Payment, result: CreatePaymentResult, where?: Record<string, unknown>): Promise<Payment>;
	transition(paymentId: string, to: PaymentStatus, set: Partial<Payment>, where?: Record<string, unknown>): Promise<Payment | null>;
	publishOutcome(ctx: Context | null, payment: Payment): Promise<void>;
	publishOutcomeOnce(ctx: Context | null, payment: Payment): Promise<void>;
	reclaimWebhookEvent(eventId: string): Promise<boolean>;
	applyStripeEvent(ctx: Context, event: StripeWebhookEvent): Promise<void>;
	findProviderPayment(providerPaymentId: unknown, orderId: unknown): Promise<Payment | null>;
	webhookRefused(): void;
}
type This = Service & PaymentsVars & PaymentsMethods;

/** The params of an action about one order's payment. */
const byOrderParams = { $$strict: "remove", orderId: { type: "string", min: 1, max: 100 } } as const;

/** The failure reason of a payment stopped because its order was cancelled first. */
const CANCELED_WITH_ORDER = "Canceled: the order was cancelled before the payment completed";
/** The failure reason of a payment recorded for an order undone before any charge reached the provider (see cancel). */
const VOIDED_WITH_ORDER = "Never charged: the order was cancelled before its charge was made";

/** A payment as first stored: nothing from the provider yet, nothing refunded, no call under way. */
function newPayment(provider: string, now: Date, row: Pick<Payment, "orderId" | "userId" | "amount" | "currency" | "status"> & Partial<Payment>) {
	return {
		orderNumber: null, providerPaymentId: null, cardBrand: null, cardLast4: null, failureReason: null, refundedAmount: 0, reservedRefundAmount: 0,
		chargeLeaseUntil: null, chargeStartedAt: null, ...row, provider, createdAt: now, updatedAt: now,
	};
}

/** The charge's answer to orders; one waiting for the customer carries what their browser completes it with. */
function chargeView(p: Payment) {
	const waiting = p.status === "pending" && p.clientSecret ? { clientSecret: p.clientSecret } : {};
	return { id: p.id, orderId: p.orderId, status: p.status, amount: p.amount, currency: p.currency, cardBrand: p.cardBrand, cardLast4: p.cardLast4, ...waiting };
}
/** The admin's view: the customer's client secret is theirs alone. */
function paymentView(p: Payment) {
	const { chargeLeaseUntil: _lease, chargeStartedAt: _started, reservedRefundAmount: _reserved, reservedRefunds: _refunds, countedRefunds: _counted, clientSecret: _secret, ...rest } = p;
	return rest;
}

const PaymentsService: ServiceSchema<Record<string, any>, PaymentsMethods, PaymentsVars> = {
	name: "payments",
	mixins: [
		DbMixin("payments", {
			payments: {
				fields: {
					orderId: String, orderNumber: String, userId: String, amount: Number, currency: String, status: String, provider: String,
					providerPaymentId: String, cardBrand: String, cardLast4: String, failureReason: String, clientSecret: String,
					refundedAmount: Number, reservedRefundAmount: Number, reservedRefunds: Object, countedRefunds: Object, chargeLeaseUntil: Date, chargeStartedAt: Date,
					paidAfterFailure: Boolean, voided: Boolean, createdAt: Date, updatedAt: Date,
				},
				// status + chargeLeaseUntil: each node's minute sweep for charges whose answer was never recorded.
				indexes: [{ fields: { orderId: 1 }, unique: true }, { fields: { providerPaymentId: 1 } }, { fields: { status: 1, chargeLeaseUntil: 1 } }],
			},
			refunds: {
				fields: {
					refundKey: String, orderId: String, paymentId: String, amount: Number, currency: String, reason: String, status: String,
					providerRefundId: String, reserved: Boolean, sale: Boolean, failedLater: String, failureReason: String, sameAs: String, failedAt: Date, announceUntil: Date, leaseUntil: Date, createdAt: Date, updatedAt: Date,
				},
				// status + leaseUntil: each node's minute sweep for refunds whose call died (PaymentRefundsMixin);
				// providerRefundId: a refund Stripe fails later is named by its id.
				indexes: [{ fields: { refundKey: 1 }, unique: true }, { fields: { paymentId: 1 } }, { fields: { status: 1, leaseUntil: 1 } }, { fields: { providerRefundId: 1 } }],
			},
			webhook_events: {
				fields: { eventId: String, type: String, receivedAt: Date, applied: Boolean },
				indexes: [{ fields: { eventId: 1 }, unique: true }, { fields: { receivedAt: 1 }, expireAfterSeconds: WEBHOOK_EVENT_TTL_SECONDS }],
			},
		}),
		OutboxMixin("payments"),
		HealthMixin,
		PaymentRefundsMixin,
		PaymentLookupsMixin,
	],
	settings: { rest: "/" },

	events: {
		// Alone on the store (no transporter, or an embedded store), no call of the previous run still talks
		// to the provider: its leases on charges and refunds are dropped, so a retry goes on at once instead
		// of waiting them out (the provider's idempotency keys keep a redone call from acting twice); and
		// webhook events it was applying are left for their next delivery at once.
		async "$broker.started"(this: This) {
			if (!aloneOnItsStore(this.broker)) return;
			// Only leases taken before this process started (ending before then plus a lease): a request of this
			// run may hold one already.
			const startedAt = processStartedAt();
			const expired = new Date(0);
			const before = new Date(startedAt.getTime() + LEASE_MS);
			await this.db.payments.updateMany({ status: "pending", chargeLeaseUntil: { $gt: expired, $lt: before } }, { $set: { chargeLeaseUntil: expired } });
			await this.db.refunds.updateMany({ status: "processing", leaseUntil: { $gt: expired, $lt: before } }, { $set: { leaseUntil: expired } });
			// A refund's failure it was announcing: the next delivery of that failure announces it at once.
			await this.db.refunds.updateMany({ status: "failed", announceUntil: { $gt: expired, $lt: before } }, { $set: { announceUntil: expired } });
			// Webhook deliveries it was applying: the next delivery applies them again.
			await this.db.webhook_events.updateMany({ applied: false, receivedAt: { $lt: startedAt } }, { $set: { receivedAt: new Date(Date.now() - WEBHOOK_APPLY_STALE_MS) } });
			// Refunds its calls left half done, that no retry will ask for again (a random key), are finished now;
			// so are the charges whose answer it never recorded.
			this.resumeAbandonedRefunds().catch((err: Error) => this.logger.error("Resuming abandoned refunds failed:", err));
			this.settleUnrecordedCharges().catch((err: Error) => this.logger.error("Settling unrecorded charges failed:", err));
		},
	},

	actions: {
		charge: {
			visibility: "public",
			params: {
				$$strict: "remove",
				orderId: { type: "string", min: 1, max: 100 },
				orderNumber: { type: "string", min: 1, max: 100, optional: true },
				userId: { type: "string", min: 1, max: 100 },
				amount: { type: "number", integer: true, positive: true },
				currency: { type: "string", uppercase: true, pattern: /^[A-Z]{3}$/ },
				paymentMethod: { type: "object", strict: "remove", props: { type: { type: "equal", value: "card" }, token: { type: "string", min: 1, max: 255 } } },
			},
			async handler(this: This, ctx: Context<ChargeParams, ShopMeta>) {
				const payment = await this.chargeOnce(ctx.params, ctx);
				if (payment.status === "failed") {
					throw new PaymentDeclinedError(payment.failureReason ?? "Payment declined", { orderId: payment.orderId, paymentId: payment.id, reason: payment.failureReason });
				}
				return chargeView(payment);
			},
		},

		/** A charge whose answer was never recorded is looked up at the provider first (settleUnrecordedCharge). */
		getByOrder: {
			visibility: "public",
			params: byOrderParams,
			async handler(this: This, ctx: Context<{ orderId: string }, ShopMeta>) {
				let payment = await this.db.payments.findOne({ orderId: ctx.params.orderId });
				if (!payment) return null;
				if (isUnrecordedCharge(payment, new Date())) payment = await this.settleUnrecordedCharge(ctx, payment);
				// A refund that turned out to be another one (sameAs) is listed once, as that one.
				const refunds = await this.db.refunds.find({ paymentId: payment.id, sameAs: { $exists: false } }, { sort: { createdAt: 1 } });
				return { ...paymentView(payment), refunds: refunds.map(refundView) };
			},
		},

		/**
		 * Stops the order's payment if it is still waiting (3-D Secure not completed), so a cancelled
		 * order can no longer take money. Returns the payment as it stands: `failed` once canceled,
		 * `succeeded` when the customer completed it first, `pending` when the provider cannot stop it
		 * (processing, or a charge whose outcome is not known yet): its webhook or the sweep settles it.
		 * A charge whose answer was never recorded is looked up at the provider first. Safe to repeat.
		 * A payment stopped so, having taken nothing, is `voided` as well. With `ifNone` (an undone checkout
		 * whose charge request may still be on its way), an order with no payment gets one recorded `failed`
		 * and `voided`, never charged: a charge for it arriving later is refused without asking the provider.
		 */
		cancel: {
			visibility: "public",
			params: {
				...byOrderParams,
				ifNone: {
					type: "object",
					optional: true,
					strict: "remove",
					props: { userId: { type: "string", min: 1, max: 100 }, amount: { type: "number", integer: true, min: 0 }, currency: { type: "string", uppercase: true, pattern: /^[A-Z]{3}$/ } },
				},
			},
			async handler(this: This, ctx: Context<{ orderId: string; ifNone?: { userId: string; amount: number; currency: string } }, ShopMeta>) {
				let payment = await this.db.payments.findOne({ orderId: ctx.params.orderId });
				if (!payment && ctx.params.ifNone) payment = await this.voidPayment(ctx.params.orderId, ctx.params.ifNone);
				if (!payment) return null;
				if (isUnrecordedCharge(payment, new Date())) payment = await this.settleUnrecordedCharge(ctx, payment);
				if (payment.status !== "pending" || !payment.providerPaymentId) return paymentView(payment);
				let outcome;
				try {
					outcome = await this.provider.cancelPayment(payment.providerPaymentId);
				} catch (err) {
					throw this.unavailable(err, "cancel");
				}
				if (outcome.status === "pending") return paymentView(payment);
				const to = outcome.status === "succeeded" ? "succeeded" : "failed";
				const settled = await this.transition(payment.id, to, to === "failed" ? { failureReason: CANCELED_WITH_ORDER, voided: true, chargeLeaseUntil: null } : { failureReason: null, chargeLeaseUntil: null });
				// Money taken is news (orders refunds it, analytics counts it); a cancel is the caller's own doing.
				if (settled?.status === "succeeded") await this.publishOutcome(ctx, settled);
				return paymentView(settled ?? (await this.db.payments.findById(payment.id))!);
			},
		},

		/** Reached only through the gateway's raw-body webhook route (POST /api/payments/webhook). */
		/**
		 * The customer's side of 3-D Secure with the built-in provider, which has no page of its own: what
		 * Stripe.js does with the client secret in the browser (with Stripe this route answers 404). The
		 * payment is then settled as its webhook would settle it, and the order follows.
		 */
		completeTestAuthentication: {
			rest: "POST /payments/test-authentication",
			openapi: { response: "Payment", responses: { 404: "No payment waiting with this client secret (or Stripe is the provider)", 409: "The payment no longer waits: its order was cancelled, or it is settled" } },
			auth: "required",
			params: {
				$$strict: "remove",
				clientSecret: { type: "string", min: 1, max: 200 },
				outcome: { type: "enum", values: ["succeeded", "failed"], optional: true },
			},
			async handler(this: This, ctx: Context<{ clientSecret: string; outcome?: "succeeded" | "failed" }, ShopMeta>) {
				const provider = this.provider as PaymentProvider & { authenticate?(providerPaymentId: string, passed: boolean): boolean };
				if (!provider.authenticate) throw new NotFoundError("Route");
				const { clientSecret } = ctx.params;
				const payment = await this.db.payments.findOne({ providerPaymentId: clientSecret.split("_secret_")[0] });
				// Another customer's payment answers as an unknown one.
				if (!payment || payment.clientSecret !== clientSecret || payment.userId !== ctx.meta.user!.id) throw new NotFoundError("Payment");
				const passed = ctx.params.outcome !== "failed";
				if (payment.status !== "pending" || !provider.authenticate(payment.providerPaymentId!, passed)) {
					throw new ConflictError("This payment no longer waits for authentication", "PAYMENT_NOT_WAITING", { status: payment.status });
				}
				const failureReason = passed ? null : "The customer did not complete the card's authentication";
				const settled = await this.transition(payment.id, passed ? "succeeded" : "failed", { failureReason });
				if (settled) await this.publishOutcome(ctx, settled);
				return chargeView(settled ?? (await this.db.payments.findById(payment.id))!);
			},
		},

		webhook: {
			openapi: {
				response: "WebhookAck",
				responses: {
					400: "Missing, invalid or stale signature, or not a Stripe event",
					404: "Webhooks are off (no STRIPE_WEBHOOK_SECRET)",
					503: "The event is being applied by another delivery, or its refund is still being recorded: deliver it again later",
				},
				headers: { "Stripe-Signature": { required: true, description: "Stripe's signature of the raw body" } },
			},
			params: {},
			async handler(this: This, ctx: Context<unknown, ShopMeta>) {
				if (!this.verifyWebhook) throw new NotFoundError("Route");
				const signature = ctx.meta.headers?.["stripe-signature"];
				if (typeof signature !== "string" || !signature) throw new BadRequestError("Missing Stripe-Signature header", "INVALID_SIGNATURE");
				const raw = ctx.meta.rawBody as unknown as string | Buffer | undefined;
				let event: unknown;
				try {
					event = this.verifyWebhook(raw ?? "", signature);
				} catch (err) {
					// The signature checked out, then the body did not parse: say so, not send the operator after the secret.
					if (err instanceof SyntaxError) throw new BadRequestError("The signed body is not JSON", "INVALID_EVENT");
					this.webhookRefused();
					throw new BadRequestError("Invalid or expired webhook signature", "INVALID_SIGNATURE");
				}
				if (!isStripeEvent(event)) throw new BadRequestError("Not a Stripe event: a string id, a type and data.object are required", "INVALID_EVENT");
				// Filed before it is applied (so concurrent deliveries apply it once) and marked applied after.
				try {
					await this.db.webhook_events.insert({ eventId: event.id, type: event.type, receivedAt: new Date(), applied: false });
				} catch (err) {
					if (!isDuplicate(err)) throw err;
					if (!(await this.reclaimWebhookEvent(event.id))) return { received: true, duplicate: true };
				}
				try {
					await this.applyStripeEvent(ctx, event);
				} catch (err) {
					// Not applied: forget the id so Stripe's redelivery is applied.
					await this.db.webhook_events.removeOne({ eventId: event.id });
					throw err;
				}
				await this.db.webhook_events.updateOne({ eventId: event.id }, { $set: { applied: true } });
				return { received: true };
			},
		},
	},

	methods: {
		/**
		 * A delivery refused for its signature answers 400, which no alert counts as a failure: a
		 * STRIPE_WEBHOOK_SECRET that does not match the endpoint's (rotated at Stripe, another endpoint's)
		 * refuses every event, silently. Warned once a minute at most, with the count (anyone may post here).
		 */
		webhookRefused(this: This) {
			const passed = (this.refusedWebhooks ??= new SampledLog()).pass("webhook");
			if (!passed) return;
			const count = passed.heldBack + 1;
			this.logger.warn(
				`Refused ${count} Stripe webhook deliver${count === 1 ? "y" : "ies"} for an invalid or expired signature since the last warning. ` +
					"If Stripe's events are all refused, STRIPE_WEBHOOK_SECRET is not this endpoint's signing secret (Stripe dashboard, Webhooks): events are not applied until it is.",
			);
		},

		/** Charges once per order; a duplicate call waits for the first one's outcome. */
		async chargeOnce(this: This, params: ChargeParams, ctx: Context) {
			const deadline = Date.now() + WAIT_FOR_OUTCOME_MS;
			for (;;) {
				const { payment, mine } = await this.claimCharge(params);
				if (mine) {
					let result: CreatePaymentResult;
					try {
						result = await this.provider.createPayment({
							amount: payment.amount,
							currency: payment.currency,
							token: params.paymentMethod.token,
							idempotencyKey: chargeKey(payment.orderId),
							metadata: { orderId: payment.orderId, userId: payment.userId, paymentId: payment.id },
						});
					} catch (err) {
						// Outcome unknown: stay pending and free the lease, so a retry asks again under the same key.
						await this.db.payments.updateOne({ id: payment.id, status: "pending" }, { $set: { chargeLeaseUntil: new Date(0), updatedAt: new Date() } });
						throw this.unavailable(err, "charge");
					}
					return this.applyChargeOutcome(ctx, payment, result);
				}
				// Settled, or pending at the provider (a webhook will settle it): that is the answer.
				if (payment.status !== "pending" || payment.providerPaymentId) return payment;
				if (Date.now() >= deadline) throw new ServiceUnavailableError("The payment of this order is still in progress", { orderId: payment.orderId });
				await sleep(POLL_MS);
			}
		},

		/** Records the order's payment as never charged, unless a charge claimed it first (the unique orderId decides). */
		async voidPayment(this: This, orderId: string, { userId, amount, currency }: { userId: string; amount: number; currency: string }) {
			const now = new Date();
			try {
				return await this.db.payments.insert(newPayment(this.provider.name, now, { orderId, userId, amount, currency, status: "failed", voided: true, failureReason: VOIDED_WITH_ORDER }));
			} catch (err) {
				if (!isDuplicate(err)) throw err;
				return this.db.payments.findOne({ orderId });
			}
		},

		/** Inserts the pending payment (the unique orderId decides the race) or takes over an abandoned one. */
		async claimCharge(this: This, params: ChargeParams) {
			const now = new Date();
			try {
				const { orderId, orderNumber, userId, amount, currency } = params;
				const payment = await this.db.payments.insert(
					newPayment(this.provider.name, now, { orderId, orderNumber: orderNumber ?? null, userId, amount, currency, status: "pending", chargeLeaseUntil: new Date(now.getTime() + LEASE_MS), chargeStartedAt: now }),
				);
				return { payment, mine: true };
			} catch (err) {
				if (!isDuplicate(err)) throw err;
			}
			const existing = (await this.db.payments.findOne({ orderId: params.orderId }))!;
			if (existing.amount !== params.amount || existing.currency !== params.currency) {
				throw new ConflictError("This order was already charged with another amount", "PAYMENT_MISMATCH", { orderId: params.orderId });
			}
			const abandoned = existing.status === "pending" && !existing.providerPaymentId && (!existing.chargeLeaseUntil || new Date(existing.chargeLeaseUntil) <= now);
			if (abandoned) {
				const taken = await this.db.payments.updateOne(
					{ id: existing.id, status: "pending", providerPaymentId: null, chargeLeaseUntil: existing.chargeLeaseUntil },
					{ $set: { chargeLeaseUntil: new Date(now.getTime() + LEASE_MS), chargeStartedAt: now, updatedAt: now } },
				);
				if (taken) return { payment: taken, mine: true };
			}
			return { payment: existing, mine: false };
		},

		/** The provider's answer to a charge; `where` narrows each write (a look-up applies it only while its claim holds). */
		async applyChargeOutcome(this: This, ctx: Context | null, payment: Payment, result: CreatePaymentResult, where: Record<string, unknown> = {}) {
			const details = { providerPaymentId: result.providerId, cardBrand: result.cardBrand, cardLast4: result.cardLast4, chargeLeaseUntil: null };
			const current = async () => (await this.db.payments.findById(payment.id))!;
			if (result.status === "pending") {
				const waiting = result.clientSecret ? { clientSecret: result.clientSecret } : {};
				return (await this.db.payments.updateOne({ id: payment.id, status: "pending", ...where }, { $set: { ...details, ...waiting, updatedAt: new Date() } })) ?? (await current());
			}
			const failureReason = result.status === "failed" ? result.failureReason ?? "Payment declined" : null;
			const settled = await this.transition(payment.id, result.status, { ...details, failureReason }, where);
			// A webhook settled it first (and published); only the lease is left to clear.
			if (!settled) return (await this.db.payments.updateOne({ id: payment.id, ...where }, { $set: { chargeLeaseUntil: null } })) ?? (await current());
			await this.publishOutcome(ctx, settled);
			return settled;
		},

		/** Compare-and-set through the state machine (and `where`): an illegal transition matches nothing and returns null. */
		transition(this: This, paymentId: string, to: PaymentStatus, set: Partial<Payment>, where: Record<string, unknown> = {}) {
			return this.db.payments.updateOne({ id: paymentId, ...where, status: { $in: statusesLeadingTo(to) } }, { $set: { ...set, status: to, updatedAt: new Date() } });
		},

		async publishOutcome(this: This, ctx: Context | null, p: Payment) {
			const base = { orderId: p.orderId, paymentId: p.id, userId: p.userId, amount: p.amount, currency: p.currency };
			if (p.status === "succeeded") await this.publish(ctx, "payment.succeeded", base);
			else if (p.status === "failed") await this.publish(ctx, "payment.failed", { ...base, reason: p.failureReason });
		},

		async applyStripeEvent(this: This, ctx: Context, event: StripeWebhookEvent) {
			const object = event.data?.object ?? {};
			switch (event.type) {
				case "payment_intent.succeeded":
				case "payment_intent.payment_failed": {
					const payment = await this.findProviderPayment(object.id, object.metadata?.orderId);
					if (!payment) return;
					const to = event.type === "payment_intent.succeeded" ? "succeeded" : "failed";
					const failureReason = to === "failed" ? object.last_payment_error?.message ?? "Payment failed" : null;
					const settled = await this.transition(payment.id, to, { providerPaymentId: object.id, failureReason, chargeLeaseUntil: null });
					// Its order is cancelled: the intent is too, so the client secret the browser holds can no longer pay it.
					// A cancel that fails makes the delivery fail (503), and Stripe's redelivery cancels it (safe to repeat).
					const cancelIntent = async () => {
						try {
							await this.provider.cancelPayment(object.id);
						} catch (err) {
							throw this.unavailable(err, "cancel of a failed payment");
						}
					};
					if (settled) {
						await this.publishOutcome(ctx, settled);
						if (to === "failed") await cancelIntent();
						return;
					}
					if (to === "succeeded" && canOverturnFailure(payment, to, object.id)) {
						// Recorded failed, and the money was taken after all: recorded, announced and given back.
						const overturned = await this.db.payments.updateOne(
							{ id: payment.id, status: "failed", providerPaymentId: payment.providerPaymentId ?? null },
							{ $set: { status: "succeeded", providerPaymentId: object.id, failureReason: null, paidAfterFailure: true, chargeLeaseUntil: null, updatedAt: new Date() } },
						);
						if (overturned) await this.publishOutcome(ctx, overturned);
						const paid = overturned ?? (await this.db.payments.findById(payment.id))!;
						if (paid.paidAfterFailure) await this.refundPaidAfterFailure(ctx, paid);
						return;
					}
					if (payment.status !== to) return;
					// Settled so by an earlier delivery that died before announcing (or, paid after failing, refunding, or failed,
					// cancelling) it: done now.
					await this.publishOutcomeOnce(ctx, payment);
					if (payment.paidAfterFailure) await this.refundPaidAfterFailure(ctx, payment);
					if (to === "failed" && payment.providerPaymentId === object.id) await cancelIntent();
					return;
				}
				case "charge.refunded": {
					const intentId = typeof object.payment_intent === "string" ? object.payment_intent : object.payment_intent?.id;
					const payment = await this.findProviderPayment(intentId, object.metadata?.orderId);
					if (payment && this.provider.listRefunds) return this.recordProviderRefunds(ctx, payment);
					const total = object.amount_refunded;
					if (!payment || !Number.isSafeInteger(total)) return;
					// A provider that cannot list refunds (the built-in one, its webhook simulated): refunds made through us
					// are already counted; only what the event's total reports beyond that is new, recorded under the
					// event's key. Its total is as of the event: a refund that failed since (no longer counted) is still in it.
					const failedSince = typeof event.created === "number" ? await this.refundsFailedSince(payment.id, new Date(event.created * 1000)) : 0;
					const made = { status: "succeeded" as const, providerRefundId: object.refunds?.data?.[0]?.id ?? null };
					await this.countOutsideRefund(ctx, payment, `stripe-event-${event.id}`, (p) => Math.min(total, p.amount) - failedSince - p.reservedRefundAmount, made);
					return;
				}
				// A refund Stripe accepted (often `pending`) and failed later: refund.failed, or the update of its status.
				case "refund.failed":
				case "refund.updated":
				case "charge.refund.updated": {
					if (object.object !== "refund" || typeof object.id !== "string") return;
					// A refund made at Stripe that was pending has gone through: recorded now (see recordProviderRefunds).
					if (object.status === "succeeded" && typeof object.payment_intent === "string" && this.provider.listRefunds) {
						const payment = await this.findProviderPayment(object.payment_intent, null);
						if (payment) await this.recordProviderRefunds(ctx, payment);
						return;
					}
					if (object.status !== "failed" && object.status !== "canceled") return;
					const providerPaymentId = typeof object.payment_intent === "string" ? object.payment_intent : undefined;
					const amount = Number.isSafeInteger(object.amount) && object.amount > 0 ? object.amount : undefined;
					await this.failSettledRefund(ctx, { providerRefundId: object.id, providerPaymentId, amount, why: typeof object.failure_reason === "string" ? object.failure_reason : object.status });
					return;
				}
				default:
					return;
			}
		},

		/**
		 * A delivery of an event filed before: true when this one should apply it, because its first
		 * delivery died while applying it (still unapplied after WEBHOOK_APPLY_STALE_MS; a single
		 * process's restart makes that at once). 503 while another delivery may still be applying it
		 * (Stripe delivers again later); false when it was applied.
		 */
		async reclaimWebhookEvent(this: This, eventId: string) {
			const filed = await this.db.webhook_events.findOne({ eventId });
			// Applied, or filed before deliveries were marked applied.
			if (!filed || filed.applied !== false) return false;
			const now = new Date();
			if (now.getTime() - new Date(filed.receivedAt).getTime() < WEBHOOK_APPLY_STALE_MS) throw new ServiceUnavailableError("This event is being applied; deliver it again later");
			// Applying is idempotent (state machine, outcome published once): the claim only keeps two late deliveries from both doing it.
			if (!(await this.db.webhook_events.updateOne({ eventId, applied: false, receivedAt: filed.receivedAt }, { $set: { receivedAt: now } }))) {
				throw new ServiceUnavailableError("This event is being applied; deliver it again later");
			}
			return true;
		},

		/** Publishes a settled payment's outcome unless its outbox holds it already (an earlier delivery did). */
		async publishOutcomeOnce(this: This, ctx: Context | null, p: Payment) {
			const event = p.status === "succeeded" ? "payment.succeeded" : p.status === "failed" ? "payment.failed" : null;
			// Nothing about the payment is older than the payment.
			if (!event || (await this.published(event, { paymentId: p.id }, p.createdAt))) return;
			await this.publishOutcome(ctx, p);
		},

		/** The payment a provider object belongs to: by provider id, else by the order id in its metadata. */
		async findProviderPayment(this: This, providerPaymentId: unknown, orderId: unknown) {
			if (typeof providerPaymentId === "string" && providerPaymentId) {
				const byId = await this.db.payments.findOne({ providerPaymentId });
				if (byId) return byId;
			}
			if (typeof orderId !== "string" || !orderId) return null;
			const byOrder = await this.db.payments.findOne({ orderId });
			// Another intent of the same order is not this payment.
			if (byOrder?.providerPaymentId && byOrder.providerPaymentId !== providerPaymentId) return null;
			return byOrder;
		},

		unavailable(this: This, err: unknown, what: string) {
			if (!(err instanceof PaymentProviderError)) return err as Error;
			this.logger.warn(`Payment provider ${what} failed:`, err.message);
			return new ServiceUnavailableError("The payment provider is unavailable, try again");
		},
	},

	created(this: This) {
		const cfg = readPaymentsConfig();
		this.provider = createPaymentProvider(cfg);
		const warning = providerWarning(cfg, readConfig().env);
		if (warning) this.logger.warn(warning);
		// The built-in provider tells a refund failing later as Stripe's webhook would; tried again while it cannot be applied yet.
		if (this.provider instanceof TestPaymentProvider) {
			this.provider.onRefundFailed = (notice) => {
				const apply = (tries: number): void => {
					this.failSettledRefund(null, { providerRefundId: notice.providerRefundId, providerPaymentId: notice.providerPaymentId, why: notice.reason }).catch((err: Error) => {
						if (tries >= REFUND_FAILURE_TRIES) return this.logger.error(`Failed refund ${notice.providerRefundId} could not be applied:`, err.message);
						setTimeout(() => apply(tries + 1), REFUND_FAILURE_RETRY_MS).unref();
					});
				};
				apply(1);
			};
		}
		this.verifyWebhook = cfg.stripeWebhookSecret ? (createWebhookVerifier(cfg.stripeWebhookSecret, cfg.stripeSecretKey) as PaymentsVars["verifyWebhook"]) : null;
	},
};

export default PaymentsService;
