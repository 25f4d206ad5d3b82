/**
 * The payments service's look-ups of charges whose provider answer was never recorded, split out of
 * services/payments.service.ts for size; only that service uses it. Such a charge (`pending`, no
 * providerPaymentId, its call's lease run out: the call errored or timed out, or its node died) is
 * settled by asking the provider what it did: when orders looks at the payment (getByOrder, cancel),
 * and on a timer on every node for the ones nobody asks about. A payment recorded failed that the
 * provider then reports paid is given back here too (refundPaidAfterFailure).
 *
 * The host provides the `payments` collection, `provider`, `applyChargeOutcome`, `transition` and
 * `publishOutcome` (PaymentLookupHost), and PaymentRefundsMixin's `refundOnce`.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import type { Collection } from "./collection";
import type { PaymentRefundMethods } from "./payment-refunds.mixin";
import { chargeKey, chargeStartedAt, isUnrecordedCharge, lookupVerdict, LEASE_MS, NEVER_CHARGED, type Payment } from "../lib/payment-records";
import type { PaymentStatus } from "../lib/payment-state";
import { PaymentProviderError, type CreatePaymentResult, type PaymentProvider } from "../adapters/payments/provider";

/** Unrecorded charges looked up at the provider per sweep; the next sweep takes the rest. */
const UNRECORDED_CHARGES_PER_SWEEP = 50;
/** Refusals of a refund that mean nothing is left to give back (refunded meanwhile by other means). */
const NOTHING_TO_REFUND = new Set(["ALREADY_REFUNDED", "NOT_REFUNDABLE"]);
/** The refund of money taken for a payment recorded failed (see canOverturnFailure): one per order. */
const paidAfterFailureRefundKey = (orderId: string) => `${orderId}-paid-after-failure`;
const PAID_AFTER_FAILURE = "Paid after the payment was recorded as failed";

/** What services/payments.service.ts itself provides to this mixin. */
export interface PaymentLookupHost {
	applyChargeOutcome(ctx: Context | null, payment: Payment, result: CreatePaymentResult, where?: Record<string, unknown>): Promise<Payment>;
	transition(paymentId: string, to: PaymentStatus, set: Partial<Payment>, where?: Record<string, unknown>): Promise<Payment | null>;
	publishOutcome(ctx: Context | null, payment: Payment): Promise<void>;
}

export interface PaymentLookupMethods {
	settleUnrecordedCharge(ctx: Context | null, payment: Payment): Promise<Payment>;
	settleUnrecordedCharges(): Promise<{ settled: number }>;
	refundPaidAfterFailure(ctx: Context | null, payment: Payment): Promise<void>;
}

interface PaymentLookupVars extends PaymentLookupHost, Pick<PaymentRefundMethods, "refundOnce"> {
	db: { payments: Collection<Payment> };
	provider: PaymentProvider;
	chargeSweepTimer?: NodeJS.Timeout;
}
type PaymentLookupThis = Service & PaymentLookupMethods & PaymentLookupVars;

const paymentLookupsSchema: Partial<ServiceSchema<Record<string, never>, PaymentLookupMethods, PaymentLookupVars>> = {
	methods: {
		/**
		 * Settles a charge whose provider answer was never recorded (isUnrecordedCharge) by asking the
		 * provider what that charge did: the payment it finds is applied as the charge's own answer
		 * would have been (a success announced, so orders refunds the money of a cancelled order); a
		 * miss, once final (lookupVerdict), fails the payment as never charged, announced too; else it
		 * is left for the next look. Claimed with the charge's lease meanwhile, so a retried charge waits
		 * for it, and each write is conditional on the claim, so a webhook settling it first wins.
		 * Returns the payment as it stands.
		 */
		async settleUnrecordedCharge(this: PaymentLookupThis, ctx: Context | null, payment: Payment) {
			const now = new Date();
			const current = async () => (await this.db.payments.findById(payment.id))!;
			// Made through another provider (the shop switched since): only that one could say, so it is left alone.
			if (!isUnrecordedCharge(payment, now) || payment.provider !== this.provider.name) return payment;
			const lease = new Date(now.getTime() + LEASE_MS);
			const unrecorded = { status: "pending", providerPaymentId: null };
			const claimed = await this.db.payments.updateOne({ id: payment.id, ...unrecorded, chargeLeaseUntil: payment.chargeLeaseUntil ?? null }, { $set: { chargeLeaseUntil: lease } });
			if (!claimed) return current();
			const held = { providerPaymentId: null, chargeLeaseUntil: lease };
			// Let go (no call in flight): the next look, or a retried charge, goes on at once.
			const release = async () => (await this.db.payments.updateOne({ id: payment.id, ...unrecorded, chargeLeaseUntil: lease }, { $set: { chargeLeaseUntil: new Date(0) } })) ?? (await current());
			let found: CreatePaymentResult | null;
			try {
				found = await this.provider.findPayment({ idempotencyKey: chargeKey(payment.orderId), orderId: payment.orderId });
			} catch (err) {
				const released = await release();
				if (!(err instanceof PaymentProviderError)) throw err;
				this.logger.warn(`Looking up the unrecorded charge of order ${payment.orderId} failed; asked again later:`, err.message);
				return released;
			}
			const verdict = lookupVerdict(!!found, chargeStartedAt(claimed), new Date(), this.provider.lookupLagMs);
			if (verdict === "apply") return this.applyChargeOutcome(ctx, claimed, found!, held);
			if (verdict === "ask_later") return release();
			const failed = await this.transition(payment.id, "failed", { failureReason: NEVER_CHARGED, chargeLeaseUntil: null }, held);
			if (!failed) return current();
			this.logger.warn(`The charge of order ${payment.orderId} never reached the payment provider: recorded failed`);
			await this.publishOutcome(ctx, failed);
			return failed;
		},

		/**
		 * Settles the charges whose answer was never recorded and that nobody asks about (no webhook
		 * will come for a payment the provider never named): on a timer on every node, and at once when
		 * a single process starts. Their outcome is announced, which is how orders learns of it.
		 */
		async settleUnrecordedCharges(this: PaymentLookupThis) {
			const now = new Date();
			const candidates = await this.db.payments.find(
				{ status: "pending", providerPaymentId: null, provider: this.provider.name, chargeLeaseUntil: { $lte: now } },
				{ sort: { chargeLeaseUntil: 1 }, limit: UNRECORDED_CHARGES_PER_SWEEP },
			);
			let settled = 0;
			for (const payment of candidates) {
				try {
					if ((await this.settleUnrecordedCharge(null, payment)).status !== "pending") settled++;
				} catch (err) {
					this.logger.warn(`The unrecorded charge of order ${payment.orderId} could not be settled:`, (err as Error).message);
				}
			}
			return { settled };
		},

		/**
		 * Gives back the money of a payment reported paid after it was recorded failed (canOverturnFailure):
		 * its order failed, so nothing else will. Once per order (its refund key); a refund made meanwhile
		 * (orders refunding it as a late payment) leaves nothing to do. Throws when the provider cannot
		 * refund now: the webhook's redelivery asks again.
		 */
		async refundPaidAfterFailure(this: PaymentLookupThis, ctx: Context | null, payment: Payment) {
			try {
				await this.refundOnce({ orderId: payment.orderId, reason: PAID_AFTER_FAILURE, refundKey: paidAfterFailureRefundKey(payment.orderId), sale: false }, ctx);
			} catch (err) {
				if (!NOTHING_TO_REFUND.has((err as { type?: string })?.type ?? "")) throw err;
			}
		},
	},

	started() {
		// Every lease: a charge's answer unrecorded is looked for once its call is surely over.
		this.chargeSweepTimer = setInterval(() => {
			this.settleUnrecordedCharges().catch((err: Error) => this.logger.error("Settling unrecorded charges failed:", err));
		}, LEASE_MS);
		this.chargeSweepTimer.unref();
	},

	stopped() {
		clearInterval(this.chargeSweepTimer);
	},
};

/** Checked against its own `this` above; the host takes it as any other mixin. */
export const PaymentLookupsMixin: Partial<ServiceSchema<any, any, any, any>> = paymentLookupsSchema;
