/**
 * What the payments service stores, shared by its charge and webhook code
 * (services/payments.service.ts) and its refunds (mixins/payment-refunds.mixin.ts): the records,
 * the timings of their leases and waits, and the refund as callers see it.
 */
import type { PaymentStatus } from "./payment-state";

/** Longer than a provider call can take (Stripe client: 15 s timeout, 2 retries). */
export const LEASE_MS = 60_000;
/** How long a duplicate call waits for the first one's outcome: below the broker's request timeout. */
export const WAIT_FOR_OUTCOME_MS = 8_000;
export const POLL_MS = 25;

export interface Payment {
	id: string;
	orderId: string;
	/** The order's number when the charge was made (older payments have none). */
	orderNumber?: string | null;
	userId: string;
	amount: number;
	currency: string;
	status: PaymentStatus;
	provider: string;
	providerPaymentId: string | null;
	cardBrand: string | null;
	cardLast4: string | null;
	failureReason: string | null;
	/** While it waits for the customer (3-D Secure): what their browser completes it with (see CreatePaymentResult). */
	clientSecret?: string | null;
	/** Cents given back (settled refunds). */
	refundedAmount: number;
	/** Cents claimed by refunds, including those still in flight: the limit is checked on this. */
	reservedRefundAmount: number;
	/** The refunds whose amount reservedRefundAmount holds, by refund id (older payments have none). */
	reservedRefunds?: Record<string, number>;
	/** The refunds counted in refundedAmount, by refund id, so none is counted twice (older payments have none). */
	countedRefunds?: Record<string, number>;
	/** While in the future, a call is talking to the provider about this payment. */
	chargeLeaseUntil: Date | null;
	/** When the last charge call to the provider started (older payments have none: see chargeStartedAt). */
	chargeStartedAt?: Date | null;
	/** Recorded failed without the provider's word, then reported paid by it: payments refunds it itself. */
	paidAfterFailure?: boolean;
	/**
	 * Failed because its order was cancelled first, having taken nothing: stopped at the provider while it
	 * waited (3-D Secure), or recorded for an order undone before its charge was made (a charge arriving
	 * later is refused).
	 */
	voided?: boolean;
	createdAt: Date;
	updatedAt: Date;
}

export interface Refund {
	id: string;
	refundKey: string;
	orderId: string;
	paymentId: string;
	amount: number;
	currency: string;
	reason: string;
	/** `processing` while the provider is being asked. */
	status: "processing" | "succeeded" | "pending" | "failed";
	/** Failed at the provider after it accepted the refund (counted and announced first): why, as the provider says. */
	failedLater?: string;
	/** Refused by the provider's first answer (nothing refunded): why, as the provider says. */
	failureReason?: string;
	/**
	 * The refund this one turned out to be (the provider answered with a refund recorded already, from its
	 * webhook): the same money, counted and announced once, under that one.
	 */
	sameAs?: string;
	failedAt?: Date;
	/** While set, a call is announcing that failure (payment.refund_failed); taken over once past. */
	announceUntil?: Date;
	/** Its amount is counted in the payment's reservedRefundAmount. */
	reserved: boolean;
	/** False when the money was not a sale's (see RefundParams.sale); absent means it was. */
	sale?: boolean;
	providerRefundId: string | null;
	leaseUntil: Date | null;
	createdAt: Date;
	updatedAt: Date;
}


/** The provider's idempotency key of an order's charge: a retry after a lost answer never charges twice. */
export const chargeKey = (orderId: string) => `order-${orderId}-charge`;

/** The failure reason of a charge the provider, asked later, had no payment for. */
export const NEVER_CHARGED = "Not charged: the payment never reached the payment provider";

/**
 * A charge whose provider answer was never recorded (its call errored or timed out, or its node
 * died) and that no call is waiting for any more (its lease ran out): only the provider can say
 * how it ended. A payment the provider named (providerPaymentId) is settled by its webhook instead.
 */
export function isUnrecordedCharge(p: Pick<Payment, "status" | "providerPaymentId" | "chargeLeaseUntil">, now: Date): boolean {
	return p.status === "pending" && !p.providerPaymentId && (!p.chargeLeaseUntil || new Date(p.chargeLeaseUntil).getTime() <= now.getTime());
}

/** When the payment's last charge call started; older payments go by their last change (a takeover or a failed call). */
export function chargeStartedAt(p: Pick<Payment, "chargeStartedAt" | "updatedAt" | "createdAt">): Date {
	return new Date(p.chargeStartedAt ?? p.updatedAt ?? p.createdAt);
}

/**
 * What a look-up at the provider settles of an unrecorded charge: the outcome it `found` is applied;
 * a miss means "never charged" once the provider's look-up lag has passed since the charge call
 * started, and "ask again later" before (the payment may not show yet).
 */
export function lookupVerdict(found: boolean, startedAt: Date, now: Date, lookupLagMs: number): "apply" | "not_charged" | "ask_later" {
	if (found) return "apply";
	return now.getTime() - startedAt.getTime() >= lookupLagMs ? "not_charged" : "ask_later";
}

/** A refund as callers see it: without its lease, key and reservation flag. */
export function refundView(r: Refund) {
	const { leaseUntil: _lease, refundKey: _key, reserved: _reserved, announceUntil: _announcing, sameAs: _same, ...rest } = r;
	return rest;
}
