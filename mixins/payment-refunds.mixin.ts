/**
 * The payments service's refunds, split out of services/payments.service.ts for size; only that
 * service uses it. `payments.refund` refunds once per `refundKey`: the refund record is inserted
 * under a unique index before the provider is asked (under `refund-<refundKey>`), so a repeat gets
 * the stored refund, a concurrent call waits for the first one's outcome, and a claim left by a
 * call that died is taken over once its lease runs out. A partial refund never goes beyond what
 * was paid: its amount is reserved on the payment in one conditional update, and given back when
 * the provider refuses or cannot be reached. Settled refunds move the payment to
 * `partially_refunded`/`refunded` (addRefunded) and are announced as `payment.refunded` through the
 * outbox (publishRefund). Refunds made at Stripe are recorded from its webhook by their ids
 * (recordProviderRefunds), so one of the shop's whose answer was lost is recognised when asked again.
 *
 * The host declares the `payments` and `refunds` collections in its DbMixin (`refunds` with a
 * unique `refundKey` index), `provider` (its PaymentProvider), OutboxMixin's `publish`, and
 * `unavailable` (PaymentHostMethods). Its timer (resumeAbandonedRefunds) first fires a lease after
 * the start, so its place in the mixin list does not matter.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Context, Service, ServiceSchema } from "moleculer";
import type { Collection } from "./collection";
import type { OutboxThis } from "./outbox.mixin";
import type { ShopMeta } from "./types";
import { ConflictError, NotFoundError, ServiceUnavailableError, invalidField, isDuplicate } from "../lib/errors";
import { planRefund, statusAfterFailedRefund, statusAfterRefunds, statusesLeadingTo, REFUNDABLE_STATUSES, type RefundPlan } from "../lib/payment-state";
import { PaymentProviderError, type PaymentProvider } from "../adapters/payments/provider";
import { refundView, LEASE_MS, POLL_MS, WAIT_FOR_OUTCOME_MS, type Payment, type Refund } from "../lib/payment-records";

export interface RefundParams {
	orderId: string;
	amount?: number;
	reason: string;
	refundKey: string;
	/** False: the money of an order that never was a sale (paid after it was cancelled); announced so, revenue keeps it out. */
	sale?: boolean;
	/** Only the refund already made (or under way) under the key, or null: nothing new is refunded. */
	existingOnly?: boolean;
}

/** A refund's failure as the provider reports it (Stripe's refund object). */
export interface FailedRefund {
	providerRefundId: string;
	providerPaymentId?: string;
	/** The refund's amount, when told: how a refund made at Stripe (recorded without its id) is recognised. */
	amount?: number;
	why: string;
}

/** Abandoned refund claims taken per sweep; the next sweep takes the rest. */
const ABANDONED_REFUNDS_PER_SWEEP = 50;

const refundKeyForProvider = (refundKey: string) => `refund-${refundKey}`;

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

/** What services/payments.service.ts itself provides to this mixin. */
export interface PaymentHostMethods {
	/** A provider failure as a 503 (logged); any other error as it is. */
	unavailable(err: unknown, what: string): Error;
}

export interface PaymentRefundMethods {
	/** Null only with `existingOnly`. */
	refundOnce(params: RefundParams, ctx: Context | null): Promise<Refund | null>;
	takeOverRefund(ctx: Context | null, existing: Refund): Promise<Refund | "dropped" | null>;
	resumeAbandonedRefunds(): Promise<{ finished: number }>;
	runRefund(ctx: Context | null, refund: Refund, payment: Payment, opts?: { resumed?: boolean }): Promise<Refund>;
	addRefunded(paymentId: string, delta: (current: Payment) => number, opts: { reserve: boolean; refundId?: string }): Promise<{ payment: Payment; amount: number } | null>;
	settleRefund(ctx: Context | null, refund: Refund): Promise<void>;
	unreserve(paymentId: string, refund: Refund): Promise<void>;
	publishRefund(ctx: Context | null, payment: Payment, refund: Refund): Promise<void>;
	failSettledRefund(ctx: Context | null, failed: FailedRefund): Promise<void>;
	claimFailureAnnouncement(refund: Refund, why: string): Promise<Refund | null>;
	findFailedRefund(failed: FailedRefund): Promise<Refund | null>;
	refundsFailedSince(paymentId: string, at: Date): Promise<number>;
	uncountRefund(refund: Refund): Promise<void>;
	recordProviderRefunds(ctx: Context, payment: Payment): Promise<void>;
	countOutsideRefund(ctx: Context, payment: Payment, key: string, amountOf: (current: Payment) => number, made: Pick<Refund, "status" | "providerRefundId">): Promise<void>;
}

interface PaymentRefundVars extends PaymentHostMethods, Pick<OutboxThis, "publish" | "published"> {
	db: { payments: Collection<Payment>; refunds: Collection<Refund> };
	provider: PaymentProvider;
	refundSweepTimer?: NodeJS.Timeout;
}
type PaymentRefundThis = Service & PaymentRefundMethods & PaymentRefundVars;

const paymentRefundSchema: Partial<ServiceSchema<Record<string, never>, PaymentRefundMethods, PaymentRefundVars>> = {
	actions: {
		refund: {
			visibility: "public",
			params: {
				$$strict: "remove",
				orderId: { type: "string", min: 1, max: 100 },
				amount: { type: "number", integer: true, positive: true, optional: true },
				reason: { type: "string", min: 1, max: 500 },
				refundKey: { type: "string", min: 1, max: 200 },
				sale: { type: "boolean", optional: true },
				existingOnly: { type: "boolean", optional: true },
			},
			async handler(ctx: Context<RefundParams, ShopMeta>) {
				const refund = await this.refundOnce(ctx.params, ctx);
				return refund ? refundView(refund) : null;
			},
		},
	},

	methods: {
		/** One refund per refundKey, never more in total than was paid. */
		async refundOnce(params: RefundParams, ctx: Context | null) {
			const deadline = Date.now() + WAIT_FOR_OUTCOME_MS;
			for (;;) {
				const existing = await this.db.refunds.findOne({ refundKey: params.refundKey });
				if (existing) {
					if (existing.orderId !== params.orderId || (params.amount !== undefined && params.amount !== existing.amount)) {
						throw new ConflictError("This refund key was already used for another refund", "IDEMPOTENCY_KEY_REUSED", { refundKey: params.refundKey });
					}
					// Settled: counted and announced before its status was (see runRefund); as the refund it turned out to be.
					if (existing.status !== "processing") return existing.sameAs ? ((await this.db.refunds.findById(existing.sameAs)) ?? existing) : existing;
					if (existing.leaseUntil && new Date(existing.leaseUntil) <= new Date()) {
						const taken = await this.takeOverRefund(ctx, existing);
						if (taken === "dropped") continue;
						if (taken) return taken;
					}
					if (Date.now() >= deadline) throw new ServiceUnavailableError("This refund is still in progress", { refundKey: params.refundKey });
					await sleep(POLL_MS);
					continue;
				}

				if (params.existingOnly) return null;
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
						reason: params.reason, ...(params.sale === false ? { sale: false } : {}), status: "processing", reserved: false, providerRefundId: null, leaseUntil: new Date(now.getTime() + LEASE_MS), createdAt: now, updatedAt: now,
					});
				} catch (err) {
					if (isDuplicate(err)) continue;
					throw err;
				}
				// Then reserve the amount atomically: concurrent refunds never add up to more than was paid.
				const reserved = await this.db.payments.updateOne(
					{ id: payment.id, status: { $in: REFUNDABLE_STATUSES }, reservedRefundAmount: { $lte: payment.amount - plan.amount } },
					{ $inc: { reservedRefundAmount: plan.amount }, $set: { [`reservedRefunds.${refund.id}`]: plan.amount } },
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

		/**
		 * A claim whose call is gone (its lease ran out). With its amount reserved only the provider call
		 * is redone (same key) and the refund finished; without, the claim is dropped ("dropped") and the
		 * refund can be planned afresh. The payment says whether the reservation was made (the call may
		 * have died before the claim recorded it, or after giving the amount back); older payments
		 * without that record go by the claim's flag. null: another call took it first.
		 */
		async takeOverRefund(ctx: Context | null, existing: Refund) {
			const payment = await this.db.payments.findById(existing.paymentId);
			const reservedOnPayment = payment?.reservedRefunds ? !!payment.reservedRefunds[existing.id] : existing.reserved;
			if (!reservedOnPayment) {
				await this.db.refunds.removeOne({ id: existing.id, status: "processing" });
				return "dropped";
			}
			if (!existing.reserved) await this.db.refunds.updateOne({ id: existing.id, status: "processing" }, { $set: { reserved: true } });
			const taken = await this.db.refunds.updateOne(
				{ id: existing.id, status: "processing", leaseUntil: existing.leaseUntil },
				{ $set: { leaseUntil: new Date(Date.now() + LEASE_MS) } },
			);
			// The payment read above: taking the lease changed only the refund.
			return taken ? this.runRefund(ctx, taken, payment!, { resumed: true }) : null;
		},

		/**
		 * Finishes the refunds whose calls died and that nobody asks for again: an admin's refund sent
		 * without an Idempotency-Key has a key of its own that no retry repeats. Runs on a timer on every
		 * node (a lease decides who takes each), and at once when a single process starts.
		 */
		async resumeAbandonedRefunds() {
			const abandoned = await this.db.refunds.find({ status: "processing", leaseUntil: { $lte: new Date() } }, { sort: { leaseUntil: 1 }, limit: ABANDONED_REFUNDS_PER_SWEEP });
			let finished = 0;
			for (const refund of abandoned) {
				try {
					const outcome = await this.takeOverRefund(null, refund);
					if (outcome && outcome !== "dropped") finished++;
				} catch (err) {
					// Kept by runRefund (provider unreachable): the next sweep asks again under the same key.
					this.logger.warn(`Refund ${refund.id} of order ${refund.orderId} left by a call that died could not be finished:`, (err as Error).message);
				}
			}
			return { finished };
		},

		async runRefund(ctx: Context | null, refund: Refund, payment: Payment, opts: { resumed?: boolean } = {}) {
			let result;
			try {
				if (!payment.providerPaymentId) throw new PaymentProviderError(`Payment ${payment.id} has no provider id`);
				result = await this.provider.refund({ providerPaymentId: payment.providerPaymentId, amount: refund.amount, idempotencyKey: refundKeyForProvider(refund.refundKey) });
			} catch (err) {
				if (opts.resumed) {
					// The call that died may have refunded already: keep the claim and its amount, free the lease, and
					// let the next sweep or retry ask again under the same key. Dropping it could refund twice.
					await this.db.refunds.updateOne({ id: refund.id, status: "processing" }, { $set: { leaseUntil: new Date(), updatedAt: new Date() } });
				} else {
					// Not refunded as far as we know: give the amount back and drop the claim, so the key can be retried.
					await this.unreserve(payment.id, refund);
					await this.db.refunds.removeOne({ id: refund.id, status: "processing" });
				}
				throw this.unavailable(err, "refund");
			}
			if (result.status === "failed") {
				if (result.failureReason) this.logger.warn(`Refund ${refund.refundKey} of order ${refund.orderId} refused by the provider: ${result.failureReason}`);
				await this.unreserve(payment.id, refund);
				const why = result.failureReason ? { failureReason: result.failureReason } : {};
				return (await this.db.refunds.updateOne({ id: refund.id }, { $set: { status: "failed", reserved: false, providerRefundId: result.providerRefundId, ...why, leaseUntil: null, updatedAt: new Date() } }))!;
			}
			// A refund recorded already under the provider's id: made by an earlier call whose answer was lost, and
			// recorded from the provider's webhook meanwhile; asked again under the same key, the provider names it.
			// The same money: not counted again, and this key answers with that refund from now on.
			const known = result.providerRefundId ? await this.db.refunds.findOne({ providerRefundId: result.providerRefundId }) : null;
			if (known && known.id !== refund.id) {
				await this.unreserve(payment.id, refund);
				await this.db.refunds.updateOne({ id: refund.id }, { $set: { status: known.status, sameAs: known.id, reserved: false, leaseUntil: null, updatedAt: new Date() } });
				return known;
			}
			// Counted and announced while the refund is still "processing" under its lease, its status last: a
			// duplicate call keeps waiting meanwhile, and one taking over after a crash redoes the provider call
			// (same key: the provider answers the same) and settles what was left (each once, by refund id).
			await this.settleRefund(ctx, { ...refund, providerRefundId: result.providerRefundId });
			return (await this.db.refunds.updateOne(
				{ id: refund.id },
				{ $set: { status: result.status, providerRefundId: result.providerRefundId, leaseUntil: null, updatedAt: new Date() } },
			))!;
		},

		/**
		 * The refunds the provider lists for a payment that the shop has not recorded (made in Stripe's
		 * dashboard, or by a call of the shop's whose answer was lost): each recorded, counted and announced
		 * once, by the provider's refund id. Refunds the shop is making now may be in the list under ids it
		 * does not know yet, so while one is, the event is delivered again later (503): its total alone
		 * could not tell them apart, and a refund of the shop's failing afterwards lost one made elsewhere.
		 * Only refunds that succeeded are recorded so (a pending one when its update says it succeeded).
		 */
		async recordProviderRefunds(ctx: Context, payment: Payment) {
			let listed;
			try {
				listed = await this.provider.listRefunds!(payment.providerPaymentId!);
			} catch (err) {
				throw this.unavailable(err, "refund list");
			}
			if (await this.db.refunds.findOne({ paymentId: payment.id, status: "processing" })) throw new ServiceUnavailableError("A refund of this payment is being made; deliver this event again later");
			// Refunded before the shop has the payment as paid (its succeeded event not applied yet): counted once it is.
			if ((payment.status === "pending" || payment.status === "failed") && listed.some((r) => r.status === "succeeded")) {
				throw new ServiceUnavailableError("This payment is not recorded paid yet; deliver this event again later");
			}
			for (const r of listed) {
				if (r.status === "failed" || (await this.db.refunds.findOne({ providerRefundId: r.id }))) continue;
				// Recorded from an earlier webhook by its total alone (builds before this listing), without its id: named now.
				const [unnamed] = await this.db.refunds.find({ paymentId: payment.id, providerRefundId: null, sameAs: { $exists: false }, amount: r.amount, status: { $in: ["pending", "succeeded"] } }, { sort: { createdAt: 1 }, limit: 1 });
				if (unnamed && (await this.db.refunds.updateOne({ id: unnamed.id, providerRefundId: null }, { $set: { providerRefundId: r.id } }))) continue;
				// One still pending is recorded once it succeeded (its charge.refund.updated): until then it may fail,
				// and a refund.failed arriving while this list was on its way would find nothing to undo.
				if (r.status !== "succeeded") continue;
				// Never beyond what was paid, whatever the provider lists.
				await this.countOutsideRefund(ctx, payment, `stripe-refund-${r.id}`, (p) => Math.min(r.amount, p.amount - p.reservedRefundAmount), { status: r.status, providerRefundId: r.id });
			}
		},

		/**
		 * Counts (under `key`, once) `amount(current payment)` refunded outside the shop's own calls, records
		 * it as a refund and announces it. Each once: a delivery that died between these writes is finished
		 * by the next.
		 */
		async countOutsideRefund(ctx: Context, payment: Payment, key: string, amountOf: (current: Payment) => number, made: Pick<Refund, "status" | "providerRefundId">) {
			const added = await this.addRefunded(payment.id, (p) => (p.countedRefunds?.[key] ? 0 : amountOf(p)), { reserve: true, refundId: key });
			const current = added?.payment ?? (await this.db.payments.findById(payment.id))!;
			const amount = added?.amount ?? current.countedRefunds?.[key];
			if (!amount) return;
			let refund = await this.db.refunds.findOne({ refundKey: key });
			if (!refund) {
				const now = new Date();
				refund = await this.db.refunds.insert({
					refundKey: key, orderId: payment.orderId, paymentId: payment.id, amount, currency: payment.currency,
					reason: "Refunded at the payment provider", ...made, reserved: true, leaseUntil: null, createdAt: now, updatedAt: now,
				});
			}
			if (added || !(await this.published("payment.refunded", { refundId: refund.id }, refund.createdAt))) await this.publishRefund(ctx, current, refund);
		},

		/** Gives a refund's reserved amount back to the payment, once. */
		async unreserve(paymentId: string, refund: Refund) {
			const key = `reservedRefunds.${refund.id}`;
			// Older payments kept no per-refund record: their amount goes back unguarded, as before.
			const guarded = await this.db.payments.updateOne({ id: paymentId, [key]: { $exists: true } }, { $inc: { reservedRefundAmount: -refund.amount }, $unset: { [key]: true } });
			if (!guarded && !(await this.db.payments.findById(paymentId))?.reservedRefunds) await this.db.payments.updateOne({ id: paymentId }, { $inc: { reservedRefundAmount: -refund.amount } });
		},

		/**
		 * Counts a refund the provider accepted on its payment (once: by refund id) and announces it
		 * (once: looked up in the outbox when it was counted before). Redone by a call taking the refund
		 * over, it finishes what a crash between these writes left undone.
		 */
		async settleRefund(ctx: Context | null, refund: Refund) {
			const added = await this.addRefunded(refund.paymentId, (p) => (p.countedRefunds?.[refund.id] ? 0 : refund.amount), { reserve: false, refundId: refund.id });
			const payment = added?.payment ?? (await this.db.payments.findById(refund.paymentId));
			if (!payment) return;
			// Counted before: by a call that died, maybe before announcing it (its outbox rows are from after the claim).
			if (added || !(await this.published("payment.refunded", { refundId: refund.id }, refund.createdAt))) {
				await this.publishRefund(ctx, payment, refund);
			}
		},

		/**
		 * Adds `delta(current)` settled refund cents and moves the status along in one compare-and-set,
		 * so the status always matches the stored total however refunds interleave. `reserve` also
		 * counts them against the refund limit (refunds that did not pass through `refund`).
		 */
		async addRefunded(paymentId: string, delta: (current: Payment) => number, opts: { reserve: boolean; refundId?: string }) {
			for (let attempt = 0; attempt < 50; attempt++) {
				const current = await this.db.payments.findById(paymentId);
				if (!current) return null;
				const amount = delta(current);
				if (amount <= 0) return null;
				const refundedAmount = current.refundedAmount + amount;
				const to = statusAfterRefunds(current.amount, refundedAmount);
				if (!statusesLeadingTo(to).includes(current.status)) return null;
				const set: Record<string, unknown> = { refundedAmount, status: to, updatedAt: new Date() };
				if (opts.refundId) set[`countedRefunds.${opts.refundId}`] = amount;
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

		async publishRefund(ctx: Context | null, p: Payment, r: Refund) {
			await this.publish(ctx, "payment.refunded", {
				orderId: p.orderId, ...(p.orderNumber ? { number: p.orderNumber } : {}), paymentId: p.id, refundId: r.id, userId: p.userId, amount: r.amount, currency: r.currency, totalRefunded: p.refundedAmount, reason: r.reason ?? null,
				// Tells a cancellation's own refund (its key) from an admin's whose note happens to read the same.
				refundKey: r.refundKey,
				...(r.sale === false ? { sale: false } : {}),
			});
		},

		/**
		 * A refund the provider accepted and failed later (Stripe's refund.failed): the money stayed
		 * with the shop. The payment stops counting it (and it can be refunded again), the refund is
		 * marked failed, and `payment.refund_failed` is announced: the order counts it off, analytics
		 * puts the revenue back, the customer is told. Each step once, so a redelivery after a crash
		 * finishes what is left. A refund failed by the provider's first answer was never counted:
		 * nothing to undo.
		 */
		async failSettledRefund(ctx: Context | null, failed: FailedRefund) {
			const { why } = failed;
			const refund = await this.findFailedRefund(failed);
			if (!refund) {
				this.logger.warn(`Refund ${failed.providerRefundId} failed at the provider, but no refund of this shop is known by it: nothing changed`);
				return;
			}
			if (refund.status === "processing" || (refund.status === "failed" && !refund.failedLater)) return;
			await this.uncountRefund(refund);
			const claimed = await this.claimFailureAnnouncement(refund, why);
			if (!claimed) return;
			const payment = (await this.db.payments.findById(refund.paymentId))!;
			// Someone has to act: the customer was promised money that did not go.
			this.logger.warn(
				`Refund ${refund.id} of order ${payment.orderNumber ?? payment.orderId} (${refund.amount} ${refund.currency} in minor units) failed at the provider after it was accepted ` +
					`(${claimed.failedLater ?? why}): the money stayed with the shop; the customer is told, and the order can be refunded again.`,
			);
			await this.publish(ctx, "payment.refund_failed", {
				orderId: payment.orderId, ...(payment.orderNumber ? { number: payment.orderNumber } : {}), paymentId: payment.id, refundId: refund.id, userId: payment.userId,
				amount: refund.amount, currency: refund.currency, totalRefunded: payment.refundedAmount, reason: claimed.failedLater ?? why, refundKey: refund.refundKey, ...(refund.sale === false ? { sale: false } : {}),
			});
			await this.db.refunds.updateOne({ id: refund.id }, { $unset: { announceUntil: true } });
		},

		/**
		 * Marks the refund failed, which claims its announcement for a lease: two deliveries of the failure
		 * (Stripe sends refund.failed and charge.refund.updated) announce it once (the other answers 503),
		 * and one that died before announcing is taken over once its lease ran out. Returns the refund to
		 * announce, or null when it was announced.
		 */
		async claimFailureAnnouncement(refund: Refund, why: string) {
			const now = new Date();
			const lease = new Date(now.getTime() + LEASE_MS);
			const marked = await this.db.refunds.updateOne({ id: refund.id, status: { $in: ["pending", "succeeded"] } }, { $set: { status: "failed", failedLater: why, failedAt: now, announceUntil: lease, updatedAt: now } });
			if (marked) return marked;
			const current = (await this.db.refunds.findById(refund.id))!;
			// Announced (no claim left).
			if (!current.announceUntil) return null;
			const busy = () => new ServiceUnavailableError("This refund's failure is being applied; deliver this event again later");
			if (new Date(current.announceUntil) > now) throw busy();
			const taken = await this.db.refunds.updateOne({ id: refund.id, announceUntil: current.announceUntil }, { $set: { announceUntil: lease } });
			if (!taken) throw busy();
			// Its claimant may have announced it before dying: then only the claim is left to clear.
			if (!(await this.published("payment.refund_failed", { refundId: refund.id }, refund.createdAt))) return taken;
			await this.db.refunds.updateOne({ id: refund.id }, { $unset: { announceUntil: true } });
			return null;
		},

		/**
		 * The refund a failure names: by the provider's id; one being recorded meanwhile makes a 503 (the
		 * provider delivers again); else a refund made at Stripe, recorded from charge.refunded without its
		 * id (Stripe no longer lists a charge's refunds in it), of that payment and amount, oldest first, which
		 * then takes the id.
		 */
		async findFailedRefund({ providerRefundId, providerPaymentId, amount }: FailedRefund) {
			const byId = await this.db.refunds.findOne({ providerRefundId });
			if (byId) return byId;
			const payment = providerPaymentId ? await this.db.payments.findOne({ providerPaymentId }) : null;
			if (!payment) return null;
			if (await this.db.refunds.findOne({ paymentId: payment.id, status: "processing" })) {
				throw new ServiceUnavailableError("A refund of this payment is being recorded; deliver this event again later");
			}
			// Recorded between the two reads above.
			const recorded = await this.db.refunds.findOne({ providerRefundId });
			if (recorded || amount === undefined) return recorded;
			const [unnamed] = await this.db.refunds.find({ paymentId: payment.id, providerRefundId: null, sameAs: { $exists: false }, amount, status: { $in: ["pending", "succeeded"] } }, { sort: { createdAt: 1 }, limit: 1 });
			return unnamed ? this.db.refunds.updateOne({ id: unnamed.id, providerRefundId: null }, { $set: { providerRefundId } }) : null;
		},

		/**
		 * What of a payment's refunds failed after `at` though made before it: a provider's total as of
		 * `at` (an event's) still holds them, where the payment no longer counts them. A second of slack:
		 * Stripe's times are whole seconds.
		 */
		async refundsFailedSince(paymentId: string, at: Date) {
			const failed = await this.db.refunds.find({ paymentId, status: "failed", failedAt: { $gt: at }, createdAt: { $lt: new Date(at.getTime() + 1000) } });
			return failed.reduce((sum, r) => sum + r.amount, 0);
		},

		/** The payment no longer counts `refund` as refunded nor reserved, in one compare-and-set (once: by its counted entry). */
		async uncountRefund(refund: Refund) {
			for (let attempt = 0; attempt < 50; attempt++) {
				const current = await this.db.payments.findById(refund.paymentId);
				// Counted under its id, or (a refund made at Stripe, recorded from charge.refunded) under its key.
				const countedAs = [refund.id, refund.refundKey].find((k) => current?.countedRefunds?.[k] !== undefined);
				if (!current || countedAs === undefined) return;
				const amount = current.countedRefunds![countedAs];
				const to = statusAfterFailedRefund(current, amount);
				if (!to) return;
				const updated = await this.db.payments.updateOne(
					{ id: current.id, status: current.status, refundedAmount: current.refundedAmount, reservedRefundAmount: current.reservedRefundAmount, [`countedRefunds.${countedAs}`]: amount },
					{
						$set: { status: to, refundedAmount: current.refundedAmount - amount, reservedRefundAmount: Math.max(0, current.reservedRefundAmount - amount), updatedAt: new Date() },
						$unset: { [`countedRefunds.${countedAs}`]: true, [`reservedRefunds.${countedAs}`]: true },
					},
				);
				if (updated) return;
			}
			throw new ServiceUnavailableError("The payment is busy, try again");
		},
	} satisfies PaymentRefundMethods & ThisType<PaymentRefundThis>,

	started() {
		this.refundSweepTimer = setInterval(() => {
			this.resumeAbandonedRefunds().catch((err: Error) => this.logger.error("Resuming abandoned refunds failed:", err));
		}, LEASE_MS);
		this.refundSweepTimer.unref();
	},

	stopped() {
		clearInterval(this.refundSweepTimer);
	},
};

/** Checked against its own `this` above; the host takes it as any other mixin. */
export const PaymentRefundsMixin: Partial<ServiceSchema<any, any, any, any>> = paymentRefundSchema;
