/**
 * Payments through a provider (built-in test provider or Stripe), refunds, webhooks.
 * One payment per order (unique `orderId`): the pending payment is inserted before the provider is
 * called, so concurrent charges of one order make one provider call; the provider's idempotency key
 * is derived from the order, so a retry after a lost answer never charges twice either.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import type { Collection } from "../mixins/collection";
import { DbMixin } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import type { ShopMeta } from "../mixins/types";
import { BadRequestError, ConflictError, NotFoundError, PaymentDeclinedError, ServiceUnavailableError, invalidField } from "../lib/errors";
import { planRefund, statusAfterRefunds, statusesLeadingTo, REFUNDABLE_STATUSES, type PaymentStatus, type RefundPlan } from "../lib/payment-state";
import { readPaymentsConfig } from "../adapters/payments/config";
import { createPaymentProvider, PaymentProviderError, type CreatePaymentResult, type PaymentProvider } from "../adapters/payments/provider";
import { createWebhookVerifier } from "../adapters/payments/stripe-provider";

/** Longer than a provider call can take (Stripe client: 15 s timeout, 2 retries). */
const LEASE_MS = 60_000;
/** How long a duplicate call waits for the first one's outcome: below the broker's request timeout. */
const WAIT_FOR_OUTCOME_MS = 8_000;
const POLL_MS = 25;
/** Stripe retries a webhook for up to three days; ids are kept longer than that. */
const WEBHOOK_EVENT_TTL_SECONDS = 30 * 24 * 3600;

interface Payment {
	id: string;
	orderId: string;
	userId: string;
	amount: number;
	currency: string;
	status: PaymentStatus;
	provider: string;
	providerPaymentId: string | null;
	cardBrand: string | null;
	cardLast4: string | null;
	failureReason: string | null;
	/** Cents given back (settled refunds). */
	refundedAmount: number;
	/** Cents claimed by refunds, including those still in flight: the limit is checked on this. */
	reservedRefundAmount: number;
	/** While in the future, a call is talking to the provider about this payment. */
	chargeLeaseUntil: Date | null;
	createdAt: Date;
	updatedAt: Date;
}

interface Refund {
	id: string;
	refundKey: string;
	orderId: string;
	paymentId: string;
	amount: number;
	currency: string;
	reason: string;
	/** `processing` while the provider is being asked. */
	status: "processing" | "succeeded" | "pending" | "failed";
	/** Its amount is counted in the payment's reservedRefundAmount. */
	reserved: boolean;
	providerRefundId: string | null;
	leaseUntil: Date | null;
	createdAt: Date;
	updatedAt: Date;
}

interface ChargeParams {
	orderId: string;
	userId: string;
	amount: number;
	currency: string;
	paymentMethod: { type: "card"; token: string };
}
interface RefundParams {
	orderId: string;
	amount?: number;
	reason: string;
	refundKey: string;
}
interface StripeWebhookEvent {
	id: string;
	type: string;
	data: { object: Record<string, any> };
}

interface PaymentsVars {
	db: { payments: Collection<Payment>; refunds: Collection<Refund>; webhook_events: Collection };
	provider: PaymentProvider;
	/** Null when STRIPE_WEBHOOK_SECRET is unset: the webhook then does not exist (404). */
	verifyWebhook: ((rawBody: string | Buffer, signature: string) => StripeWebhookEvent) | null;
}
interface PaymentsMethods {
	publish(ctx: Context, event: string, payload: Record<string, unknown>): Promise<string>;
	chargeOnce(params: ChargeParams, ctx: Context): Promise<Payment>;
	claimCharge(params: ChargeParams): Promise<{ payment: Payment; mine: boolean }>;
	applyChargeOutcome(ctx: Context, payment: Payment, result: CreatePaymentResult): Promise<Payment>;
	refundOnce(params: RefundParams, ctx: Context): Promise<Refund>;
	runRefund(ctx: Context, refund: Refund, payment: Payment): Promise<Refund>;
	addRefunded(paymentId: string, delta: (current: Payment) => number, opts: { reserve: boolean }): Promise<{ payment: Payment; amount: number } | null>;
	transition(paymentId: string, to: PaymentStatus, set: Partial<Payment>): Promise<Payment | null>;
	publishOutcome(ctx: Context, payment: Payment): Promise<void>;
	publishRefund(ctx: Context, payment: Payment, refund: Refund): Promise<void>;
	applyStripeEvent(ctx: Context, event: StripeWebhookEvent): Promise<void>;
	findProviderPayment(providerPaymentId: unknown, orderId: unknown): Promise<Payment | null>;
	unavailable(err: unknown, what: string): Error;
}
type This = Service & PaymentsVars & PaymentsMethods;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const isDuplicate = (err: unknown) => err instanceof ConflictError && (err as ConflictError).type === "DUPLICATE";
const chargeKey = (orderId: string) => `order-${orderId}-charge`;
const refundKeyForProvider = (refundKey: string) => `refund-${refundKey}`;

function chargeView(p: Payment) {
	return { id: p.id, orderId: p.orderId, status: p.status, amount: p.amount, currency: p.currency, cardBrand: p.cardBrand, cardLast4: p.cardLast4 };
}
function paymentView(p: Payment) {
	const { chargeLeaseUntil: _lease, reservedRefundAmount: _reserved, ...rest } = p;
	return rest;
}
function refundView(r: Refund) {
	const { leaseUntil: _lease, refundKey: _key, reserved: _reserved, ...rest } = r;
	return rest;
}

function refundRefusal(plan: Extract<RefundPlan, { ok: false }>, orderId: string): Error {
	switch (plan.reason) {
		case "not_paid":
			return new ConflictError("The payment of this order has not succeeded: nothing to refund", "NOT_REFUNDABLE", { orderId });
		case "fully_refunded":
			return new ConflictError("The payment of this order is already fully refunded", "ALREADY_REFUNDED", { orderId });
		case "not_positive":
			return invalidField("amount", "Refund amount must be a positive number of cents");
		case "exceeds_refundable":
			return invalidField("amount", `Refund amount exceeds what is left to refund (${plan.refundable} cents)`, "refundExceedsPaid");
	}
}

const PaymentsService: ServiceSchema<Record<string, any>, PaymentsMethods, PaymentsVars> = {
	name: "payments",
	mixins: [
		DbMixin("payments", {
			payments: {
				fields: {
					orderId: String, userId: String, amount: Number, currency: String, status: String, provider: String,
					providerPaymentId: String, cardBrand: String, cardLast4: String, failureReason: String,
					refundedAmount: Number, reservedRefundAmount: Number, chargeLeaseUntil: Date, createdAt: Date, updatedAt: Date,
				},
				indexes: [{ fields: { orderId: 1 }, unique: true }, { fields: { providerPaymentId: 1 } }],
			},
			refunds: {
				fields: {
					refundKey: String, orderId: String, paymentId: String, amount: Number, currency: String, reason: String, status: String,
					providerRefundId: String, reserved: Boolean, leaseUntil: Date, createdAt: Date, updatedAt: Date,
				},
				indexes: [{ fields: { refundKey: 1 }, unique: true }, { fields: { paymentId: 1 } }],
			},
			webhook_events: {
				fields: { eventId: String, type: String, receivedAt: Date },
				indexes: [{ fields: { eventId: 1 }, unique: true }, { fields: { receivedAt: 1 }, expireAfterSeconds: WEBHOOK_EVENT_TTL_SECONDS }],
			},
		}),
		OutboxMixin("payments"),
		HealthMixin,
	],
	settings: { rest: "/" },

	actions: {
		charge: {
			visibility: "public",
			params: {
				$$strict: "remove",
				orderId: { type: "string", min: 1, max: 100 },
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

		refund: {
			visibility: "public",
			params: {
				$$strict: "remove",
				orderId: { type: "string", min: 1, max: 100 },
				amount: { type: "number", integer: true, positive: true, optional: true },
				reason: { type: "string", min: 1, max: 500 },
				refundKey: { type: "string", min: 1, max: 200 },
			},
			async handler(this: This, ctx: Context<RefundParams, ShopMeta>) {
				return refundView(await this.refundOnce(ctx.params, ctx));
			},
		},

		getByOrder: {
			visibility: "public",
			params: { $$strict: "remove", orderId: { type: "string", min: 1, max: 100 } },
			async handler(this: This, ctx: Context<{ orderId: string }, ShopMeta>) {
				const payment = await this.db.payments.findOne({ orderId: ctx.params.orderId });
				if (!payment) return null;
				const refunds = await this.db.refunds.find({ paymentId: payment.id }, { sort: { createdAt: 1 } });
				return { ...paymentView(payment), refunds: refunds.map(refundView) };
			},
		},

		/** Reached only through the gateway's raw-body webhook route (POST /api/payments/webhook). */
		webhook: {
			params: {},
			async handler(this: This, ctx: Context<unknown, ShopMeta>) {
				if (!this.verifyWebhook) throw new NotFoundError("Route");
				const signature = ctx.meta.headers?.["stripe-signature"];
				if (typeof signature !== "string" || !signature) throw new BadRequestError("Missing Stripe-Signature header", "INVALID_SIGNATURE");
				const raw = ctx.meta.rawBody as unknown as string | Buffer | undefined;
				let event: StripeWebhookEvent;
				try {
					event = this.verifyWebhook(raw ?? "", signature);
				} catch {
					throw new BadRequestError("Invalid or expired webhook signature", "INVALID_SIGNATURE");
				}
				try {
					await this.db.webhook_events.insert({ eventId: event.id, type: event.type, receivedAt: new Date() });
				} catch (err) {
					if (isDuplicate(err)) return { received: true, duplicate: true };
					throw err;
				}
				try {
					await this.applyStripeEvent(ctx, event);
				} catch (err) {
					// Not applied: forget the id so Stripe's redelivery is applied.
					await this.db.webhook_events.removeOne({ eventId: event.id });
					throw err;
				}
				return { received: true };
			},
		},
	},

	methods: {
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

		/** Inserts the pending payment (the unique orderId decides the race) or takes over an abandoned one. */
		async claimCharge(this: This, params: ChargeParams) {
			const now = new Date();
			try {
				const payment = await this.db.payments.insert({
					orderId: params.orderId, userId: params.userId, amount: params.amount, currency: params.currency, status: "pending",
					provider: this.provider.name, providerPaymentId: null, cardBrand: null, cardLast4: null, failureReason: null,
					refundedAmount: 0, reservedRefundAmount: 0, chargeLeaseUntil: new Date(now.getTime() + LEASE_MS), createdAt: now, updatedAt: now,
				});
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
					{ $set: { chargeLeaseUntil: new Date(now.getTime() + LEASE_MS), updatedAt: now } },
				);
				if (taken) return { payment: taken, mine: true };
			}
			return { payment: existing, mine: false };
		},

		async applyChargeOutcome(this: This, ctx: Context, payment: Payment, result: CreatePaymentResult) {
			const details = { providerPaymentId: result.providerId, cardBrand: result.cardBrand, cardLast4: result.cardLast4, chargeLeaseUntil: null };
			if (result.status === "pending") {
				return (await this.db.payments.updateOne({ id: payment.id, status: "pending" }, { $set: { ...details, updatedAt: new Date() } })) ?? (await this.db.payments.findById(payment.id))!;
			}
			const failureReason = result.status === "failed" ? result.failureReason ?? "Payment declined" : null;
			const settled = await this.transition(payment.id, result.status, { ...details, failureReason });
			// A webhook settled it first (and published); only the lease is left to clear.
			if (!settled) return (await this.db.payments.updateOne({ id: payment.id }, { $set: { chargeLeaseUntil: null } }))!;
			await this.publishOutcome(ctx, settled);
			return settled;
		},

		/** One refund per refundKey, never more in total than was paid. */
		async refundOnce(this: This, params: RefundParams, ctx: Context) {
			const deadline = Date.now() + WAIT_FOR_OUTCOME_MS;
			for (;;) {
				const existing = await this.db.refunds.findOne({ refundKey: params.refundKey });
				if (existing) {
					if (existing.orderId !== params.orderId || (params.amount !== undefined && params.amount !== existing.amount)) {
						throw new ConflictError("This refund key was already used for another refund", "IDEMPOTENCY_KEY_REUSED", { refundKey: params.refundKey });
					}
					if (existing.status !== "processing") return existing;
					const now = new Date();
					if (existing.leaseUntil && new Date(existing.leaseUntil) <= now) {
						// The call that claimed it is gone. With its amount reserved only the provider call is redone
						// (same key); without, the claim is dropped and the refund planned afresh.
						if (!existing.reserved) {
							await this.db.refunds.removeOne({ id: existing.id, status: "processing", reserved: false });
							continue;
						}
						const taken = await this.db.refunds.updateOne({ id: existing.id, status: "processing", leaseUntil: existing.leaseUntil }, { $set: { leaseUntil: new Date(now.getTime() + LEASE_MS) } });
						if (taken) return this.runRefund(ctx, taken, (await this.db.payments.findById(taken.paymentId))!);
					}
					if (Date.now() >= deadline) throw new ServiceUnavailableError("This refund is still in progress", { refundKey: params.refundKey });
					await sleep(POLL_MS);
					continue;
				}

				const payment = await this.db.payments.findOne({ orderId: params.orderId });
				if (!payment) throw new NotFoundError("Payment");
				const plan = planRefund({ status: payment.status, paid: payment.amount, alreadyRefunded: payment.reservedRefundAmount, requested: params.amount });
				if (!plan.ok) throw refundRefusal(plan, params.orderId);
				// Claim the key first, so a concurrent call with the same key waits instead of refunding again.
				const now = new Date();
				let refund: Refund;
				try {
					refund = await this.db.refunds.insert({
						refundKey: params.refundKey, orderId: payment.orderId, paymentId: payment.id, amount: plan.amount, currency: payment.currency,
						reason: params.reason, status: "processing", reserved: false, providerRefundId: null, leaseUntil: new Date(now.getTime() + LEASE_MS), createdAt: now, updatedAt: now,
					});
				} catch (err) {
					if (isDuplicate(err)) continue;
					throw err;
				}
				// Then reserve the amount atomically: concurrent refunds never add up to more than was paid.
				const reserved = await this.db.payments.updateOne(
					{ id: payment.id, status: { $in: REFUNDABLE_STATUSES }, reservedRefundAmount: { $lte: payment.amount - plan.amount } },
					{ $inc: { reservedRefundAmount: plan.amount } },
				);
				if (!reserved) {
					// Another refund got in between: give the key back and plan again.
					await this.db.refunds.removeOne({ id: refund.id, status: "processing" });
					continue;
				}
				await this.db.refunds.updateOne({ id: refund.id }, { $set: { reserved: true } });
				return this.runRefund(ctx, refund, reserved);
			}
		},

		async runRefund(this: This, ctx: Context, refund: Refund, payment: Payment) {
			let result;
			try {
				if (!payment.providerPaymentId) throw new PaymentProviderError(`Payment ${payment.id} has no provider id`);
				result = await this.provider.refund({ providerPaymentId: payment.providerPaymentId, amount: refund.amount, idempotencyKey: refundKeyForProvider(refund.refundKey) });
			} catch (err) {
				// Not refunded as far as we know: drop the claim and give the amount back, so the key can be retried.
				await this.db.refunds.removeOne({ id: refund.id, status: "processing" });
				await this.db.payments.updateOne({ id: payment.id }, { $inc: { reservedRefundAmount: -refund.amount } });
				throw this.unavailable(err, "refund");
			}
			if (result.status === "failed") {
				await this.db.payments.updateOne({ id: payment.id }, { $inc: { reservedRefundAmount: -refund.amount } });
				return (await this.db.refunds.updateOne({ id: refund.id }, { $set: { status: "failed", reserved: false, providerRefundId: result.providerRefundId, leaseUntil: null, updatedAt: new Date() } }))!;
			}
			const done = (await this.db.refunds.updateOne(
				{ id: refund.id },
				{ $set: { status: result.status, providerRefundId: result.providerRefundId, leaseUntil: null, updatedAt: new Date() } },
			))!;
			const added = await this.addRefunded(payment.id, () => refund.amount, { reserve: false });
			if (added) await this.publishRefund(ctx, added.payment, done);
			return done;
		},

		/**
		 * Adds `delta(current)` settled refund cents and moves the status along in one compare-and-set,
		 * so the status always matches the stored total however refunds interleave. `reserve` also
		 * counts them against the refund limit (refunds that did not pass through `refund`).
		 */
		async addRefunded(this: This, paymentId: string, delta: (current: Payment) => number, opts: { reserve: boolean }) {
			for (let attempt = 0; attempt < 50; attempt++) {
				const current = await this.db.payments.findById(paymentId);
				if (!current) return null;
				const amount = delta(current);
				if (amount <= 0) return null;
				const refundedAmount = current.refundedAmount + amount;
				const to = statusAfterRefunds(current.amount, refundedAmount);
				if (!statusesLeadingTo(to).includes(current.status)) return null;
				const set: Partial<Payment> = { refundedAmount, status: to, updatedAt: new Date() };
				const query: Record<string, unknown> = { id: paymentId, status: current.status, refundedAmount: current.refundedAmount };
				if (opts.reserve) {
					set.reservedRefundAmount = current.reservedRefundAmount + amount;
					query.reservedRefundAmount = current.reservedRefundAmount;
				}
				const updated = await this.db.payments.updateOne(query, { $set: set });
				if (updated) return { payment: updated, amount };
			}
			throw new ServiceUnavailableError("The payment is busy, try again");
		},

		/** Compare-and-set through the state machine: an illegal transition matches nothing and returns null. */
		transition(this: This, paymentId: string, to: PaymentStatus, set: Partial<Payment>) {
			return this.db.payments.updateOne({ id: paymentId, status: { $in: statusesLeadingTo(to) } }, { $set: { ...set, status: to, updatedAt: new Date() } });
		},

		async publishOutcome(this: This, ctx: Context, p: Payment) {
			const base = { orderId: p.orderId, paymentId: p.id, userId: p.userId, amount: p.amount, currency: p.currency };
			if (p.status === "succeeded") await this.publish(ctx, "payment.succeeded", base);
			else if (p.status === "failed") await this.publish(ctx, "payment.failed", { ...base, reason: p.failureReason });
		},

		async publishRefund(this: This, ctx: Context, p: Payment, r: Refund) {
			await this.publish(ctx, "payment.refunded", {
				orderId: p.orderId, paymentId: p.id, refundId: r.id, userId: p.userId, amount: r.amount, currency: r.currency, totalRefunded: p.refundedAmount,
			});
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
					if (settled) await this.publishOutcome(ctx, settled);
					return;
				}
				case "charge.refunded": {
					const intentId = typeof object.payment_intent === "string" ? object.payment_intent : object.payment_intent?.id;
					const payment = await this.findProviderPayment(intentId, object.metadata?.orderId);
					const total = object.amount_refunded;
					if (!payment || !Number.isSafeInteger(total)) return;
					// Refunds made through us are already counted; only what Stripe reports beyond that is new.
					const added = await this.addRefunded(payment.id, (p) => Math.min(total, p.amount) - p.reservedRefundAmount, { reserve: true });
					if (!added) return;
					const now = new Date();
					const refund = await this.db.refunds.insert({
						refundKey: `stripe-event-${event.id}`, orderId: payment.orderId, paymentId: payment.id, amount: added.amount, currency: payment.currency,
						reason: "Refunded at the payment provider", status: "succeeded", reserved: true, providerRefundId: object.refunds?.data?.[0]?.id ?? null, leaseUntil: null, createdAt: now, updatedAt: now,
					});
					await this.publishRefund(ctx, added.payment, refund);
					return;
				}
				default:
					return;
			}
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
		this.verifyWebhook = cfg.stripeWebhookSecret ? (createWebhookVerifier(cfg.stripeWebhookSecret, cfg.stripeSecretKey) as PaymentsVars["verifyWebhook"]) : null;
	},
};

export default PaymentsService;
